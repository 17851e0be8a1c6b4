/**
 * Bad input: u64 fields given as bigints near 2^64 (0xffff_ffff_ffff_f000, 1<<63, 2^64−1), negative
 * numbers (a C cast makes them huge u64 / negative loff_t), and non-integers (which no C integer
 * can be; the Syscalls contract answers EINVAL). Each call must give the kernel's errno and change
 * no state: the model's whole-state digest is unchanged and no fd is left behind (failsCleanly),
 * and afterwards the objects involved still behave as before.
 */
import assert from 'node:assert/strict';
import {
  GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_CAP_MEMORY_ATTRIBUTES, KVM_CHECK_EXTENSION,
  KVM_CREATE_GUEST_MEMFD, KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_MEM_GUEST_MEMFD, KVM_PRE_FAULT_MEMORY,
  KVM_SET_MEMORY_ATTRIBUTES, KVM_SET_USER_MEMORY_REGION2,
} from '../../src/uapi/kvm.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MAP_SHARED, PROT_READ, PROT_WRITE } from '../../src/uapi/linux.js';
import type { KvmMemoryAttributes, KvmPreFaultMemory, KvmUserspaceMemoryRegion2, U64 } from '../../src/uapi/syscalls.js';
import { assertFilled, filled, forBackends, kcase, PAGE, region, type Session } from './common.js';

const NEAR_TOP = 0xffff_ffff_ffff_f000n;
const BIT63 = 1n << 63n;
const U64_MAX = (1n << 64n) - 1n;
const GPA = 0x100000000;

