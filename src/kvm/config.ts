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

/**
 * The VM types this model creates: DEFAULT and SW_PROTECTED on x86; the in-place designs add SNP (4)
 * and TDX (5) (src/kvm/arch.ts). 'v6.18' models what the host runs and refuses the CoCo types.
 */
export function supportedVmTypes(cfg: KernelConfig): number[] {
  if (cfg.arch !== 'x86_64') return [0];
  return cfg.uapi === 'v6.18' ? [0, 1] : [0, 1, 4, 5];
}

/** In-place designs keep private/shared in guest_memfd; 6.18 keeps it in the VM's attributes. */
export function gmemTracksShareability(cfg: KernelConfig): boolean {
  return cfg.uapi !== 'v6.18';
}
