/**
 * HugeTLB: the hstate pools (2 MiB and 1 GiB), per-file subpools that reserve a whole file at
 * create, and the memmap of the pool frames, including folios split to 4K and merged back.
 *
 * A pool page is one record (HugePage). A whole huge folio keeps its state in the record. A
 * split folio keeps per-4K state only where a subpage differs from the default "in the page cache
 * with one reference" (a mapped, pinned, prepared or freed subpage): splitting a 1 GiB folio
 * costs O(1), not 262,144 writes. The vmemmap (HVO) cost of a split — 7 pages per 2 MiB, 4,095
 * per 1 GiB — is taken from the page allocator as a counter and given back on merge.
 *
 * Pool accounting follows mm/hugetlb.c as the guest_memfd HugeTLB series uses it:
 *   create file of N pages: subpool min = max = N, hstate resv += N (ENOMEM if free - resv < N);
 *   allocate a folio:       subpool used++, hstate free--, resv-- (the reservation is consumed);
 *   free a folio:           hstate free++, and while the subpool lives: used--, resv++;
 *   destroy the subpool:    resv -= N - used (reservations nobody used).
 */
import { assert, ModelBug } from '../lib/assert.js';
import type { Pfn } from '../lib/types.js';

export type HugeSize = '2M' | '1G';
export const HUGE_ORDER: Readonly<Record<HugeSize, number>> = { '2M': 9, '1G': 18 };
/** vmemmap pages restored by a split (HVO keeps 1 of the 8 / 4,096 struct-page pages). */
export const VMEMMAP_PAGES_PER_SPLIT: Readonly<Record<number, number>> = { 9: 7, 18: 4095 };

export class Hstate {
  nr = 0;
  free = 0;
  resv = 0;
  readonly surplus = 0;
  /** Free pool pages, by head pfn (LIFO; deterministic). */
  readonly free_list: number[] = [];
  constructor(readonly size: HugeSize, readonly order: number, readonly base_pfn: number, readonly end_pfn: number) {}
  get nr_pages_per(): number {
    return 2 ** this.order;
  }
  get sysfs_dir(): string {
    return `hugepages-${(2 ** this.order) * 4}kB`;
  }
}

export class Subpool {
  used = 0;
  alive = true;
  constructor(readonly hstate: Hstate, readonly max: number) {}
}

const FREE = 0;
const WHOLE = 1;
const SPLIT = 2;

/** Per-subpage state of a split folio where it differs from the default. */
interface SubPage {
  allocated: boolean;
  refcount: number;
  mapcount: number;
  pincount: number;
  flags: number;
  owner: number;
  index: number;
}

class HugePage {
  state = FREE;
  refcount = 0;
  pincount = 0;
  flags = 0;
  owner = 0;
  index = 0;
  subpool: Subpool | null = null;
  /** SPLIT: overrides by subpage offset, the default for the others, and how many are allocated. */
  sub: Map<number, SubPage> | null = null;
  default_in_cache = true;
  nr_alive = 0;
  constructor(readonly head: number, readonly hstate: Hstate) {}
  get nr(): number {
    return 2 ** this.hstate.order;
  }
}

/** What the owner of the page allocator lends HugeTLB for vmemmap pages. */
export interface FrameLender {
  reserveFrames(n: number): boolean;
  releaseFrames(n: number): void;
  zeroContents(p: Pfn, nr_pages: number): void;
}

export class HugeTlb {
  readonly hstates: Hstate[] = [];
  private readonly pages = new Map<number, HugePage>();
  splits = 0;
  merges = 0;
  vmemmap_allocated = 0;
  vmemmap_freed = 0;
  vmemmap_in_use = 0;
  readonly base_pfn: number;

  /** Carve the pools from the top of memory: 1 GiB pages highest, 2 MiB below. */
  constructor(nr_pages: number, config: Partial<Record<HugeSize, number>>, private readonly lender: FrameLender) {
    let top = nr_pages;
    for (const size of ['1G', '2M'] as const) {
      const count = config[size] ?? 0;
      assert(Number.isSafeInteger(count) && count >= 0, () => `hugepages.${size} must be a non-negative integer`);
      const order = HUGE_ORDER[size];
      const nr = 2 ** order;
      // An empty pool takes no frames (and no alignment gap).
      const end = count === 0 ? top : Math.floor(top / nr) * nr;
      const base = end - count * nr;
      if (base < 0) throw new TypeError(`hugepages: ${count} × ${size} does not fit in host memory`);
      const h = new Hstate(size, order, base, end);
      h.nr = count;
      h.free = count;
      for (let i = count - 1; i >= 0; i--) {
        const head = base + i * nr;
        h.free_list.push(head);
        this.pages.set(head, new HugePage(head, h));
      }
      this.hstates.push(h);
      top = base;
    }
    this.base_pfn = top;
  }

