/**
 * A guest_memfd file: one VM's view of the inode (struct gmem_file), and the file_operations and
 * vm_operations of guest_memfd: fallocate, mmap, the host fault, release.
 */
import { assert } from '../lib/assert.js';
import { RangeMap } from '../lib/rangemap.js';
import type { Pfn } from '../lib/types.js';
import type { PhysMem } from '../mm/memmap.js';
import { type AddressSpace, type VmOps, VM_FAULT_SIGBUS } from '../mm/mapping.js';
import type { Mm, Vma } from '../mm/mm.js';
import { KFile } from '../vfs/file.js';
import { EINVAL, ENODEV, ENOMEM, EOPNOTSUPP } from '../uapi/errno.js';
import { SyscallError } from '../uapi/errors.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../uapi/linux.js';
import type { GmemOwnerOps, GmemSlot } from './consumer.js';
import type { GmemInode } from './inode.js';
import { filterFor, invalidateBegin, invalidateEnd } from './invalidate.js';

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
    private readonly phys: PhysMem,
    private readonly mm: Mm,
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
    if ((mode & FALLOC_FL_PUNCH_HOLE) !== 0) this.punchHole(offset, len);
    else this.allocate(offset, len);
    this.inode.mtime_ticks++; // file_modified
  }

  /** Allocate missing order-0 folios in [offset, offset + len); never zeroes, never changes i_size. */
  private allocate(offset: bigint, len: bigint): void {
    const inode = this.inode;
    if (offset + len > BigInt(inode.size_bytes)) throw new SyscallError(EINVAL, 'fallocate', 'past i_size');
    const start = Number(offset / PAGE);
    const end = Number((offset + len) / PAGE);
    inode.invalidate_lock.downRead();
    try {
      // A failed allocation leaves the pages already allocated in place, as the kernel does.
      if (!inode.allocateRange(this.phys, start, end)) throw new SyscallError(ENOMEM, 'fallocate');
    } finally {
      inode.invalidate_lock.upRead();
    }
  }

  /** Punch: zap guest mappings, truncate the page cache range (which unmaps host PTEs), end. */
  private punchHole(offset: bigint, len: bigint): void {
    const inode = this.inode;
    const start_big = offset / PAGE;
    if (start_big >= BigInt(inode.nr_pages)) return; // nothing exists past EOF
    const start = Number(start_big);
    const end = Math.min(inode.nr_pages, Number((offset + len) / PAGE));
    inode.invalidate_lock.downWrite();
    try {
      const touched = invalidateBegin(inode, start, end, filterFor(inode));
      truncateRange(inode, this.phys, this.mm, start, end);
      invalidateEnd(touched);
    } finally {
      inode.invalidate_lock.upWrite();
    }
  }

  // ---- mmap and the host fault --------------------------------------------------------------------

  /** kvm_gmem_mmap: the file-specific checks, after the generic ones. */
  mmapCheck(shared: boolean): void {
    if (!this.inode.mmap_allowed) throw new SyscallError(ENODEV, 'mmap', 'guest_memfd created without MMAP');
    if (!shared) throw new SyscallError(EINVAL, 'mmap', 'guest_memfd mappings must be MAP_SHARED');
  }

  open(vma: Vma): void {
    this.inode.i_mmap.add(vma);
    this.fget(); // the mapping holds the file
  }

  close(vma: Vma): void {
    this.inode.i_mmap.delete(vma);
    this.fput();
  }

  /** kvm_gmem_fault_user_mapping. */
  fault(index: number, _write: boolean): number {
    const inode = this.inode;
    if (index >= inode.nr_pages) return VM_FAULT_SIGBUS;
    inode.invalidate_lock.downRead();
    try {
      if (!inode.isShared(index)) return VM_FAULT_SIGBUS;
      const head = inode.getFolio(this.phys, index);
      if (head < 0) return VM_FAULT_SIGBUS; // VM_FAULT_OOM: the model reports it as SIGBUS
      assert(this.phys.order(head as Pfn) === 0, 'host fault on a huge guest_memfd folio');
      inode.prepareFolio(this.phys, head as Pfn);
      return head;
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
   * inode is evicted right after: its folios are truncated (pinned ones live on until unpinned).
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
      truncateRange(inode, this.phys, this.mm, 0, inode.nr_pages);
      this.onInodeEvicted(inode);
    }
  }
}

/**
 * truncate_inode_pages_range over [start, end): unmap host PTEs of the range, remove the folios
 * from the page cache and drop the page cache's references (a pinned folio lives on until its
 * last pin drops; it is then freed and zeroed).
 */
export function truncateRange(inode: GmemInode, phys: PhysMem, mm: Mm, start: number, end: number): void {
  for (const vma of inode.i_mmap) mm.zapVmaIndices(vma, start, end);
  inode.pages.removeRange(start, end, (head, _index, order) => phys.dropFromCache(head, 2 ** order));
}
