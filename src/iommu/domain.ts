/**
 * An IOMMU domain that imports guest_memfd files (iommufd's IOMMU_IOAS_MAP_FILE, ecosystem.md C):
 * IOPTEs map IOVA pages to the file's shared pages at 4K, 2M or 1G, and the domain follows every
 * conversion and truncation through the GmemImporter notifier. Three importer designs:
 *
 *   'pin'          VFIO type1 today: long-term pins on 4K pages. A pinned page blocks conversion to
 *                  private (EAGAIN) until the VMM unmaps it; a punch leaves the device on the old,
 *                  still-pinned pages (stale but safe: never freed under the device).
 *   'unmap-remap'  a protective notifier, no pins: a conversion to private unmaps every IOPTE that
 *                  overlaps (a whole 1G IOPTE for one 4K page: a window where DMA to the neighbours
 *                  faults) and maps the still-shared pages back after; a punch revokes the area.
 *   'refresh'      Jason Gunthorpe's "refresh" verb: hitless — a huge IOPTE is split so that only
 *                  the converted pages leave; punched pages are replaced by the file's new pages.
 *
 * The IOPTE level follows the folio (a split folio maps at 4K) and the shareability (a mixed block
 * never maps huge), like KVM's max_order.
 */
import { assert } from '../lib/assert.js';
import { type Level, levelPages, PAGES_PER_1G, PAGES_PER_2M, type Pfn } from '../lib/types.js';
import type { GmemImporter } from '../gmem/consumer.js';
import type { GmemFile } from '../gmem/file.js';
import { type GmemInode, SHARED } from '../gmem/inode.js';
import type { PhysMem } from '../mm/memmap.js';
import { Stage2 } from '../kvm/stage2.js';
import { EFAULT, EINVAL, ENOMEM } from '../uapi/errno.js';
import { SyscallError } from '../uapi/errors.js';

export type ImportMode = 'pin' | 'unmap-remap' | 'refresh';

/** One file range mapped at an IOVA. */
export interface IommuArea {
  readonly file: GmemFile;
  /** File pages [start, end) at IOVA page iova_pfn. */
  readonly start: number;
  readonly end: number;
  readonly iova_pfn: number;
  /** Revoked by a protective notifier ('unmap-remap' after a punch): nothing is mapped any more. */
  revoked: boolean;
}

export class IommuDomain implements GmemImporter {
  /** IOVA page → pfn leaves (the same structure as stage-2: 4K tables, 2M/1G leaves). */
  readonly iopt = new Stage2();
  readonly areas: IommuArea[] = [];
  /** 'pin': pfn → pins this domain holds on it. */
  readonly pins = new Map<number, number>();
  /** Pages that were unmapped while still shared (the DMA window of 'unmap-remap'), per event. */
  window_pages = 0;
  dma_faults = 0;
  dma_bytes = 0;
  refreshes = 0;

  constructor(
    readonly id: number,
    readonly mode: ImportMode,
    private readonly phys: PhysMem,
    /** GUP needs an order-0 page: split the huge folio at `index` first (false: no vmemmap pages). */
    private readonly splitForPin: (inode: GmemInode, index: number) => boolean,
  ) {}

  // ---- mapping ---------------------------------------------------------------------------------

  /** IOMMU_IOAS_MAP_FILE: map file pages [start, end) at IOVA page iova_pfn; every page must be shared. */
  mapFile(file: GmemFile, start: number, end: number, iova_pfn: number): void {
    const inode = file.inode;
    const name = 'iommu map file';
    if (start < 0 || end > inode.nr_pages || start >= end) throw new SyscallError(EINVAL, name, 'range');
    for (const a of this.areas) {
      const a_end = a.iova_pfn + (a.end - a.start);
      if (iova_pfn < a_end && iova_pfn + (end - start) > a.iova_pfn) throw new SyscallError(EINVAL, name, 'IOVA in use');
    }
    const sh = inode.shareability;
    const shared = sh === null ? inode.init_shared : sh.allEqual(start, end, SHARED);
    if (!shared) throw new SyscallError(EFAULT, name, 'a page of the range is private');
    const area: IommuArea = { file, start, end, iova_pfn, revoked: false };
    if (!this.populate(area, start, end)) {
      this.unmapArea(area, start, end);
      throw new SyscallError(ENOMEM, name);
    }
    this.areas.push(area);
    inode.importers.add(this);
    file.fget(); // the domain holds the file, as a mapping does
  }