  hstate(order: number): Hstate | undefined {
    return this.hstates.find((h) => h.order === order);
  }

  contains(p: number): boolean {
    return p >= this.base_pfn;
  }

  private recOf(p: number): HugePage {
    for (const h of this.hstates) {
      if (p >= h.base_pfn && p < h.end_pfn) {
        const nr = 2 ** h.order;
        const rec = this.pages.get(h.base_pfn + Math.floor((p - h.base_pfn) / nr) * nr);
        if (rec !== undefined) return rec;
      }
    }
    throw new ModelBug(`pfn ${p} is not a HugeTLB pool frame`);
  }

  // ---- subpools and allocation ------------------------------------------------------------------

  /** hugepage_new_subpool with min_size = max_size = nr: reserve the whole file, or null (ENOMEM). */
  createSubpool(order: number, nr_huge: number): Subpool | null {
    const h = this.hstate(order);
    if (h === undefined || h.free - h.resv < nr_huge) return null;
    h.resv += nr_huge;
    return new Subpool(h, nr_huge);
  }

  /** The file is gone: reservations nobody used are released; live folios return as they free. */
  destroySubpool(sp: Subpool): void {
    assert(sp.alive, 'subpool destroyed twice');
    sp.hstate.resv -= sp.max - sp.used;
    sp.alive = false;
  }

  /** A whole huge folio with one reference, from the subpool's reservation; -1 if the subpool is used up. */
  allocFolio(sp: Subpool): number {
    if (!sp.alive || sp.used >= sp.max) return -1;
    const h = sp.hstate;
    const head = h.free_list.pop();
    assert(head !== undefined, () => `${h.size} pool empty despite a reservation`);
    const rec = this.pages.get(head) as HugePage;
    h.free--;
    h.resv--;
    sp.used++;
    rec.state = WHOLE;
    rec.refcount = 1;
    rec.pincount = 0;
    rec.flags = 0;
    rec.owner = 0;
    rec.index = 0;
    rec.subpool = sp;
    return head;
  }

  private returnToPool(rec: HugePage): void {
    const h = rec.hstate;
    this.lender.zeroContents(rec.head as Pfn, rec.nr);
    if (rec.state === SPLIT) {
      // Merge on free: the subpages are reassembled and HVO applies again.
      this.releaseVmemmap(rec.hstate.order);
    }
    rec.state = FREE;
    rec.sub = null;
    rec.refcount = 0;
    rec.flags = 0;
    rec.owner = 0;
    h.free_list.push(rec.head);
    h.free++;
    const sp = rec.subpool;
    rec.subpool = null;
    if (sp !== null) {
      sp.used--;
      if (sp.alive) h.resv++;
    }
  }

  // ---- split and merge ---------------------------------------------------------------------------

  isSplit(head: number): boolean {
    return this.recOf(head).state === SPLIT;
  }

  /** A split needs the folio frozen at its page-cache references (no transient user). */
  splittable(head: Pfn): boolean {
    const rec = this.recOf(head);
    return rec.state === WHOLE && rec.refcount === rec.nr;
  }

  /**
   * Split a whole folio into order-0 folios in place; false when the vmemmap pages cannot be had,
   * or when a transient reference holds the folio (the kernel's freeze loop spins until it drops;
   * the model, one CPU, cannot wait for another, so the caller fails cleanly instead).
   */
  split(head: Pfn): boolean {
    const rec = this.recOf(head);
    assert(rec.state === WHOLE && rec.head === head, () => `split of pfn ${head}, not a whole huge folio`);
    if (rec.refcount !== rec.nr) return false;
    const cost = VMEMMAP_PAGES_PER_SPLIT[rec.hstate.order] as number;
    if (!this.lender.reserveFrames(cost)) return false;
    this.vmemmap_allocated += cost;
    this.vmemmap_in_use += cost;
    this.splits++;
    rec.state = SPLIT;
    rec.sub = new Map();
    rec.default_in_cache = true;
    rec.nr_alive = rec.nr;
    return true;
  }

  /** True when every subpage holds only its page-cache reference (a merge may proceed). */
  mergeable(head: Pfn): boolean {
    const rec = this.recOf(head);
    if (rec.state !== SPLIT || !rec.default_in_cache || rec.nr_alive !== rec.nr) return false;
    for (const [off, s] of rec.sub as Map<number, SubPage>) {
      if (!s.allocated || s.refcount !== 1 || s.mapcount !== 0 || s.pincount !== 0 || s.owner !== rec.owner ||
        s.index !== rec.index + off) return false;
    }
    return true;
  }

