/**
 * The assigned device of a simulated VM, on the MODEL's IOMMU importer (src/iommu/domain.ts through
 * ModelKernel.iommuCreateDomain / iommuMapFile / iommuUnmapFile / dma, read back through metrics()
 * and `kernel.state.iommus`). The simulator's importer names map onto the model's designs:
 *
 * - 'vfio-4k'     → model 'pin': QEMU + VFIO type1 today, long-term pins on 4K pages, 4K IOPTEs.
 * - 'unmap-remap' → model 'unmap-remap': a protective notifier (no pins) that unmaps every IOPTE
 *                   overlapping a conversion to private (a huge one whole) and maps back what stays
 *                   shared: a window.
 * - 'refresh'     → model 'refresh': hitless, a huge IOPTE is split in place.
 *
 * Which layer decides what:
 * - the model: the IOPTEs and their levels (folio, shareability, alignment: a split folio or a mixed
 *   block maps at 4K), how the notifier designs follow conversions and punches (it calls them inside
 *   the conversion, before →private and after →shared, so the VMM does nothing for them), the pins of
 *   'pin', DMA translation and the pages that faulted (metrics().dma_faults), window_pages, refreshes.
 * - the simulator, here, on top of the model's domain:
 *   - what the device maps: every shared run of guest memory, at IOVA = GPA (QEMU maps all guest RAM
 *     for an assigned device), as areas of at most 1 GiB ('pin': 2 MiB, see AREA_PAGES);
 *   - 'vfio-4k' ordering (QEMU's RamDiscardManager): VFIO unmaps a range before it becomes private —
 *     the pins would make the conversion EAGAIN — and maps it after it became shared;
 *   - DMA in flight through an unmap/remap window: every model call is atomic, so no DMA can meet
 *     the window in the model; the simulator keeps the last `inflight` DMAs and counts those that
 *     overlap the huge IOPTEs the model's 'unmap-remap' took down around a conversion;
 *   - the VM type's IOPTE limit, which the model does not know (SNP: an IOPTE must not straddle an
 *     RMP entry, so ≤ 2M; pKVM ≤ 2M): leaves above it are counted at it, and a window is at most
 *     one such leaf;
 *   - IOPTEs over private memory after a →private conversion: checked from the domain's state.
 * - dropped from the simulator's former importer: re-merging IOPTEs once a block is uniformly
 *   shared again (the model's domain, like its KVM stage-2, does not re-merge, and the area API
 *   cannot do it without a window), its own leaf bookkeeping, pins through host mappings, and its
 *   IOTLB-flush/split/merge counts (the model counts window pages and refreshes instead).
 */
import type { ModelKernel } from '../kernel/model-kernel.js';
import type { ImportMode, IommuArea, IommuDomain } from '../iommu/domain.js';
import { RangeMap } from '../lib/rangemap.js';
import { type Level, levelPages } from '../lib/types.js';
import type { LevelPages } from './arch/types.js';
import { clampLevels } from './arch/types.js';
import type { SimCounters } from './counters.js';
import type { IommuMode } from './schema.js';

const PAGE = 4096;
const P2M = 512;
const P1G = 262144;

/** The model's design behind each of the simulator's importer names. */
export const MODEL_IMPORT_MODE: Readonly<Record<Exclude<IommuMode, 'none'>, ImportMode>> = {
  'vfio-4k': 'pin',
  'unmap-remap': 'unmap-remap',
  refresh: 'refresh',
};

/**
 * Pages per area at most. 1G never limits an IOPTE (no leaf crosses a 1G boundary). 'pin' maps at
 * 4K only, so smaller areas cost no level, and unmapping a 4K piece re-pins at most 2 MiB around it
 * (VFIO's own mappings are per 4K granule: any split of them is as faithful).
 */
function areaPages(mode: ImportMode): number {
  return mode === 'pin' ? P2M : P1G;
}

export class IommuDevice {
  readonly domain: number;
  readonly model_mode: ImportMode;
  /** Guest pages an area of the domain covers. */
  private readonly covered: RangeMap<boolean>;
  /** The areas the VMM mapped, by first gfn (each within one AREA block). */
  private readonly areas = new Map<number, IommuArea>();
  /** DMAs in flight, [gfn_start, gfn_end): the last `maxInflight`. */
  private inflight: Array<[number, number]> = [];
  /** Before a →private conversion ('unmap-remap'): the IOPTEs straddling its edges, and window_pages. */
  private pending: { windows: Array<[number, number]>; window_pages: number } | null = null;

  constructor(
    private readonly k: ModelKernel,
    readonly mode: Exclude<IommuMode, 'none'>,
    private readonly gmemFd: number,
    /** File offset (bytes) of a guest-physical address. */
    private readonly offsetOf: (gpa: number) => number,
    guest_pages: number,
    /** The VM type's largest IOPTE (the backing's limit the model applies itself, through the folio). */
    private readonly maxLevel: Level,
    private readonly counters: SimCounters,
    private readonly maxInflight: number,
    /** The shared runs inside [g0, g1), the VMM's view (after a failed conversion: what is still shared). */
    private readonly sharedRuns: (g0: number, g1: number) => Array<[number, number]>,
  ) {
    this.model_mode = MODEL_IMPORT_MODE[mode];
    this.domain = k.iommuCreateDomain(this.model_mode);
    this.covered = new RangeMap<boolean>(guest_pages, false);
  }

  /** The model's domain (read-only insides). */
  get dom(): IommuDomain {
    const d = this.k.state.iommus.get(this.domain);
    if (d === undefined) throw new Error(`IOMMU domain ${this.domain} is gone`);
    return d;
  }

