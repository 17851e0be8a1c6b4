/**
 * snp-lazy-accept: an SEV-SNP guest accepting its memory lazily in 4 MiB chunks (Page State
 * Change to private, then PVALIDATE), with its SWIOTLB bounce pool and GHCB pages shared.
 * The main comparison: what one shared page does to the huge folios and mappings around it.
 */
import { checkLazyAccept, createLazyAccept, lazyAcceptParams } from './lazy-accept.js';
import type { WorkloadSpec } from './types.js';

export const snpLazyAccept: WorkloadSpec = {
  name: 'snp-lazy-accept',
  description: 'SEV-SNP guest accepting memory lazily in 4 MiB chunks; bounce buffers and GHCBs shared',
  vms: ['snp', 'sw-protected'],
  params: lazyAcceptParams({ percpu_shared: true, coherent_every: 0, rate: 2000 }),
  check: checkLazyAccept,
  create: createLazyAccept,
};
