/**
 * KVM_SET_MEMORY_ATTRIBUTES and KVM_PRE_FAULT_MEMORY: upstream-linux.md §5 rows 63–65, the §5b
 * pre-fault line, and the argument rules of 2H and 2J. What each backend must answer follows from
 * its own capabilities: KVM_CAP_MEMORY_ATTRIBUTES = 0 on /dev/kvm means the ioctl is not compiled
 * in (ENOTTY); KVM_CAP_PRE_FAULT_MEMORY = 0 means no TDP (EOPNOTSUPP).
 */
import assert from 'node:assert/strict';
import {
  KVM_CAP_MEMORY_ATTRIBUTES, KVM_CAP_PRE_FAULT_MEMORY, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_PRE_FAULT_MEMORY,
  KVM_SET_MEMORY_ATTRIBUTES, KVM_X86_SW_PROTECTED_VM,
} from '../../src/uapi/kvm.js';
import type { KvmMemoryAttributes, KvmPreFaultMemory } from '../../src/uapi/syscalls.js';
import { expectErrno } from '../lib/harness.js';
import { forBackends, kcase, PAGE, type Session, SZ_2M } from './common.js';
import { deviates, HOST_PVM_PREFAULT_NO_MEMSLOT_ENOSPC } from './deviations.js';

const PRIVATE = KVM_MEMORY_ATTRIBUTE_PRIVATE;
const GPA = 0x100000000;

function attrs(s: Session, vm: number, a: KvmMemoryAttributes): number {
  return s.k.ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, a);
}

/** A VM with a vCPU and a plain 2 MiB slot at GPA. */
function vmWithSlot(s: Session, type = 0): { vm: number; vcpu: number } {
  const vm = s.vm(type);
  const vcpu = s.vcpu(vm);
  s.setRegion(vm, { slot: 1, guest_phys_addr: GPA, memory_size: SZ_2M, userspace_addr: s.anon(SZ_2M) });
  return { vm, vcpu };
}

