/**
 * The guest_memfd inode: the physical storage. It holds i_size, the flags, the page cache, the
 * VMAs that map it (i_mmap), the shareability of every index (in-place conversion designs) and
 * the list of files (one per VM view; upstream always has exactly one).
 */
import { RangeMap } from '../lib/rangemap.js';
import type { Pfn } from '../lib/types.js';
import type { AddressSpace } from '../mm/mapping.js';
import { PG_uptodate, type PhysMem } from '../mm/memmap.js';
import { PageCache } from '../mm/pagecache.js';
import { keysInRange } from '../lib/keys.js';
import type { Vma } from '../mm/mm.js';
import type { Subpool } from '../mm/hugetlb.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../uapi/kvm.js';
import type { Policy } from '../kvm/policy.js';
import type { GmemFile } from './file.js';
import type { GmemImporter } from './consumer.js';
import { RwSem } from './rwsem.js';

export type GmemUapi = 'v6.18' | 'in-place' | 'rfc-1g';

/** Shareability values stored in the inode's range map: the attribute bitmask, as the final design stores it. */
export const SHARED = 0;
export const PRIVATE = KVM_MEMORY_ATTRIBUTE_PRIVATE;

export interface GmemInodeInit {
  ino: number;
  mapping_id: number;
  nr_pages: number;
  /** The creation flags as given (u64). */
  flags: bigint;
  uapi: GmemUapi;
  /** Host user space may mmap the file (GUEST_MEMFD_FLAG_MMAP / SUPPORT_SHARED). */
  mmap_allowed: boolean;
  /** Shareability of every index at create: SHARED or PRIVATE. */
  init_shared: boolean;
  /** Track shareability per index (in-place and rfc-1g with SUPPORT_SHARED); v6.18 keeps one file-wide state. */
  per_index_shareability: boolean;
  /** HugeTLB backing: folio order 9 (2 MiB) or 18 (1 GiB); 0 for order-0 pages. */
  huge_order: number;
}

export class GmemInode implements AddressSpace {
  readonly ino: number;
  readonly mapping_id: number;
  readonly nr_pages: number;
  readonly flags: bigint;
  readonly uapi: GmemUapi;
  readonly mmap_allowed: boolean;
  readonly init_shared: boolean;
  readonly pages = new PageCache();
  readonly i_mmap = new Set<Vma>();
  /**
   * mapping->invalidate_lock. Protects: the page cache against concurrent truncation and
   * allocation, the files' bindings, and (in-place designs) the shareability map. Exclusive in
   * punch, bind, unbind, release, conversion; shared in allocate and faults.
   */
  readonly invalidate_lock: RwSem;
  /** index → SHARED | PRIVATE; null in v6.18, where the file-wide init_shared decides. */
  readonly shareability: RangeMap<number> | null;
  readonly files: GmemFile[] = [];
  /** IOMMU importers of this file (src/iommu): notified around conversion, truncation, restructure. */
  readonly importers = new Set<GmemImporter>();
  /** Bumped by every successful fallocate (file_modified). */
  mtime_ticks = 0;
  /** i_blocks in 512-byte units; 6.18 never updates it for guest_memfd (HugeTLB files do). */
  i_blocks = 0;
  /** HugeTLB folio order (9 or 18), 0 for order-0 backing. */
  readonly huge_order: number;
  /** The HugeTLB subpool that reserved the whole file at create. */
  subpool: Subpool | null = null;
  /** The design knobs in force (split, merge, atomicity, ...). */
  policy: Policy | null = null;
  /**
   * The blocks whose pages are not all of one shareability, per huge order (like KVM's lpage_info
   * KVM_LPAGE_MIXED_FLAG): block index (index >> order) → 1. Kept for HugeTLB files, where KVM could
   * map a whole folio at 2M/1G; updated at every conversion in O(log n + blocks that change).
   */
  readonly mixed = new Map<number, Map<number, 1>>();
  /** folio_add_lru for new order-0 folios (null: off the LRU, as R51 keeps them). */
  lru_add: ((head: Pfn) => void) | null = null;

  constructor(init: GmemInodeInit) {
    this.huge_order = init.huge_order;
    this.ino = init.ino;
    this.mapping_id = init.mapping_id;
    this.nr_pages = init.nr_pages;
    this.flags = init.flags;
    this.uapi = init.uapi;
    this.mmap_allowed = init.mmap_allowed;
    this.init_shared = init.init_shared;
    this.invalidate_lock = new RwSem(`gmem inode ${init.ino} invalidate_lock`);
    this.shareability = init.per_index_shareability
      ? new RangeMap<number>(init.nr_pages, init.init_shared ? SHARED : PRIVATE)
      : null;
  }

  get size_bytes(): number {
    return this.nr_pages * 4096;
  }

  /** Pages per folio of the backing: 1, 512 or 262,144. */
  get folio_pages(): number {
    return 2 ** this.huge_order;
  }

  /** st_blksize: the huge page size for HugeTLB files. */
  get blksize(): number {
    return 4096 * this.folio_pages;
  }

