/**
 * tools/testing/selftests/kvm/pre_fault_memory_test.c: upstream-linux.md §4.5. Needs
 * KVM_CAP_PRE_FAULT_MEMORY. For VM type 0 (shared), SW_PROTECTED (shared) and SW_PROTECTED with a
 * GUEST_MEMFD slot and PRIVATE attributes: a slot of 2 MiB + 4 KiB placed 2 MiB-aligned just below
 * the highest gfn the VM accepts, the four calls with the selftest helper's loop (retry while
 * ret == 0 and bytes remain; on EINTR) and its invariant "range.size shrinks iff ret ≥ 0", then the
 * guest reads every page and ends with UCALL_DONE. The selftest's racing delete/recreate thread is
 * rendered single-threaded: the slot is deleted between two calls and recreated before the next.
 */
import assert from 'node:assert/strict';
import {
  KVM_CAP_MEMORY_ATTRIBUTES, KVM_CAP_PRE_FAULT_MEMORY, KVM_EXIT_HLT, KVM_EXIT_MEMORY_FAULT, KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEMORY_EXIT_FLAG_PRIVATE, KVM_PRE_FAULT_MEMORY, KVM_SET_USER_MEMORY_REGION2,
  KVM_X86_SW_PROTECTED_VM,
} from '../../src/uapi/kvm.js';
import { GUEST_UCALL_READ, runGuest } from '../../src/host/guest-program.js';
import type { KvmPreFaultMemory } from '../../src/uapi/syscalls.js';
import { forBackends, kcase, PAGE, region, type Session, SZ_2M, UCALL_DONE, VM_TYPE_NAMES } from './common.js';

const TEST_SIZE = SZ_2M + PAGE;
const TEST_NPAGES = TEST_SIZE / PAGE;
const TEST_SLOT = 10;

interface Slot {
  vm: number;
  gpa: number;
  private: boolean;
}

/** vm_userspace_mem_region_add(VM_MEM_SRC_ANONYMOUS, gpa, TEST_SLOT, TEST_NPAGES, flags): a fresh gmem when private. */
function addSlot(s: Session, slot: Slot): void {
  const anon = s.anon(TEST_SIZE);
  const fd = slot.private ? s.gmem(slot.vm, TEST_SIZE, 0) : 0;
  s.setRegion(slot.vm, {
    slot: TEST_SLOT, flags: slot.private ? KVM_MEM_GUEST_MEMFD : 0, guest_phys_addr: slot.gpa, memory_size: TEST_SIZE,
    userspace_addr: anon, guest_memfd: fd,
  });
}

/**
 * gpa = align_down((max_gfn − TEST_NPAGES) · 4096, 2 MiB). The Syscalls interface has no max_gfn,
 * so it is found the way KVM enforces it: the highest such gpa at which the slot is accepted.
 */
function highestGpa(s: Session, vm: number): number {
  const anon = s.anon(TEST_SIZE);
  for (let bits = 52; bits >= 32; bits--) {
    const gpa = Math.floor((2 ** bits - TEST_SIZE) / SZ_2M) * SZ_2M;
    try {
      s.k.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, region({ slot: TEST_SLOT, guest_phys_addr: gpa, memory_size: TEST_SIZE, userspace_addr: anon }));
    } catch {
      continue;
    }
    s.deleteSlot(vm, TEST_SLOT);
    s.munmap(anon, TEST_SIZE);
    return gpa;
  }
  throw new Error('no gpa below 2^52 accepts the test slot');
}

/** The selftest's pre_fault_memory() helper, without the racing thread. */
function preFault(s: Session, vcpu: number, base: number, offset: number, size: number, expectedLeft: number,
  expectedErrno = 'ENOENT'): void {
  const range: KvmPreFaultMemory = { gpa: base + offset, size, flags: 0 };
  let ret = 0;
  let errno = '';
  for (let iter = 0; ; iter++) {
    assert.ok(iter < 10_000, 'pre-fault made no progress');
    const prev = BigInt(range.size);
    try {
      ret = s.k.ioctl(vcpu, KVM_PRE_FAULT_MEMORY, range);
      errno = '';
    } catch (e) {
      ret = -1;
      errno = (e as { code?: string }).code ?? String(e);
    }
    assert.equal(BigInt(range.size) < prev, ret >= 0, `range.size must shrink iff ret >= 0 (ret ${ret} ${errno}, size ${prev} → ${range.size})`);
    if (ret >= 0 ? BigInt(range.size) === 0n : errno !== 'EINTR') break;
  }
  assert.equal(Number(range.size), expectedLeft, `completed with ${range.size} bytes left`);
  if (expectedLeft !== 0) assert.equal(errno, expectedErrno, `pre-fault ending ${expectedLeft} bytes short`);
  else assert.equal(ret, 0);
}


