/**
 * A page cache: file index → folio (head pfn), like the xarray in struct address_space.
 * Order-0 folios sit in 2 MiB blocks of Int32Array (pfn + 1, 0 = hole); a huge folio is one
 * entry in the map of its order. Range walks cost the blocks present, never the pages of the range.
 */
import { assert, ModelBug } from '../lib/assert.js';
import type { Pfn } from '../lib/types.js';
import { keysInRange } from '../lib/keys.js';

const BLOCK = 512;
const GIANT = 262144;

class Block {
  readonly pfns = new Int32Array(BLOCK);
  count = 0;
}

export interface CachedFolio {
  head: Pfn;
  /** File index of the folio's first page. */
  index: number;
  order: number;
  /**
   * A HugeTLB folio split into order-0 folios in place: one entry for the whole block (order is
   * the block's), the page at index i being head + (i - index).
   */
  split?: boolean;
}

export class PageCache {
  private readonly blocks = new Map<number, Block>();
  private readonly huge2m = new Map<number, number>();
  private readonly huge1g = new Map<number, number>();
  /** Keys of huge2m / huge1g entries that are split (their pages are order-0 folios). */
  private readonly split2m = new Set<number>();
  private readonly split1g = new Set<number>();
  /** Pages in the cache (sum of folio sizes): i_blocks for HugeTLB, model metric. */
  nr_pages = 0;
  nr_folios = 0;

  /** The folio containing `index`, or null. */
  lookup(index: number): CachedFolio | null {
    if (this.huge1g.size > 0) {
      const g = Math.floor(index / GIANT);
      const p = this.huge1g.get(g);
      if (p !== undefined) {
        if (this.split1g.has(g)) return { head: (p + index - g * GIANT) as Pfn, index, order: 0, split: true };
        return { head: p as Pfn, index: g * GIANT, order: 18 };
      }
    }
    const b = Math.floor(index / BLOCK);
    if (this.huge2m.size > 0) {
      const p = this.huge2m.get(b);
      if (p !== undefined) {
        if (this.split2m.has(b)) return { head: (p + index - b * BLOCK) as Pfn, index, order: 0, split: true };
        return { head: p as Pfn, index: b * BLOCK, order: 9 };
      }
    }
    const blk = this.blocks.get(b);
    if (blk === undefined) return null;
    const e = blk.pfns[index - b * BLOCK] as number;
    return e === 0 ? null : { head: (e - 1) as Pfn, index, order: 0 };
  }

  /** Fast path for order-0 lookups: the pfn at `index`, or -1 (huge folios included). */
  pfnAt(index: number): number {
    const b = Math.floor(index / BLOCK);
    if (this.huge2m.size === 0 && this.huge1g.size === 0) {
      const blk = this.blocks.get(b);
      if (blk === undefined) return -1;
      return (blk.pfns[index - b * BLOCK] as number) - 1;
    }
    const f = this.lookup(index);
    return f === null ? -1 : f.head + (index - f.index);
  }

  /** Bytes the model holds for this cache: 2 KiB per order-0 block, an entry per huge folio. */
  get heap_bytes(): number {
    return this.blocks.size * (BLOCK * 4 + 64) + (this.huge2m.size + this.huge1g.size) * 48;
  }

  insert(index: number, head: Pfn, order: number): void {
    if (this.lookup(index) !== null) throw new ModelBug(`page cache slot ${index} already filled`);
    if (order === 0) {
      const b = Math.floor(index / BLOCK);
      let blk = this.blocks.get(b);
      if (blk === undefined) {
        blk = new Block();
        this.blocks.set(b, blk);
      }
      blk.pfns[index - b * BLOCK] = head + 1;
      blk.count++;
    } else if (order === 9) {
      assert(index % BLOCK === 0, 'unaligned 2M folio');
      assert(!this.blocks.has(index / BLOCK), '2M folio over 4K folios');
      this.huge2m.set(index / BLOCK, head);
    } else if (order === 18) {
      assert(index % GIANT === 0, 'unaligned 1G folio');
      this.huge1g.set(index / GIANT, head);
    } else {
      assert(false, () => `unsupported folio order ${order}`);
    }
    this.nr_pages += 2 ** order;
    this.nr_folios++;
  }

  /** The huge entry (whole or split) whose block contains `index`, or null. */
  hugeEntry(index: number): { head: Pfn; index: number; order: number; split: boolean } | null {
    if (this.huge1g.size > 0) {
      const g = Math.floor(index / GIANT);
      const p = this.huge1g.get(g);
      if (p !== undefined) return { head: p as Pfn, index: g * GIANT, order: 18, split: this.split1g.has(g) };
    }
    if (this.huge2m.size > 0) {
      const b = Math.floor(index / BLOCK);
      const p = this.huge2m.get(b);
      if (p !== undefined) return { head: p as Pfn, index: b * BLOCK, order: 9, split: this.split2m.has(b) };
    }
    return null;
  }

  /** Record that the huge folio at `index` was split in place (or merged back, split = false). */
  setSplit(index: number, order: number, split: boolean): void {
    const set = order === 18 ? this.split1g : this.split2m;
    const key = order === 18 ? index / GIANT : index / BLOCK;
    assert((order === 18 ? this.huge1g : this.huge2m).has(key), () => `no huge folio at ${index}`);
    if (split) set.add(key);
    else set.delete(key);
  }

