/**
 * The interface between guest_memfd and its consumer (the VM the file was created for).
 * guest_memfd calls down into the VM only through GmemOwnerOps; the VM binds memslots through
 * guest_memfd's functions. One ops table per consumer, as in virt/kvm/guest_memfd.c.
 */
import type { GmemFile } from './file.js';
import type { GmemInode } from './inode.js';

/** Which stage-2 mappings an invalidation zaps (KVM_FILTER_SHARED / KVM_FILTER_PRIVATE). */
export type InvalidateFilter = 'shared' | 'private' | 'both';

/** The gmem half of struct kvm_memory_slot. */
export interface GmemSlot {
  readonly id: number;
  readonly base_gfn: number;
  readonly npages: number;
  /** slot->gmem.file: null once unbound or after the file was released. */
  gmem_file: GmemFile | null;
  /** slot->gmem.pgoff: file index of base_gfn. */
  gmem_pgoff: number;
  /** KVM_MEMSLOT_GMEM_ONLY: shared faults are served from guest_memfd too. */
  gmem_only: boolean;
}

/** What guest_memfd needs from the VM that owns a file. */
export interface GmemOwnerOps {
  readonly vm_id: number;
  /** kvm_arch_has_private_mem(kvm). */
  readonly has_private_mem: boolean;
  /** The file pins the VM: kvm_get_kvm / kvm_put_kvm. */
  kvmGet(): void;
  kvmPut(): void;
  /** What the VM's firmware does to page contents when pages change sides. */
  contentEffect(to_private: boolean): 'preserve' | 'zero' | 'scramble';
  /** mmu_invalidate_begin under mmu_lock: faults in flight will retry. */
  invalidateBegin(): void;
  /** Zap the stage-2 mappings of [gfn_start, gfn_end) selected by `filter`; flush TLBs. */
  zapGfnRange(gfn_start: number, gfn_end: number, filter: InvalidateFilter): void;
  /**
   * A folio under [gfn_start, gfn_end) was split in place: no mapping may stay larger than 4K there
   * (TDX demotes its S-EPT leaves; the other types zap their huge leaves, which refault).
   */
  splitHugeMappings(gfn_start: number, gfn_end: number): void;
  /** mmu_invalidate_end: bump the sequence. */
  invalidateEnd(): void;
}

/**
 * A non-KVM importer of a guest_memfd (an IOMMU domain mapping the file, as iommufd's
 * IOMMU_IOAS_MAP_FILE would): told before pages leave the shared side or the file, and after new
 * shared pages appear. It maps shared pages only (a shared-only consumer).
 */
export interface GmemImporter {
  /** Pages [start, end) of `inode` are about to become private, be truncated, or be restructured. */
  invalidate(inode: GmemInode, start: number, end: number, reason: 'to-private' | 'truncate' | 'restructure'): void;
  /** Pages [start, end) are shared (again) or were restructured: map what is now allowed. */
  refresh(inode: GmemInode, start: number, end: number, reason: 'to-shared' | 'truncate' | 'restructure'): void;
}