  /** The first subpage (offset) holding more than its page-cache reference, or -1. */
  firstBusySubpage(head: Pfn, off_lo: number, off_hi: number): number {
    const rec = this.recOf(head);
    let first = -1;
    for (const [off, s] of rec.sub as Map<number, SubPage>) {
      if (off < off_lo || off >= off_hi) continue;
      if (s.allocated && s.refcount !== 1 && (first < 0 || off < first)) first = off;
    }
    return first;
  }

  /** Merge a split folio back into one huge folio (caller checked mergeable). */
  merge(head: Pfn): void {
    const rec = this.recOf(head);
    assert(this.mergeable(head), () => `merge of pfn ${head} with busy subpages`);
    this.releaseVmemmap(rec.hstate.order);
    this.merges++;
    rec.state = WHOLE;
    rec.sub = null;
    rec.refcount = rec.nr;
    // Every subpage is zeroed or prepared: the merged folio is uptodate (PG_uptodate = 1).
    rec.flags |= 1;
  }

  private releaseVmemmap(order: number): void {
    const cost = VMEMMAP_PAGES_PER_SPLIT[order] as number;
    this.lender.releaseFrames(cost);
    this.vmemmap_freed += cost;
    this.vmemmap_in_use -= cost;
  }

  // ---- memmap of pool frames ---------------------------------------------------------------------

  private subOf(rec: HugePage, p: number, create: boolean): SubPage {
    const off = p - rec.head;
    const m = rec.sub as Map<number, SubPage>;
    let s = m.get(off);
    if (s !== undefined) return s;
    const d: SubPage = rec.default_in_cache
      ? { allocated: true, refcount: 1, mapcount: 0, pincount: 0, flags: rec.flags, owner: rec.owner, index: rec.index + off }
      : { allocated: false, refcount: 0, mapcount: 0, pincount: 0, flags: 0, owner: 0, index: 0 };
    if (create) m.set(off, d);
    s = d;
    return s;
  }

  /** Drop an override that is back to the default, to keep split state sparse. */
  private normalize(rec: HugePage, p: number, s: SubPage): void {
    const off = p - rec.head;
    if (rec.default_in_cache && s.allocated && s.refcount === 1 && s.mapcount === 0 && s.pincount === 0 &&
      s.flags === rec.flags && s.owner === rec.owner && s.index === rec.index + off) {
      (rec.sub as Map<number, SubPage>).delete(off);
    }
  }

  isAllocated(p: number): boolean {
    const rec = this.recOf(p);
    if (rec.state === WHOLE) return p === rec.head;
    if (rec.state === SPLIT) return this.subOf(rec, p, false).allocated;
    return false;
  }

  order(p: number): number {
    const rec = this.recOf(p);
    return rec.state === WHOLE ? rec.hstate.order : 0;
  }

  field(p: number, f: 'refcount' | 'mapcount' | 'pincount' | 'flags' | 'owner' | 'index'): number {
    const rec = this.recOf(p);
    if (rec.state === SPLIT) return this.subOf(rec, p, false)[f];
    if (f === 'mapcount') return 0;
    return rec[f];
  }

  /** Set a memmap field (flags, owner, index) of a folio head or a split subpage. */
  setField(p: number, f: 'flags' | 'owner' | 'index', v: number): void {
    const rec = this.recOf(p);
    if (rec.state === SPLIT) {
      const s = this.subOf(rec, p, true);
      s[f] = v;
      this.normalize(rec, p, s);
      return;
    }
    assert(rec.state === WHOLE && p === rec.head, () => `memmap write to a tail or free pfn ${p}`);
    rec[f] = v;
  }

  /** Add to the reference (and map/pin) counts; returns the new refcount. Frees at 0. */
  adjust(p: number, d_ref: number, d_map: number, d_pin: number): number {
    const rec = this.recOf(p);
    if (rec.state === SPLIT) {
      const s = this.subOf(rec, p, true);
      s.refcount += d_ref;
      s.mapcount += d_map;
      s.pincount += d_pin;
      if (s.refcount < 0 || s.mapcount < 0 || s.pincount < 0) throw new ModelBug(`count underflow on pfn ${p}`);
      if (s.refcount === 0) {
        if (s.mapcount !== 0 || s.pincount !== 0) throw new ModelBug(`freeing mapped or pinned pfn ${p}`);
        this.lender.zeroContents(p as Pfn, 1);
        s.allocated = false;
        s.flags = 0;
        s.owner = 0;
        if (--rec.nr_alive === 0) this.returnToPool(rec);
        return 0;
      }
      this.normalize(rec, p, s);
      return s.refcount;
    }
    if (rec.state !== WHOLE || p !== rec.head) throw new ModelBug(`reference change on a tail or free pfn ${p}`);
    if (d_map !== 0) throw new ModelBug(`user mapping of a whole huge folio at pfn ${p}`);
    rec.refcount += d_ref;
    rec.pincount += d_pin;
    if (rec.refcount < 0) throw new ModelBug(`folio_put underflow on pfn ${p}`);
    if (rec.refcount === 0) this.returnToPool(rec);
    return rec.refcount;
  }

