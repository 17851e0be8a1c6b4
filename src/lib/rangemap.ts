/**
 * An ordered map of disjoint ranges [start, end) → value that always covers [0, end_index),
 * with equal neighbours merged after every store (as the kernel's maple tree does for
 * guest_memfd attributes and bindings). Cost per operation: O(log n + k) to find, plus the
 * array splice, where n is the number of distinct ranges and k the ranges overlapped.
 *
 * Indices are page indices (or gfns): integers below 2^53.
 */
import { assert } from './assert.js';

export interface Run<V> {
  start: number;
  end: number;
  value: V;
}

export class RangeMap<V> {
  /** starts[i] is the first index of range i; starts[0] === 0. */
  private starts: number[] = [0];
  private vals: V[];
  readonly end_index: number;

  constructor(end_index: number, initial: V) {
    assert(Number.isSafeInteger(end_index) && end_index >= 0, () => `bad RangeMap size ${end_index}`);
    this.end_index = end_index;
    this.vals = [initial];
  }

  /** Number of distinct ranges. */
  get nr_ranges(): number {
    return this.starts.length;
  }

  /** Index of the range containing `index`. */
  private find(index: number): number {
    const starts = this.starts;
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if ((starts[mid] as number) <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private rangeEnd(i: number): number {
    return i + 1 < this.starts.length ? (this.starts[i + 1] as number) : this.end_index;
  }

  get(index: number): V {
    return this.vals[this.find(index)] as V;
  }

  /** The value if every index of [start, end) has the same one, else undefined; `found` tells which. */
  uniform(start: number, end: number): { found: true; value: V } | { found: false } {
    const i = this.find(start);
    if (this.rangeEnd(i) >= end) return { found: true, value: this.vals[i] as V };
    return { found: false };
  }

  /** True when every index of [start, end) has value `v`. */
  allEqual(start: number, end: number, v: V): boolean {
    const u = this.uniform(start, end);
    return u.found && u.value === v;
  }

  /** True when some index of [start, end) has value `v`. */
  someEqual(start: number, end: number, v: V): boolean {
    for (let i = this.find(start); i < this.starts.length && (this.starts[i] as number) < end; i++) {
      if (this.vals[i] === v) return true;
    }
    return false;
  }

  /** The maximal runs inside [start, end), clipped to it. */
  *runs(start: number, end: number): IterableIterator<Run<V>> {
    if (start >= end) return;
    for (let i = this.find(start); i < this.starts.length && (this.starts[i] as number) < end; i++) {
      const s = Math.max(this.starts[i] as number, start);
      const e = Math.min(this.rangeEnd(i), end);
      yield { start: s, end: e, value: this.vals[i] as V };
    }
  }

  /** Store `value` over [start, end), merging with equal neighbours. */
  set(start: number, end: number, value: V): void {
    assert(start >= 0 && end <= this.end_index && start < end, () => `RangeMap.set [${start}, ${end}) out of [0, ${this.end_index})`);
    const i = this.find(start);
    const j = this.find(end - 1);
    const newStarts: number[] = [];
    const newVals: V[] = [];
    const iStart = this.starts[i] as number;
    if (iStart < start) { newStarts.push(iStart); newVals.push(this.vals[i] as V); }
    newStarts.push(start); newVals.push(value);
    const jEnd = this.rangeEnd(j);
    if (end < jEnd) { newStarts.push(end); newVals.push(this.vals[j] as V); }
    // Merge with the ranges before i and after j, and within the new pieces.
    let from = i;
    let to = j + 1;
    if (from > 0 && this.vals[from - 1] === newVals[0]) {
      from -= 1;
      newStarts[0] = this.starts[from] as number;
    }
    if (to < this.starts.length && this.vals[to] === newVals[newVals.length - 1]) {
      to += 1;
    }
    const mStarts: number[] = [];
    const mVals: V[] = [];
    for (let k = 0; k < newStarts.length; k++) {
      if (mVals.length > 0 && mVals[mVals.length - 1] === newVals[k]) continue;
      mStarts.push(newStarts[k] as number);
      mVals.push(newVals[k] as V);
    }
    this.starts.splice(from, to - from, ...mStarts);
    this.vals.splice(from, to - from, ...mVals);
  }

  /** Debug/checker view: every range, in order. */
  *all(): IterableIterator<Run<V>> {
    yield* this.runs(0, this.end_index);
  }

  /** Checker: ranges cover [0, end) in order, and no two neighbours are equal. */
  checkWellFormed(what: string): void {
    assert(this.starts[0] === 0, () => `${what}: first range does not start at 0`);
    for (let i = 1; i < this.starts.length; i++) {
      assert((this.starts[i] as number) > (this.starts[i - 1] as number), () => `${what}: ranges out of order at ${i}`);
      assert(this.vals[i] !== this.vals[i - 1], () => `${what}: unmerged equal neighbours at ${this.starts[i]}`);
    }
    assert(this.starts.length === 1 || (this.starts[this.starts.length - 1] as number) < this.end_index,
      () => `${what}: range starts past the end`);
  }
}
