/**
 * What a VMA maps: a file's address_space or anonymous memory. One ops table per kind
 * (vm_operations_struct), implemented by guest_memfd (gmem/) and anonymous memory (anon.ts).
 */
import type { PageCache } from './pagecache.js';
import type { Vma } from './mm.js';

/** struct address_space: a page cache and the VMAs that map it (i_mmap). */
export interface AddressSpace {
  readonly mapping_id: number;
  readonly pages: PageCache;
  readonly i_mmap: Set<Vma>;
}

/** Returned by a fault handler that refuses the access. */
export const VM_FAULT_SIGBUS = -1;

export interface VmOps {
  readonly mapping: AddressSpace;
  /** A VMA now references the object (mmap, split): the file gains a reference. */
  open(vma: Vma): void;
  /** A VMA stops referencing it (munmap, process exit). */
  close(vma: Vma): void;
  /**
   * Fault in page `index` of the object: return the order-0 folio to map (the caller takes the
   * PTE's reference), or VM_FAULT_SIGBUS.
   */
  fault(index: number, write: boolean): number | typeof VM_FAULT_SIGBUS;
  /** MADV_REMOVE: free the backing of [start, end) (pages); returns an errno or 0. */
  removeRange(start: number, end: number): number;
  /** The file's mount is noexec: PROT_EXEC refused. */
  readonly noexec: boolean;
  /** MADV_COLLAPSE is refused (EINVAL) for this mapping. */
  readonly noCollapse: boolean;
}

