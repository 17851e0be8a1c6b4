/**
 * device-dma: an assigned device DMAs into a long-lived shared pool (NIC rings / bounce buffers)
 * while the guest converts neighbouring pieces of the same pool between shared and private
 * (dma_free_coherent / dma_alloc_coherent of small buffers). Every conversion inside a huge IOPTE
 * tests the importer: VFIO-style unmap/remap leaves a window in which in-flight DMA to the
 * neighbours finds no IOPTE; a hitless refresh splits the IOPTE in place. The guest never
 * converts a buffer it has handed to the device.
 */
import type { GuestApi } from '../../kvm/guest.js';
import type { GuestSeq } from '../arch/types.js';
import { UC_BOOT_DONE, UC_DMA, UC_EVENT } from '../protocol.js';
import type { Scenario } from '../scenario.js';
import { formatBytes, GiB, MiB } from '../units.js';
import { M2, num, type Workload, type WorkloadCtx, type WorkloadSpec } from './types.js';

function poolOf(sc: Scenario): { gpa: number; size: number } {
  const size = num(sc.params, 'pool');
  const align = size >= GiB ? GiB : M2;
  return { gpa: Math.ceil(sc.guest / 4 / align) * align, size };
}

export const deviceDma: WorkloadSpec = {
  name: 'device-dma',
  description: 'a device DMAing into a shared pool while the guest converts neighbouring pages',
  vms: ['snp', 'tdx', 'pkvm', 'sw-protected'],
  params: {
    pool: { kind: 'size', doc: 'the shared DMA pool (1 GiB-aligned when ≥ 1 GiB)', min: M2, max: 64 * GiB, multipleOf: M2, default: GiB },
    dma_size: { kind: 'size', doc: 'bytes per DMA', min: 4096, max: 16 * MiB, multipleOf: 4096, default: 16 * 1024 },
    inflight: { kind: 'int', doc: 'DMAs the device has in flight at once', min: 1, max: 4096, default: 32 },
    convert_every: { kind: 'int', doc: 'the guest converts a piece of the pool every N events', min: 1, max: 1_000_000, default: 4 },
    convert_size: { kind: 'size', doc: 'bytes per converted piece', min: 4096, max: M2, multipleOf: 4096, default: 4096 },
    max_private: { kind: 'int', doc: 'pieces of the pool private at once, at most', min: 1, max: 1_000_000, default: 64 },
    rate: { kind: 'number', doc: 'events per simulated second', min: 1e-3, max: 1e9, default: 50000 },
  },
  check(sc: Scenario): Array<[string, string]> {
    const p = poolOf(sc);
    if (p.gpa + p.size > sc.guest) return [['pool', `${formatBytes(p.size)} at ${formatBytes(p.gpa)} does not fit in a ${formatBytes(sc.guest)} guest`]];
    const cmp = sc.compare.find((c) => c.knob === 'iommu');
    if (cmp !== undefined ? cmp.values.includes('none') : sc.iommu === 'none') return [[cmp !== undefined ? '/compare' : '/iommu', 'device-dma needs an IOMMU importer: set iommu: vfio-4k, unmap-remap or refresh']];
    return [];
  },
  create(ctx: WorkloadCtx): Workload {
    const { sc, arch, rng } = ctx;
    const pool = poolOf(sc);
    const dma = num(sc.params, 'dma_size');
    const piece = num(sc.params, 'convert_size');
    const inflight: number[] = [];
    const maxInflight = num(sc.params, 'inflight');
    const priv: number[] = [];
    const overlaps = (a: number, asz: number, b: number, bsz: number): boolean => a < b + bsz && b < a + asz;
    return {
      defaultSteps: 20000,
      rate: num(sc.params, 'rate'),
      layout: [{ name: 'shared DMA pool', gpa: pool.gpa, size: pool.size }],
      hostSetup(): void {},
      *boot(g: GuestApi): GuestSeq {
        yield* arch.requestConvert(g, pool.gpa, pool.size, false);
        yield g.ucall(UC_BOOT_DONE);
      },
      *event(g: GuestApi, _vcpu: number, n: number): GuestSeq {
        // Post a DMA buffer to the device: a shared one, not already in flight.
        let gpa = pool.gpa + rng.below(pool.size / dma) * dma;
        for (let t = 0; t < 8 && priv.some((p) => overlaps(p, piece, gpa, dma)); t++) gpa = pool.gpa + rng.below(pool.size / dma) * dma;
        if (!priv.some((p) => overlaps(p, piece, gpa, dma))) {
          inflight.push(gpa);
          if (inflight.length > maxInflight) inflight.shift();
          yield g.ucall(UC_DMA, gpa, dma);
        }
        if (n % num(sc.params, 'convert_every') === 0) {
          if (priv.length >= num(sc.params, 'max_private') || (priv.length > 0 && rng.bool(0.5))) {
            // dma_alloc_coherent: a private piece becomes shared again.
            const p = priv.splice(rng.below(priv.length), 1)[0] as number;
            yield* arch.requestConvert(g, p, piece, false);
          } else {
            // dma_free_coherent: a piece no DMA is using becomes private.
            let p = pool.gpa + rng.below(pool.size / piece) * piece;
            for (let t = 0; t < 8 && (inflight.some((d) => overlaps(d, dma, p, piece)) || priv.includes(p)); t++) {
              p = pool.gpa + rng.below(pool.size / piece) * piece;
            }
            if (!inflight.some((d) => overlaps(d, dma, p, piece)) && !priv.includes(p)) {
              if ((yield* arch.requestConvert(g, p, piece, true)) === 0) {
                priv.push(p);
                yield* arch.accept(g, p, piece);
              }
            }
          }
        }
        yield g.ucall(UC_EVENT);
      },
    };
  },
};
