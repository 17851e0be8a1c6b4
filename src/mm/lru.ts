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
  private readonly heads: number[] = [];
  nr_drains = 0;

  constructor(private readonly phys: PhysMem) {}

  /** folio_add_lru: take a reference and queue; drain when full. */
  add(head: Pfn): void {
    this.phys.get(head);
    this.heads.push(head);
    if (this.heads.length >= LRU_BATCH_SIZE) this.drainAll();
  }

  /** lru_add_drain_all: every queued folio reaches the LRU and the batch drops its reference. */
  drainAll(): void {
    if (this.heads.length === 0) return;
    this.nr_drains++;
    const heads = this.heads.splice(0, this.heads.length);
    for (const head of heads) this.phys.put(head as Pfn);
  }

  /** References the batch holds on `head` (checker). */
  refsOn(head: number): number {
    let n = 0;
    for (const h of this.heads) if (h === head) n++;
    return n;
  }

  get size(): number {
    return this.heads.length;
  }

  /** The queued heads, in order (digest). */
  get queued(): readonly number[] {
    return this.heads;
  }
}
