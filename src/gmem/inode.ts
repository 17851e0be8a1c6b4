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
import type { Vma } from '../mm/mm.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../uapi/kvm.js';
import type { GmemFile } from './file.js';
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
  /** Bumped by every successful fallocate (file_modified). */
  mtime_ticks = 0;
  /** i_blocks in 512-byte units; 6.18 never updates it for guest_memfd. */
  i_blocks = 0;

  constructor(init: GmemInodeInit) {
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

  /** May host user space fault page `index`? (kvm_gmem_fault_user_mapping's gate.) */
  isShared(index: number): boolean {
    if (this.shareability === null) return this.init_shared;
    return this.shareability.get(index) === SHARED;
  }

  /** kvm_gmem_get_folio: the folio at `index`, allocated (not zeroed) when absent; -1 on ENOMEM. */
  getFolio(phys: PhysMem, index: number): number {
    const p = this.pages.pfnAt(index);
    if (p >= 0) return p;
    const head = phys.allocFolio0();
    if (head < 0) return -1;
    phys.setOwner(head as Pfn, this.mapping_id, index);
    this.pages.insert(index, head as Pfn, 0);
    return head;
  }

  /** Allocate the missing order-0 folios of [start, end) (not zeroed); false on ENOMEM. */
  allocateRange(phys: PhysMem, start: number, end: number): boolean {
    const mapping_id = this.mapping_id;
    return this.pages.populateRange(start, end, (index) => {
      const head = phys.allocFolio0();
      if (head >= 0) phys.setOwner(head as Pfn, mapping_id, index);
      return head;
    });
  }

  /** Zero-once: the first user of a folio finds it zeroed and marks it uptodate. */
  prepareFolio(phys: PhysMem, head: Pfn): void {
    if (phys.testFlag(head, PG_uptodate)) return;
    phys.contents.zero(head, phys.nrPages(head));
    phys.setFlag(head, PG_uptodate);
  }
}