  /** Remove the folio whose first page is at `index`. */
  remove(index: number, order: number): void {
    if (order === 0) {
      const b = Math.floor(index / BLOCK);
      const blk = this.blocks.get(b);
      assert(blk !== undefined && blk.pfns[index - b * BLOCK] !== 0, () => `no folio at ${index}`);
      blk.pfns[index - b * BLOCK] = 0;
      if (--blk.count === 0) this.blocks.delete(b);
    } else if (order === 9) {
      assert(this.huge2m.delete(index / BLOCK), () => `no 2M folio at ${index}`);
      this.split2m.delete(index / BLOCK);
    } else {
      assert(this.huge1g.delete(index / GIANT), () => `no 1G folio at ${index}`);
      this.split1g.delete(index / GIANT);
    }
    this.nr_pages -= 2 ** order;
    this.nr_folios--;
  }

  /**
   * fallocate's walk: for every index of [start, end) without a folio, `alloc(index)` gives an
   * order-0 folio (pfn) to insert, or -1 to stop (ENOMEM). Returns false if it stopped. Indices
   * inside huge folios are skipped. Cost: the blocks of the range plus the pages allocated.
   */
  populateRange(start: number, end: number, alloc: (index: number) => number): boolean {
    for (let b = Math.floor(start / BLOCK); b * BLOCK < end; b++) {
      if (this.huge2m.has(b) || (this.huge1g.size > 0 && this.huge1g.has(Math.floor((b * BLOCK) / GIANT)))) continue;
      let blk = this.blocks.get(b);
      const lo = Math.max(start, b * BLOCK) - b * BLOCK;
      const hi = Math.min(end, (b + 1) * BLOCK) - b * BLOCK;
      if (blk === undefined) {
        blk = new Block();
        this.blocks.set(b, blk);
      }
      const pfns = blk.pfns;
      for (let i = lo; i < hi; i++) {
        if (pfns[i] !== 0) continue;
        const p = alloc(b * BLOCK + i);
        if (p < 0) {
          if (blk.count === 0) this.blocks.delete(b);
          return false;
        }
        pfns[i] = p + 1;
        blk.count++;
        this.nr_pages++;
        this.nr_folios++;
      }
      if (blk.count === 0) this.blocks.delete(b);
    }
    return true;
  }

  /**
   * Truncate's walk: remove every folio that starts in [start, end) and give it to `release`.
   * Order-0 folios are taken straight from the blocks, with no per-page allocation.
   */
  removeRange(start: number, end: number, release: (head: Pfn, index: number, order: number) => void): void {
    if (start >= end || this.nr_folios === 0) return;
    if (this.huge1g.size > 0 || this.huge2m.size > 0) {
      for (const f of this.folios(start, end)) {
        if (f.order === 0) continue;
        // Callers truncate HugeTLB files in whole blocks (partial blocks are zeroed instead).
        assert(f.index >= start && f.index + 2 ** f.order <= end, () => `partial truncation of the huge folio at ${f.index}`);
        this.remove(f.index, f.order);
        release(f.head, f.index, f.order);
      }
    }
    for (const key of keysInRange(this.blocks, Math.floor(start / BLOCK), Math.ceil(end / BLOCK))) {
      const blk = this.blocks.get(key) as Block;
      const lo = Math.max(start, key * BLOCK) - key * BLOCK;
      const hi = Math.min(end, (key + 1) * BLOCK) - key * BLOCK;
      const pfns = blk.pfns;
      for (let i = lo; i < hi && blk.count > 0; i++) {
        const e = pfns[i] as number;
        if (e === 0) continue;
        pfns[i] = 0;
        blk.count--;
        this.nr_pages--;
        this.nr_folios--;
        release((e - 1) as Pfn, key * BLOCK + i, 0);
      }
      if (blk.count === 0) this.blocks.delete(key);
    }
  }

  /**
   * Every folio overlapping [start, end), ascending by index. The callback may remove the folio
   * it is given (and only that one).
   */
  forEachInRange(start: number, end: number, cb: (f: CachedFolio) => void): void {
    if (start >= end || this.nr_folios === 0) return;
    const out: CachedFolio[] = [];
    this.collect(start, end, out);
    for (const f of out) cb(f);
  }

  /** The folios overlapping [start, end), ascending. */
  folios(start: number, end: number): CachedFolio[] {
    const out: CachedFolio[] = [];
    if (start < end && this.nr_folios > 0) this.collect(start, end, out);
    return out;
  }

  private collect(start: number, end: number, out: CachedFolio[]): void {
    for (const key of keysInRange(this.huge1g, Math.floor(start / GIANT), Math.ceil(end / GIANT))) {
      out.push({ head: this.huge1g.get(key) as Pfn, index: key * GIANT, order: 18, split: this.split1g.has(key) });
    }
    const b0 = Math.floor(start / BLOCK);
    const b1 = Math.ceil(end / BLOCK);
    for (const key of keysInRange(this.huge2m, b0, b1)) {
      out.push({ head: this.huge2m.get(key) as Pfn, index: key * BLOCK, order: 9, split: this.split2m.has(key) });
    }
    for (const key of keysInRange(this.blocks, b0, b1)) {
      const blk = this.blocks.get(key) as Block;
      const lo = Math.max(start, key * BLOCK) - key * BLOCK;
      const hi = Math.min(end, (key + 1) * BLOCK) - key * BLOCK;
      for (let i = lo; i < hi; i++) {
        const e = blk.pfns[i] as number;
        if (e !== 0) out.push({ head: (e - 1) as Pfn, index: key * BLOCK + i, order: 0 });
      }
    }
    if (this.huge1g.size > 0 || this.huge2m.size > 0) out.sort((a, b) => a.index - b.index);
  }
}
