/**
 * KVM_CHECK_EXTENSION: the capability answers, system-wide (/dev/kvm) and per VM, for the
 * model's uAPI generation (upstream-linux.md §1.4, in-place-conversion-and-hugetlb.md §1.1).
 */
import {
  GUEST_MEMFD_FLAG_HUGETLB, GUEST_MEMFD_FLAG_INIT_PRIVATE, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP,
  GUEST_MEMFD_FLAG_SUPPORT_SHARED, KVM_CAP_EXIT_HYPERCALL, KVM_CAP_GMEM_CONVERSION, KVM_CAP_GMEM_HUGETLB,
  KVM_CAP_GMEM_SHARED_MEM, KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES,
  KVM_CAP_MAX_VCPU_ID, KVM_CAP_MAX_VCPUS, KVM_CAP_MEMORY_ATTRIBUTES, KVM_CAP_MEMORY_FAULT_INFO, KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_NR_VCPUS, KVM_CAP_PRE_FAULT_MEMORY, KVM_CAP_READONLY_MEM, KVM_CAP_USER_MEMORY, KVM_CAP_USER_MEMORY2,
  KVM_CAP_VM_TYPES, KVM_CAP_X86_APIC_BUS_CYCLES_NS, KVM_CAP_X86_GUEST_MODE, KVM_HC_MAP_GPA_RANGE,
  KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_USER_MEM_SLOTS, ARM_SMCCC_KVM_FUNC_MEM_SHARE, ARM_SMCCC_KVM_FUNC_MEM_UNSHARE,
} from '../uapi/kvm.js';
import { type KernelConfig, supportedVmTypes } from './config.js';

export const KVM_MAX_VCPUS = 1024;
export const KVM_MAX_VCPU_IDS = 4096;
/** KVM_EXIT_HYPERCALL_VALID_MASK: x86 lets only KVM_HC_MAP_GPA_RANGE exit to user space. */
export const KVM_EXIT_HYPERCALL_VALID_MASK = 1 << KVM_HC_MAP_GPA_RANGE;
/** arm64 pKVM: MEM_SHARE and MEM_UNSHARE may exit (the kvmtool pKVM patches' mask). */
export const KVM_EXIT_HYPERCALL_VALID_MASK_ARM64 = (1 << ARM_SMCCC_KVM_FUNC_MEM_SHARE) | (1 << ARM_SMCCC_KVM_FUNC_MEM_UNSHARE);

export function exitHypercallMask(cfg: KernelConfig): number {
  return cfg.arch === 'x86_64' ? KVM_EXIT_HYPERCALL_VALID_MASK : KVM_EXIT_HYPERCALL_VALID_MASK_ARM64;
}
/** The model's "online CPUs" for KVM_CAP_NR_VCPUS. */
const NR_ONLINE_CPUS = 2;

/** The VM's side of a capability query; null for a system-wide (/dev/kvm) query. */
export interface VmCapView {
  readonly has_private_mem: boolean;
}

/** Supported guest_memfd creation flags (kvm_gmem_get_supported_flags). */
export function gmemSupportedFlags(cfg: KernelConfig, vm: VmCapView | null): bigint {
  switch (cfg.uapi) {
    case 'v6.18': {
      // INIT_SHARED only where the VM has no private memory (x86), or for a system-wide query.
      const init_shared = vm === null || !vm.has_private_mem;
      return BigInt(GUEST_MEMFD_FLAG_MMAP | (init_shared ? GUEST_MEMFD_FLAG_INIT_SHARED : 0));
    }
    case 'in-place':
      // In-place conversion allows INIT_SHARED for CoCo VMs; HugeTLB from the WIP series.
      return BigInt(GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED | GUEST_MEMFD_FLAG_HUGETLB);
    case 'rfc-1g':
      return BigInt(GUEST_MEMFD_FLAG_SUPPORT_SHARED | GUEST_MEMFD_FLAG_INIT_PRIVATE | GUEST_MEMFD_FLAG_HUGETLB);
  }
}

/** Supported VM-level memory attributes (kvm_supported_mem_attributes). */
export function vmSupportedAttributes(cfg: KernelConfig, vm: VmCapView | null): number {
  // In-place conversion removes VM-level PRIVATE tracking.
  if (cfg.uapi === 'in-place') return 0;
  if (vm === null || vm.has_private_mem) return KVM_MEMORY_ATTRIBUTE_PRIVATE;
  return 0;
}

export function checkExtension(cfg: KernelConfig, vm: VmCapView | null, cap: number): number {
  switch (cap) {
    case KVM_CAP_USER_MEMORY:
    case KVM_CAP_USER_MEMORY2:
    case KVM_CAP_MEMORY_FAULT_INFO:
    case KVM_CAP_GUEST_MEMFD:
    case KVM_CAP_READONLY_MEM:
    case KVM_CAP_X86_APIC_BUS_CYCLES_NS:
    case KVM_CAP_X86_GUEST_MODE:
    case KVM_CAP_PRE_FAULT_MEMORY: // the model has TDP
      return 1;
    case KVM_CAP_NR_VCPUS:
      return NR_ONLINE_CPUS;
    case KVM_CAP_MAX_VCPUS:
      return KVM_MAX_VCPUS;
    case KVM_CAP_MAX_VCPU_ID:
      return KVM_MAX_VCPU_IDS;
    case KVM_CAP_NR_MEMSLOTS:
      return KVM_USER_MEM_SLOTS;
    case KVM_CAP_EXIT_HYPERCALL:
      return exitHypercallMask(cfg);
    case KVM_CAP_VM_TYPES:
      // An x86 capability: a bitmask of types. arm64 has none (the type carries IPA size and flags).
      return cfg.arch === 'x86_64' ? supportedVmTypes(cfg).reduce((m, t) => m | (1 << t), 0) : 0;
    case KVM_CAP_MEMORY_ATTRIBUTES:
      return vmSupportedAttributes(cfg, vm);
    case KVM_CAP_GUEST_MEMFD_FLAGS:
      return Number(gmemSupportedFlags(cfg, vm) & 0xffffffffn);
    case KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES:
      if (cfg.uapi !== 'in-place') return 0;
      return vm === null || vm.has_private_mem ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
    case KVM_CAP_GMEM_SHARED_MEM:
    case KVM_CAP_GMEM_CONVERSION:
    case KVM_CAP_GMEM_HUGETLB:
      return cfg.uapi === 'rfc-1g' ? 1 : 0;
    default:
      return 0;
  }
}
