/**
 * What guest_memfd needs from the kernel around it: physical memory, the process address space
 * (for unmapping host PTEs), the design policy in force, and counters for metrics.
 */
import type { PhysMem } from '../mm/memmap.js';
import type { Mm } from '../mm/mm.js';
import type { Policy } from '../kvm/policy.js';
import type { LruBatch } from '../mm/lru.js';

export class GmemStats {
  conversions_done = 0;
  conversions_eagain = 0;
  conversions_failed = 0;
  pages_converted = 0;
  invalidations = 0;
  host_faults = 0;
  sigbus = 0;
  /** Rollback steps a failed R51-style conversion undid (each a WARN there). */
  rollbacks = 0;
}

export interface GmemContext {
  readonly phys: PhysMem;
  readonly mm: Mm;
  readonly policy: Policy;
  readonly stats: GmemStats;
  /** The LRU add batch new order-0 folios join (null: folios stay off the LRU). */
  readonly lru: LruBatch | null;
}
