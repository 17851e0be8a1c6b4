/**
 * Physical memory: frames, the memmap (struct page state per pfn) and the page allocator.
 *
 * A folio is named by its head pfn; its state lives in the memmap, in typed arrays allocated one
 * section (512 pfns, 2 MiB) at a time on first use, as SPARSEMEM does. No JS object exists per
 * page. Order-0 folios come from the buddy region; HugeTLB folios from the hstate pools carved
 * at boot from the top of memory (see hugetlb.ts).
 *
 * Reference counting follows the kernel:
 *   - the page cache holds folio_nr_pages references;
 *   - each user-space PTE maps one page: +1 reference, +1 mapcount;
 *   - a long-term GUP pin: +1 reference, +1 pincount (the kernel adds a bias of 1024 to small
 *     folios instead; only "refcount above what is expected" matters to guest_memfd);
 *   - a transient lookup: +1 reference while it runs.
 * The folio is freed (and its contents zeroed) when the count reaches 0.
 */
import { assert, ModelBug } from '../lib/assert.js';
import type { Pfn } from '../lib/types.js';
import { ContentStore } from './contents.js';
import { type HugeSize, HugeTlb } from './hugetlb.js';

const SECTION = 512;

export const PG_uptodate = 1 << 0;
export const PG_head = 1 << 1;
export const PG_hugetlb = 1 << 2;
export const PG_hwpoison = 1 << 4;
export const PG_allocated = 1 << 5;

class Section {
  readonly refcount = new Int32Array(SECTION);
  readonly mapcount = new Int32Array(SECTION);
  readonly pincount = new Int32Array(SECTION);
  readonly flags = new Uint8Array(SECTION);
  readonly order = new Uint8Array(SECTION);
  /** Owner mapping id (page cache owner), 0 = none. */
  readonly owner = new Int32Array(SECTION);
  /** File index of the head page in its owner's page cache. */
  readonly index = new Float64Array(SECTION);
}

/** Called when a folio's last reference drops, before its frames are reused. */
export type FreeHook = (head: Pfn, order: number) => boolean;

export class PhysMem {
  readonly nr_pages: number;
  /** Frames [0, buddy_end) belong to the page allocator; above it, HugeTLB pools. */
  buddy_end: number;
  private bump = 0;
  private freeStack = new Int32Array(4096);
  private nr_freestack = 0;
  /** Order-0 frames in use. */
  nr_buddy_used = 0;
  private readonly sections = new Map<number, Section>();
  readonly contents = new ContentStore();
  /** HugeTLB (or other) owners of frame ranges take their folios back here. */
  private readonly freeHooks: FreeHook[] = [];

  /** The HugeTLB pools and the memmap of their frames (pfns ≥ buddy_end), or null. */
  readonly hugetlb: HugeTlb | null;

  constructor(memory_bytes: number, hugepages: Partial<Record<HugeSize, number>> = {}) {
    assert(memory_bytes % 4096 === 0 && memory_bytes > 0, 'memory size must be whole pages');
    this.nr_pages = memory_bytes / 4096;
    assert(this.nr_pages < 2 ** 31, 'pfns must fit in 31 bits');
    this.hugetlb = new HugeTlb(this.nr_pages, hugepages, {
      reserveFrames: (n) => this.reserveFrames(n),
      releaseFrames: (n) => this.releaseFrames(n),
      zeroContents: (p, n) => this.contents.zero(p, n),
    });
    this.buddy_end = this.hugetlb.base_pfn;
  }

  /** Frames taken from the page allocator without a folio (vmemmap pages); false if there are not enough. */
  reserveFrames(n: number): boolean {
    if (this.nr_buddy_free < n) return false;
    this.nr_buddy_used += n;
    this.nr_reserved_frames += n;
    return true;
  }

  releaseFrames(n: number): void {
    assert(this.nr_reserved_frames >= n, 'released more vmemmap frames than reserved');
    this.nr_buddy_used -= n;
    this.nr_reserved_frames -= n;
  }

  /** Frames held without a folio (vmemmap of split HugeTLB folios). */
  nr_reserved_frames = 0;


  addFreeHook(h: FreeHook): void {
    this.freeHooks.push(h);
  }

  /** One-entry cache: sequential pfns hit the same section. */
  private last_key = -1;
  private last_section: Section | undefined = undefined;

  private section(p: number): Section {
    const key = Math.floor(p / SECTION);
    if (key === this.last_key) return this.last_section as Section;
    let s = this.sections.get(key);
    if (s === undefined) {
      s = new Section();
      this.sections.set(key, s);
    }
    this.last_key = key;
    this.last_section = s;
    return s;
  }

  private sectionIfAny(p: number): Section | undefined {
    return this.sections.get(Math.floor(p / SECTION));
  }

  // ---- the page allocator (order 0) -----------------------------------------------------------

  get nr_buddy_free(): number {
    return this.buddy_end - this.nr_buddy_used;
  }

