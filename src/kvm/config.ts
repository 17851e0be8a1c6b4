/**
 * What kind of kernel the model is: the uAPI generation, the architecture, and the design
 * knobs (policies) of the conversion proposals. Fixed at createModelKernel().
 */
import type { GmemUapi } from '../gmem/inode.js';
import { KVM_VM_TYPE_ARM_IPA_SIZE_MASK, KVM_VM_TYPE_ARM_PROTECTED } from '../uapi/kvm.js';

export type Arch = 'x86_64' | 'arm64';

export interface KernelConfig {
  readonly uapi: GmemUapi;
  readonly arch: Arch;
}

/**
 * The VM types this model creates: DEFAULT and SW_PROTECTED on x86; the in-place designs add SNP (4)
 * and TDX (5) (src/kvm/arch.ts). 'v6.18' models what the host runs and refuses the CoCo types.
 */
export function supportedVmTypes(cfg: KernelConfig): number[] {
  // arm64: a default VM, and (with guest_memfd shareability: the in-place designs) a pKVM protected VM.
  if (cfg.arch !== 'x86_64') return cfg.uapi === 'v6.18' ? [0] : [0, KVM_VM_TYPE_ARM_PROTECTED];
  return cfg.uapi === 'v6.18' ? [0, 1] : [0, 1, 4, 5];
}

/** KVM_CREATE_VM's type argument, decoded for the arch (arm64 carries the IPA size in bits 0..7). */
export function vmTypeOf(cfg: KernelConfig, arg: number): number | null {
  if (cfg.arch === 'x86_64') return supportedVmTypes(cfg).includes(arg) ? arg : null;
  const ipa = arg & KVM_VM_TYPE_ARM_IPA_SIZE_MASK;
  if (ipa !== 0 && (ipa < 32 || ipa > 48)) return null;
  const type = arg & ~KVM_VM_TYPE_ARM_IPA_SIZE_MASK & 0xffffffff;
  const t = type >>> 0;
  return supportedVmTypes(cfg).includes(t) ? t : null;
}

/** In-place designs keep private/shared in guest_memfd; 6.18 keeps it in the VM's attributes. */
export function gmemTracksShareability(cfg: KernelConfig): boolean {
  return cfg.uapi !== 'v6.18';
}
