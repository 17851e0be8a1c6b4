/**
 * R51's changes to tools/testing/selftests/kvm/guest_memfd_test.c (in-place-conversion-and-hugetlb.md
 * §6.3), uapi 'rfc-1g', for page sizes 4K, 2M and 1G:
 * - the flag sweep: each single bit 0..63 is valid iff it is SUPPORT_SHARED or (with
 *   KVM_CAP_GMEM_HUGETLB) HUGETLB at the default hstate; INIT_PRIVATE only with SUPPORT_SHARED;
 *   the size bits 58..63 only with HUGETLB and only for an existing hstate;
 * - with INIT_PRIVATE mmap succeeds (HugeTLB: its length must be a multiple of the huge page
 *   size) but a fault SIGBUSes; without it the host writes 0xaa, punches
 *   the first unit, which then reads 0 while the others keep 0xaa;
 * - invalid sizes (0, not a multiple of the unit) → EINVAL; fds of S and 2S have those st_size,
 *   st_blksize S and distinct inode numbers;
 * - st_blocks accuracy (HugeTLB only, as in the selftest): full fallocate → total/512; failed or
 *   no-op calls leave it; punching one unit drops one unit; punching the hole again does not;
 *   re-fallocate restores it; punching a 4K subpage of a huge page succeeds, zeroes only that
 *   subpage and leaves st_blocks unchanged (R51 zeroes partial huge pages, frees nothing).
 *
 * - mmap (R51, §4.1): the address picked is huge-aligned, MAP_FIXED must be huge-aligned.
 *
 * For 1G the host fills only the first and last 4K page of each unit with 0xaa (a full 0xaa memset
 * of 4 GiB is memory the model would have to hold); the checks read those same pages.
 */
import assert from 'node:assert/strict';
import {
  GUEST_MEMFD_FLAG_HUGETLB, GUEST_MEMFD_FLAG_INIT_PRIVATE, GUEST_MEMFD_FLAG_SUPPORT_SHARED, GUESTMEM_HUGETLB_FLAG_1GB,
  GUESTMEM_HUGETLB_FLAG_2MB, KVM_CAP_GMEM_HUGETLB, KVM_CREATE_GUEST_MEMFD, KVM_X86_SW_PROTECTED_VM,
} from '../../src/uapi/kvm.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, MAP_FIXED, MAP_SHARED } from '../../src/uapi/linux.js';
import type { Backend } from '../lib/harness.js';
import { expectErrno } from '../lib/harness.js';
import { assertFilled, expectSignalIn, filled, forBackends, kcase, PAGE, type Session, SZ_2M } from './common.js';
import { needRfc1g, r51ModelOpts, RW, SIZES, type UnitSize, withModel } from './conversion-common.js';

const KEEP = FALLOC_FL_KEEP_SIZE;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
const SUPPORT_SHARED = BigInt(GUEST_MEMFD_FLAG_SUPPORT_SHARED);
const INIT_PRIVATE = BigInt(GUEST_MEMFD_FLAG_INIT_PRIVATE);
const HUGETLB = BigInt(GUEST_MEMFD_FLAG_HUGETLB);
const UNITS = 4;

function create(s: Session, vm: number, size: number, flags: bigint): number {
  return s.own(s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size, flags }));
}

/** The 4K pages of unit `u` the host fills and checks: all of them below 1G, else its first and last. */
function pagesOf(size: UnitSize, u: number): number[] {
  const first = (u * size.bytes) / PAGE;
  const nr = size.bytes / PAGE;
  if (size.name !== '1G') return [first];
  return [first, first + nr - 1];
}

function fillUnit(s: Session, mem: number, size: UnitSize, u: number, v: number): void {
  if (size.name !== '1G') s.k.store(mem + u * size.bytes, filled(size.bytes, v));
  else for (const p of pagesOf(size, u)) s.k.store(mem + p * PAGE, filled(PAGE, v));
}

function checkUnit(s: Session, mem: number, size: UnitSize, u: number, v: number, what: string): void {
  if (size.name !== '1G') assertFilled(s.k.load(mem + u * size.bytes, size.bytes), v, `${what}: unit ${u}`);
  else for (const p of pagesOf(size, u)) assertFilled(s.k.load(mem + p * PAGE, PAGE), v, `${what}: unit ${u} page ${p}`);
}

