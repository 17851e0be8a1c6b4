/**
 * tools/testing/selftests/kvm/x86/private_mem_kvm_exits_test.c: upstream-linux.md §4.3. The guest
 * reads 8 bytes at GPA 0xc0000000 in an endless loop; a private access without a memslot, or
 * through a slot without guest_memfd, makes KVM_RUN fail with EFAULT and a KVM_EXIT_MEMORY_FAULT
 * exit (flags PRIVATE, gpa 0xc0000000, size 4096). The selftest deletes the slot from another
 * thread while the vCPU runs; the Syscalls interface is single-threaded, so the slot is deleted
 * between KVM_RUNs (after the guest's first private read) and, for the other interleaving,
 * before the first KVM_RUN.
 */
import assert from 'node:assert/strict';
import {
  KVM_CAP_MEMORY_ATTRIBUTES, KVM_EXIT_IO, KVM_EXIT_MEMORY_FAULT, KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_MEMORY_EXIT_FLAG_PRIVATE, KVM_RUN, KVM_X86_SW_PROTECTED_VM,
} from '../../src/uapi/kvm.js';
import type { GuestApi } from '../../src/kvm/guest.js';
import { expectErrno } from '../lib/harness.js';
import { forBackends, kcase, PAGE, type Session, UCALL_SYNC } from './common.js';

const EXITS_TEST_GPA = 0xc0000000;
const EXITS_TEST_SIZE = PAGE;
const EXITS_TEST_SLOT = 10;

/**
 * Why the guest stays model-only generator code (reached only where SW_PROTECTED VMs exist): the
 * selftest's endless read loop is not a straight-line GuestProgram, and its GPA is where the host
 * guest loader puts its own slot.
 */
const LOOP_AT_LOADER_GPA =
  'needs an endless guest read loop at GPA 0xc0000000: not a straight-line GuestProgram, and the host guest loader\'s own slot is at 3 GiB';

/** guest_repeatedly_read, with a ucall after the first read when `sync` (a point to stop between KVM_RUNs). */
function repeatedlyRead(sync: boolean) {
  return function* (g: GuestApi) {
    yield g.read(EXITS_TEST_GPA, 8);
    if (sync) yield g.ucall(UCALL_SYNC);
    for (;;) yield g.read(EXITS_TEST_GPA, 8);
  };
}

/** vm_create_shape_with_one_vcpu(SW_PROTECTED) plus the slot; `gmem`: KVM_MEM_GUEST_MEMFD with an auto-created gmem. */
function setup(s: Session, gmem: boolean, sync: boolean): { vm: number; vcpu: number } {
  s.needVmType(KVM_X86_SW_PROTECTED_VM);
  s.needCap(KVM_CAP_MEMORY_ATTRIBUTES, KVM_MEMORY_ATTRIBUTE_PRIVATE);
  const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
  const vcpu = s.vcpu(vm);
  s.guest(vcpu, repeatedlyRead(sync), LOOP_AT_LOADER_GPA);
  const anon = s.anon(EXITS_TEST_SIZE);
  if (gmem) {
    const fd = s.gmem(vm, EXITS_TEST_SIZE, 0);
    s.setRegion(vm, { slot: EXITS_TEST_SLOT, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: EXITS_TEST_GPA, memory_size: EXITS_TEST_SIZE, userspace_addr: anon, guest_memfd: fd });
  } else {
    s.setRegion(vm, { slot: EXITS_TEST_SLOT, flags: 0, guest_phys_addr: EXITS_TEST_GPA, memory_size: EXITS_TEST_SIZE, userspace_addr: anon });
  }
  s.setAttributes(vm, EXITS_TEST_GPA, EXITS_TEST_SIZE, KVM_MEMORY_ATTRIBUTE_PRIVATE);
  return { vm, vcpu };
}

/** run_vcpu_get_exit_reason, then the selftest's four assertions. */
function expectPrivateFaultExit(s: Session, vcpu: number): void {
  expectErrno('EFAULT', () => s.k.ioctl(vcpu, KVM_RUN, 0), 'KVM_RUN');
  const run = s.k.kvmRun(vcpu);
  assert.equal(run.exit_reason, KVM_EXIT_MEMORY_FAULT);
  assert.equal(run.memory_fault.flags, KVM_MEMORY_EXIT_FLAG_PRIVATE);
  assert.equal(run.memory_fault.gpa, EXITS_TEST_GPA);
  assert.equal(run.memory_fault.size, EXITS_TEST_SIZE);
}

forBackends('private_mem_kvm_exits_test.c (§4.3)', (b) => {
  kcase(b, 'test_private_access_memslot_deleted: slot deleted between KVM_RUNs (after a private read) → EFAULT, exit 39, flags PRIVATE, gpa, size 4096', (s) => {
    const { vm, vcpu } = setup(s, true, true);
    const run = s.run(vcpu);
    assert.equal(run.exit_reason, KVM_EXIT_IO, 'the guest read the private page, then synced');
    assert.deepEqual(run.ucall, [UCALL_SYNC]);
    s.deleteSlot(vm, EXITS_TEST_SLOT);
    expectPrivateFaultExit(s, vcpu);
  });

  kcase(b, 'test_private_access_memslot_deleted: slot deleted before the first KVM_RUN → the same exit', (s) => {
    const { vm, vcpu } = setup(s, true, false);
    s.deleteSlot(vm, EXITS_TEST_SLOT);
    expectPrivateFaultExit(s, vcpu);
  });

  kcase(b, 'test_private_access_memslot_not_private: slot without GUEST_MEMFD, page set PRIVATE → EFAULT, exit 39, flags PRIVATE, gpa, size 4096', (s) => {
    const { vcpu } = setup(s, false, false);
    expectPrivateFaultExit(s, vcpu);
  });
});