/** The selftest's setup: needs, a VM with a vCPU, the test slot near the top of the GPA space (private if asked). */
function setupPreFault(s: Session, type: number, priv: boolean): { vm: number; vcpu: number; gpa: number; slot: { vm: number; gpa: number; private: boolean } } {
  s.needCap(KVM_CAP_PRE_FAULT_MEMORY);
  if (type !== 0) s.needVmType(type);
  if (priv) s.needCap(KVM_CAP_MEMORY_ATTRIBUTES, KVM_MEMORY_ATTRIBUTE_PRIVATE);
  const vm = s.vm(type);
  const vcpu = s.vcpu(vm);
  const gpa = highestGpa(s, vm);
  const slot = { vm, gpa, private: priv };
  addSlot(s, slot);
  if (priv) s.setAttributes(vm, gpa, TEST_SIZE, KVM_MEMORY_ATTRIBUTE_PRIVATE);
  return { vm, vcpu, gpa, slot };
}

forBackends('pre_fault_memory_test.c (§4.5)', (b) => {
  for (const [type, priv] of [[0, false], [KVM_X86_SW_PROTECTED_VM, false], [KVM_X86_SW_PROTECTED_VM, true]] as const) {
    const name = `${VM_TYPE_NAMES[type]}${priv ? ', GUEST_MEMFD slot, PRIVATE' : ''}`;

    kcase(b, `test_pre_fault_memory(${name}): (0, size) → 0 left; again → 0 left; (size−4K, 8K) → ENOENT 4K left; (size, 4K) → ENOENT 4K left; the guest reads every page`, (s) => {
      const { vcpu, gpa } = setupPreFault(s, type, priv);
      preFault(s, vcpu, gpa, 0, TEST_SIZE, 0);
      preFault(s, vcpu, gpa, 0, TEST_SIZE, 0);
      preFault(s, vcpu, gpa, TEST_SIZE - PAGE, 2 * PAGE, PAGE);
      preFault(s, vcpu, gpa, TEST_SIZE, PAGE, PAGE);
      // The selftest's guest_code: READ_ONCE every page, GUEST_DONE. Each `read` reports with a ucall.
      const pages = Array.from({ length: TEST_NPAGES }, (_, i) => gpa + i * PAGE);
      s.program(vcpu, [...pages.map((p) => ({ op: 'read', gpa: p }) as const), { op: 'ucall', args: [UCALL_DONE] }]);
      const r = runGuest(s.k, vcpu, TEST_NPAGES + 2);
      assert.deepEqual(r.ucalls.map((u) => u.slice(0, 2)), [...pages.map((p) => [GUEST_UCALL_READ, p]), [UCALL_DONE]],
        'the guest read every page, then GUEST_DONE');
      assert.equal(r.exit_reason, KVM_EXIT_HLT);
    });

    // Without a memslot a shared gfn is emulated MMIO (ENOENT); a private one is a memory fault (EFAULT, 2I.3, 2J.4).
    const noSlot = priv ? 'EFAULT' : 'ENOENT';
    kcase(b, `test_pre_fault_memory(${name}): the slot deleted before a call → ${noSlot}, range unchanged; recreated → the call completes`, (s) => {
      const { vm, vcpu, gpa, slot } = setupPreFault(s, type, priv);
      s.deleteSlot(vm, TEST_SLOT);
      preFault(s, vcpu, gpa, 0, SZ_2M, SZ_2M, noSlot);
      if (priv) {
        const run = s.k.kvmRun(vcpu);
        assert.equal(run.exit_reason, KVM_EXIT_MEMORY_FAULT);
        assert.deepEqual({ ...run.memory_fault }, { flags: KVM_MEMORY_EXIT_FLAG_PRIVATE, gpa, size: PAGE });
      }
      addSlot(s, slot);
      preFault(s, vcpu, gpa, 0, SZ_2M, 0);
    });
  }
});
