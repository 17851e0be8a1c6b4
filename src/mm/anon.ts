/**
 * Anonymous memory (MAP_ANONYMOUS), shared or private: a page cache of zero-filled pages owned by
 * the mapping. It backs the shared half of non-gmem memslots (userspace_addr).
 */
import type { Pfn } from '../lib/types.js';
import { PG_uptodate, type PhysMem } from './memmap.js';
import { PageCache } from './pagecache.js';
import { type AddressSpace, type VmOps, VM_FAULT_SIGBUS } from './mapping.js';
import type { Mm, Vma } from './mm.js';

export class AnonMemory implements VmOps, AddressSpace {
  readonly pages = new PageCache();
  readonly i_mmap = new Set<Vma>();
  readonly noexec = false;
  readonly noCollapse = false;
  private nr_vmas = 0;

  constructor(private readonly phys: PhysMem, readonly mapping_id: number, private readonly mm: Mm) {}

  get mapping(): AddressSpace {
    return this;
  }

  open(vma: Vma): void {
    this.i_mmap.add(vma);
    this.nr_vmas++;
  }

  close(vma: Vma): void {
    this.i_mmap.delete(vma);
    if (--this.nr_vmas === 0) this.truncateAll();
  }

  fault(index: number, _write: boolean): number {
    const p = this.pages.pfnAt(index);
    if (p >= 0) return p;
    const head = this.phys.allocFolio0();
    if (head < 0) return VM_FAULT_SIGBUS; // the model's OOM: a shared anon fault that cannot allocate
    this.phys.setOwner(head as Pfn, this.mapping_id, index);
    this.phys.setFlag(head as Pfn, PG_uptodate); // a fresh anonymous page is a zeroed page
    this.pages.insert(index, head as Pfn, 0);
    return head; // the allocation's reference becomes the page cache's
  }

  /** shmem's punch (MADV_REMOVE, teardown): unmap the range from every VMA first, then free it. */
  removeRange(start: number, end: number): number {
    for (const vma of this.i_mmap) this.mm.zapVmaIndices(vma, start, end);
    this.pages.forEachInRange(start, end, (f) => {
      this.pages.remove(f.index, f.order);
      this.phys.setOwner(f.head, 0, 0);
      this.phys.put(f.head, 2 ** f.order);
    });
    return 0;
  }

  private truncateAll(): void {
    this.removeRange(0, Number.MAX_SAFE_INTEGER);
  }
}
