/**
 * In-place shared↔private conversion of a guest_memfd range, in the kernel's order of steps
 * (in-place-conversion-and-hugetlb.md §3), under the policy in force:
 *
 *   invalidate lock (exclusive) → no-op if already in the target state → [to private: unmap host
 *   PTEs, safe-refcount check → EAGAIN] → [preallocate vmemmap for eager splits → ENOMEM]
 *   --- point of no return --- → KVM invalidate begin + zap (filter) → store → restructure folios
 *   (eager split / merge) → invalidate end → unlock.
 *
 * Atomicity: 'all-or-nothing' runs that over the whole request; 'per-huge-page' over one huge
 * block at a time (earlier blocks stay converted on failure); 'rollback' executes a work list and
 * undoes it in reverse if a step fails (R51).
 */
import { assert } from '../lib/assert.js';
import type { Pfn } from '../lib/types.js';
import { EAGAIN, ENOMEM } from '../uapi/errno.js';
import { VMEMMAP_PAGES_PER_SPLIT } from '../mm/hugetlb.js';
import type { GmemContext } from './context.js';
import { type GmemInode, PRIVATE, SHARED } from './inode.js';
import { invalidateBegin, invalidateEnd } from './invalidate.js';
import { mergeBlock, splitBlock } from './restructure.js';
import type { InvalidateFilter } from './consumer.js';

export interface ConvertOutcome {
  /** 0 or the errno. */
  errno: number;
  /** The page index to report as error_offset (bytes = index × 4096), or null: leave it unset. */
  error_index: number | null;
}

const OK: ConvertOutcome = { errno: 0, error_index: null };

/** Convert [start, end) (page indices, within the file) to private or shared. */
export function gmemConvert(inode: GmemInode, ctx: GmemContext, start: number, end: number, to_private: boolean): ConvertOutcome {
  const sh = inode.shareability;
  assert(sh !== null, 'conversion of a file without per-index shareability');
  const target = to_private ? PRIVATE : SHARED;
  inode.invalidate_lock.downWrite();
  try {
    if (sh.allEqual(start, end, target)) {
      ctx.stats.conversions_done++;
      return OK;
    }
    if (ctx.policy.atomicity === 'per-huge-page' && inode.huge_order > 0) {
      for (const [s, e] of hugeChunks(inode, start, end)) {
        if (sh.allEqual(s, e, target)) continue;
        const r = convertChunk(inode, ctx, s, e, to_private);
        if (r.errno !== 0) return failed(ctx, r);
      }
    } else {
      const r = convertChunk(inode, ctx, start, end, to_private);
      if (r.errno !== 0) return failed(ctx, r);
    }
    ctx.stats.conversions_done++;
    return OK;
  } finally {
    inode.invalidate_lock.upWrite();
  }
}

function failed(ctx: GmemContext, r: ConvertOutcome): ConvertOutcome {
  if (r.errno === EAGAIN) ctx.stats.conversions_eagain++;
  else ctx.stats.conversions_failed++;
  return r;
}

function hugeChunks(inode: GmemInode, start: number, end: number): Array<readonly [number, number]> {
  const nr = inode.folio_pages;
  const out: Array<readonly [number, number]> = [];
  for (let b = Math.floor(start / nr) * nr; b < end; b += nr) out.push([Math.max(b, start), Math.min(b + nr, end)]);
  return out;
}

function convertChunk(inode: GmemInode, ctx: GmemContext, s: number, e: number, to_private: boolean): ConvertOutcome {
  const sh = inode.shareability as NonNullable<GmemInode['shareability']>;
  const target = to_private ? PRIVATE : SHARED;
  if (to_private) {
    // Host PTEs go first, so that mapcount references do not count; they may refault later.
    for (const vma of inode.i_mmap) ctx.mm.zapVmaIndices(vma, s, e);
    let bad = firstUnsafe(inode, ctx, s, e);
    if (bad !== null && ctx.lru !== null && ctx.policy.lru === 'drain-once' && ctx.lru.size > 0) {
      // The extra reference may be the LRU add batch's: drain once, then check again.
      ctx.lru.drainAll();
      bad = firstUnsafe(inode, ctx, s, e);
    }
    if (bad !== null) return { errno: EAGAIN, error_index: errorIndex(ctx, s, bad) };
  }
  // Eager split on to-shared: every whole huge folio overlapping the chunk.
  const to_split = !to_private && ctx.policy.split === 'eager' && inode.huge_order > 0
    ? inode.pages.folios(s, e).filter((f) => f.order > 0 && f.split !== true).map((f) => f.index) : [];
  // A split freezes the folio at its page-cache references: a transient user makes it EAGAIN here,
  // before anything changed (the kernel spins until such a reference drops).
  for (const index of to_split) {
    const e = inode.pages.hugeEntry(index);
    if (e !== null && !(ctx.phys.hugetlb?.splittable(e.head) ?? false)) {
      return { errno: EAGAIN, error_index: errorIndex(ctx, s, { index: Math.max(s, e.index), folio_index: e.index }) };
    }
  }
  if (ctx.policy.atomicity !== 'rollback' && to_split.length > 0) {
    // Preallocation: the vmemmap pages all splits will need, before the point of no return.
    const cost = (VMEMMAP_PAGES_PER_SPLIT[inode.huge_order] as number) * to_split.length;
    if (ctx.phys.nr_buddy_free < cost) return { errno: ENOMEM, error_index: s };
  }
  // --- point of no return (for 'rollback': until a step fails) ---
  // R51 invalidates the range rounded out to whole huge blocks (every mapping of an affected block
  // goes); the in-place series zaps exactly the range (HugeTLB WIP: after splitting the KVM leaves
  // that cross its edges, which the VM does for TDX; other VMs zap a crossing huge leaf whole).
  const nr = inode.uapi === 'rfc-1g' ? inode.folio_pages : 1;
  const lo = Math.floor(s / nr) * nr;
  const hi = Math.min(inode.nr_pages, Math.ceil(e / nr) * nr);
  const touched = invalidateBegin(inode, lo, hi, filterOf(inode, s, e));
  ctx.stats.invalidations += touched.length;
  // Only a rollback needs the old values; everyone needs how many pages change.
  // Device mappings leave before pages become private (TDX: remove before →private).
  if (to_private) inode.notifyImporters(s, e, 'invalidate', 'to-private');
  const old = ctx.policy.atomicity === 'rollback' && to_split.length > 0 ? [...sh.runs(s, e)] : null;
  const changed = sh.countNotEqual(s, e, target);
  sh.set(s, e, target);
  inode.updateMixed(s, e);
  let failed = false;
  const done: number[] = [];
  for (const index of to_split) {
    if (!splitBlock(inode, ctx, index, true)) {
      failed = true;
      break;
    }
    done.push(index);
  }
  if (failed) {
    // 'rollback' (R51): undo in reverse; the shareability goes back, the splits are merged back.
    assert(old !== null, 'a split failed after preallocation');
    for (const r of old) sh.set(r.start, r.end, r.value);
    inode.updateMixed(s, e);
    for (const index of done.reverse()) {
      mergeBlock(inode, ctx, index);
      ctx.stats.rollbacks++;
    }
    invalidateEnd(touched);
    return { errno: ENOMEM, error_index: s };
  }
  if (to_private && ctx.policy.merge === 'eager' && inode.huge_order > 0) {
    for (const f of inode.pages.folios(s, e)) {
      if (f.split === true && inode.allPrivate(f.index, f.index + 2 ** f.order)) mergeBlock(inode, ctx, f.index);
    }
  }
  applyContentEffect(inode, ctx, s, e, to_private);
  ctx.stats.pages_converted += changed;
  invalidateEnd(touched);
  // …and come back only after pages became shared (add after →shared).
  if (!to_private) inode.notifyImporters(s, e, 'refresh', 'to-shared');
  return OK;
}