  /** Unmap an area and drop the file. */
  unmapFile(area_index: number): void {
    const a = this.areas[area_index];
    if (a === undefined) throw new SyscallError(EINVAL, 'iommu unmap', `no area ${area_index}`);
    this.unmapArea(a, a.start, a.end);
    this.areas.splice(area_index, 1);
    if (!this.areas.some((x) => x.file.inode === a.file.inode)) a.file.inode.importers.delete(this);
    a.file.fput();
  }

  /** Map the shared pages of [start, end) of `area` at the largest level each allows. */
  private populate(a: IommuArea, start: number, end: number): boolean {
    const inode = a.file.inode;
    const sh = inode.shareability;
    for (let i = start; i < end;) {
      if (sh !== null && sh.get(i) !== SHARED) {
        i++;
        continue;
      }
      const iova = a.iova_pfn + (i - a.start);
      if (this.iopt.lookup(iova) !== null) {
        i++;
        continue;
      }
      const p = inode.getPage(this.phys, i);
      if (p < 0) return false;
      if (this.mode === 'pin' && inode.huge_order > 0 && !this.splitForPin(inode, i)) return false;
      inode.preparePage(this.phys, i);
      const level = this.levelFor(a, i, end);
      const nr = levelPages(level);
      if (this.mode === 'pin') this.pin(p as Pfn);
      this.iopt.map(iova, p as Pfn, level, 0);
      i += nr;
    }
    return true;
  }

  /** The largest IOPTE for page i: pinned pages are 4K; else the folio, shareability, alignment. */
  private levelFor(a: IommuArea, i: number, end: number): Level {
    if (this.mode === 'pin') return 1;
    const inode = a.file.inode;
    const f = inode.pages.lookup(i);
    if (f === null || f.split === true) return 1;
    for (const [level, nr] of [[3, PAGES_PER_1G], [2, PAGES_PER_2M]] as const) {
      if (f.order < Math.log2(nr)) continue;
      if (i % nr !== 0 || i + nr > end || i + nr > a.end || (a.iova_pfn + (i - a.start)) % nr !== 0) continue;
      if (inode.shareability !== null && !inode.shareability.allEqual(i, i + nr, SHARED)) continue;
      return level;
    }
    return 1;
  }

  private pin(p: Pfn): void {
    this.phys.pinFolio(p);
    this.pins.set(p, (this.pins.get(p) ?? 0) + 1);
  }

  private unpin(p: Pfn): void {
    const n = this.pins.get(p);
    assert(n !== undefined && n > 0, () => `IOMMU unpin of pfn ${p} it does not pin`);
    if (n === 1) this.pins.delete(p);
    else this.pins.set(p, n - 1);
    this.phys.unpinFolio(p);
  }

  /** Remove the IOPTEs of file pages [start, end) of `a` (huge ones whole); returns the pages unmapped. */
  private unmapArea(a: IommuArea, start: number, end: number): number {
    const i0 = a.iova_pfn + (start - a.start);
    const i1 = a.iova_pfn + (end - a.start);
    let pages = 0;
    for (const leaf of this.leavesIn(i0, i1)) {
      const nr = levelPages(leaf.level);
      pages += nr;
      if (this.mode === 'pin') this.unpin(leaf.pfn);
    }
    this.iopt.zap(i0, i1, 'both');
    return pages;
  }

  /** The leaves overlapping IOVA pages [i0, i1): by lookup for short ranges, by walk for long ones. */
  private leavesIn(i0: number, i1: number): Array<{ gfn: number; pfn: Pfn; level: Level }> {
    const out: Array<{ gfn: number; pfn: Pfn; level: Level }> = [];
    if (i1 - i0 <= 4096) {
      let last = -1;
      for (let i = i0; i < i1; i++) {
        const l = this.iopt.lookup(i);
        if (l === null || l.gfn === last) continue;
        last = l.gfn;
        out.push(l);
        // Skip the rest of a huge leaf.
        if (l.level > 1) i = l.gfn + (l.level === 2 ? PAGES_PER_2M : PAGES_PER_1G) - 1;
      }
      return out;
    }
    for (const l of this.iopt.leaves()) {
      const nr = levelPages(l.level);
      if (l.gfn < i1 && l.gfn + nr > i0) out.push(l);
    }
    return out;
  }

  // ---- GmemImporter: the notifier --------------------------------------------------------------

