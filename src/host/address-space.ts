/**
 * Which parts of the Node process's address space the host backend may hand to the kernel for
 * destructive calls (munmap, MAP_FIXED, madvise, mprotect, store, pointer-valued ioctl args).
 *
 * The backend passes every call through, except one that would corrupt the Node process itself:
 * touching a mapping that the backend did not create (the V8 heap, libc, the addon, kvm_run).
 * Ranges mapped through the backend's mmap() are "owned"; a range that is not fully owned is
 * checked against /proc/self/maps (only then, so the common path costs nothing). Address space
 * that is not mapped at all is harmless: the kernel answers for it.
 */
import { readFileSync } from 'node:fs';
import { PAGE_SIZE } from '../uapi/linux.js';

/** A half-open range [start, end) of host virtual addresses. */
interface Range { start: number; end: number }

export function pageUp(len_bytes: number): number {
  return Math.ceil(len_bytes / PAGE_SIZE) * PAGE_SIZE;
}

export class OwnedRanges {
  /** Sorted, disjoint, non-adjacent. */
  private ranges: Range[] = [];

  add(start: number, len_bytes: number): void {
    if (len_bytes <= 0) return;
    let end = start + pageUp(len_bytes);
    let s = start;
    const kept: Range[] = [];
    for (const r of this.ranges) {
      if (r.end < s || r.start > end) kept.push(r);
      else { s = Math.min(s, r.start); end = Math.max(end, r.end); }
    }
    kept.push({ start: s, end });
    kept.sort((a, b) => a.start - b.start);
    this.ranges = kept;
  }

  remove(start: number, len_bytes: number): void {
    if (len_bytes <= 0) return;
    const end = start + pageUp(len_bytes);
    const kept: Range[] = [];
    for (const r of this.ranges) {
      if (r.end <= start || r.start >= end) { kept.push(r); continue; }
      if (r.start < start) kept.push({ start: r.start, end: start });
      if (r.end > end) kept.push({ start: end, end: r.end });
    }
    this.ranges = kept;
  }

  /** The parts of [start, start+len) that are not owned. */
  uncovered(start: number, len_bytes: number): Range[] {
    const end = start + len_bytes;
    const gaps: Range[] = [];
    let cursor = start;
    for (const r of this.ranges) {
      if (r.end <= cursor) continue;
      if (r.start >= end) break;
      if (r.start > cursor) gaps.push({ start: cursor, end: r.start });
      cursor = Math.max(cursor, r.end);
      if (cursor >= end) break;
    }
    if (cursor < end) gaps.push({ start: cursor, end });
    return gaps;
  }
}

/** The process's current mappings, from /proc/self/maps. */
function processMappings(): Range[] {
  const out: Range[] = [];
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const dash = line.indexOf('-');
    const space = line.indexOf(' ');
    if (dash <= 0 || space <= dash) continue;
    out.push({ start: parseInt(line.slice(0, dash), 16), end: parseInt(line.slice(dash + 1, space), 16) });
  }
  return out;
}

/**
 * The first address in [start, start+len) that belongs to a mapping the backend does not own,
 * or null when the whole range is owned or unmapped.
 */
export function firstForeignAddress(owned: OwnedRanges, start: number, len_bytes: number): number | null {
  const gaps = owned.uncovered(start, len_bytes);
  if (gaps.length === 0) return null;
  const maps = processMappings();
  for (const gap of gaps) {
    for (const m of maps) {
      if (m.start < gap.end && m.end > gap.start) return Math.max(m.start, gap.start);
    }
  }
  return null;
}
