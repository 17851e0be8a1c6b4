/**
 * Metrics sampling: one Sample per sampling point, from the model's own counters
 * (kernel.metrics(), src/kernel/metrics.ts, including the IOMMU domain's: levels, DMA faults,
 * window pages, refreshes, pins) and the simulator's (counters.ts, the arch backend, the VM type's
 * IOPTE limit in src/sim/iommu.ts). Stage-2 levels: `stage2_model` is the model's stage-2 as it is;
 * `stage2` is that as the VM type's firmware would have it, which is the same thing unless the
 * arch backend applies rules the model lacks (ArchBackend.simLevelRules: TDX's accept-level rules and
 * the v6.18 vehicle's ≤ 2M). Everything here is deterministic: no wall-clock time, no process memory.
 */
import type { ModelKernel } from '../kernel/model-kernel.js';
import type { ModelMetrics } from '../kernel/metrics.js';
import type { Level } from '../lib/types.js';
import { SPTE_PRIVATE } from '../kvm/stage2.js';
import type { ArchBackend, LevelPages } from './arch/types.js';
import type { SimCounters } from './counters.js';
import type { IommuDevice } from './iommu.js';

export interface Sample {
  step: number;
  /** Simulated seconds. */
  t: number;
  /** Stage-2 mappings as the firmware would have them, in 4 KiB pages per level. */
  stage2: LevelPages;
  /** The model's own stage-2 mappings. */
  stage2_model: LevelPages;
  /** IOPTEs of the model's domain by level (clamped to the VM type's largest IOPTE). */
  iommu: LevelPages;
  /** HugeTLB folios: whole and split, 2M and 1G together (by size in `final`). */
  huge_whole: number;
  huge_split: number;
  vmemmap_pages_in_use: number;
  splits: number;
  merges: number;
  conversions_done: number;
  conversions_failed: number;
  /** KVM_EXIT_MEMORY_FAULT exits the VMM answered with an implicit conversion. */
  implicit_conversions: number;
  eagain_returns: number;
  invalidations: number;
  tlb_flushes: number;
  host_faults: number | null;
  sigbus: number | null;
  /** Pages device DMA found no IOPTE for (the model's count). */
  dma_faults: number;
  /** DMAs in flight through an unmap/remap window (the simulator's count, src/sim/iommu.ts). */
  dma_gap_hits: number;
  model_bytes: number;
}

/** End-of-run figures per policy: every counter, model and simulator. */
export interface FinalMetrics {
  stage2: LevelPages;
  stage2_model: LevelPages;
  iommu: LevelPages;
  huge_folios: ModelMetrics['huge_folios'];
  order0_folios: number;
  splits: number;
  merges: number;
  vmemmap_pages_allocated: number;
  vmemmap_pages_freed: number;
  vmemmap_pages_in_use: number;
  /** The model's conversion counters (ioctl level). */
  model_conversions: { done: number; eagain: number; failed: number; pages: number };
  invalidations: number;
  zapped_leaves: number;
  tlb_flushes: number;
  guest_faults: number;
  host_faults: number | null;
  sigbus: number | null;
  model_bytes: number;
  /**
   * The model's IOMMU domain: pages device DMA found no IOPTE for, pages unmapped while still shared
   * ('unmap-remap' windows), hitless refreshes ('refresh'), pages pinned now ('pin'). Null without a device.
   */
  iommu_ops: { dma_faults: number; window_pages: number; refreshes: number; pinned_pages: number } | null;
  sim: Record<string, number>;
  arch: Record<string, number>;
}

const ZERO: LevelPages = { '4k': 0, '2m': 0, '1g': 0 };

export class Sampler {
  readonly series: Sample[] = [];

  constructor(
    private readonly k: ModelKernel,
    private readonly arch: ArchBackend,
    private readonly counters: SimCounters,
    /** The VMM's device (created at setup, after the sampler). */
    private readonly iommu: () => IommuDevice | null,
    /** End-of-run figures from the VMM (TDX: accepted memory the model left unmapped). */
    private readonly vmmFinal: () => Record<string, number> = () => ({}),
  ) {}

  private stage2(m: ModelMetrics): LevelPages {
    const vm = this.k.state.vms.values().next().value;
    return this.arch.effective(m.stage2_pages, {
      privateLevelAt: (gfn: number): 0 | Level => {
        const leaf = vm?.stage2.lookup(gfn) ?? null;
        return leaf === null || (leaf.flags & SPTE_PRIVATE) === 0 ? 0 : leaf.level;
      },
    });
  }

  sample(step: number, t: number): Sample {
    const m = this.k.metrics();
    const h = m.huge_folios;
    const s: Sample = {
      step,
      t,
      stage2: this.stage2(m),
      stage2_model: { ...m.stage2_pages },
      iommu: this.iommu()?.pages() ?? { ...ZERO },
      huge_whole: h.whole_2m + h.whole_1g,
      huge_split: h.split_2m + h.split_1g,
      vmemmap_pages_in_use: m.vmemmap_pages_in_use,
      splits: m.splits,
      merges: m.merges,
      conversions_done: this.counters.conversions_done,
      conversions_failed: this.counters.conversions_failed,
      implicit_conversions: this.counters.implicit_conversions,
      eagain_returns: this.counters.eagain_returns,
      invalidations: m.invalidations,
      tlb_flushes: m.tlb_flushes,
      host_faults: m.host_faults,
      sigbus: m.sigbus,
      dma_faults: m.dma_faults,
      dma_gap_hits: this.counters.dma_gap_hits,
      model_bytes: m.model_bytes,
    };
    this.series.push(s);
    return s;
  }

  /** What the model's VM type keeps about levels (TDX: 2M ranges it mapped private at 4K, never promoted). */
  private modelArchCounters(): Record<string, number> {
    const vm = this.k.state.vms.values().next().value;
    if (vm === undefined || !vm.arch.no_promotion) return {};
    return { model_demoted_2m_blocks: vm.demoted_2m.size };
  }

  final(): FinalMetrics {
    const m = this.k.metrics();
    const c = this.counters;
    const io = this.iommu();
    const sim: Record<string, number> = {};
    for (const [key, v] of Object.entries(c)) if (typeof v === 'number') sim[key] = v;
    return {
      stage2: this.stage2(m),
      stage2_model: { ...m.stage2_pages },
      iommu: this.iommu()?.pages() ?? { ...ZERO },
      huge_folios: { ...m.huge_folios },
      order0_folios: m.order0_folios,
      splits: m.splits,
      merges: m.merges,
      vmemmap_pages_allocated: m.vmemmap_pages_allocated,
      vmemmap_pages_freed: m.vmemmap_pages_freed,
      vmemmap_pages_in_use: m.vmemmap_pages_in_use,
      model_conversions: { done: m.conversions_done, eagain: m.conversions_eagain, failed: m.conversions_failed, pages: m.pages_converted },
      invalidations: m.invalidations,
      zapped_leaves: m.zapped_leaves,
      tlb_flushes: m.tlb_flushes,
      guest_faults: m.guest_faults,
      host_faults: m.host_faults,
      sigbus: m.sigbus,
      model_bytes: m.model_bytes,
      iommu_ops: io === null ? null : {
        dma_faults: io.dom.dma_faults, window_pages: io.dom.window_pages, refreshes: io.dom.refreshes, pinned_pages: io.pinnedPages(),
      },
      sim,
      arch: { ...this.arch.counters(), ...this.modelArchCounters(), ...this.vmmFinal() },
    };
  }
}
