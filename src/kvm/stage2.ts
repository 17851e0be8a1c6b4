/**
 * Stage-2 (TDP / NPT / EPT) page tables of one VM: gfn → pfn leaves at 4K, 2M or 1G, each
 * marked private or shared. A 4K table covers 512 gfns (Int32Array pfn + 1); a huge leaf is one
 * map entry. Zapping [s, e) visits only the tables and leaves present in the range.
 */
import { assert } from '../lib/assert.js';
import { type Level, PAGES_PER_1G, PAGES_PER_2M, type Pfn } from '../lib/types.js';
import { keysInRange } from '../lib/keys.js';
import type { InvalidateFilter } from '../gmem/consumer.js';

const TABLE = 512;
export const SPTE_PRIVATE = 1;
/** The leaf maps a guest_memfd page (else a page found through the memslot's hva). */
export const SPTE_GMEM = 2;

class Table {
  readonly pfns = new Int32Array(TABLE);
  readonly flags = new Uint8Array(TABLE);
  count = 0;
}

interface HugeLeaf {
  pfn: Pfn;
  flags: number;
}

export interface Leaf {
  gfn: number;
  pfn: Pfn;
  level: Level;
  flags: number;
}

export class Stage2 {
  private readonly tables = new Map<number, Table>();
  private readonly leaves2m = new Map<number, HugeLeaf>();
  private readonly leaves1g = new Map<number, HugeLeaf>();
  /** Pages mapped at each level (counted in 4K pages). */
  nr_4k = 0;
  nr_2m_leaves = 0;
  nr_1g_leaves = 0;
  /** Remote TLB flushes requested by zaps that removed something. */
  nr_tlb_flushes = 0;
  nr_zapped_leaves = 0;
  /** Huge leaves demoted in place (split at a range edge). */
  nr_demotions = 0;

  /** The leaf mapping `gfn`, or null. */
  lookup(gfn: number): Leaf | null {
    if (this.leaves1g.size > 0) {
      const k = Math.floor(gfn / PAGES_PER_1G);
      const l = this.leaves1g.get(k);
      if (l !== undefined) return { gfn: k * PAGES_PER_1G, pfn: l.pfn, level: 3, flags: l.flags };
    }
    const k2 = Math.floor(gfn / PAGES_PER_2M);
    if (this.leaves2m.size > 0) {
      const l = this.leaves2m.get(k2);
      if (l !== undefined) return { gfn: k2 * PAGES_PER_2M, pfn: l.pfn, level: 2, flags: l.flags };
    }
    const t = this.tables.get(k2);
    if (t === undefined) return null;
    const i = gfn - k2 * TABLE;
    const e = t.pfns[i] as number;
    return e === 0 ? null : { gfn, pfn: (e - 1) as Pfn, level: 1, flags: t.flags[i] as number };
  }

  /** The host pfn backing `gfn` through the mapping, or -1. */
  translate(gfn: number): number {
    const l = this.lookup(gfn);
    return l === null ? -1 : l.pfn + (gfn - l.gfn);
  }

  map(gfn: number, p: Pfn, level: Level, flags: number): void {
    assert(this.lookup(gfn) === null, () => `stage-2 leaf at gfn ${gfn} already present`);
    if (level === 1) {
      const key = Math.floor(gfn / TABLE);
      let t = this.tables.get(key);
      if (t === undefined) {
        t = new Table();
        this.tables.set(key, t);
      }
      t.pfns[gfn - key * TABLE] = p + 1;
      t.flags[gfn - key * TABLE] = flags;
      t.count++;
      this.nr_4k++;
    } else if (level === 2) {
      assert(gfn % PAGES_PER_2M === 0 && p % PAGES_PER_2M === 0, '2M leaf not aligned');
      assert(!this.tables.has(gfn / PAGES_PER_2M), '2M leaf over a 4K table');
      this.leaves2m.set(gfn / PAGES_PER_2M, { pfn: p, flags });
      this.nr_2m_leaves++;
    } else {
      assert(gfn % PAGES_PER_1G === 0 && p % PAGES_PER_1G === 0, '1G leaf not aligned');
      this.leaves1g.set(gfn / PAGES_PER_1G, { pfn: p, flags });
      this.nr_1g_leaves++;
    }
  }

  /**
   * Zap every leaf overlapping [gfn_start, gfn_end) selected by `filter`; a huge leaf that
   * overlaps is removed whole. Returns the number of leaves removed (a flush follows if > 0).
   */
  zap(gfn_start: number, gfn_end: number, filter: InvalidateFilter): number {
    if (gfn_start >= gfn_end) return 0;
    let n = 0;
    const want = (flags: number): boolean =>
      filter === 'both' || (filter === 'private') === ((flags & SPTE_PRIVATE) !== 0);
    for (const k of keysInRange(this.leaves1g, Math.floor(gfn_start / PAGES_PER_1G), Math.ceil(gfn_end / PAGES_PER_1G))) {
      if (!want((this.leaves1g.get(k) as HugeLeaf).flags)) continue;
      this.leaves1g.delete(k);
      this.nr_1g_leaves--;
      n++;
    }
    const k0 = Math.floor(gfn_start / TABLE);
    const k1 = Math.ceil(gfn_end / TABLE);
    for (const k of keysInRange(this.leaves2m, k0, k1)) {
      if (!want((this.leaves2m.get(k) as HugeLeaf).flags)) continue;
      this.leaves2m.delete(k);
      this.nr_2m_leaves--;
      n++;
    }
    for (const k of keysInRange(this.tables, k0, k1)) {
      const t = this.tables.get(k) as Table;
      const lo = Math.max(gfn_start, k * TABLE) - k * TABLE;
      const hi = Math.min(gfn_end, (k + 1) * TABLE) - k * TABLE;
      for (let i = lo; i < hi; i++) {
        if (t.pfns[i] === 0 || !want(t.flags[i] as number)) continue;
        t.pfns[i] = 0;
        t.flags[i] = 0;
        t.count--;
        this.nr_4k--;
        n++;
      }
      if (t.count === 0) this.tables.delete(k);
    }
    if (n > 0) {
      this.nr_tlb_flushes++;
      this.nr_zapped_leaves += n;
    }
    return n;
  }

