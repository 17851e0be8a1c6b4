/**
 * Memslot binding (§5 rows 42–62, §5b), memory attributes and pre-fault (rows 63–65) through the
 * host backend: struct marshalling of kvm_userspace_memory_region(2), kvm_memory_attributes and
 * kvm_pre_fault_memory, with the kernel's errno.
 */
import assert from 'node:assert/strict';
import { EBADF, EEXIST, EINVAL, ENOSPC, ENOTTY, EOPNOTSUPP } from '../../src/uapi/errno.js';
import {
  GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_CAP_MEMORY_ATTRIBUTES, KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_PRE_FAULT_MEMORY, KVM_CHECK_EXTENSION, KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY,
  KVM_PRE_FAULT_MEMORY, KVM_SET_MEMORY_ATTRIBUTES, KVM_SET_USER_MEMORY_REGION,
} from '../../src/uapi/kvm.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../../src/uapi/linux.js';
import type { KvmPreFaultMemory, KvmUserspaceMemoryRegion2 } from '../../src/uapi/syscalls.js';
import { errnoOf, hostTest, PAGE, type Fixture } from './host-fixture.js';

const M = 2 ** 20;
const GIB = 2 ** 30;
const GM = KVM_MEM_GUEST_MEMFD;

type Region = Partial<KvmUserspaceMemoryRegion2> & { slot: number };

function regionErrno(f: Fixture, vm: number, r: Region): number {
  return errnoOf(() => f.region(vm, r));
}

hostTest('§5 rows 42–47: v1 with GUEST_MEMFD; bad fds; not a gmem; other VM\'s gmem; offsets; sizes; flags', (f) => {
  const vm = f.vm();
  const vm2 = f.vm();
  const vcpu = f.vcpu(vm);
  const gmem = f.gmem(vm, 4 * M);
  const other = f.gmem(vm2, 4 * M);
  const slot = (r: Partial<KvmUserspaceMemoryRegion2>): Region =>
    ({ slot: 1, flags: GM, guest_phys_addr: GIB, memory_size: 2 * M, userspace_addr: 0, guest_memfd: gmem, ...r });
  assert.equal(errnoOf(() => f.k.ioctl(vm, KVM_SET_USER_MEMORY_REGION,
    { slot: 1, flags: GM, guest_phys_addr: GIB, memory_size: 2 * M, userspace_addr: 0 })), EINVAL, 'row 42');
  assert.equal(regionErrno(f, vm, slot({ guest_memfd: -1 })), EBADF, 'row 43 fd -1');
  assert.equal(regionErrno(f, vm, slot({ guest_memfd: 9999 })), EBADF, 'row 43 fd 9999');
  for (const fd of [f.kvm, vm, vcpu, other]) assert.equal(regionErrno(f, vm, slot({ guest_memfd: fd })), EINVAL, `row 44 fd ${fd}`);
  for (const off of [1, 4095, 0xfffffffffffff000n, 1n << 63n]) {
    assert.equal(regionErrno(f, vm, slot({ guest_memfd_offset: off })), EINVAL, `row 45 offset ${off}`);
  }
  assert.equal(regionErrno(f, vm, slot({ guest_memfd_offset: 4 * M - PAGE })), EINVAL, 'row 46 offset + size');
  assert.equal(regionErrno(f, vm, slot({ memory_size: 8 * M })), EINVAL, 'row 46 size');
  for (const flags of [GM | KVM_MEM_READONLY, GM | KVM_MEM_LOG_DIRTY_PAGES, 1 << 3]) {
    assert.equal(regionErrno(f, vm, slot({ flags })), EINVAL, `row 47 flags ${flags}`);
  }
});