  /** Pages mapped per level, as the VM type would have them (the model's, clamped to maxLevel). */
  pages(): LevelPages {
    return clampLevels({ ...this.dom.iopt.mapped_pages }, this.maxLevel);
  }

  /** Pages the domain pins (model 'pin'). */
  pinnedPages(): number {
    let n = 0;
    for (const c of this.dom.pins.values()) n += c;
    return n;
  }

  // ---- mapping (the simulator's choice of what the device maps) ----------------------------------

  private mapRun(g0: number, g1: number): void {
    const step = areaPages(this.model_mode);
    for (let s = g0; s < g1;) {
      const e = Math.min(g1, (Math.floor(s / step) + 1) * step);
      const idx = this.k.iommuMapFile(this.domain, this.gmemFd, this.offsetOf(s * PAGE), (e - s) * PAGE, s * PAGE);
      this.areas.set(s, this.dom.areas[idx] as IommuArea);
      this.covered.set(s, e, true);
      s = e;
    }
  }

  /** Map the uncovered pages of [g0, g1) (all shared now). */
  private mapUncovered(g0: number, g1: number): void {
    for (const r of [...this.covered.runs(g0, g1)]) if (!r.value) this.mapRun(r.start, r.end);
  }

  /** 'pin': unmap every area overlapping [g0, g1) and map back its pages outside [g0, g1). */
  private unmapRange(g0: number, g1: number): void {
    const step = areaPages(this.model_mode);
    const keep: Array<[number, number]> = [];
    for (const [s, a] of [...this.areas]) {
      // Areas lie within one block of `step` pages: only those of the blocks [g0, g1) touches.
      if (s >= g1 || Math.floor(s / step) < Math.floor(g0 / step)) continue;
      const e = s + (a.end - a.start);
      if (e <= g0) continue;
      this.k.iommuUnmapFile(this.domain, this.dom.areas.indexOf(a));
      this.areas.delete(s);
      this.covered.set(s, e, false);
      if (s < g0) keep.push([s, g0]);
      if (g1 < e) keep.push([g1, e]);
    }
    for (const [s, e] of keep) this.mapRun(s, e);
  }

  // ---- the VMM's conversion hooks ----------------------------------------------------------------

  /** Before converting [g0, g1) to private (only when some page changes). */
  beforePrivate(g0: number, g1: number): void {
    if (this.model_mode === 'pin') {
      this.unmapRange(g0, g1);
      return;
    }
    if (this.model_mode !== 'unmap-remap') return;
    // Only a leaf containing an edge page can reach outside the range: the window candidates.
    const windows: Array<[number, number]> = [];
    const cap = levelPages(this.maxLevel);
    for (const g of [g0, g1 - 1]) {
      const l = this.dom.iopt.lookup(g);
      if (l === null || l.level === 1) continue;
      // The VM type's leaf: a model 1G leaf is, on SNP, the 2M leaf around the edge.
      const nr = Math.min(levelPages(l.level), cap);
      const s = Math.max(l.gfn, Math.floor(g / nr) * nr);
      if (s < g0) windows.push([s, g0]);
      if (s + nr > g1) windows.push([g1, s + nr]);
    }
    this.pending = { windows, window_pages: this.dom.window_pages };
  }

  /** After a conversion of [g0, g1) (ok: it succeeded; `toPrivate`: its direction). */
  afterConvert(g0: number, g1: number, toPrivate: boolean, ok: boolean): void {
    const pending = this.pending;
    this.pending = null;
    if (!toPrivate) {
      // The notifier designs follow pages already in an area; new shared memory is mapped by the VMM.
      if (ok) this.mapUncovered(g0, g1);
      return;
    }
    if (!ok) {
      // 'pin': put back what the device lost; the range is still (partly) shared.
      if (this.model_mode === 'pin') for (const [s, e] of this.sharedRuns(g0, g1)) this.mapUncovered(s, e);
      return;
    }
    if (this.anyIopte(g0, g1)) this.counters.iommu_private_exposure++;
    if (pending !== null && this.dom.window_pages > pending.window_pages) {
      for (const [a, z] of this.inflight) {
        if (pending.windows.some(([s, e]) => a < e && z > s)) this.counters.dma_gap_hits++;
      }
    }
  }

  /** Is any page of [g0, g1) mapped? By lookup for short ranges, by walking the leaves for long ones. */
  anyIopte(g0: number, g1: number): boolean {
    const iopt = this.dom.iopt;
    const m = iopt.mapped_pages;
    if (m['4k'] + m['2m'] + m['1g'] === 0) return false;
    if (g1 - g0 <= 4096) {
      for (let g = g0; g < g1; g++) if (iopt.lookup(g) !== null) return true;
      return false;
    }
    for (const l of iopt.leaves()) if (l.gfn < g1 && l.gfn + levelPages(l.level) > g0) return true;
    return false;
  }

  /** EAGAIN on [g0, g1): drop the domain's pins there ('pin'); true if there were any. */
  dropPins(g0: number, g1: number): boolean {
    if (this.model_mode !== 'pin' || !this.anyIopte(g0, g1)) return false;
    this.unmapRange(g0, g1);
    return true;
  }

  // ---- the device ----------------------------------------------------------------------------------

  /** The device reads [gpa, gpa + size) through the model's domain; false when a page faulted. */
  dma(gpa: number, size: number): boolean {
    this.counters.dma_ops++;
    this.inflight.push([gpa / PAGE, (gpa + size) / PAGE]);
    if (this.inflight.length > this.maxInflight) this.inflight = this.inflight.slice(-this.maxInflight);
    return this.k.dma(this.domain, gpa, size).faulted_pages === 0;
  }
}
