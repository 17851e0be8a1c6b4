/**
 * What kind of kernel the model is: the uAPI generation, the architecture, and the design
 * knobs (policies) of the conversion proposals. Fixed at createModelKernel().
 */
import type { GmemUapi } from '../gmem/inode.js';

export type Arch = 'x86_64' | 'arm64';

export interface KernelConfig {
  readonly uapi: GmemUapi;
  readonly arch: Arch;
}

/** KVM_X86_DEFAULT_VM and KVM_X86_SW_PROTECTED_VM: the types this model creates on x86. */
export function supportedVmTypes(cfg: KernelConfig): number[] {
  return cfg.arch === 'x86_64' ? [0, 1] : [0];
}

/** In-place designs keep private/shared in guest_memfd; 6.18 keeps it in the VM's attributes. */
export function gmemTracksShareability(cfg: KernelConfig): boolean {
  return cfg.uapi !== 'v6.18';
}