  /** Replace the 1G leaf at key `g` by 512 2M leaves mapping the same pages. */
  private demote1g(g: number, l: HugeLeaf): void {
    this.leaves1g.delete(g);
    this.nr_1g_leaves--;
    for (let i = 0; i < 512; i++) {
      this.leaves2m.set(g * 512 + i, { pfn: (l.pfn + i * PAGES_PER_2M) as Pfn, flags: l.flags });
      this.nr_2m_leaves++;
    }
    this.nr_demotions++;
  }

  /** Replace the 2M leaf at key `b` by 512 4K leaves mapping the same pages. */
  private demote2m(b: number, l: HugeLeaf): void {
    this.leaves2m.delete(b);
    this.nr_2m_leaves--;
    const t = new Table();
    for (let i = 0; i < TABLE; i++) {
      t.pfns[i] = l.pfn + i + 1;
      t.flags[i] = l.flags;
    }
    t.count = TABLE;
    this.tables.set(b, t);
    this.nr_4k += TABLE;
    this.nr_demotions++;
  }

  /**
   * Demote the huge leaves (selected by `filter`) that cross an edge of [gfn_start, gfn_end), so that
   * a following zap of exactly that range leaves their other pages mapped (TDX's split of
   * cross-boundary S-EPT leaves: BLOCK/TRACK/DEMOTE). A 1G leaf becomes 2M leaves, a crossing 2M
   * leaf 4K leaves. Returns the 2M blocks (gfn / 512) that got 4K leaves.
   */
  splitEdges(gfn_start: number, gfn_end: number, filter: InvalidateFilter): number[] {
    const demoted: number[] = [];
    const want = (flags: number): boolean =>
      filter === 'both' || (filter === 'private') === ((flags & SPTE_PRIVATE) !== 0);
    for (const edge of [gfn_start, gfn_end]) {
      const g = Math.floor(edge / PAGES_PER_1G);
      const l1 = this.leaves1g.get(g);
      if (l1 !== undefined && edge % PAGES_PER_1G !== 0 && want(l1.flags)) this.demote1g(g, l1);
      const b = Math.floor(edge / PAGES_PER_2M);
      const l2 = this.leaves2m.get(b);
      if (l2 !== undefined && edge % PAGES_PER_2M !== 0 && want(l2.flags)) {
        this.demote2m(b, l2);
        demoted.push(b);
      }
    }
    return demoted;
  }

  /**
   * A folio under [gfn_start, gfn_end) was split: no leaf may be larger than 4K there any more.
   * `demote`: split huge leaves into 4K leaves in place (TDX: S-EPT DEMOTE); otherwise zap them.
   * 4K leaves stay. Returns the 2M blocks (gfn / 512) that got 4K leaves by demotion.
   */
  dropHuge(gfn_start: number, gfn_end: number, demote: boolean): number[] {
    const out: number[] = [];
    const zapped_before = this.nr_zapped_leaves;
    for (const k of keysInRange(this.leaves1g, Math.floor(gfn_start / PAGES_PER_1G), Math.ceil(gfn_end / PAGES_PER_1G))) {
      const l = this.leaves1g.get(k) as HugeLeaf;
      if (demote) {
        this.demote1g(k, l);
        continue;
      }
      this.leaves1g.delete(k);
      this.nr_1g_leaves--;
      this.nr_zapped_leaves++;
    }
    for (const k of keysInRange(this.leaves2m, Math.floor(gfn_start / TABLE), Math.ceil(gfn_end / TABLE))) {
      const l = this.leaves2m.get(k) as HugeLeaf;
      if (demote) {
        this.demote2m(k, l);
        out.push(k);
        continue;
      }
      this.leaves2m.delete(k);
      this.nr_2m_leaves--;
      this.nr_zapped_leaves++;
    }
    if (this.nr_zapped_leaves > zapped_before) this.nr_tlb_flushes++;
    return out;
  }

  /** Every leaf, ascending by gfn (checker, metrics). */
  *leaves(): IterableIterator<Leaf> {
    const all: Leaf[] = [];
    for (const [k, l] of this.leaves1g) all.push({ gfn: k * PAGES_PER_1G, pfn: l.pfn, level: 3, flags: l.flags });
    for (const [k, l] of this.leaves2m) all.push({ gfn: k * PAGES_PER_2M, pfn: l.pfn, level: 2, flags: l.flags });
    for (const [k, t] of this.tables) {
      for (let i = 0; i < TABLE; i++) {
        const e = t.pfns[i] as number;
        if (e !== 0) all.push({ gfn: k * TABLE + i, pfn: (e - 1) as Pfn, level: 1, flags: t.flags[i] as number });
      }
    }
    all.sort((a, b) => a.gfn - b.gfn);
    yield* all;
  }

  /** Bytes the model holds for these tables. */
  get heap_bytes(): number {
    return this.tables.size * (TABLE * 5 + 64) + (this.leaves2m.size + this.leaves1g.size) * 48;
  }

  /** Guest memory mapped, in 4K pages, per level. */
  get mapped_pages(): { '4k': number; '2m': number; '1g': number } {
    return { '4k': this.nr_4k, '2m': this.nr_2m_leaves * PAGES_PER_2M, '1g': this.nr_1g_leaves * PAGES_PER_1G };
  }
}
