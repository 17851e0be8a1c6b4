/**
 * A guest_memfd file: one VM's view of the inode (struct gmem_file), and the file_operations and
 * vm_operations of guest_memfd: fallocate, mmap, the host fault, release.
 */
import { RangeMap } from '../lib/rangemap.js';
import type { Pfn } from '../lib/types.js';
import { type AddressSpace, type VmOps, VM_FAULT_SIGBUS } from '../mm/mapping.js';
import type { Vma } from '../mm/mm.js';
import { KFile } from '../vfs/file.js';
import { EAGAIN, EINVAL, ENODEV, ENOMEM, EOPNOTSUPP } from '../uapi/errno.js';
import { SyscallError } from '../uapi/errors.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../uapi/linux.js';
import type { GmemOwnerOps, GmemSlot } from './consumer.js';
import type { GmemContext } from './context.js';
import type { GmemInode } from './inode.js';
import { filterFor, invalidateBegin, invalidateEnd } from './invalidate.js';
import { mergeBlock, splitBlock } from './restructure.js';

const PAGE = 4096n;

export class GmemFile extends KFile implements VmOps {
  readonly kind = 'gmem' as const;
  override readonly is_regular = true;
  readonly noexec = true;
  readonly noCollapse = true;
  /** index → the memslot bound there (the bindings xarray, stored as ranges). */
  readonly bindings: RangeMap<GmemSlot | null>;
  /** Set once released: lookups through a stale slot pointer fail with EFAULT. */
  released = false;

  constructor(
    readonly inode: GmemInode,
    readonly owner: GmemOwnerOps,
    private readonly ctx: GmemContext,
    private readonly onInodeEvicted: (inode: GmemInode) => void,
  ) {
    super();
    this.bindings = new RangeMap<GmemSlot | null>(inode.nr_pages, null);
    inode.files.push(this);
    owner.kvmGet();
  }

  get mapping(): AddressSpace {
    return this.inode;
  }

  // ---- fallocate ---------------------------------------------------------------------------------

  /** kvm_gmem_fallocate, after vfs_fallocate's checks. offset and len are s64 > 0 here. */
  fallocate(mode: number, offset: bigint, len: bigint): void {
    if ((mode & FALLOC_FL_KEEP_SIZE) === 0) throw new SyscallError(EOPNOTSUPP, 'fallocate');
    if ((mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) !== 0) throw new SyscallError(EOPNOTSUPP, 'fallocate');
    if (offset % PAGE !== 0n || len % PAGE !== 0n) throw new SyscallError(EINVAL, 'fallocate', 'not page aligned');
    const huge_bytes = BigInt(this.inode.blksize);
    if (this.inode.huge_order > 0 && this.ctx.policy.punch === 'aligned-only' &&
      (offset % huge_bytes !== 0n || len % huge_bytes !== 0n)) {
      throw new SyscallError(EINVAL, 'fallocate', 'HugeTLB guest_memfd: not huge-page aligned');
    }
    if ((mode & FALLOC_FL_PUNCH_HOLE) !== 0) this.punchHole(offset, len);
    else this.allocate(offset, len);
    this.inode.mtime_ticks++; // file_modified
  }

  /** Allocate missing folios in [offset, offset + len); never zeroes, never changes i_size. */
  private allocate(offset: bigint, len: bigint): void {
    const inode = this.inode;
    if (offset + len > BigInt(inode.size_bytes)) throw new SyscallError(EINVAL, 'fallocate', 'past i_size');
    let start = Number(offset / PAGE);
    let end = Number((offset + len) / PAGE);
    if (inode.huge_order > 0) {
      // R51 rounds both ends down to huge-page boundaries and allocates whole folios.
      start = Math.floor(start / inode.folio_pages) * inode.folio_pages;
      end = Math.floor(end / inode.folio_pages) * inode.folio_pages;
    }
    inode.invalidate_lock.downRead();
    try {
      // A failed allocation leaves the pages already allocated in place, as the kernel does.
      if (!inode.allocateRange(this.ctx.phys, start, end)) throw new SyscallError(ENOMEM, 'fallocate');
    } finally {
      inode.invalidate_lock.upRead();
    }
  }

  /**
   * Punch: zap guest mappings, then truncate the page-cache range (unmapping host PTEs). On a
   * HugeTLB file a partly covered huge page is zeroed, not freed; a fully covered split block is
   * merged first (EAGAIN when a subpage is still referenced, e.g. pinned).
   */
  private punchHole(offset: bigint, len: bigint): void {
    const inode = this.inode;
    const start_big = offset / PAGE;
    if (start_big >= BigInt(inode.nr_pages)) return; // nothing exists past EOF
    const start = Number(start_big);
    const end = Math.min(inode.nr_pages, Number((offset + len) / PAGE));
    inode.invalidate_lock.downWrite();
    try {
      const touched = invalidateBegin(inode, start, end, filterFor(inode));
      this.ctx.stats.invalidations += touched.length;
      try {
        if (inode.huge_order === 0) truncateRange(inode, this.ctx, start, end);
        else this.punchHuge(start, end);
      } finally {
        invalidateEnd(touched);
      }
    } finally {
      inode.invalidate_lock.upWrite();
    }
  }

