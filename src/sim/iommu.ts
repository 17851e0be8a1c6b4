/**
 * An IOMMU importer of the guest's shared memory, in the simulator layer (the model has no IOMMU
 * yet). The VMM notifies it as QEMU's RamDiscardManager notifies VFIO: discard before a range
 * becomes private, populate after it becomes shared (ecosystem.md C.7, E.1). Three importers:
 *
 * - 'vfio-4k': QEMU + VFIO type1 today: one DMA mapping per 4 KiB granule of guest_memfd state
 *   (the RamBlockAttributes block size), each pinned (GUP, FOLL_LONGTERM). No hole ever, but no
 *   huge IOPTE either.
 * - 'unmap-remap': maps each shared run with the largest IOPTEs alignment allows, pinned; a
 *   discard inside a huge IOPTE unmaps it whole and maps back what stays shared: a window in
 *   which DMA to the neighbours finds no IOPTE (ecosystem.md C.2: "a transient hole is fatal").
 * - 'refresh': Jason Gunthorpe's importer (C.2, C.8): no pins (guest_memfd keeps the pages), a
 *   conversion inside a huge IOPTE splits it atomically (1G → 2M → 4K) replacing only the
 *   affected leaf; when a block is uniformly shared again it is merged back.
 *
 * Leaves: 1G and 2M as sets of block numbers, 4K as one bitmap per 2 MiB. Costs follow leaves.
 */
import { keysInRange } from '../lib/keys.js';
import type { Level } from '../lib/types.js';
import type { IommuMode } from './schema.js';
import type { SimCounters } from './counters.js';

const P2M = 512;
const P1G = 262144;

export interface IommuHost {
  /** Host virtual address of a guest-physical address (the shared mapping). */
  hvaOf(gpa: number): number;
  pin(hva: number, len: number): number;
  unpin(id: number): void;
  /** Is gfn shared now (the VMM's view)? Used to rebuild what stays mapped. */
  isShared(gfn: number): boolean;
  /** The shared runs inside [g0, g1). */
  sharedRuns(g0: number, g1: number): Array<[number, number]>;
}

class Bitmap512 {
  readonly bits = new Uint8Array(P2M);
  count = 0;
}

export class Iommu {
  private readonly g1 = new Set<number>();
  private readonly m2 = new Set<number>();
  private readonly k4 = new Map<number, Bitmap512>();
  /** Pins held per 2M piece (vfio modes): [gfn_start, gfn_end, pin id]. */
  private readonly pins = new Map<number, Array<[number, number, number]>>();
  /** DMA buffers in flight: [gfn_start, gfn_end). */
  private inflight: Array<[number, number]> = [];
  maps = 0;
  unmaps = 0;
  iotlb_flushes = 0;
  splits = 0;
  merges = 0;

  constructor(
    readonly mode: Exclude<IommuMode, 'none'>,
    private readonly maxLevel: Level,
    private readonly host: IommuHost,
    private readonly counters: SimCounters,
    private readonly maxInflight: number,
  ) {}

  get pinned(): boolean {
    return this.mode !== 'refresh';
  }

  /** Pages mapped per level. */
  pages(): { '4k': number; '2m': number; '1g': number } {
    let k = 0;
    for (const b of this.k4.values()) k += b.count;
    return { '4k': k, '2m': this.m2.size * P2M, '1g': this.g1.size * P1G };
  }

  levelAt(gfn: number): 0 | Level {
    if (this.g1.has(Math.floor(gfn / P1G))) return 3;
    if (this.m2.has(Math.floor(gfn / P2M))) return 2;
    const b = this.k4.get(Math.floor(gfn / P2M));
    return b !== undefined && b.bits[gfn % P2M] === 1 ? 1 : 0;
  }

  /** Is any page of [g0, g1) mapped? */
  anyMapped(g0: number, g1: number): boolean {
    for (let b = Math.floor(g0 / P1G); b * P1G < g1; b++) if (this.g1.has(b)) return true;
    for (const k of keysInRange(this.m2, Math.floor(g0 / P2M), Math.ceil(g1 / P2M))) if (k >= 0) return true;
    for (const k of keysInRange(this.k4, Math.floor(g0 / P2M), Math.ceil(g1 / P2M))) {
      const b = this.k4.get(k) as Bitmap512;
      const lo = Math.max(g0, k * P2M) - k * P2M;
      const hi = Math.min(g1, (k + 1) * P2M) - k * P2M;
      for (let i = lo; i < hi; i++) if (b.bits[i] === 1) return true;
    }
    return false;
  }