function defineSize(b: Backend, size: UnitSize): void {
  const S = size.bytes;
  const be = withModel(b, r51ModelOpts(size, 2 * UNITS));

  if (size.name === '4K') {
    // A 2M pool, for the HUGETLB files at the default hstate.
    kcase(withModel(b, r51ModelOpts(SIZES[1] as UnitSize, 4)), 'flag sweep: each bit 0..63 alone → fd iff SUPPORT_SHARED, or HUGETLB (default hstate, 2M file) with KVM_CAP_GMEM_HUGETLB; else EINVAL; SUPPORT_SHARED|INIT_PRIVATE valid; size bits need HUGETLB and an hstate', (s) => {
      needRfc1g(s);
      const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
      const hugetlb = s.cap(KVM_CAP_GMEM_HUGETLB) !== 0;
      for (let bit = 0n; bit < 64n; bit++) {
        const flag = 1n << bit;
        const valid = flag === SUPPORT_SHARED || (hugetlb && flag === HUGETLB);
        if (valid) s.close(create(s, vm, SZ_2M, flag));
        else s.failsCleanly('EINVAL', () => s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: SZ_2M, flags: flag }), `flag 1<<${bit}`);
      }
      s.close(create(s, vm, PAGE, SUPPORT_SHARED | INIT_PRIVATE));
      s.failsCleanly('EINVAL', () => s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: PAGE, flags: INIT_PRIVATE }), 'INIT_PRIVATE without SUPPORT_SHARED');
      s.failsCleanly('EINVAL', () => s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: SZ_2M, flags: GUESTMEM_HUGETLB_FLAG_2MB }), 'size bits without HUGETLB');
      s.failsCleanly('EINVAL', () => s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: SZ_2M, flags: HUGETLB | (16n << 58n) }), 'HUGETLB with 2^16-byte pages: no such hstate');
      s.failsCleanly('EINVAL', () => s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: SZ_2M, flags: HUGETLB | GUESTMEM_HUGETLB_FLAG_1GB }), '1G pages, file of 2M: size not a multiple');
      s.close(create(s, vm, SZ_2M, SUPPORT_SHARED | INIT_PRIVATE | HUGETLB | GUESTMEM_HUGETLB_FLAG_2MB));
    });
  }

  kcase(be, `${size.name}: INIT_PRIVATE — mmap succeeds${size.hugetlb ? ' (a length of half a huge page → EINVAL)' : ''}, a host fault (read or write) SIGBUSes`, (s) => {
    needRfc1g(s, size.hugetlb);
    const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
    const fd = create(s, vm, UNITS * S, SUPPORT_SHARED | INIT_PRIVATE | size.r51Flags);
    if (size.hugetlb) expectErrno('EINVAL', () => s.k.mmap(0, S / 2, RW, MAP_SHARED, fd, 0), 'mmap length not a multiple of the huge page size');
    const mem = s.mmap(UNITS * S, RW, MAP_SHARED, fd, 0);
    for (let u = 0; u < UNITS; u++) {
      const at = mem + u * S;
      expectSignalIn('SIGBUS', () => s.k.load(at, 1), at, at + PAGE, `read of unit ${u}`);
      expectSignalIn('SIGBUS', () => s.k.store(at, Uint8Array.of(1)), at, at + PAGE, `write of unit ${u}`);
    }
  });

  kcase(be, `${size.name}: shared — host fills every unit with 0xaa, punches the first unit: it reads 0, the others keep 0xaa`, (s) => {
    needRfc1g(s, size.hugetlb);
    const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
    const fd = create(s, vm, UNITS * S, SUPPORT_SHARED | size.r51Flags);
    const mem = s.mmap(UNITS * S, RW, MAP_SHARED, fd, 0);
    for (let u = 0; u < UNITS; u++) fillUnit(s, mem, size, u, 0xaa);
    s.k.fallocate(fd, PUNCH, 0, S);
    checkUnit(s, mem, size, 0, 0, 'punched');
    for (let u = 1; u < UNITS; u++) checkUnit(s, mem, size, u, 0xaa, 'untouched');
  });

  kcase(be, `${size.name}: sizes — 0 and non-multiples of ${size.name} → EINVAL; fds of S and 2S: st_size, st_blksize ${size.name}, distinct st_ino`, (s) => {
    needRfc1g(s, size.hugetlb);
    const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
    const flags = SUPPORT_SHARED | size.r51Flags;
    const bad = [0, 1, PAGE - 1, S + PAGE / 2, ...(size.hugetlb ? [PAGE, S - PAGE, S + PAGE] : [])];
    for (const n of bad) s.failsCleanly('EINVAL', () => s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: n, flags }), `size ${n}`);
    const a = create(s, vm, S, flags);
    const c = create(s, vm, 2 * S, flags);
    const sa = s.k.fstat(a);
    const sc = s.k.fstat(c);
    assert.equal(sa.st_size, S);
    assert.equal(sc.st_size, 2 * S);
    assert.equal(sa.st_blksize, S);
    assert.equal(sc.st_blksize, S);
    assert.notEqual(sa.st_ino, sc.st_ino);
  });

  if (!size.hugetlb) return;

  kcase(be, `${size.name}: mmap of a HugeTLB guest_memfd (§4.1, R51): the address mmap picks is ${size.name}-aligned; MAP_FIXED at a ${size.name}-aligned address maps, at one 4K past it → EINVAL`, (s) => {
    needRfc1g(s, true);
    const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
    const fd = create(s, vm, S, SUPPORT_SHARED | size.r51Flags);
    s.anon(PAGE); // whatever the search found before, it must now skip to an aligned address
    const a = s.mmap(S, RW, MAP_SHARED, fd, 0);
    assert.equal(a % S, 0, `mmap returned 0x${a.toString(16)}`);
    const fixed = 0x7e0000000000;
    assert.equal(s.mmap(S, RW, MAP_SHARED | MAP_FIXED, fd, 0, fixed), fixed);
    s.failsCleanly('EINVAL', () => s.k.mmap(fixed + S + PAGE, S, RW, MAP_SHARED | MAP_FIXED, fd, 0), 'MAP_FIXED not huge-aligned');
  });

  kcase(be, `${size.name}: st_blocks accuracy — fallocate all; failed/no-op calls leave it; punch one unit (−1 unit); punch it again (no change); re-fallocate; punch a 4K subpage (zeroed, st_blocks unchanged)`, (s) => {
    needRfc1g(s, true);
    const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
    const total = UNITS * S;
    const fd = create(s, vm, total, SUPPORT_SHARED | size.r51Flags);
    const blocks = (): number => s.k.fstat(fd).st_blocks;
    assert.equal(blocks(), 0);
    s.k.fallocate(fd, KEEP, 0, total);
    assert.equal(blocks(), total / 512, 'full fallocate');
    expectErrno('EINVAL', () => s.k.fallocate(fd, KEEP, 1, PAGE), 'unaligned offset');
    expectErrno('EINVAL', () => s.k.fallocate(fd, KEEP, 0, total + S), 'past i_size');
    expectErrno('EOPNOTSUPP', () => s.k.fallocate(fd, FALLOC_FL_ZERO_RANGE | KEEP, 0, S), 'ZERO_RANGE');
    expectErrno('EOPNOTSUPP', () => s.k.fallocate(fd, 0, 0, S), 'without KEEP_SIZE');
    assert.equal(blocks(), total / 512, 'failed calls change nothing');
    s.k.fallocate(fd, PUNCH, S, S);
    assert.equal(blocks(), (total - S) / 512, 'punch of one unit');
    s.k.fallocate(fd, PUNCH, S, S);
    assert.equal(blocks(), (total - S) / 512, 'punching the hole again');
    s.k.fallocate(fd, KEEP, S + PAGE, PAGE);
    assert.equal(blocks(), (total - S) / 512, 'an allocation inside one unit rounds down to nothing (R51)');
    s.k.fallocate(fd, KEEP, 0, total);
    assert.equal(blocks(), total / 512, 're-fallocate');
    const mem = s.mmap(total, RW, MAP_SHARED, fd, 0);
    s.k.store(mem, filled(2 * PAGE, 0xaa));
    s.k.fallocate(fd, PUNCH, 0, PAGE);
    assert.equal(blocks(), total / 512, 'a 4K punch inside a huge page frees nothing');
    assertFilled(s.k.load(mem, PAGE), 0, 'the punched subpage');
    assertFilled(s.k.load(mem + PAGE, PAGE), 0xaa, 'the next subpage');
  });
}

forBackends('guest_memfd_test.c, R51 changes (§6.3, uapi rfc-1g)', (b) => {
  for (const size of SIZES) defineSize(b, size);
});
