/**
 * Splitting and merging HugeTLB folios of a guest_memfd in place, as the conversion and punch
 * paths need them. The page cache entry and the folio change together; a split costs vmemmap
 * pages (false when there are none), a merge needs every subpage to hold only its page-cache
 * reference (host PTEs of the block are unmapped first).
 */
import type { GmemContext } from './context.js';
import type { GmemInode } from './inode.js';
import { splitHugeMappings } from './invalidate.js';

/**
 * Split the whole huge folio of the block containing `index`, if there is one. False: no vmemmap
 * pages. `in_invalidation`: the caller (a conversion) already zapped the block inside its own
 * invalidate begin/end; otherwise (a host fault, lazy policy) the split brackets its own.
 */
export function splitBlock(inode: GmemInode, ctx: GmemContext, index: number, in_invalidation = false): boolean {
  const e = inode.pages.hugeEntry(index);
  if (e === null || e.split) return true;
  if (!(ctx.phys.hugetlb?.split(e.head) ?? false)) return false;
  inode.pages.setSplit(e.index, e.order, true);
  // KVM (and an IOMMU importer) may map parts of the folio with huge leaves: no leaf may stay
  // larger than the folio now is (TDX demotes them; the others zap them and refault at 4K). Inside
  // a conversion this nests in its invalidation and is not counted again.
  const end = e.index + 2 ** e.order;
  const vms = splitHugeMappings(inode, e.index, end);
  if (in_invalidation) return true;
  ctx.stats.invalidations += vms;
  inode.notifyImporters(e.index, end, 'invalidate', 'restructure');
  inode.notifyImporters(e.index, end, 'refresh', 'restructure');
  return true;
}

/** Unmap the block from host user space and merge it; false when a subpage is still referenced. */
export function mergeBlock(inode: GmemInode, ctx: GmemContext, index: number): boolean {
  const e = inode.pages.hugeEntry(index);
  if (e === null || !e.split) return true;
  const hugetlb = ctx.phys.hugetlb;
  if (hugetlb === null) return false;
  for (const vma of inode.i_mmap) ctx.mm.zapVmaIndices(vma, e.index, e.index + 2 ** e.order);
  if (!hugetlb.mergeable(e.head)) return false;
  hugetlb.merge(e.head);
  inode.pages.setSplit(e.index, e.order, false);
  return true;
}
