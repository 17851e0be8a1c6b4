/**
 * Bad input for the two conversion uAPIs, in the kernel's order of checks
 * (in-place-conversion-and-hugetlb.md §1.1 and §1.3), with u64 fields near 2^64 given as bigint.
 * Every rejected call must change nothing: on the model the whole-state digest is equal before and
 * after (Session.failsCleanly), on a fixture with state a wrong path could disturb (allocated,
 * host-mapped, guest-mapped, shared and private pages).
 *
 * KVM_SET_MEMORY_ATTRIBUTES2 (guest_memfd ioctl, uapi 'in-place'), v8 kvm_gmem_set_attributes:
 *   1 copy_from_user → EFAULT; 2 flags ≠ 0, reserved[i] ≠ 0 → EINVAL; 3 the VM has no private
 *   memory → EINVAL; 4 attributes ⊄ PRIVATE → EINVAL; 5 size 0 or offset + size overflows →
 *   EINVAL; 6 not 4K aligned → EINVAL; 7 past i_size → EINVAL; 8 convert (error_offset written
 *   only here). A range already in the requested state returns 0 without any check.
 * KVM_GMEM_CONVERT_SHARED/PRIVATE (uapi 'rfc-1g'): error_offset ≠ 0 → EINVAL; size 0 → 0 (before
 *   any range check); overflow / offset > i_size / end > i_size → EINVAL; unaligned → EINVAL; a
 *   file without SUPPORT_SHARED: no work, 0.
 * KVM_CREATE_GUEST_MEMFD with HUGETLB + page_order (§1.2, the in-place HugeTLB work in progress).
 * Cross-checks: each ioctl is ENOTTY where its generation does not have it, and on the wrong fd.
 */
import assert from 'node:assert/strict';
import { IOWR } from '../../src/uapi/ioctl.js';
import {
  GUEST_MEMFD_FLAG_HUGETLB, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_SUPPORT_SHARED,
  KVM_CREATE_GUEST_MEMFD,
  KVM_GMEM_CONVERT_PRIVATE, KVM_GMEM_CONVERT_SHARED, KVM_GMEM_IO, KVM_SET_MEMORY_ATTRIBUTES,
  KVM_SET_MEMORY_ATTRIBUTES2, KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM,
} from '../../src/uapi/kvm.js';
import type { KvmGmemConvert, KvmMemoryAttributes2, U64 } from '../../src/uapi/syscalls.js';
import { expectErrno } from '../lib/harness.js';
import { forBackends, kcase, PAGE } from './common.js';
import { ch, ConvFixture, needInPlace, needRfc1g, PRIVATE, withModel } from './conversion-common.js';

const N = 4;
const I_SIZE = N * PAGE;
const U64_MAX = (1n << 64n) - 1n;
const NEAR = (1n << 64n) - 4096n;
const S64_MIN = 1n << 63n;
const SENTINEL = 0xdead000;

/** A fixture with every kind of state: page 0 host-written, 1 guest-mapped shared, 2 private and guest-written, 3 untouched. */
function populate(t: ConvFixture): void {
  t.hostRmw(0, 0, ch('A'));
  t.guestRmw(PAGE, 0, ch('B'));
  t.setPrivate(2 * PAGE, PAGE);
  t.guestRmw(2 * PAGE, 0, ch('C'));
}

function attrs2(offset: U64, size: U64, attributes: U64 = PRIVATE, flags: U64 = 0, reserved?: U64[]): KvmMemoryAttributes2 {
  const a: KvmMemoryAttributes2 = { offset, size, attributes, flags, error_offset: SENTINEL };
  if (reserved !== undefined) a.reserved = reserved;
  return a;
}

function rsv(i: number, v: U64): U64[] {
  const r: U64[] = new Array<U64>(11).fill(0);
  r[i] = v;
  return r;
}

