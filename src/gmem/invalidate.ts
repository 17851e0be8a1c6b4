/**
 * The invalidate sequence (kvm_gmem_invalidate_begin/end): for every file of the inode and every
 * binding overlapping [start, end), zap the bound gfn range in that file's VM. Begin and end are
 * balanced per file, which is why bindings may change only under the invalidate lock.
 */
import { assert } from '../lib/assert.js';
import type { InvalidateFilter } from './consumer.js';
import type { GmemFile } from './file.js';
import type { GmemInode } from './inode.js';

/** Begin: returns the files that had a binding in range, for the matching end. */
const NONE: GmemFile[] = [];

export function invalidateBegin(inode: GmemInode, start: number, end: number, filter: InvalidateFilter): GmemFile[] {
  assert(inode.invalidate_lock.held, 'invalidate without the invalidate lock');
  let touched = NONE;
  for (const file of inode.files) {
    let begun = false;
    // Fast path: a file with no binding in range (the common unbound case) costs one lookup.
    if (file.bindings.allEqual(start, Math.min(end, inode.nr_pages), null)) continue;
    for (const run of file.bindings.runs(start, Math.min(end, inode.nr_pages))) {
      const slot = run.value;
      if (slot === null) continue;
      if (!begun) {
        file.owner.invalidateBegin();
        begun = true;
        if (touched === NONE) touched = [];
        touched.push(file);
      }
      const gfn_start = slot.base_gfn + (run.start - slot.gmem_pgoff);
      const gfn_end = slot.base_gfn + (run.end - slot.gmem_pgoff);
      file.owner.zapGfnRange(gfn_start, gfn_end, filter);
    }
  }
  return touched;
}

export function invalidateEnd(touched: GmemFile[]): void {
  for (const file of touched) file.owner.invalidateEnd();
}

/** The 6.18 filter: files created INIT_SHARED hold shared mappings only; others private ones. */
export function filterFor(inode: GmemInode): InvalidateFilter {
  if (inode.shareability !== null) return 'both';
  return inode.init_shared ? 'shared' : 'private';
}

/**
 * A folio of [start, end) was split in place: every VM bound there drops (or demotes) the mappings
 * larger than 4K, inside an invalidate begin/end of its own. Returns how many VMs took part.
 */
export function splitHugeMappings(inode: GmemInode, start: number, end: number): number {
  assert(inode.invalidate_lock.held, 'restructure without the invalidate lock');
  let n = 0;
  for (const file of inode.files) {
    if (file.bindings.allEqual(start, Math.min(end, inode.nr_pages), null)) continue;
    file.owner.invalidateBegin();
    n++;
    for (const run of file.bindings.runs(start, Math.min(end, inode.nr_pages))) {
      const slot = run.value;
      if (slot === null) continue;
      file.owner.splitHugeMappings(slot.base_gfn + (run.start - slot.gmem_pgoff), slot.base_gfn + (run.end - slot.gmem_pgoff));
    }
    file.owner.invalidateEnd();
  }
  return n;
}