forBackends('memory attributes and pre-fault (§5 rows 63–65, §5b, 2H, 2J)', (b) => {
  kcase(b, 'row 63: KVM_SET_MEMORY_ATTRIBUTES (attrs 8 or 0) on a default VM: ENOTTY where the cap is 0, else 8 → EINVAL and 0 → 0', (s) => {
    const vm = s.vm(0);
    const a = (attributes: number): KvmMemoryAttributes => ({ address: GPA, size: PAGE, attributes, flags: 0 });
    if (s.cap(KVM_CAP_MEMORY_ATTRIBUTES) === 0) {
      s.failsCleanly('ENOTTY', () => attrs(s, vm, a(PRIVATE)), 'attrs 8, not compiled in');
      s.failsCleanly('ENOTTY', () => attrs(s, vm, a(0)), 'attrs 0, not compiled in');
    } else {
      assert.equal(s.cap(KVM_CAP_MEMORY_ATTRIBUTES, vm), 0, 'a default VM has no private memory');
      s.failsCleanly('EINVAL', () => attrs(s, vm, a(PRIVATE)), 'PRIVATE on a VM without private memory');
      assert.equal(attrs(s, vm, a(0)), 0);
    }
  });

  kcase(b, '2H: KVM_SET_MEMORY_ATTRIBUTES on a SW_PROTECTED VM: flags ≠ 0, unknown attribute, size 0, wrap, unaligned → EINVAL; no memslot needed; no-op re-set', (s) => {
    s.needVmType(KVM_X86_SW_PROTECTED_VM);
    s.needCap(KVM_CAP_MEMORY_ATTRIBUTES, PRIVATE);
    const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
    const bad: Array<[string, KvmMemoryAttributes]> = [
      ['flags 1', { address: GPA, size: PAGE, attributes: PRIVATE, flags: 1 }],
      ['attribute 1<<4', { address: GPA, size: PAGE, attributes: 1 << 4, flags: 0 }],
      ['size 0', { address: GPA, size: 0, attributes: PRIVATE, flags: 0 }],
      ['wrap', { address: 0xfffffffffffff000n, size: 2 * PAGE, attributes: PRIVATE, flags: 0 }],
      ['address unaligned', { address: GPA + 1, size: PAGE, attributes: PRIVATE, flags: 0 }],
      ['size unaligned', { address: GPA, size: PAGE + 1, attributes: PRIVATE, flags: 0 }],
    ];
    for (const [what, a] of bad) s.failsCleanly('EINVAL', () => attrs(s, vm, a), what);
    assert.equal(attrs(s, vm, { address: GPA, size: SZ_2M, attributes: PRIVATE, flags: 0 }), 0, 'no memslot needed');
    assert.equal(attrs(s, vm, { address: GPA, size: SZ_2M, attributes: PRIVATE, flags: 0 }), 0, 'no-op re-set');
    assert.equal(attrs(s, vm, { address: GPA, size: SZ_2M, attributes: 0, flags: 0 }), 0, 'back to shared');
  });

  kcase(b, 'row 64: KVM_PRE_FAULT_MEMORY valid range / no-slot gpa: EOPNOTSUPP without TDP (cap 0), range unchanged; else 0 with the range consumed / ENOENT', (s) => {
    const { vcpu } = vmWithSlot(s);
    const valid: KvmPreFaultMemory = { gpa: GPA, size: 4 * PAGE, flags: 0 };
    const noslot: KvmPreFaultMemory = { gpa: 2 * GPA, size: PAGE, flags: 0 };
    if (s.cap(KVM_CAP_PRE_FAULT_MEMORY) === 0) {
      expectErrno('EOPNOTSUPP', () => s.k.ioctl(vcpu, KVM_PRE_FAULT_MEMORY, valid), 'valid range');
      assert.deepEqual([Number(valid.gpa), Number(valid.size)], [GPA, 4 * PAGE], 'range unchanged');
      expectErrno('EOPNOTSUPP', () => s.k.ioctl(vcpu, KVM_PRE_FAULT_MEMORY, noslot), 'no-slot gpa');
      assert.deepEqual([Number(noslot.gpa), Number(noslot.size)], [2 * GPA, PAGE], 'range unchanged');
    } else {
      assert.equal(s.k.ioctl(vcpu, KVM_PRE_FAULT_MEMORY, valid), 0);
      assert.deepEqual([Number(valid.gpa), Number(valid.size)], [GPA + 4 * PAGE, 0], 'range consumed');
      expectErrno('ENOENT', () => s.k.ioctl(vcpu, KVM_PRE_FAULT_MEMORY, noslot), 'no-slot gpa');
      assert.deepEqual([Number(noslot.gpa), Number(noslot.size)], [2 * GPA, PAGE], 'range unchanged');
    }
  });

  kcase(b, 'row 65: KVM_PRE_FAULT_MEMORY flags = 1, size 0, gpa unaligned, wrap → EINVAL ×4 (argument checks precede the TDP check)', (s) => {
    const { vcpu } = vmWithSlot(s);
    const cases: Array<[string, KvmPreFaultMemory]> = [
      ['flags 1', { gpa: GPA, size: PAGE, flags: 1 }],
      ['size 0', { gpa: GPA, size: 0, flags: 0 }],
      ['gpa unaligned', { gpa: GPA + 1, size: PAGE, flags: 0 }],
      ['wrap', { gpa: 0xfffffffffffff000n, size: 2 * PAGE, flags: 0 }],
    ];
    for (const [what, r] of cases) {
      const before = { ...r };
      s.failsCleanly('EINVAL', () => s.k.ioctl(vcpu, KVM_PRE_FAULT_MEMORY, r), what);
      assert.deepEqual(r, before, `${what}: range unchanged`);
    }
  });

  kcase(b, '§5b: KVM_PRE_FAULT_MEMORY on a VM without any memslot: ENOENT (upstream with TDP) / ENOSPC (declared host deviation)', (s, t) => {
    const vm = s.vm(0);
    const vcpu = s.vcpu(vm);
    const r: KvmPreFaultMemory = { gpa: GPA, size: PAGE, flags: 0 };
    if (deviates(b, HOST_PVM_PREFAULT_NO_MEMSLOT_ENOSPC)) {
      t.diagnostic(`deviation ${HOST_PVM_PREFAULT_NO_MEMSLOT_ENOSPC.name}: ${HOST_PVM_PREFAULT_NO_MEMSLOT_ENOSPC.observed}`);
      expectErrno('ENOSPC', () => s.k.ioctl(vcpu, KVM_PRE_FAULT_MEMORY, r), 'no memslot (host deviation)');
    } else {
      s.needCap(KVM_CAP_PRE_FAULT_MEMORY);
      expectErrno('ENOENT', () => s.k.ioctl(vcpu, KVM_PRE_FAULT_MEMORY, r), 'no memslot');
    }
    assert.deepEqual([Number(r.gpa), Number(r.size)], [GPA, PAGE], 'range unchanged');
  });

  kcase(b, '2J: KVM_PRE_FAULT_MEMORY on a VM fd → ENOTTY', (s) => {
    const { vm } = vmWithSlot(s);
    expectErrno('ENOTTY', () => s.k.ioctl(vm, KVM_PRE_FAULT_MEMORY, { gpa: GPA, size: PAGE, flags: 0 }), 'VM fd');
  });
});