  invalidate(inode: GmemInode, start: number, end: number, reason: 'to-private' | 'truncate' | 'restructure'): void {
    for (const a of this.areas) {
      if (a.file.inode !== inode || a.revoked) continue;
      const lo = Math.max(start, a.start);
      const hi = Math.min(end, a.end);
      if (lo >= hi) continue;
      if (this.mode === 'pin') {
        // Pins keep the pages: a conversion to private could not pass the refcount check, and a
        // punch leaves the device on the old pages (stale, never freed under it).
        continue;
      }
      const i0 = a.iova_pfn + (lo - a.start);
      const i1 = a.iova_pfn + (hi - a.start);
      if (reason === 'truncate' && this.mode === 'unmap-remap') {
        // Protective revoke of the whole area, when the punch takes pages the device maps: its
        // DMA faults from now on. A punch of pages it does not map (private ones) changes nothing.
        if (this.leavesIn(i0, i1).length === 0) continue;
        this.unmapArea(a, a.start, a.end);
        a.revoked = true;
        continue;
      }
      // Pages that stay shared but lose their (huge) IOPTE: the window, unless refresh is hitless.
      let outside = 0;
      for (const leaf of this.leavesIn(i0, i1)) {
        const nr = levelPages(leaf.level);
        outside += Math.max(0, i0 - leaf.gfn) + Math.max(0, leaf.gfn + nr - i1);
      }
      // Zap the leaves overlapping (a huge one goes whole), then put back what stays mapped.
      const first = this.leavesIn(i0, i1);
      const z0 = Math.min(i0, ...first.map((l) => l.gfn));
      const z1 = Math.max(i1, ...first.map((l) => l.gfn + (levelPages(l.level))));
      this.iopt.zap(z0, z1, 'both');
      if (this.mode === 'unmap-remap') this.window_pages += outside;
      else this.refreshes++;
      // Both put the neighbours back (refresh atomically, before anyone sees the gap).
      const f0 = a.start + (z0 - a.iova_pfn);
      const f1 = a.start + (z1 - a.iova_pfn);
      if (f0 < lo) this.populate(a, f0, lo);
      if (hi < f1) this.populate(a, hi, f1);
    }
  }

  refresh(inode: GmemInode, start: number, end: number, reason: 'to-shared' | 'truncate' | 'restructure'): void {
    for (const a of this.areas) {
      if (a.file.inode !== inode || a.revoked) continue;
      const lo = Math.max(start, a.start);
      const hi = Math.min(end, a.end);
      if (lo >= hi) continue;
      if (this.mode === 'pin' && reason !== 'to-shared') continue;
      if (this.mode === 'refresh' && reason === 'to-shared') {
        // Hitless re-merge: the huge blocks around the range that are whole and uniformly shared
        // again get their huge IOPTE back, replacing the 4K ones atomically.
        this.remerge(a, lo, hi);
        continue;
      }
      this.populate(a, lo, hi);
    }
  }

  private remerge(a: IommuArea, lo: number, hi: number): void {
    const inode = a.file.inode;
    const nr = inode.folio_pages;
    if (nr === 1) {
      this.populate(a, lo, hi);
      return;
    }
    const b0 = Math.max(a.start, Math.floor(lo / nr) * nr);
    const b1 = Math.min(a.end, Math.ceil(hi / nr) * nr);
    const i0 = a.iova_pfn + (b0 - a.start);
    const i1 = a.iova_pfn + (b1 - a.start);
    const before = this.iopt.mapped_pages;
    this.iopt.zap(i0, i1, 'both');
    this.populate(a, b0, b1);
    const after = this.iopt.mapped_pages;
    if (after['4k'] < before['4k']) this.refreshes++;
  }

  // ---- DMA -------------------------------------------------------------------------------------

  /**
   * A device access of `length` bytes at `iova` (a write when `data` is given). Pages with no IOPTE
   * fault (counted; the bytes there are not transferred). Returns the bytes read (zeros where it
   * faulted) and how many pages faulted.
   */
  dma(iova: number, length: number, data?: Uint8Array): { bytes: Uint8Array; faulted_pages: number } {
    const out = new Uint8Array(data === undefined ? length : 0);
    let faulted = 0;
    for (let done = 0; done < length;) {
      const a = iova + done;
      const off = a % 4096;
      const n = Math.min(4096 - off, length - done);
      const p = this.iopt.translate(Math.floor(a / 4096));
      if (p < 0) {
        faulted++;
      } else if (data !== undefined) {
        this.phys.contents.write(p as Pfn, off, data, done, n);
      } else {
        this.phys.contents.read(p as Pfn, off, out, done, n);
      }
      done += n;
    }
    if (faulted > 0) this.dma_faults += faulted;
    this.dma_bytes += length;
    return { bytes: out, faulted_pages: faulted };
  }

  /** Drop everything (domain freed). */
  destroy(): void {
    while (this.areas.length > 0) this.unmapFile(this.areas.length - 1);
  }
}
