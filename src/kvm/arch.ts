/**
 * What each x86 VM type changes in KVM (the arch backends, at the depth the model needs):
 * who decides whether an access is private, the largest private mapping, promotion, and what a
 * conversion does to page contents (the firmware's part).
 *
 *   DEFAULT (0)       no private memory.
 *   SW_PROTECTED (1)  the access follows the attribute; contents preserved both ways.
 *   SNP (4)           the guest's C-bit decides (a mismatch is an implicit conversion: memory-fault
 *                     exit); RMP entries are 4K or 2M, so private mappings are at most 2M; the page
 *                     is re-keyed on conversion: what the other side wrote reads as ciphertext.
 *   TDX (5)           the guest's shared bit decides; S-EPT private leaves are at most 2M and a 2M
 *                     range mapped at 4K is never promoted (GUEST_INHIBIT); the TDX module clears a
 *                     page leaving the TD (→shared reads zeros) and ACCEPT gives a zeroed page
 *                     (→private reads zeros).
 *   pKVM protected (arm64, KVM_VM_TYPE_ARM_PROTECTED)
 *                     the attribute decides (guest_memfd's shareability, changed on the guest's
 *                     MEM_SHARE / MEM_UNSHARE hypercalls, which exit to user space); stage-2 blocks
 *                     are at most PMD size (2M); contents are preserved both ways.
 */
import { type Level, PG_LEVEL_1G, PG_LEVEL_2M } from '../lib/types.js';
import { KVM_VM_TYPE_ARM_PROTECTED, KVM_X86_SNP_VM, KVM_X86_SW_PROTECTED_VM, KVM_X86_TDX_VM } from '../uapi/kvm.js';

export type ContentEffect = 'preserve' | 'zero' | 'scramble';

export interface VmArch {
  readonly name: string;
  readonly has_private_mem: boolean;
  /** The guest chooses private vs shared per access (C-bit / shared bit); else the attribute decides. */
  readonly guest_chooses: boolean;
  /** The largest stage-2 level for a private mapping. */
  readonly max_private_level: Level;
  /** The largest stage-2 level for a shared mapping (pKVM: block mappings are at most PMD size). */
  readonly max_shared_level: Level;
  /** A 2M range once mapped private at 4K stays at 4K. */
  readonly no_promotion: boolean;
  readonly to_shared: ContentEffect;
  readonly to_private: ContentEffect;
}

const DEFAULT: VmArch = {
  name: 'default', has_private_mem: false, guest_chooses: false, max_private_level: PG_LEVEL_1G, max_shared_level: PG_LEVEL_1G,
  no_promotion: false, to_shared: 'preserve', to_private: 'preserve',
};

export function vmArch(type: number): VmArch {
  switch (type) {
    case KVM_X86_SW_PROTECTED_VM:
      return { ...DEFAULT, name: 'sw-protected', has_private_mem: true };
    case KVM_X86_SNP_VM:
      return {
        ...DEFAULT, name: 'snp', has_private_mem: true, guest_chooses: true, max_private_level: PG_LEVEL_2M,
        to_shared: 'scramble', to_private: 'scramble',
      };
    case KVM_VM_TYPE_ARM_PROTECTED:
      return { ...DEFAULT, name: 'pkvm', has_private_mem: true, max_private_level: PG_LEVEL_2M, max_shared_level: PG_LEVEL_2M };
    case KVM_X86_TDX_VM:
      return {
        ...DEFAULT, name: 'tdx', has_private_mem: true, guest_chooses: true, max_private_level: PG_LEVEL_2M,
        no_promotion: true, to_shared: 'zero', to_private: 'zero',
      };
    default:
      return DEFAULT;
  }
}