  // ---- map / unmap primitives ------------------------------------------------------------------

  private map4k(gfn: number): void {
    const key = Math.floor(gfn / P2M);
    let b = this.k4.get(key);
    if (b === undefined) {
      b = new Bitmap512();
      this.k4.set(key, b);
    }
    if (b.bits[gfn % P2M] === 0) {
      b.bits[gfn % P2M] = 1;
      b.count++;
    }
  }

  private unmap4kRange(g0: number, g1: number): number {
    let n = 0;
    for (const k of keysInRange(this.k4, Math.floor(g0 / P2M), Math.ceil(g1 / P2M))) {
      const b = this.k4.get(k) as Bitmap512;
      const lo = Math.max(g0, k * P2M) - k * P2M;
      const hi = Math.min(g1, (k + 1) * P2M) - k * P2M;
      for (let i = lo; i < hi; i++) {
        if (b.bits[i] === 1) {
          b.bits[i] = 0;
          b.count--;
          n++;
        }
      }
      if (b.count === 0) this.k4.delete(k);
    }
    return n;
  }

  /** Map [g0, g1) with the largest leaves alignment and the level limit allow. */
  private mapGreedy(g0: number, g1: number, max: Level): void {
    let p = g0;
    while (p < g1) {
      if (max >= 3 && p % P1G === 0 && p + P1G <= g1) {
        this.g1.add(p / P1G);
        p += P1G;
      } else if (max >= 2 && p % P2M === 0 && p + P2M <= g1) {
        this.m2.add(p / P2M);
        p += P2M;
      } else {
        this.map4k(p);
        p += 1;
      }
      this.maps++;
    }
  }

  /** The mapping level this importer uses. */
  private get level(): Level {
    return this.mode === 'vfio-4k' ? 1 : this.maxLevel;
  }

  // ---- notifications from the VMM ----------------------------------------------------------------

  /** [g0, g1) became shared: map it (after the conversion). */
  populate(g0: number, g1: number): void {
    if (this.mode === 'refresh') {
      // Mirror guest_memfd: rebuild every max-level block touched, merging what is uniform again.
      const span = this.level === 3 ? P1G : this.level === 2 ? P2M : 1;
      const b0 = Math.floor(g0 / span) * span;
      const b1 = Math.ceil(g1 / span) * span;
      const before = this.leafCount(b0, b1);
      this.removeAll(b0, b1);
      for (const [s, e] of this.host.sharedRuns(b0, b1)) this.mapGreedy(s, e, this.level);
      if (this.leafCount(b0, b1) < before) this.merges++;
      this.iotlb_flushes++;
      return;
    }
    this.mapGreedy(g0, g1, this.level);
    this.repin(g0, g1);
  }

  /** [g0, g1) is about to become private: unmap it first (before the conversion). */
  discard(g0: number, g1: number): void {
    if (!this.anyMapped(g0, g1)) return;
    // Huge leaves that straddle the range.
    const straddling: Array<[number, number]> = [];
    for (let b = Math.floor(g0 / P1G); b * P1G < g1; b++) {
      if (!this.g1.has(b)) continue;
      if (b * P1G >= g0 && (b + 1) * P1G <= g1) { this.g1.delete(b); this.unmaps++; continue; }
      straddling.push([b * P1G, (b + 1) * P1G]);
    }
    for (const k of [...keysInRange(this.m2, Math.floor(g0 / P2M), Math.ceil(g1 / P2M))]) {
      if (k * P2M >= g0 && (k + 1) * P2M <= g1) { this.m2.delete(k); this.unmaps++; continue; }
      straddling.push([k * P2M, (k + 1) * P2M]);
    }
    this.unmaps += this.unmap4kRange(g0, g1);
    for (const [s, e] of straddling) {
      if (this.mode === 'refresh') {
        // Atomic split: the leaf is replaced by a table of smaller leaves; nothing else unmapped.
        // A 1G leaf goes to 2M leaves, and each 2M the range only partly covers on to 4K.
        this.splits++;
        if (e - s === P1G) {
          const partial = new Set<number>();
          for (const edge of [g0, g1]) if (edge > s && edge < e && edge % P2M !== 0) partial.add(Math.floor(edge / P2M));
          this.splits += partial.size;
        }
      } else {
        // unmap-remap: the whole leaf goes, then what stays shared comes back: a window.
        this.unmaps++;
        for (const [a, z] of this.inflight) {
          if (a < e && z > s && !(a >= g0 && z <= g1)) this.counters.dma_gap_hits++;
        }
      }
      if (e - s === P1G) this.g1.delete(s / P1G);
      else this.m2.delete(s / P2M);
      if (s < g0) this.mapGreedy(s, g0, (e - s === P1G ? 2 : 1) as Level);
      if (g1 < e) this.mapGreedy(g1, e, (e - s === P1G ? 2 : 1) as Level);
    }
    this.iotlb_flushes++;
    if (this.pinned) this.repin(g0, g1);
  }