hostTest('§5 rows 48–51: userspace_addr checks even for gmem slots; pads and garbage fields not checked', (f) => {
  const vm = f.vm();
  const gmem = f.gmem(vm, 16 * M);
  const anon = f.anon(2 * M);
  const base: Region = { slot: 1, flags: GM, guest_phys_addr: GIB, memory_size: 2 * M, guest_memfd: gmem };
  assert.equal(regionErrno(f, vm, { ...base, userspace_addr: anon + 1 }), EINVAL, 'row 48 unaligned');
  assert.equal(regionErrno(f, vm, { ...base, userspace_addr: 0xffff800000000000n }), EINVAL, 'row 48 kernel address');
  f.region(vm, { ...base, userspace_addr: 0, pad1: 7, pad2: [9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1] });
  f.region(vm, { ...base, slot: 2, guest_phys_addr: 2 * GIB, guest_memfd_offset: 4 * M, userspace_addr: 0 });
  f.region(vm, { slot: 3, flags: 0, guest_phys_addr: 3 * GIB, memory_size: 2 * M, userspace_addr: anon,
    guest_memfd: 12345, guest_memfd_offset: 77 });
});

hostTest('§5 rows 52–57, 59: gmem-range overlap EINVAL (6.18), GPA overlap EEXIST, gmem slots immutable', (f) => {
  const vm = f.vm();
  const gmem = f.gmem(vm, 8 * M);
  const X = GIB;
  const A: Region = { slot: 1, flags: GM, guest_phys_addr: X, memory_size: 4 * M, guest_memfd: gmem, guest_memfd_offset: 0 };
  const B: Region = { slot: 2, flags: GM, guest_phys_addr: 2 * X, memory_size: 4 * M, guest_memfd: gmem, guest_memfd_offset: 4 * M };
  f.region(vm, A);
  f.region(vm, B);
  f.region(vm, { ...A, memory_size: 0 });
  assert.equal(regionErrno(f, vm, { ...A, guest_memfd_offset: 2 * M }), EINVAL, 'row 53 offset 2M');
  assert.equal(regionErrno(f, vm, { ...A, guest_memfd_offset: 6 * M }), EINVAL, 'row 53 offset 6M');
  assert.equal(regionErrno(f, vm, { ...A, guest_phys_addr: 2 * X - 2 * M }), EEXIST, 'row 54 front');
  assert.equal(regionErrno(f, vm, { ...A, guest_phys_addr: 2 * X + 2 * M }), EEXIST, 'row 54 back');
  assert.equal(regionErrno(f, vm, { ...A, guest_phys_addr: 2 * X - 2 * M, memory_size: 8 * M }), EEXIST, 'row 54 both');
  assert.equal(regionErrno(f, vm, B), EINVAL, 'row 55 identical re-set');
  assert.equal(regionErrno(f, vm, { ...B, guest_phys_addr: 3 * X }), EINVAL, 'row 55 move');
  assert.equal(regionErrno(f, vm, { ...B, flags: GM | KVM_MEM_LOG_DIRTY_PAGES }), EINVAL, 'row 55 LOG_DIRTY');
  assert.equal(regionErrno(f, vm, { ...B, flags: 0, userspace_addr: f.anon(4 * M) }), EINVAL, 'row 55 drop GUEST_MEMFD');
  assert.equal(regionErrno(f, vm, { slot: 3, guest_phys_addr: 2 * X, memory_size: 4 * M, userspace_addr: f.anon(4 * M) }),
    EEXIST, 'row 57 plain slot over a gmem slot');
  assert.equal(regionErrno(f, vm, { slot: 9, memory_size: 0 }), EINVAL, 'row 59 delete a missing slot');
  f.region(vm, { ...B, memory_size: 0 }); // §5b: deleting with GUEST_MEMFD still in flags works
});