  notifyImporters(start: number, end: number, phase: 'invalidate' | 'refresh',
    reason: 'to-private' | 'to-shared' | 'truncate' | 'restructure'): void {
    for (const imp of this.importers) {
      if (phase === 'invalidate') imp.invalidate(this, start, end, reason === 'to-shared' ? 'restructure' : reason);
      else imp.refresh(this, start, end, reason === 'to-private' ? 'restructure' : reason);
    }
  }

  /** Is the `order` block containing `index` mixed (shared and private pages)? */
  isMixed(order: number, index: number): boolean {
    return this.mixed.get(order)?.has(Math.floor(index / 2 ** order)) ?? false;
  }

  /**
   * After a store over [start, end): blocks inside it became uniform; the (at most two) blocks
   * cut by its edges are recomputed from the range map.
   */
  updateMixed(start: number, end: number): void {
    const sh = this.shareability;
    if (sh === null || this.huge_order === 0) return;
    for (const order of [9, 18]) {
      if (order > this.huge_order) continue;
      const nr = 2 ** order;
      let m = this.mixed.get(order);
      if (m === undefined) {
        m = new Map();
        this.mixed.set(order, m);
      }
      for (const key of keysInRange(m, Math.ceil(start / nr), Math.floor(end / nr))) m.delete(key);
      for (const key of new Set([Math.floor(start / nr), Math.floor((end - 1) / nr)])) {
        const b0 = key * nr;
        if (b0 >= this.nr_pages) continue;
        if (sh.uniform(b0, Math.min(b0 + nr, this.nr_pages)).found) m.delete(key);
        else m.set(key, 1);
      }
    }
  }

  /** Is every page of [start, end) private? */
  allPrivate(start: number, end: number): boolean {
    return this.shareability === null ? !this.init_shared : this.shareability.allEqual(start, end, PRIVATE);
  }

  /** May host user space fault page `index`? (kvm_gmem_fault_user_mapping's gate.) */
  isShared(index: number): boolean {
    if (this.shareability === null) return this.init_shared;
    return this.shareability.get(index) === SHARED;
  }

  /**
   * kvm_gmem_get_folio: the pfn of page `index`, allocating its folio (not zeroed) when absent;
   * -1 on ENOMEM. A HugeTLB file allocates the whole huge folio of the block from its subpool,
   * and (eager split) splits it at once if the block is not all private.
   */
  getPage(phys: PhysMem, index: number): number {
    const p = this.pages.pfnAt(index);
    if (p >= 0) return p;
    if (this.huge_order === 0) {
      const head = phys.allocFolio0();
      if (head < 0) return -1;
      phys.setOwner(head as Pfn, this.mapping_id, index);
      this.pages.insert(index, head as Pfn, 0);
      this.lru_add?.(head as Pfn);
      return head;
    }
    const nr = this.folio_pages;
    const base = Math.floor(index / nr) * nr;
    const hugetlb = phys.hugetlb;
    if (hugetlb === null || this.subpool === null) return -1;
    const head = hugetlb.allocFolio(this.subpool);
    if (head < 0) return -1;
    phys.setOwner(head as Pfn, this.mapping_id, base);
    // The allocation's reference becomes one of the page cache's nr references.
    phys.get(head as Pfn, nr - 1);
    this.pages.insert(base, head as Pfn, this.huge_order);
    this.i_blocks += nr * 8;
    if (this.policy?.split === 'eager' && !this.allPrivate(base, base + nr)) {
      // Fresh-folio split: a block with a shared page is never mapped huge. No vmemmap → ENOMEM.
      if (!hugetlb.split(head as Pfn)) return -1;
      this.pages.setSplit(base, this.huge_order, true);
    }
    return head + (index - base);
  }

  /**
   * Zero-once: the first user of a folio finds it zeroed and marks it uptodate. For a whole
   * huge folio that is the whole folio (R51 zeroes it on first use); otherwise the 4K page.
   */
  preparePage(phys: PhysMem, index: number): void {
    const f = this.pages.lookup(index);
    if (f === null || phys.testFlag(f.head, PG_uptodate)) return;
    phys.contents.zero(f.head, 2 ** f.order);
    phys.setFlag(f.head, PG_uptodate);
  }

  /** Allocate the missing folios of [start, end) (not zeroed); false on ENOMEM. */
  allocateRange(phys: PhysMem, start: number, end: number): boolean {
    if (this.huge_order > 0) {
      for (let i = start; i < end; i += this.folio_pages) if (this.getPage(phys, i) < 0) return false;
      return true;
    }
    const mapping_id = this.mapping_id;
    const lru_add = this.lru_add;
    const ok = this.pages.populateRange(start, end, (index) => {
      const head = phys.allocFolio0();
      if (head >= 0) phys.setOwner(head as Pfn, mapping_id, index);
      if (head >= 0 && lru_add !== null) lru_add(head as Pfn);
      return head;
    });
    return ok;
  }

}
