/** The workloads, by name. */
import { deviceDma } from './device-dma.js';
import { dpdkShared } from './dpdk-shared.js';
import { pkvmVirtio } from './pkvm-virtio.js';
import { snpLazyAccept } from './snp-lazy-accept.js';
import { tdxBoot } from './tdx-boot.js';
import type { WorkloadSpec } from './types.js';

export const WORKLOADS: Readonly<Record<string, WorkloadSpec>> = {
  [snpLazyAccept.name]: snpLazyAccept,
  [tdxBoot.name]: tdxBoot,
  [pkvmVirtio.name]: pkvmVirtio,
  [dpdkShared.name]: dpdkShared,
  [deviceDma.name]: deviceDma,
};

export type { Workload, WorkloadCtx, WorkloadSpec } from './types.js';
