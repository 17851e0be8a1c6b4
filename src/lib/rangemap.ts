/**
 * An ordered map of disjoint ranges [start, end) → value that always covers [0, end_index),
 * with equal neighbours merged after every store (as the kernel's maple tree does for
 * guest_memfd attributes and bindings).
 *
 * Structure: a skip list of range nodes keyed by start. Cost per operation O(log n + k), n the
 * number of distinct ranges, k the ranges a store overlaps (and removes). Node levels come from
 * a fixed-seed generator, so the structure (and every run) is deterministic. Values are compared
 * with ===.
 *
 * Indices are page indices (or gfns): integers below 2^53.
 */
import { assert } from './assert.js';

export interface Run<V> {
  start: number;
  end: number;
  value: V;
}

const MAX_LEVEL = 24;

class Node<V> {
  readonly next: Array<Node<V> | null>;
  constructor(public start: number, public value: V, level: number) {
    this.next = new Array<Node<V> | null>(level).fill(null);
  }
}

export class RangeMap<V> {
  readonly end_index: number;
  /** Sentinel head; head.next[0] is the range starting at 0. */
  private readonly head: Node<V>;
  private level = 1;
  private count = 1;
  private seed = 0x2545f491;
  /** Scratch for the update path (one per map: calls are not re-entrant). */
  private readonly update: Array<Node<V>> = new Array<Node<V>>(MAX_LEVEL);

  constructor(end_index: number, initial: V) {
    assert(Number.isSafeInteger(end_index) && end_index >= 0, () => `bad RangeMap size ${end_index}`);
    this.end_index = end_index;
    this.head = new Node<V>(-1, initial, MAX_LEVEL);
    const first = new Node<V>(0, initial, 1);
    this.head.next[0] = first;
  }

  /** Number of distinct ranges. */
  get nr_ranges(): number {
    return this.count;
  }

  private randomLevel(): number {
    // xorshift32, fixed seed: deterministic levels with p = 1/4.
    let x = this.seed;
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    this.seed = x;
    let level = 1;
    while (level < MAX_LEVEL && (x & 3) === 0) {
      level++;
      x >>>= 2;
    }
    return level;
  }

  /** The node whose range contains `index`; fills `update` with the last node before it per level. */
  private findNode(index: number, fillUpdate: boolean): Node<V> {
    let x = this.head;
    for (let l = this.level - 1; l >= 0; l--) {
      let nx = x.next[l] ?? null;
      while (nx !== null && nx.start <= index) {
        x = nx;
        nx = x.next[l] ?? null;
      }
      if (fillUpdate) this.update[l] = x;
    }
    return x;
  }

  private endOf(n: Node<V>): number {
    const nx = n.next[0] ?? null;
    return nx === null ? this.end_index : nx.start;
  }

  get(index: number): V {
    return this.findNode(index, false).value;
  }

  /** The value if every index of [start, end) has the same one. */
  uniform(start: number, end: number): { found: true; value: V } | { found: false } {
    const n = this.findNode(start, false);
    if (this.endOf(n) >= end) return { found: true, value: n.value };
    return { found: false };
  }

  allEqual(start: number, end: number, v: V): boolean {
    const u = this.uniform(start, end);
    return u.found && u.value === v;
  }

  /** How many indices of [start, end) have a value other than `v`. */
  countNotEqual(start: number, end: number, v: V): number {
    let n = 0;
    for (let x: Node<V> | null = this.findNode(start, false); x !== null && x.start < end; x = x.next[0] ?? null) {
      if (x.value !== v) n += Math.min(this.endOf(x), end) - Math.max(x.start, start);
    }
    return n;
  }

  /** The first index in [start, end) whose value is `v`, or -1. */
  firstEqual(start: number, end: number, v: V): number {
    for (let n: Node<V> | null = this.findNode(start, false); n !== null && n.start < end; n = n.next[0] ?? null) {
      if (n.value === v) return Math.max(n.start, start);
    }
    return -1;
  }