hostTest('§5 rows 58, 60–62: stale fd after close EBADF; one gmem range, one slot; gmem outlives its VM', (f) => {
  const vm = f.vm();
  const gmem = f.gmem(vm, 4 * M, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
  const slot: Region = { slot: 1, flags: GM, guest_phys_addr: GIB, memory_size: 2 * M, userspace_addr: 0, guest_memfd: gmem };
  f.region(vm, slot);
  assert.equal(regionErrno(f, vm, { ...slot, slot: 2, guest_phys_addr: 2 * GIB }), EINVAL, 'row 60 same range');
  f.close(gmem);
  f.region(vm, { ...slot, memory_size: 0 });
  assert.equal(regionErrno(f, vm, slot), EBADF, 'row 58 stale fd');
  const vm2 = f.vm();
  const gmem2 = f.gmem(vm2, 4 * M);
  f.region(vm2, { ...slot, guest_memfd: gmem2 });
  f.close(vm2);
  f.k.fallocate(gmem2, FALLOC_FL_KEEP_SIZE, 0, M);
  f.k.fallocate(gmem2, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, M);
  const vm3 = f.vm();
  assert.equal(regionErrno(f, vm3, { ...slot, guest_memfd: gmem2 }), EINVAL, 'row 62 old VM\'s gmem');
  f.close(gmem2);
});

hostTest('§5b: slot id limit, 2^31-page slots, plain slots re-set/moved/logged but not resized', (f) => {
  const vm = f.vm();
  const nr_slots = f.k.ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
  const anon = f.anon(4 * M);
  const plain: Region = { slot: 1, guest_phys_addr: GIB, memory_size: 2 * M, userspace_addr: anon };
  assert.equal(regionErrno(f, vm, { ...plain, slot: nr_slots }), EINVAL, 'slot id = KVM_CAP_NR_MEMSLOTS');
  f.region(vm, { ...plain, slot: nr_slots - 1, guest_phys_addr: 3 * GIB });
  assert.equal(regionErrno(f, vm, { ...plain, slot: 2, memory_size: 2 ** 31 * PAGE, guest_phys_addr: 2 ** 40 }), EINVAL);
  f.region(vm, plain);
  f.region(vm, plain);
  f.region(vm, { ...plain, guest_phys_addr: 2 * GIB });
  f.region(vm, { ...plain, guest_phys_addr: 2 * GIB, flags: KVM_MEM_LOG_DIRTY_PAGES });
  assert.equal(regionErrno(f, vm, { ...plain, guest_phys_addr: 2 * GIB, memory_size: 4 * M }), EINVAL, 'resize');
  assert.equal(regionErrno(f, vm, { ...plain, guest_phys_addr: 2 * GIB, flags: KVM_MEM_READONLY }), EINVAL, 'READONLY');
});

hostTest('§5 row 63: KVM_SET_MEMORY_ATTRIBUTES → ENOTTY where KVM_CAP_MEMORY_ATTRIBUTES is 0', (f, t) => {
  const vm = f.vm();
  if (f.k.ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_ATTRIBUTES) !== 0) {
    t.skip('this host has memory attributes');
    return;
  }
  for (const attributes of [8, 0]) {
    assert.equal(errnoOf(() => f.k.ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, { address: 0, size: PAGE, attributes, flags: 0 })), ENOTTY);
  }
});

hostTest('§5 rows 64–65, §5b: KVM_PRE_FAULT_MEMORY: EINVAL argument checks first; ENOSPC with no slot; EOPNOTSUPP; range copied back unchanged', (f, t) => {
  const vm = f.vm();
  const vcpu = f.vcpu(vm);
  if (f.k.ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_PRE_FAULT_MEMORY) !== 0) {
    t.skip('this host pre-faults (TDP)');
    return;
  }
  const preFault = (r: KvmPreFaultMemory): number => errnoOf(() => f.k.ioctl(vcpu, KVM_PRE_FAULT_MEMORY, r));
  const bad: KvmPreFaultMemory[] = [
    { gpa: 0, size: PAGE, flags: 1 }, { gpa: 0, size: 0, flags: 0 }, { gpa: 1, size: PAGE, flags: 0 },
    { gpa: 0xfffffffffffff000n, size: 2 * PAGE, flags: 0 },
  ];
  for (const r of bad) assert.equal(preFault(r), EINVAL, JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)));
  const range = { gpa: GIB, size: 2 * PAGE, flags: 0 };
  assert.equal(preFault(range), ENOSPC, '§5b: no memslot at all (shadow MMU artifact)');
  f.region(vm, { slot: 1, guest_phys_addr: GIB, memory_size: 2 * M, userspace_addr: f.anon(2 * M) });
  assert.equal(preFault(range), EOPNOTSUPP, 'row 64');
  assert.deepEqual(range, { gpa: GIB, size: 2 * PAGE, flags: 0 }, 'the kernel copied the range back unchanged');
  const big = { gpa: 1n << 40n, size: PAGE, flags: 0 };
  assert.equal(preFault(big), EOPNOTSUPP, 'row 64 no-slot gpa');
  assert.deepEqual(big, { gpa: 1n << 40n, size: PAGE, flags: 0 }, 'a bigint stays a bigint');
});