  private punchHuge(start: number, end: number): void {
    const inode = this.inode;
    const nr = inode.folio_pages;
    const phys = this.ctx.phys;
    for (let b = Math.floor(start / nr) * nr; b < end; b += nr) {
      const lo = Math.max(b, start);
      const hi = Math.min(b + nr, end);
      const e = inode.pages.hugeEntry(b);
      if (e === null) continue;
      if (lo > b || hi < b + nr) {
        // A partial huge page: zeroed in place; no memory is freed and st_blocks stays.
        phys.contents.zero((e.head + (lo - b)) as Pfn, hi - lo);
        continue;
      }
      if (e.split && !mergeBlock(inode, this.ctx, b)) {
        throw new SyscallError(EAGAIN, 'fallocate', 'a page of the huge block is still referenced');
      }
      truncateRange(inode, this.ctx, b, b + nr);
    }
  }

  // ---- mmap and the host fault --------------------------------------------------------------------

  /** kvm_gmem_mmap: the file-specific checks, after the generic ones. */
  mmapCheck(shared: boolean, len_bytes: number): void {
    if (!this.inode.mmap_allowed) throw new SyscallError(ENODEV, 'mmap', 'guest_memfd created without MMAP');
    if (!shared) throw new SyscallError(EINVAL, 'mmap', 'guest_memfd mappings must be MAP_SHARED');
    if (this.inode.uapi === 'rfc-1g' && this.inode.huge_order > 0 && len_bytes % this.inode.blksize !== 0) {
      throw new SyscallError(EINVAL, 'mmap', 'HugeTLB guest_memfd: length not a multiple of the huge page size');
    }
  }

  /** R51 HugeTLB files map at huge-page-aligned addresses (the unmapped-area search and MAP_FIXED). */
  mmapAlign(): number {
    return this.inode.uapi === 'rfc-1g' && this.inode.huge_order > 0 ? this.inode.blksize : 4096;
  }

  open(vma: Vma): void {
    this.inode.i_mmap.add(vma);
    this.fget(); // the mapping holds the file
  }

  close(vma: Vma): void {
    this.inode.i_mmap.delete(vma);
    this.fput();
  }

  /** kvm_gmem_fault_user_mapping: shared pages only, mapped at 4K (a huge folio is split first). */
  fault(index: number, _write: boolean): number {
    const inode = this.inode;
    const stats = this.ctx.stats;
    stats.host_faults++;
    if (index >= inode.nr_pages) {
      stats.sigbus++;
      return VM_FAULT_SIGBUS;
    }
    inode.invalidate_lock.downRead();
    try {
      if (!inode.isShared(index)) {
        stats.sigbus++;
        return VM_FAULT_SIGBUS;
      }
      const page = inode.getPage(this.ctx.phys, index);
      // Lazy split: the host needs a 4K page out of a whole huge folio now.
      if (page < 0 || (inode.huge_order > 0 && !splitBlock(inode, this.ctx, index))) {
        stats.sigbus++;
        // No memory (VM_FAULT_OOM), or a transient user holds the folio the split must freeze (the
        // kernel retries the fault until it lets go; one CPU cannot wait): the model reports SIGBUS.
        return VM_FAULT_SIGBUS;
      }
      inode.preparePage(this.ctx.phys, index);
      return page;
    } finally {
      inode.invalidate_lock.upRead();
    }
  }

  /** MADV_REMOVE: vfs_fallocate(PUNCH_HOLE | KEEP_SIZE) over the range. */
  removeRange(start: number, end: number): number {
    this.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, BigInt(start) * PAGE, BigInt(end - start) * PAGE);
    return 0;
  }

  // ---- release ----------------------------------------------------------------------------------

  /**
   * kvm_gmem_release: unbind every slot (slot.gmem.file = NULL), zap all guest mappings of this
   * file's bindings, unlink from the inode, drop the VM reference. With one file per inode the
   * inode is evicted right after: its folios are truncated without merging (pinned ones live on
   * and return to the pool when unpinned) and the HugeTLB subpool gives back its reservation.
   */
  protected release(): void {
    const inode = this.inode;
    inode.invalidate_lock.downWrite();
    try {
      for (const run of this.bindings.all()) if (run.value !== null) run.value.gmem_file = null;
      const touched = invalidateBegin(inode, 0, inode.nr_pages, 'both');
      invalidateEnd(touched);
      this.released = true;
      inode.files.splice(inode.files.indexOf(this), 1);
    } finally {
      inode.invalidate_lock.upWrite();
    }
    this.owner.kvmPut();
    if (inode.files.length === 0) {
      truncateRange(inode, this.ctx, 0, inode.nr_pages);
      if (inode.subpool !== null) this.ctx.phys.hugetlb?.destroySubpool(inode.subpool);
      this.onInodeEvicted(inode);
    }
  }
}

/**
 * truncate_inode_pages_range over [start, end): unmap host PTEs of the range, remove the folios
 * from the page cache and drop the page cache's references (a pinned folio lives on until its
 * last pin drops; it is then freed and zeroed).
 */
export function truncateRange(inode: GmemInode, ctx: GmemContext, start: number, end: number): void {
  const phys = ctx.phys;
  inode.notifyImporters(start, end, 'invalidate', 'truncate');
  for (const vma of inode.i_mmap) ctx.mm.zapVmaIndices(vma, start, end);
  inode.pages.removeRange(start, end, (head, _index, order) => {
    if (order > 0) inode.i_blocks -= 2 ** order * 8;
    phys.dropFromCache(head, 2 ** order);
  });
  inode.notifyImporters(start, end, 'refresh', 'truncate');
}