forBackends('KVM_SET_MEMORY_ATTRIBUTES2: bad input in the kernel\'s order (§1.1, uapi in-place)', (b) => {
  const mb = withModel(b, { uapi: 'in-place' });

  kcase(mb, 'steps 1–7: EFAULT for a bad pointer; flags, reserved[0..10], attributes, size 0, u64 wrap, alignment, i_size → EINVAL; nothing changes, error_offset is not written', (s) => {
    needInPlace(s);
    const t = new ConvFixture(s, { uapi: 'in-place', size: I_SIZE, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED, slot: 1 });
    populate(t);
    const call = (a: unknown): number => s.k.ioctl(t.gmem, KVM_SET_MEMORY_ATTRIBUTES2, a as object);
    s.failsCleanly('EFAULT', () => call(0), 'step 1: not a struct (bad user pointer)');
    const bad: Array<[string, KvmMemoryAttributes2]> = [
      ['step 2: flags 1', attrs2(0, PAGE, PRIVATE, 1)],
      ['step 2: flags 2^63', attrs2(0, PAGE, PRIVATE, S64_MIN)],
      ['step 2: flags 2^64-1', attrs2(0, PAGE, PRIVATE, U64_MAX)],
      ...Array.from({ length: 11 }, (_, i): [string, KvmMemoryAttributes2] => [`step 2: reserved[${i}] = 1`, attrs2(0, PAGE, PRIVATE, 0, rsv(i, 1))]),
      ['step 2: reserved[10] = 2^64-1', attrs2(0, PAGE, PRIVATE, 0, rsv(10, U64_MAX))],
      ['step 2 before step 5: flags 1 with size 0', attrs2(0, 0, PRIVATE, 1)],
      ['step 4: attributes 1', attrs2(0, PAGE, 1)],
      ['step 4: attributes 1<<4', attrs2(0, PAGE, 1 << 4)],
      ['step 4: attributes PRIVATE | 1<<63', attrs2(0, PAGE, BigInt(PRIVATE) | S64_MIN)],
      ['step 4: attributes 2^64-1', attrs2(0, PAGE, U64_MAX)],
      ['step 5: size 0 (success in R51, EINVAL here)', attrs2(0, 0)],
      ['step 5: size 0n at offset 4096n (bigint fields)', attrs2(4096n, 0n)],
      ['step 5: offset 2^64-4096 + size 4096 wraps to 0', attrs2(NEAR, PAGE)],
      ['step 5: offset 4096 + size 2^64-4096 wraps to 0', attrs2(PAGE, NEAR)],
      ['step 5: offset 2^64-4096 + size 2^64-4096', attrs2(NEAR, NEAR)],
      ['step 5: size 2^64-1', attrs2(0, U64_MAX)],
      ['step 6: offset 1', attrs2(1, PAGE)],
      ['step 6: offset 4095', attrs2(4095, PAGE)],
      ['step 6: size 1', attrs2(0, 1)],
      ['step 6: size 4097', attrs2(0, PAGE + 1)],
      ['step 6: offset 2^64-4097 (unaligned, no wrap)', attrs2(NEAR - 1n, 1)],
      ['step 7: offset = i_size', attrs2(I_SIZE, PAGE)],
      ['step 7: offset + size = i_size + 4096', attrs2(0, I_SIZE + PAGE)],
      ['step 7: offset 2^63 (a negative loff_t)', attrs2(S64_MIN, PAGE)],
      ['step 7: offset 2^64-8192, size 4096 (no wrap, far past i_size)', attrs2(NEAR - 4096n, PAGE)],
      ['step 7: offset 2^53 (a number), size 4096', attrs2(2 ** 53, PAGE)],
      // A negative number is its two's complement, as a C cast makes it.
      ['step 2: flags -1 (2^64-1)', attrs2(0, PAGE, PRIVATE, -1)],
      ['step 4: attributes -8', attrs2(0, PAGE, -8)],
      ['step 5: offset -4096 (2^64-4096) + size 4096 wraps', attrs2(-4096, PAGE)],
      ['step 5: size -4096 (2^64-4096) from offset 4096 wraps', attrs2(PAGE, -4096)],
    ];
    for (const [what, a] of bad) {
      s.failsCleanly('EINVAL', () => call(a), what);
      assert.equal(a.error_offset, SENTINEL, `${what}: error_offset is only written by a failed conversion`);
    }
    // The fixture is intact: 0 and 1 shared with their values, 2 private, 3 untouched.
    t.hostRmw(0, ch('A'), null);
    t.hostRmw(PAGE, ch('B'), null);
    t.hostCannotFault(2 * PAGE);
    t.guestRmw(2 * PAGE, ch('C'), null);
    t.hostRmw(3 * PAGE, 0, null);
    // Valid edge cases: the whole file; the same again (a no-op); attributes 0.
    assert.equal(call(attrs2(0, I_SIZE)), 0);
    assert.equal(call(attrs2(0, I_SIZE)), 0, 'already private: 0');
    assert.equal(call(attrs2(0, I_SIZE, 0)), 0);
    t.hostRmw(2 * PAGE, ch('C'), null);
  });

  kcase(mb, 'step 3: a guest_memfd of a VM without private memory (KVM_X86_DEFAULT_VM) → EINVAL for valid arguments, to private and to shared', (s) => {
    needInPlace(s);
    const vm = s.vm(KVM_X86_DEFAULT_VM);
    const fd = s.own(s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: I_SIZE, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED }));
    s.failsCleanly('EINVAL', () => s.k.ioctl(fd, KVM_SET_MEMORY_ATTRIBUTES2, attrs2(0, PAGE)), 'to private');
    s.failsCleanly('EINVAL', () => s.k.ioctl(fd, KVM_SET_MEMORY_ATTRIBUTES2, attrs2(0, PAGE, 0)), 'to shared');
    s.failsCleanly('EINVAL', () => s.k.ioctl(fd, KVM_SET_MEMORY_ATTRIBUTES2, attrs2(0, PAGE, 0, 1)), 'flags 1 (step 2 first: EINVAL either way)');
  });

  kcase(mb, 'step 8: EAGAIN writes error_offset (max(start, folio)); a range already in the requested state returns 0 even with a pinned page (no refcount check)', (s) => {
    needInPlace(s);
    const t = new ConvFixture(s, { uapi: 'in-place', size: I_SIZE, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED, slot: 1 });
    populate(t);
    const pin = s.k.pin(t.mem + 3 * PAGE, PAGE);
    const a = attrs2(PAGE, 3 * PAGE);
    expectErrno('EAGAIN', () => s.k.ioctl(t.gmem, KVM_SET_MEMORY_ATTRIBUTES2, a), 'pinned page 3');
    assert.equal(a.error_offset, 3 * PAGE);
    assert.equal(s.k.ioctl(t.gmem, KVM_SET_MEMORY_ATTRIBUTES2, attrs2(3 * PAGE, PAGE, 0)), 0, 'already shared: 0 although pinned');
    t.hostRmw(PAGE, ch('B'), null);
    s.k.unpin(pin);
  });

  kcase(mb, 'routing: KVM_SET_MEMORY_ATTRIBUTES2 on the VM fd, KVM_SET_MEMORY_ATTRIBUTES and KVM_GMEM_CONVERT_* on the guest_memfd → ENOTTY; VM-level PRIVATE → EINVAL (in-place conversion owns it)', (s) => {
    needInPlace(s);
    const t = new ConvFixture(s, { uapi: 'in-place', size: I_SIZE, flags: GUEST_MEMFD_FLAG_MMAP, slot: 1 });
    s.failsCleanly('ENOTTY', () => s.k.ioctl(t.vm, KVM_SET_MEMORY_ATTRIBUTES2, attrs2(0, PAGE)), 'ATTRIBUTES2 on the VM');
    s.failsCleanly('ENOTTY', () => s.k.ioctl(t.gmem, KVM_SET_MEMORY_ATTRIBUTES, { address: 0, size: PAGE, attributes: PRIVATE, flags: 0 }), 'VM ioctl on the gmem');
    s.failsCleanly('ENOTTY', () => s.k.ioctl(t.gmem, KVM_GMEM_CONVERT_SHARED, { offset: 0, size: PAGE, error_offset: 0 }), 'R51 ioctl');
    s.failsCleanly('ENOTTY', () => s.k.ioctl(t.gmem, KVM_GMEM_CONVERT_PRIVATE, { offset: 0, size: PAGE, error_offset: 0 }), 'R51 ioctl');
    s.failsCleanly('EINVAL', () => s.k.ioctl(t.vm, KVM_SET_MEMORY_ATTRIBUTES, { address: 0x100000000, size: PAGE, attributes: PRIVATE, flags: 0 }), 'VM-level PRIVATE');
  });
});