  /**
   * Truncation of a split folio from its page cache: every subpage drops its cache reference.
   * Subpages nobody else holds are freed at once (in bulk); the rest free when their last user lets go.
   */
  evictSplit(head: Pfn): void {
    const rec = this.recOf(head);
    assert(rec.state === SPLIT && rec.default_in_cache, () => `evictSplit of pfn ${head}`);
    const m = rec.sub as Map<number, SubPage>;
    // Defaults (no override) hold only the cache reference: freed now, with their contents.
    const alive_overrides = [...m.entries()].filter(([, s]) => s.allocated).sort((a, b) => a[0] - b[0]);
    let cursor = 0;
    for (const [off] of alive_overrides) {
      if (off > cursor) this.lender.zeroContents((head + cursor) as Pfn, off - cursor);
      cursor = off + 1;
    }
    if (cursor < rec.nr) this.lender.zeroContents((head + cursor) as Pfn, rec.nr - cursor);
    // Overrides (alive or already freed) are accounted on their own; defaults are all allocated.
    rec.nr_alive -= rec.nr - m.size;
    rec.default_in_cache = false;
    for (const [off, s] of alive_overrides) {
      s.owner = 0;
      s.index = 0;
      s.refcount -= 1;
      if (s.refcount === 0) {
        if (s.mapcount !== 0 || s.pincount !== 0) throw new ModelBug(`freeing mapped or pinned pfn ${head + off}`);
        s.allocated = false;
        rec.nr_alive--;
      }
    }
    if (rec.nr_alive === 0) this.returnToPool(rec);
  }

  /** Every allocated folio head or split subpage with state of its own, ascending (checker). */
  *allocated(): IterableIterator<{ p: Pfn; split_default: boolean }> {
    const heads = [...this.pages.keys()].sort((a, b) => a - b);
    for (const head of heads) {
      const rec = this.pages.get(head) as HugePage;
      if (rec.state === WHOLE) yield { p: head as Pfn, split_default: false };
      if (rec.state === SPLIT) {
        const offs = [...(rec.sub as Map<number, SubPage>).entries()].filter(([, s]) => s.allocated).map(([o]) => o);
        offs.sort((a, b) => a - b);
        for (const off of offs) yield { p: (head + off) as Pfn, split_default: false };
      }
    }
  }

  /** Split folios and their default-state subpage count (checker: they hold one cache reference each). */
  *splitFolios(): IterableIterator<{ head: Pfn; order: number; default_in_cache: boolean; nr_alive: number; overrides: number }> {
    for (const rec of this.pages.values()) {
      if (rec.state !== SPLIT) continue;
      let alive = 0;
      for (const s of (rec.sub as Map<number, SubPage>).values()) if (s.allocated) alive++;
      yield { head: rec.head as Pfn, order: rec.hstate.order, default_in_cache: rec.default_in_cache, nr_alive: rec.nr_alive, overrides: alive };
    }
  }

  /** Bytes the model holds for the pools: one record per huge page, one object per subpage override. */
  get heap_bytes(): number {
    let overrides = 0;
    for (const rec of this.pages.values()) overrides += rec.sub?.size ?? 0;
    return this.pages.size * 96 + overrides * 80;
  }

  /** Counts for metrics: whole and split folios per size. */
  folioCounts(): { whole_2m: number; split_2m: number; whole_1g: number; split_1g: number } {
    const c = { whole_2m: 0, split_2m: 0, whole_1g: 0, split_1g: 0 };
    for (const rec of this.pages.values()) {
      const big = rec.hstate.order === 18;
      if (rec.state === WHOLE) {
        if (big) c.whole_1g++;
        else c.whole_2m++;
      } else if (rec.state === SPLIT) {
        if (big) c.split_1g++;
        else c.split_2m++;
      }
    }
    return c;
  }

  /** /sys/kernel/mm/hugepages/hugepages-<size>kB/<file>. */
  sysfs(path: string): string | null {
    const m = /^\/sys\/kernel\/mm\/hugepages\/(hugepages-\d+kB)\/(nr|free|resv|surplus|nr_overcommit)_hugepages$/.exec(path);
    if (m === null) return null;
    const h = this.hstates.find((x) => x.sysfs_dir === m[1]);
    if (h === undefined) return null;
    const v = m[2] === 'nr' ? h.nr : m[2] === 'free' ? h.free : m[2] === 'resv' ? h.resv : 0;
    return `${v}\n`;
  }
}