/**
 * The arch hook's effect on contents (SNP re-keys the page, TDX clears it; SW_PROTECTED and pKVM
 * preserve). Only pages someone wrote hold bytes, so the cost follows the written pages present.
 */
function applyContentEffect(inode: GmemInode, ctx: GmemContext, s: number, e: number, to_private: boolean): void {
  const owner = inode.files[0]?.owner;
  const effect = owner === undefined ? 'preserve' : owner.contentEffect(to_private);
  if (effect === 'preserve' || inode.pages.nr_folios === 0) return;
  const contents = ctx.phys.contents;
  for (const f of inode.pages.folios(s, e)) {
    const lo = Math.max(s, f.index);
    const hi = Math.min(e, f.split === true ? f.index + 2 ** f.order : f.index + 2 ** f.order);
    const first = (f.head + (lo - f.index)) as Pfn;
    if (effect === 'zero') {
      contents.zero(first, hi - lo);
      continue;
    }
    for (let i = 0; i < hi - lo; i++) {
      const page = contents.peek((first + i) as Pfn);
      if (page === null) continue;
      // Ciphertext under the other key: a deterministic stream per frame (the model has no AES).
      const key = ((first + i) * 2654435761) >>> 0;
      for (let b = 0; b < page.length; b++) page[b] = (page[b] as number) ^ ((key >>> ((b & 3) * 8)) & 0xff) ^ 0x5a;
    }
  }
}

/**
 * The safe-refcount check: a folio is safe when its references are exactly its page-cache
 * references (the kernel also counts the checker's own). Returns the offending page and folio
 * indices, or null.
 */
function firstUnsafe(inode: GmemInode, ctx: GmemContext, s: number, e: number): { index: number; folio_index: number } | null {
  const phys = ctx.phys;
  if (inode.pages.nr_folios === 0) return null;
  if (inode.huge_order === 0 && e - s === 1) {
    // The common 4 KiB case: one lookup, no walk.
    const p = inode.pages.pfnAt(s);
    return p >= 0 && phys.refcount(p as Pfn) !== 1 ? { index: s, folio_index: s } : null;
  }
  for (const f of inode.pages.folios(s, e)) {
    const nr = 2 ** f.order;
    if (f.split === true) {
      const lo = Math.max(s, f.index) - f.index;
      const hi = Math.min(e, f.index + nr) - f.index;
      const busy = phys.hugetlb?.firstBusySubpage(f.head, lo, hi) ?? -1;
      if (busy >= 0) return { index: f.index + busy, folio_index: f.index + busy };
      continue;
    }
    if (phys.refcount(f.head) !== nr) return { index: Math.max(s, f.index), folio_index: f.index };
  }
  return null;
}

function errorIndex(ctx: GmemContext, start: number, bad: { index: number; folio_index: number }): number | null {
  switch (ctx.policy.error_offset) {
    case 'max-start-folio': return Math.max(start, bad.folio_index);
    case 'folio-head': return bad.folio_index;
    case 'unset': return null;
  }
}

/** v8: PRIVATE if any private page in range, SHARED if any shared, both if mixed. */
function filterOf(inode: GmemInode, s: number, e: number): InvalidateFilter {
  const sh = inode.shareability as NonNullable<GmemInode['shareability']>;
  const u = sh.uniform(s, e);
  if (!u.found) return 'both';
  return u.value === PRIVATE ? 'private' : 'shared';
}
