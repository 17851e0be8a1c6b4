/**
 * Capability answers and VM creation: upstream-linux.md §5 rows 1–3 and the capability rules of
 * §1.4. On the model the expectation is what upstream 6.18 answers on an x86 host with TDP and
 * SW_PROTECTED VMs; on the host it is what §5 recorded for the machine's kernel.
 */
import assert from 'node:assert/strict';
import {
  KVM_CAP_EXIT_HYPERCALL, KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS, KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_CAP_MEMORY_FAULT_INFO, KVM_CAP_MULTI_ADDRESS_SPACE, KVM_CAP_NR_MEMSLOTS, KVM_CAP_PRE_FAULT_MEMORY,
  KVM_CAP_READONLY_MEM, KVM_CAP_USER_MEMORY2, KVM_CAP_VM_TYPES, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM,
} from '../../src/uapi/kvm.js';
import type { Backend } from '../lib/harness.js';
import { expectErrno } from '../lib/harness.js';
import { CAP_NAMES, forBackends, kcase } from './common.js';

type CapTable = Readonly<Record<number, number>>;

/** Row 1's capability list, in its order. */
const ROW1_CAPS = [
  KVM_CAP_USER_MEMORY2, KVM_CAP_MEMORY_FAULT_INFO, KVM_CAP_MEMORY_ATTRIBUTES, KVM_CAP_GUEST_MEMFD, KVM_CAP_VM_TYPES,
  KVM_CAP_PRE_FAULT_MEMORY, KVM_CAP_GUEST_MEMFD_FLAGS,
];
const ROW2_EXTRA = [KVM_CAP_READONLY_MEM, KVM_CAP_NR_MEMSLOTS, KVM_CAP_EXIT_HYPERCALL, KVM_CAP_MULTI_ADDRESS_SPACE];

interface Expected {
  system: CapTable;
  vm0: CapTable;
  /** A SW_PROTECTED VM's answers, where the backend has that type. */
  vm1: CapTable | null;
}

/**
 * What each backend must answer. model: upstream 6.18 (§1.4) on x86 with TDP, generic memory
 * attributes and SW_PROTECTED VMs, no SMM. host: §5 rows 1–2 (kvm_pvm, no TDP, no attributes).
 */
const EXPECTED: Readonly<Record<Backend['name'], Expected>> = {
  model: {
    system: {
      [KVM_CAP_USER_MEMORY2]: 1, [KVM_CAP_MEMORY_FAULT_INFO]: 1, [KVM_CAP_MEMORY_ATTRIBUTES]: 8, [KVM_CAP_GUEST_MEMFD]: 1,
      [KVM_CAP_VM_TYPES]: 0b11, [KVM_CAP_PRE_FAULT_MEMORY]: 1, [KVM_CAP_GUEST_MEMFD_FLAGS]: 3,
    },
    vm0: {
      [KVM_CAP_USER_MEMORY2]: 1, [KVM_CAP_MEMORY_FAULT_INFO]: 1, [KVM_CAP_MEMORY_ATTRIBUTES]: 0, [KVM_CAP_GUEST_MEMFD]: 1,
      [KVM_CAP_VM_TYPES]: 0b11, [KVM_CAP_PRE_FAULT_MEMORY]: 1, [KVM_CAP_GUEST_MEMFD_FLAGS]: 3,
      [KVM_CAP_READONLY_MEM]: 1, [KVM_CAP_NR_MEMSLOTS]: 32764, [KVM_CAP_EXIT_HYPERCALL]: 4096, [KVM_CAP_MULTI_ADDRESS_SPACE]: 0,
    },
    vm1: { [KVM_CAP_MEMORY_ATTRIBUTES]: 8, [KVM_CAP_GUEST_MEMFD_FLAGS]: 1, [KVM_CAP_GUEST_MEMFD]: 1 },
  },
  host: {
    system: {
      [KVM_CAP_USER_MEMORY2]: 1, [KVM_CAP_MEMORY_FAULT_INFO]: 1, [KVM_CAP_MEMORY_ATTRIBUTES]: 0, [KVM_CAP_GUEST_MEMFD]: 1,
      [KVM_CAP_VM_TYPES]: 0b1, [KVM_CAP_PRE_FAULT_MEMORY]: 0, [KVM_CAP_GUEST_MEMFD_FLAGS]: 3,
    },
    vm0: {
      [KVM_CAP_USER_MEMORY2]: 1, [KVM_CAP_MEMORY_FAULT_INFO]: 1, [KVM_CAP_MEMORY_ATTRIBUTES]: 0, [KVM_CAP_GUEST_MEMFD]: 1,
      [KVM_CAP_VM_TYPES]: 0b1, [KVM_CAP_PRE_FAULT_MEMORY]: 0, [KVM_CAP_GUEST_MEMFD_FLAGS]: 3,
      [KVM_CAP_READONLY_MEM]: 1, [KVM_CAP_NR_MEMSLOTS]: 32764, [KVM_CAP_EXIT_HYPERCALL]: 4096, [KVM_CAP_MULTI_ADDRESS_SPACE]: 0,
    },
    vm1: null,
  },
};