  /** One order-0 frame, or -1 when memory is exhausted (the caller returns ENOMEM). */
  allocFrame(): number {
    // Frames lent as vmemmap pages count as used: the allocator stops at the total, not the bump.
    if (this.nr_buddy_used >= this.buddy_end) return -1;
    let p: number;
    if (this.nr_freestack > 0) p = this.freeStack[--this.nr_freestack] as number;
    else if (this.bump < this.buddy_end) p = this.bump++;
    else return -1;
    this.nr_buddy_used++;
    return p;
  }

  private freeFrame(p: number): void {
    if (this.nr_freestack === this.freeStack.length) {
      const bigger = new Int32Array(this.freeStack.length * 2);
      bigger.set(this.freeStack);
      this.freeStack = bigger;
    }
    this.freeStack[this.nr_freestack++] = p;
    this.nr_buddy_used--;
  }

  /** Initialise the memmap of a new folio at `head` (one reference, held by the caller). */
  initFolio(head: Pfn, order: number, flags: number): void {
    const s = this.section(head);
    const i = head % SECTION;
    if (((s.flags[i] as number) & PG_allocated) !== 0) throw new ModelBug(`pfn ${head} allocated twice`);
    s.refcount[i] = 1;
    s.mapcount[i] = 0;
    s.pincount[i] = 0;
    s.flags[i] = flags | PG_allocated | PG_head;
    s.order[i] = order;
    s.owner[i] = 0;
    s.index[i] = 0;
  }

  /** A new order-0 folio with one reference, or -1. Its contents read as zeros. */
  allocFolio0(): number {
    const p = this.allocFrame();
    if (p < 0) return -1;
    this.initFolio(p as Pfn, 0, 0);
    return p;
  }

  // ---- memmap accessors -------------------------------------------------------------------------

  isAllocated(head: Pfn): boolean {
    if (head >= this.buddy_end) return head < this.nr_pages && (this.hugetlb as HugeTlb).isAllocated(head);
    const s = this.sectionIfAny(head);
    return s !== undefined && ((s.flags[head % SECTION] as number) & PG_allocated) !== 0;
  }
  refcount(head: Pfn): number {
    if (head >= this.buddy_end) return (this.hugetlb as HugeTlb).field(head, 'refcount');
    return this.section(head).refcount[head % SECTION] as number;
  }
  mapcount(head: Pfn): number {
    if (head >= this.buddy_end) return (this.hugetlb as HugeTlb).field(head, 'mapcount');
    return this.section(head).mapcount[head % SECTION] as number;
  }
  pincount(head: Pfn): number {
    if (head >= this.buddy_end) return (this.hugetlb as HugeTlb).field(head, 'pincount');
    return this.section(head).pincount[head % SECTION] as number;
  }
  order(head: Pfn): number {
    if (head >= this.buddy_end) return (this.hugetlb as HugeTlb).order(head);
    return this.section(head).order[head % SECTION] as number;
  }
  nrPages(head: Pfn): number {
    return 2 ** this.order(head);
  }
  flags(head: Pfn): number {
    if (head >= this.buddy_end) return (this.hugetlb as HugeTlb).field(head, 'flags');
    return this.section(head).flags[head % SECTION] as number;
  }
  testFlag(head: Pfn, flag: number): boolean {
    return (this.flags(head) & flag) !== 0;
  }
  setFlag(head: Pfn, flag: number): void {
    if (head >= this.buddy_end) return (this.hugetlb as HugeTlb).setField(head, 'flags', this.flags(head) | flag);
    const s = this.section(head);
    s.flags[head % SECTION] = (s.flags[head % SECTION] as number) | flag;
  }
  clearFlag(head: Pfn, flag: number): void {
    if (head >= this.buddy_end) return (this.hugetlb as HugeTlb).setField(head, 'flags', this.flags(head) & ~flag);
    const s = this.section(head);
    s.flags[head % SECTION] = (s.flags[head % SECTION] as number) & ~flag;
  }
  owner(head: Pfn): number {
    if (head >= this.buddy_end) return (this.hugetlb as HugeTlb).field(head, 'owner');
    return this.section(head).owner[head % SECTION] as number;
  }
  index(head: Pfn): number {
    if (head >= this.buddy_end) return (this.hugetlb as HugeTlb).field(head, 'index');
    return this.section(head).index[head % SECTION] as number;
  }
  setOwner(head: Pfn, owner_id: number, index: number): void {
    if (head >= this.buddy_end) {
      (this.hugetlb as HugeTlb).setField(head, 'owner', owner_id);
      (this.hugetlb as HugeTlb).setField(head, 'index', index);
      return;
    }
    const s = this.section(head);
    s.owner[head % SECTION] = owner_id;
    s.index[head % SECTION] = index;
  }

  /** Remove a folio from its page cache: clear the owner and drop the cache's nr references. */
  dropFromCache(head: Pfn, nr_refs: number): void {
    if (head >= this.buddy_end) {
      const h = this.hugetlb as HugeTlb;
      if (h.isSplit(head)) {
        h.evictSplit(head);
        return;
      }
      h.setField(head, 'owner', 0);
      h.setField(head, 'index', 0);
      h.adjust(head, -nr_refs, 0, 0);
      return;
    }
    const s = this.section(head);
    const i = head % SECTION;
    s.owner[i] = 0;
    s.index[i] = 0;
    this.put(head, nr_refs);
  }