  /** The maximal runs inside [start, end), clipped to it. */
  *runs(start: number, end: number): IterableIterator<Run<V>> {
    if (start >= end) return;
    for (let n: Node<V> | null = this.findNode(start, false); n !== null && n.start < end; n = n.next[0] ?? null) {
      yield { start: Math.max(n.start, start), end: Math.min(this.endOf(n), end), value: n.value };
    }
  }

  /** Insert a node starting at `start` after the nodes recorded in `update`. */
  private insertAfterUpdate(start: number, value: V): Node<V> {
    const level = this.randomLevel();
    if (level > this.level) {
      for (let l = this.level; l < level; l++) this.update[l] = this.head;
      this.level = level;
    }
    const n = new Node<V>(start, value, level);
    for (let l = 0; l < level; l++) {
      const prev = this.update[l] as Node<V>;
      n.next[l] = prev.next[l] ?? null;
      prev.next[l] = n;
    }
    this.count++;
    return n;
  }

  /** Unlink node `n`; `update` must hold its predecessors per level. */
  private unlink(n: Node<V>): void {
    for (let l = 0; l < this.level; l++) {
      const prev = this.update[l] as Node<V>;
      if (prev.next[l] === n) prev.next[l] = n.next[l] ?? null;
    }
    while (this.level > 1 && this.head.next[this.level - 1] === null) this.level--;
    this.count--;
  }

  /** Split so that a node starts exactly at `index` (index < end_index); returns it. */
  private splitAt(index: number): Node<V> {
    const n = this.findNode(index, true);
    if (n.start === index) return n;
    // Predecessors of the new node are n (at levels where n reaches) or update[l].
    for (let l = 0; l < n.next.length; l++) this.update[l] = n;
    return this.insertAfterUpdate(index, n.value);
  }

  /** Store `value` over [start, end), merging with equal neighbours. */
  set(start: number, end: number, value: V): void {
    assert(start >= 0 && end <= this.end_index && start < end,
      () => `RangeMap.set [${start}, ${end}) out of [0, ${this.end_index})`);
    if (end < this.end_index) this.splitAt(end);
    const first = this.splitAt(start);
    // Remove every node strictly inside (start, end).
    for (let nx = first.next[0] ?? null; nx !== null && nx.start < end; nx = first.next[0] ?? null) {
      this.findNode(nx.start - 1, true);
      // update[l] is the predecessor of nx at each level where nx is linked (first or earlier).
      this.unlink(nx);
    }
    first.value = value;
    // Merge with the next range, then with the previous one.
    const after = first.next[0] ?? null;
    if (after !== null && after.value === value) {
      this.findNode(after.start - 1, true);
      this.unlink(after);
    }
    if (first.start > 0) {
      const prev = this.findNode(first.start - 1, false);
      if (prev.value === value) {
        this.findNode(first.start - 1, true);
        this.unlink(first);
      }
    }
  }

  *all(): IterableIterator<Run<V>> {
    yield* this.runs(0, this.end_index);
  }

  /** Checker: ranges cover [0, end) in order, no two neighbours are equal, counts agree. */
  checkWellFormed(what: string): void {
    const first = this.head.next[0] ?? null;
    assert(first !== null && first.start === 0, () => `${what}: first range does not start at 0`);
    let n = 0;
    let prev: Node<V> | null = null;
    for (let x: Node<V> | null = first; x !== null; x = x.next[0] ?? null) {
      n++;
      if (prev !== null) {
        const p = prev;
        assert(x.start > p.start, () => `${what}: ranges out of order at ${x.start}`);
        assert(x.value !== p.value, () => `${what}: unmerged equal neighbours at ${x.start}`);
      }
      assert(x.start < this.end_index || this.end_index === 0, () => `${what}: range starts past the end`);
      prev = x;
    }
    assert(n === this.count, () => `${what}: ${this.count} ranges counted, ${n} linked`);
  }
}