/** A default VM with a 4-page MMAP|INIT_SHARED gmem whose pages hold 0xaa, bound at GPA as slot 1. */
function world(s: Session): { vm: number; fd: number; mem: number } {
  const vm = s.vm(0);
  const fd = s.gmem(vm, 4 * PAGE, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
  const mem = s.mmap(4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
  s.k.store(mem, filled(4 * PAGE, 0xaa));
  s.setRegion(vm, { slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GPA, memory_size: 4 * PAGE, userspace_addr: mem, guest_memfd: fd });
  return { vm, fd, mem };
}

/** The world is as world() left it: the data, the size, slot 1 (its GPA range is taken), slot 2 free. */
function intact(s: Session, w: { vm: number; fd: number; mem: number }): void {
  assertFilled(s.k.load(w.mem, 4 * PAGE), 0xaa, 'gmem data');
  assert.equal(s.k.fstat(w.fd).st_size, 4 * PAGE);
  s.failsCleanly('EEXIST', () => s.setRegion(w.vm, { slot: 2, guest_phys_addr: GPA, memory_size: PAGE, userspace_addr: w.mem }), 'slot 1 still covers GPA');
  s.failsCleanly('EINVAL', () => s.deleteSlot(w.vm, 2), 'slot 2 was never created');
}

forBackends('bad input: u64 edges, negative and non-integer values', (b) => {
  kcase(b, 'KVM_CREATE_GUEST_MEMFD: size and flags near 2^64, negative, non-integer → EINVAL; nothing created', (s) => {
    const w = world(s);
    const bad: Array<[string, U64, U64]> = [
      ['size 0xfffffffffffff000', NEAR_TOP, 0], ['size 1<<63', BIT63, 0], ['size 2^64-1', U64_MAX, 0],
      ['size -4096', -4096, 0], ['size 4096.5', 4096.5, 0],
      ['flags 1<<63', PAGE, BIT63], ['flags 2^64-1', PAGE, U64_MAX], ['flags -1', PAGE, -1], ['flags 0.5', PAGE, 0.5],
    ];
    for (const [what, size, flags] of bad) {
      s.failsCleanly('EINVAL', () => s.k.ioctl(w.vm, KVM_CREATE_GUEST_MEMFD, { size, flags }), what);
    }
    intact(s, w);
  });

  kcase(b, 'KVM_SET_USER_MEMORY_REGION2: gpa, memory_size, userspace_addr, guest_memfd_offset near 2^64 / negative / non-integer → EINVAL; no slot created', (s) => {
    const w = world(s);
    const anon = s.anon(PAGE);
    const plain = (r: Partial<KvmUserspaceMemoryRegion2>): KvmUserspaceMemoryRegion2 =>
      region({ slot: 2, guest_phys_addr: 2 * GPA, memory_size: PAGE, userspace_addr: anon, ...r });
    const gm = (r: Partial<KvmUserspaceMemoryRegion2>): KvmUserspaceMemoryRegion2 =>
      plain({ flags: KVM_MEM_GUEST_MEMFD, userspace_addr: 0, guest_memfd: w.fd, guest_memfd_offset: 0, ...r });
    const bad: Array<[string, KvmUserspaceMemoryRegion2]> = [
      ['gpa 0xfffffffffffff000 (gpa + size wraps)', plain({ guest_phys_addr: NEAR_TOP })],
      ['gpa 1<<63 (beyond the max gfn)', plain({ guest_phys_addr: BIT63 })],
      ['gpa 2^64-1 (unaligned)', plain({ guest_phys_addr: U64_MAX })],
      ['gpa -4096 (wraps)', plain({ guest_phys_addr: -4096 })],
      ['gpa 4096.5', plain({ guest_phys_addr: 4096.5 })],
      ['memory_size 0xfffffffffffff000', plain({ memory_size: NEAR_TOP })],
      ['memory_size 1<<63', plain({ memory_size: BIT63 })],
      ['memory_size 2^64-1', plain({ memory_size: U64_MAX })],
      ['memory_size -4096', plain({ memory_size: -4096 })],
      ['userspace_addr 0xfffffffffffff000', plain({ userspace_addr: NEAR_TOP })],
      ['userspace_addr 1<<63', plain({ userspace_addr: BIT63 })],
      ['userspace_addr 2^64-1', plain({ userspace_addr: U64_MAX })],
      ['userspace_addr -4096', plain({ userspace_addr: -4096 })],
      ['guest_memfd_offset 0xfffffffffffff000', gm({ guest_memfd_offset: NEAR_TOP })],
      ['guest_memfd_offset 1<<63', gm({ guest_memfd_offset: BIT63 })],
      ['guest_memfd_offset 2^64-1', gm({ guest_memfd_offset: U64_MAX })],
      ['guest_memfd_offset -4096', gm({ guest_memfd_offset: -4096 })],
      ['guest_memfd_offset 0.5', gm({ guest_memfd_offset: 0.5 })],
    ];
    for (const [what, r] of bad) s.failsCleanly('EINVAL', () => s.k.ioctl(w.vm, KVM_SET_USER_MEMORY_REGION2, r), what);
    intact(s, w);
    s.setRegion(w.vm, { slot: 2, guest_phys_addr: 2 * GPA, memory_size: PAGE, userspace_addr: anon });
  });

  kcase(b, 'KVM_SET_MEMORY_ATTRIBUTES: fields near 2^64, negative, non-integer → EINVAL (ENOTTY where the cap is 0)', (s) => {
    const w = world(s);
    const code = s.cap(KVM_CAP_MEMORY_ATTRIBUTES) === 0 ? 'ENOTTY' : 'EINVAL';
    const a = (x: Partial<KvmMemoryAttributes>): KvmMemoryAttributes => ({ address: GPA, size: PAGE, attributes: 0, flags: 0, ...x });
    const bad: Array<[string, KvmMemoryAttributes]> = [
      ['address 0xfffffffffffff000, size 2 pages (wraps)', a({ address: NEAR_TOP, size: 2 * PAGE })],
      ['address 2^64-1', a({ address: U64_MAX })],
      ['size 2^64-1', a({ size: U64_MAX })],
      ['size 0xfffffffffffff000 from GPA (wraps)', a({ size: NEAR_TOP })],
      ['address -4096, size 2 pages (wraps)', a({ address: -4096, size: 2 * PAGE })],
      ['attributes 1<<63', a({ attributes: BIT63 })],
      ['attributes 2^64-1', a({ attributes: U64_MAX })],
      ['flags 1<<63', a({ flags: BIT63 })],
      ['flags -1', a({ flags: -1 })],
      ['size 4096.5', a({ size: 4096.5 })],
    ];
    for (const [what, x] of bad) s.failsCleanly(code, () => s.k.ioctl(w.vm, KVM_SET_MEMORY_ATTRIBUTES, x), what);
    intact(s, w);
  });

  kcase(b, 'KVM_PRE_FAULT_MEMORY: gpa/size/flags near 2^64, negative, non-integer → EINVAL; the range is left as given', (s) => {
    const w = world(s);
    const vcpu = s.vcpu(w.vm);
    const r = (x: Partial<KvmPreFaultMemory>): KvmPreFaultMemory => ({ gpa: GPA, size: PAGE, flags: 0, ...x });
    const bad: Array<[string, KvmPreFaultMemory]> = [
      ['gpa 0xfffffffffffff000, size 2 pages (wraps)', r({ gpa: NEAR_TOP, size: 2 * PAGE })],
      ['gpa 1<<63, size 1<<63 (wraps to 0)', r({ gpa: BIT63, size: BIT63 })],
      ['gpa 2^64-1', r({ gpa: U64_MAX })],
      ['size 2^64-1', r({ size: U64_MAX })],
      ['gpa -4096 (wraps)', r({ gpa: -4096 })],
      ['flags 1<<63', r({ flags: BIT63 })],
      ['flags 2^64-1', r({ flags: U64_MAX })],
      ['gpa 0.5', r({ gpa: 0.5 })],
    ];
    for (const [what, x] of bad) {
      const given = { ...x };
      s.failsCleanly('EINVAL', () => s.k.ioctl(vcpu, KVM_PRE_FAULT_MEMORY, x), what);
      assert.deepEqual(x, given, `${what}: range unchanged`);
    }
    intact(s, w);
  });

  kcase(b, 'fallocate: offset/len as bigints near 2^64 (negative loff_t), negative, non-integer → EINVAL; 2^62 + 2^62 → EFBIG; data intact', (s) => {
    const w = world(s);
    const KEEP = FALLOC_FL_KEEP_SIZE;
    const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
    const bad: Array<[string, string, number, U64, U64]> = [
      ['PUNCH offset 0xfffffffffffff000 (loff_t -4096)', 'EINVAL', PUNCH, NEAR_TOP, PAGE],
      ['PUNCH offset 1<<63 (loff_t min)', 'EINVAL', PUNCH, BIT63, PAGE],
      ['PUNCH len 2^64-1 (loff_t -1)', 'EINVAL', PUNCH, 0, U64_MAX],
      ['KEEP len 0xfffffffffffff000', 'EINVAL', KEEP, 0, NEAR_TOP],
      ['PUNCH offset -4096', 'EINVAL', PUNCH, -4096, PAGE],
      ['PUNCH len -4096', 'EINVAL', PUNCH, 0, -4096],
      ['PUNCH offset 0.5', 'EINVAL', PUNCH, 0.5, PAGE],
      ['PUNCH len 4096.5', 'EINVAL', PUNCH, 0, 4096.5],
      ['PUNCH offset 2^62, len 2^62', 'EFBIG', PUNCH, 1n << 62n, 1n << 62n],
      ['PUNCH offset 1, len 2^63-1', 'EFBIG', PUNCH, 1, BIT63 - 1n],
    ];
    for (const [what, code, mode, off, len] of bad) s.failsCleanly(code, () => s.k.fallocate(w.fd, mode, off, len), what);
    intact(s, w);
  });

  kcase(b, 'mmap: a negative offset is a huge pgoff → EOVERFLOW (file_mmap_ok), before ENODEV, EPERM and EINVAL', (s) => {
    const w = world(s);
    const plain = s.gmem(w.vm, 4 * PAGE, 0);
    const cases: Array<[string, number, number, number]> = [
      ['MMAP|INIT_SHARED, SHARED RW, offset -4096', w.fd, PROT_READ | PROT_WRITE, MAP_SHARED],
      ['no MMAP (ENODEV otherwise)', plain, PROT_READ | PROT_WRITE, MAP_SHARED],
      ['PROT_EXEC (EPERM otherwise)', w.fd, PROT_READ | 4, MAP_SHARED],
      ['MAP_PRIVATE (EINVAL otherwise)', w.fd, PROT_READ, 2],
    ];
    for (const [what, fd, prot, flags] of cases) s.failsCleanly('EOVERFLOW', () => s.k.mmap(0, PAGE, prot, flags, fd, -4096), what);
    s.failsCleanly('EOVERFLOW', () => s.k.mmap(0, PAGE, PROT_READ, MAP_SHARED, w.fd, 2 ** 63), 'offset 2^63');
    intact(s, w);
  });

  kcase(b, 'integer ioctl arguments: KVM_CHECK_EXTENSION(2^64-1) → 0; KVM_CREATE_VM(2^64-1), KVM_CREATE_VCPU(2^64-1) → EINVAL', (s) => {
    const w = world(s);
    assert.equal(s.k.ioctl(s.kvm(), KVM_CHECK_EXTENSION, U64_MAX), 0);
    s.failsCleanly('EINVAL', () => s.k.ioctl(s.kvm(), KVM_CREATE_VM, U64_MAX), 'KVM_CREATE_VM type 2^64-1');
    s.failsCleanly('EINVAL', () => s.k.ioctl(w.vm, KVM_CREATE_VCPU, U64_MAX), 'KVM_CREATE_VCPU id 2^64-1');
    intact(s, w);
  });
});