forBackends('KVM_CREATE_GUEST_MEMFD with HUGETLB + page_order (§1.2, HugeTLB work in progress, uapi in-place)', (b) => {
  kcase(withModel(b, { uapi: 'in-place', hugepages: { '2M': 2 }, memoryBytes: 1024 * 1024 * 1024 }), 'HUGETLB | INIT_SHARED, page_order without HUGETLB, an order without an hstate (0, 10), a size not a multiple of 2M → EINVAL; page_order is a u8 (265 is 9); a 1G file with no 1G pool → ENOMEM', (s) => {
    needInPlace(s);
    const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
    const M = 2 * 1024 * 1024;
    const create = (a: { size: number; flags: number; page_order?: number }): number => s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, a);
    const H = GUEST_MEMFD_FLAG_HUGETLB | GUEST_MEMFD_FLAG_MMAP;
    const bad: Array<[string, { size: number; flags: number; page_order?: number }]> = [
      ['HUGETLB | INIT_SHARED', { size: M, flags: H | GUEST_MEMFD_FLAG_INIT_SHARED, page_order: 9 }],
      ['page_order 9 without HUGETLB', { size: M, flags: GUEST_MEMFD_FLAG_MMAP, page_order: 9 }],
      ['HUGETLB, page_order 0', { size: M, flags: H, page_order: 0 }],
      ['HUGETLB, page_order 10', { size: M, flags: H, page_order: 10 }],
      ['HUGETLB, size 4K', { size: PAGE, flags: H, page_order: 9 }],
      ['HUGETLB, size 2M + 4K', { size: M + PAGE, flags: H, page_order: 9 }],
    ];
    for (const [what, a] of bad) s.failsCleanly('EINVAL', () => create(a), what);
    s.failsCleanly('ENOMEM', () => create({ size: 1024 * M / 2, flags: H, page_order: 18 }), '1G pages, empty 1G pool');
    s.close(s.own(create({ size: M, flags: H, page_order: 265 })));
    s.close(s.own(create({ size: 2 * M, flags: GUEST_MEMFD_FLAG_HUGETLB, page_order: 9 })));
  });
});