function answers(check: (cap: number) => number, caps: readonly number[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of caps) out[CAP_NAMES[c] ?? String(c)] = check(c);
  return out;
}

function named(t: CapTable): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [c, v] of Object.entries(t)) out[CAP_NAMES[Number(c)] ?? c] = v;
  return out;
}

forBackends('capabilities and VM types (§5 rows 1–3, §1.4)', (b) => {
  const exp = EXPECTED[b.name];

  kcase(b, 'row 1: /dev/kvm KVM_CHECK_EXTENSION answers', (s) => {
    assert.deepEqual(answers((c) => s.cap(c), ROW1_CAPS), named(exp.system));
  });

  kcase(b, 'row 2: the same caps and READONLY_MEM, NR_MEMSLOTS, EXIT_HYPERCALL, MULTI_ADDRESS_SPACE on a type-0 VM fd', (s) => {
    const vm = s.vm(0);
    assert.deepEqual(answers((c) => s.cap(c, vm), [...ROW1_CAPS, ...ROW2_EXTRA]), named(exp.vm0));
  });

  kcase(b, '§1.4: a SW_PROTECTED VM answers GUEST_MEMFD_FLAGS = MMAP only and MEMORY_ATTRIBUTES = PRIVATE', (s) => {
    s.needVmType(KVM_X86_SW_PROTECTED_VM);
    assert.ok(exp.vm1 !== null, 'the expectation table says this backend has no SW_PROTECTED VMs');
    const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
    assert.deepEqual(answers((c) => s.cap(c, vm), Object.keys(exp.vm1).map(Number)), named(exp.vm1));
  });

  kcase(b, '§1.4: KVM_CAP_GUEST_MEMFD_FLAGS has INIT_SHARED exactly where MEMORY_ATTRIBUTES lacks PRIVATE (x86)', (s) => {
    const types = s.vmTypes();
    for (let type = 0; type < 32; type++) {
      if ((types & (1 << type)) === 0) continue;
      const vm = s.vm(type);
      const flags = s.cap(KVM_CAP_GUEST_MEMFD_FLAGS, vm);
      const attrs = s.cap(KVM_CAP_MEMORY_ATTRIBUTES, vm);
      assert.equal(flags & 1, 1, `type ${type}: MMAP always supported`);
      assert.equal((flags & 2) !== 0, (attrs & 8) === 0, `type ${type}: INIT_SHARED iff no private memory`);
      s.close(vm);
    }
  });

  kcase(b, 'row 3: KVM_CREATE_VM succeeds exactly for the types in KVM_CAP_VM_TYPES, EINVAL for the others (1…7)', (s) => {
    const types = s.vmTypes();
    assert.equal(types, exp.system[KVM_CAP_VM_TYPES]);
    for (let type = 0; type <= 7; type++) {
      if ((types & (1 << type)) !== 0) {
        s.close(s.vm(type));
      } else {
        expectErrno('EINVAL', () => s.k.ioctl(s.kvm(), KVM_CREATE_VM, type), `KVM_CREATE_VM(${type})`);
      }
    }
  });
});
