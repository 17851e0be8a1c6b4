/**
 * tdx-boot: a TDX guest booting: MapGPA conversions for its shared pool, lazy TDG.MEM.PAGE.ACCEPT
 * of 4 MiB chunks, and at run time dma_alloc_coherent buffers made shared and freed, each free a
 * MapGPA back to private and a 4K re-accept. Private S-EPT mappings are at most 2M and are never
 * promoted: every 2M block that saw a 4K conversion or accept stays at 4K.
 */
import { checkLazyAccept, createLazyAccept, lazyAcceptParams } from './lazy-accept.js';
import type { WorkloadSpec } from './types.js';

export const tdxBoot: WorkloadSpec = {
  name: 'tdx-boot',
  description: 'TDX guest boot: MapGPA conversions, lazy accept, coherent DMA buffers (private ≤ 2M, never promoted)',
  vms: ['tdx', 'sw-protected'],
  params: lazyAcceptParams({ percpu_shared: false, coherent_every: 8, rate: 2000 }),
  check: checkLazyAccept,
  create: createLazyAccept,
};
