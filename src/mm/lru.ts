/**
 * The per-CPU LRU add batch (folio_batch in lru_add): a folio added to the LRU waits here, holding
 * one reference, until the batch is full or someone drains it (lru_add_drain_all). That reference
 * is what made the in-place conversion's refcount check fail in early postings, and why the final
 * design drains once before declaring a folio unsafe. The model has one CPU, so one batch.
 * HugeTLB folios never enter the LRU.
 */
import type { Pfn } from '../lib/types.js';
import type { PhysMem } from './memmap.js';

/** folio_batch size (PAGEVEC_SIZE). */
export const LRU_BATCH_SIZE = 31;

export class LruBatch {
  private readonly heads = new Int32Array(LRU_BATCH_SIZE);
  private count = 0;
  nr_drains = 0;

  constructor(private readonly phys: PhysMem) {}

  /** folio_add_lru: take a reference and queue; drain when full. */
  add(head: Pfn): void {
    this.phys.get(head);
    this.heads[this.count++] = head;
    if (this.count === LRU_BATCH_SIZE) this.drainAll();
  }

  /** lru_add_drain_all: every queued folio reaches the LRU and the batch drops its reference. */
  drainAll(): void {
    const n = this.count;
    if (n === 0) return;
    this.nr_drains++;
    this.count = 0;
    // A put may free a folio (punched while queued); nothing re-enters add() from there.
    for (let i = 0; i < n; i++) this.phys.put(this.heads[i] as Pfn);
  }

  /** References the batch holds on `head` (checker). */
  refsOn(head: number): number {
    let n = 0;
    for (let i = 0; i < this.count; i++) if (this.heads[i] === head) n++;
    return n;
  }

  get size(): number {
    return this.count;
  }

  /** The queued heads, in order (digest). */
  get queued(): readonly number[] {
    return Array.from(this.heads.subarray(0, this.count));
  }
}