forBackends('KVM_GMEM_CONVERT_SHARED/PRIVATE: bad input in R51\'s order (§1.3, uapi rfc-1g)', (b) => {
  const mb = withModel(b, { uapi: 'rfc-1g' });
  const conv = (offset: U64, size: U64, error_offset: U64 = 0): KvmGmemConvert => ({ offset, size, error_offset });

  kcase(mb, 'error_offset ≠ 0 → EINVAL (even with size 0); size 0 → 0 before any range check; wrap, offset > i_size, end > i_size, unaligned → EINVAL; nothing changes', (s) => {
    needRfc1g(s);
    const t = new ConvFixture(s, { uapi: 'rfc-1g', size: I_SIZE, flags: GUEST_MEMFD_FLAG_SUPPORT_SHARED, slot: 10 });
    populate(t);
    for (const req of [KVM_GMEM_CONVERT_SHARED, KVM_GMEM_CONVERT_PRIVATE]) {
      const dir = req === KVM_GMEM_CONVERT_PRIVATE ? 'PRIVATE' : 'SHARED';
      const call = (c: unknown): number => s.k.ioctl(t.gmem, req, c as object);
      s.failsCleanly('EFAULT', () => call(0), `${dir}: not a struct`);
      const bad: Array<[string, KvmGmemConvert]> = [
        ['error_offset 1', conv(0, PAGE, 1)],
        ['error_offset 4096', conv(0, PAGE, PAGE)],
        ['error_offset 2^64-1', conv(0, PAGE, U64_MAX)],
        ['error_offset 1 with size 0 (checked first)', conv(0, 0, 1)],
        ['offset 2^64-4096 + size 8192 wraps', conv(NEAR, 2 * PAGE)],
        ['offset 4096 + size 2^64-4096 = 2^64', conv(PAGE, NEAR)],
        ['size 2^64-1', conv(0, U64_MAX)],
        ['offset > i_size', conv(I_SIZE + PAGE, PAGE)],
        ['offset 2^63', conv(S64_MIN, PAGE)],
        ['offset + size > i_size', conv(PAGE, I_SIZE)],
        ['offset 1', conv(1, PAGE)],
        ['size 1', conv(0, 1)],
        ['size 4097', conv(0, PAGE + 1)],
      ];
      for (const [what, c] of bad) s.failsCleanly('EINVAL', () => call(c), `${dir}: ${what}`);
      for (const [what, c] of [
        ['size 0', conv(0, 0)], ['size 0 at an unaligned offset', conv(1, 0)], ['size 0 past i_size', conv(I_SIZE + PAGE, 0)],
        ['size 0 at 2^64-1', conv(U64_MAX, 0)],
      ] as Array<[string, KvmGmemConvert]>) {
        const before = s.digest();
        assert.equal(call(c), 0, `${dir}: ${what} succeeds`);
        assert.equal(s.digest(), before, `${dir}: ${what} changes nothing`);
        assert.equal(c.error_offset, 0, 'copied back only on error');
      }
    }
    t.hostRmw(0, ch('A'), null);
    t.hostRmw(PAGE, ch('B'), null);
    t.hostCannotFault(2 * PAGE);
    t.guestRmw(2 * PAGE, ch('C'), null);
    t.hostRmw(3 * PAGE, 0, null);
  });

  kcase(mb, 'EAGAIN copies the struct back with error_offset = the offending folio; a file without SUPPORT_SHARED has no shareability: both ioctls return 0 and change nothing', (s) => {
    needRfc1g(s);
    const t = new ConvFixture(s, { uapi: 'rfc-1g', size: I_SIZE, flags: GUEST_MEMFD_FLAG_SUPPORT_SHARED, slot: 10 });
    populate(t);
    const pin = s.k.pin(t.mem + 3 * PAGE, PAGE);
    const c = conv(0, I_SIZE);
    expectErrno('EAGAIN', () => s.k.ioctl(t.gmem, KVM_GMEM_CONVERT_PRIVATE, c), 'pinned page 3');
    assert.equal(c.error_offset, 3 * PAGE);
    s.k.unpin(pin);
    const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
    const fd = s.own(s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: I_SIZE, flags: 0 }));
    s.k.fallocate(fd, 1 /* KEEP_SIZE */, 0, I_SIZE);
    for (const req of [KVM_GMEM_CONVERT_SHARED, KVM_GMEM_CONVERT_PRIVATE]) {
      const before = s.digest();
      assert.equal(s.k.ioctl(fd, req, conv(0, I_SIZE)), 0);
      assert.equal(s.digest(), before);
    }
  });

  kcase(mb, 'routing: KVM_SET_MEMORY_ATTRIBUTES2 and an unknown KVM_GMEM_IO nr on the guest_memfd, KVM_GMEM_CONVERT_* on the VM fd → ENOTTY', (s) => {
    needRfc1g(s);
    const t = new ConvFixture(s, { uapi: 'rfc-1g', size: I_SIZE, flags: GUEST_MEMFD_FLAG_SUPPORT_SHARED, slot: 10 });
    s.failsCleanly('ENOTTY', () => s.k.ioctl(t.gmem, KVM_SET_MEMORY_ATTRIBUTES2, attrs2(0, PAGE)), 'final ioctl on an R51 kernel');
    s.failsCleanly('ENOTTY', () => s.k.ioctl(t.gmem, IOWR(KVM_GMEM_IO, 0x43, 64), conv(0, PAGE)), 'KVM_GMEM_IO nr 0x43');
    s.failsCleanly('ENOTTY', () => s.k.ioctl(t.vm, KVM_GMEM_CONVERT_PRIVATE, conv(0, PAGE)), 'on the VM fd');
  });
});