  private leafCount(g0: number, g1: number): number {
    let n = 0;
    for (let b = Math.floor(g0 / P1G); b * P1G < g1; b++) if (this.g1.has(b)) n++;
    for (const k of keysInRange(this.m2, Math.floor(g0 / P2M), Math.ceil(g1 / P2M))) if (k >= 0) n++;
    for (const k of keysInRange(this.k4, Math.floor(g0 / P2M), Math.ceil(g1 / P2M))) n += (this.k4.get(k) as Bitmap512).count;
    return n;
  }

  private removeAll(g0: number, g1: number): void {
    for (let b = Math.floor(g0 / P1G); b * P1G < g1; b++) this.g1.delete(b);
    for (const k of [...keysInRange(this.m2, Math.floor(g0 / P2M), Math.ceil(g1 / P2M))]) this.m2.delete(k);
    this.unmap4kRange(g0, g1);
  }

  /**
   * VFIO pins what it maps. Pins are kept per 2 MiB piece of guest memory, one per mapped run:
   * re-pinning a piece after a change costs at most 512 pages.
   */
  private repin(g0: number, g1: number): void {
    if (!this.pinned) return;
    for (let piece = Math.floor(g0 / P2M); piece * P2M < g1; piece++) {
      const old = this.pins.get(piece);
      const s = piece * P2M;
      const fresh: Array<[number, number, number]> = [];
      // Runs of mapped pages in this piece.
      let runStart = -1;
      for (let g = s; g <= s + P2M; g++) {
        const mapped = g < s + P2M && this.levelAt(g) !== 0;
        if (mapped && runStart < 0) runStart = g;
        if (!mapped && runStart >= 0) {
          fresh.push([runStart, g, -1]);
          runStart = -1;
        }
      }
      // Keep pins whose run is unchanged; unpin the rest; pin new runs.
      const keep = new Set<number>();
      for (const f of fresh) {
        const same = old?.find((o) => o[0] === f[0] && o[1] === f[1]);
        if (same !== undefined) {
          f[2] = same[2];
          keep.add(same[2]);
        }
      }
      for (const o of old ?? []) if (!keep.has(o[2])) this.host.unpin(o[2]);
      for (const f of fresh) {
        if (f[2] >= 0) continue;
        f[2] = this.host.pin(this.host.hvaOf(f[0] * 4096), (f[1] - f[0]) * 4096);
        this.counters.host_pins++;
      }
      if (fresh.length > 0) this.pins.set(piece, fresh);
      else this.pins.delete(piece);
    }
  }

  /** Drop every pin overlapping [g0, g1) (after EAGAIN); true if there was one. */
  dropPins(g0: number, g1: number): boolean {
    let dropped = false;
    for (let piece = Math.floor(g0 / P2M); piece * P2M < g1; piece++) {
      const old = this.pins.get(piece);
      if (old === undefined) continue;
      for (const o of old) this.host.unpin(o[2]);
      this.pins.delete(piece);
      dropped = true;
    }
    return dropped;
  }

  // ---- the device ----------------------------------------------------------------------------------

  /** The device DMAs into [g0, g1): every page needs an IOPTE. Returns false on an IOMMU fault. */
  dma(g0: number, g1: number): boolean {
    this.counters.dma_ops++;
    this.inflight.push([g0, g1]);
    if (this.inflight.length > this.maxInflight) this.inflight = this.inflight.slice(-this.maxInflight);
    for (let g = g0; g < g1; g++) {
      if (this.levelAt(g) === 0) {
        this.counters.dma_faults++;
        return false;
      }
    }
    return true;
  }

  /** The device completed everything in flight over [g0, g1) (the guest reclaims the buffer). */
  complete(g0: number, g1: number): void {
    this.inflight = this.inflight.filter(([a, z]) => z <= g0 || a >= g1);
  }
}