  /** Change a folio's order in place (HugeTLB split/merge restructure the memmap, not the frames). */
  setOrder(head: Pfn, order: number): void {
    this.section(head).order[head % SECTION] = order;
  }

  // ---- references ------------------------------------------------------------------------------

  get(head: Pfn, n = 1): void {
    if (head >= this.buddy_end) {
      (this.hugetlb as HugeTlb).adjust(head, n, 0, 0);
      return;
    }
    const s = this.section(head);
    const i = head % SECTION;
    if ((s.refcount[i] as number) <= 0) throw new ModelBug(`folio_get on free pfn ${head}`);
    s.refcount[i] = (s.refcount[i] as number) + n;
  }

  /** Drop n references; frees the folio when none remain. Returns true if it was freed. */
  put(head: Pfn, n = 1): boolean {
    if (head >= this.buddy_end) return (this.hugetlb as HugeTlb).adjust(head, -n, 0, 0) === 0;
    const s = this.section(head);
    const i = head % SECTION;
    const c = (s.refcount[i] as number) - n;
    if (c < 0) throw new ModelBug(`folio_put underflow on pfn ${head}`);
    s.refcount[i] = c;
    if (c > 0) return false;
    this.freeFolio(head, s, i);
    return true;
  }

  incMap(head: Pfn): void {
    if (head >= this.buddy_end) {
      (this.hugetlb as HugeTlb).adjust(head, 1, 1, 0);
      return;
    }
    const s = this.section(head);
    const i = head % SECTION;
    s.mapcount[i] = (s.mapcount[i] as number) + 1;
    s.refcount[i] = (s.refcount[i] as number) + 1;
  }

  /** Remove one PTE's mapping and its reference. */
  decMap(head: Pfn): boolean {
    if (head >= this.buddy_end) return (this.hugetlb as HugeTlb).adjust(head, -1, -1, 0) === 0;
    const s = this.section(head);
    const i = head % SECTION;
    const m = (s.mapcount[i] as number) - 1;
    if (m < 0) throw new ModelBug(`mapcount underflow on pfn ${head}`);
    s.mapcount[i] = m;
    return this.put(head);
  }

  pinFolio(head: Pfn): void {
    if (head >= this.buddy_end) {
      (this.hugetlb as HugeTlb).adjust(head, 1, 0, 1);
      return;
    }
    const s = this.section(head);
    const i = head % SECTION;
    s.pincount[i] = (s.pincount[i] as number) + 1;
    s.refcount[i] = (s.refcount[i] as number) + 1;
  }

  unpinFolio(head: Pfn): boolean {
    if (head >= this.buddy_end) return (this.hugetlb as HugeTlb).adjust(head, -1, 0, -1) === 0;
    const s = this.section(head);
    const i = head % SECTION;
    const c = (s.pincount[i] as number) - 1;
    if (c < 0) throw new ModelBug(`pincount underflow on pfn ${head}`);
    s.pincount[i] = c;
    return this.put(head);
  }

  /** Free: zero the contents (drop buffers), clear the memmap, give the frames back. */
  private freeFolio(head: Pfn, s: Section, i: number): void {
    const order = s.order[i] as number;
    const nr = 2 ** order;
    if ((s.mapcount[i] as number) !== 0 || (s.pincount[i] as number) !== 0) {
      throw new ModelBug(`freeing mapped or pinned folio at pfn ${head}`);
    }
    if (nr === 1) this.contents.zeroOne(head);
    else this.contents.zero(head, nr);
    s.flags[i] = 0;
    s.owner[i] = 0;
    s.order[i] = 0;
    const hooks = this.freeHooks;
    for (let h = 0; h < hooks.length; h++) if ((hooks[h] as FreeHook)(head, order)) return;
    assert(order === 0, () => `order-${order} folio at pfn ${head} freed with no owner pool`);
    this.freeFrame(head);
  }

  /**
   * Every allocated folio head, ascending (checker): order-0 folios from the sections present,
   * then whole HugeTLB folios and split subpages with state of their own. Split subpages in their
   * default state (in the page cache, one reference) are checked through hugetlb.splitFolios().
   */
  *allocatedFolios(): IterableIterator<Pfn> {
    yield* this.buddyFolios();
    if (this.hugetlb !== null) for (const a of this.hugetlb.allocated()) yield a.p;
  }

  private *buddyFolios(): IterableIterator<Pfn> {
    const keys = [...this.sections.keys()].sort((a, b) => a - b);
    for (const key of keys) {
      const s = this.sections.get(key) as Section;
      for (let i = 0; i < SECTION; i++) {
        if (((s.flags[i] as number) & PG_allocated) !== 0) yield (key * SECTION + i) as Pfn;
      }
    }
  }

  /** Memmap bytes held (model-memory metric). */
  get memmap_bytes(): number {
    return this.sections.size * SECTION * (4 * 4 + 2 + 8);
  }
}
