/**
 * The README comparison on a guest small enough to check by hand: a 4 GiB SEV-SNP guest on 1G
 * HugeTLB pages, eager vs lazy split. Every expected number below is derived in the comments.
 *
 * Units: a page is 4 KiB; a 2M leaf maps 512 pages, a 1G leaf 262,144; 1 GiB = 262,144 pages.
 * The guest has 4 1G blocks: B0 [0,1G) B1 [1G,2G) B2 [2G,3G) B3 [3G,4G); chunks are 4 MiB,
 * chunk i = [4i MiB, 4(i+1) MiB), 1024 chunks, 256 per block.
 *
 * Layout (lazy-accept.ts): low = min(4 GiB, guest) = 4 GiB; bounce pool = 1 GiB at
 * align2M(4G − 1G) = 3G: exactly B3. Per-CPU pages (4 vCPUs): cpu i's GHCB at 3G − 2M + 8K·i,
 * its private backup page right after: all in the last 2M of B2. Boot-accepted chunks:
 * [align4M(3G − 2M), 4G) = [3G − 4M, 4G) = chunks 767..1023 (257 chunks). Events: the other
 * 767 chunks, 0..766, in address order.
 *
 * Boot (vCPU 0):
 *  1. 257 chunks: PSC →private (a no-op: guest_memfd starts private), PVALIDATE sweep
 *     (KVM_PRE_FAULT_MEMORY). Chunk 767 allocates B2's 1G folio, mapped by a 1G leaf; chunk 768
 *     allocates B3's, mapped 1G; chunks 769..1023 are already mapped. → 2 stage-2 faults.
 *  2. The pool →shared: 3 PSCs (253 × 2M = 506 MiB, 506 MiB, 12 MiB). The first zaps B3's 1G leaf
 *     (1 leaf zapped, 1 TLB flush). Eager: B3's folio is split to 4K (split #1).
 *  3. 4 GHCB pages →shared, one PSC each. The first zaps B2's 1G leaf (1 leaf, 1 flush); eager
 *     splits B2's folio (split #2). Then each CPU writes its GHCB (shared) and its backup page
 *     (private), both in the mixed last 2M of B2: 8 faults, 8 4K leaves under both policies
 *     (eager: the folio is split; lazy: that 2M range is mixed).
 * Events 0..766 (chunk n each):
 *  - Chunks 0..511 (B0, B1): the first of each block allocates the 1G folio and maps a 1G leaf,
 *    the others find it mapped. → 2 faults, 2 × 262,144 pages at 1G.
 *  - Chunks 512..766 (B2 but its last 4 MiB, which boot accepted and the GHCB conversion
 *    unmapped): 255 chunks × 1024 pages = 261,120 pages. Eager: B2's folio is 4K folios, so
 *    261,120 4K leaves and faults. Lazy: the folio is whole and each 2M of these chunks is
 *    uniformly private, so 255 × 2 = 510 2M leaves (510 faults).
 *  - io_every 16: events 15, 31, ..., 751 → 47 virtio requests through slots 0..46 of the pool
 *    (16 KiB = 4 pages each). Even requests are disk reads (host writes then the guest reads),
 *    odd ones writes (guest writes then the host reads): the host touches 4 pages per request
 *    (47 × 4 = 188 host faults), the guest one page, mapped 4K (47 faults, 47 4K leaves). Lazy:
 *    request 0's host fault is the first host fault in B3: B3's folio is split then (split #1).
 *
 * Totals:
 *                        eager                               lazy
 *  stage-2 at 4K         261,120 + 8 + 47 = 261,175          8 + 47 = 55
 *  stage-2 (vehicle) 1G  2 × 262,144 = 524,288               524,288
 *  stage-2 (vehicle) 2M  0                                   510 × 512 = 261,120
 *  as SNP maps it, 2M    524,288 (1G leaves count as 2M)      524,288 + 261,120 = 785,408
 *  1G folios whole/split 2 / 2 (B0, B1 / B2, B3)             3 / 1 (B3 split)
 *  splits, merges        2, 0                                1, 0
 *  vmemmap pages         2 × 4,095 = 8,190                   4,095   (a 1G folio: 4,096 vmemmap pages, HVO keeps 1)
 *  stage-2 faults        2 + 8 + 2 + 261,120 + 47 = 261,179  2 + 8 + 2 + 510 + 47 = 569
 *  host faults           188                                 188
 *  invalidations         3 pool + 4 GHCB = 7 (no-ops do none) 7 + 1: the host fault that splits B3
 *                                                            invalidates B3's KVM mappings (a huge leaf
 *                                                            may map the whole folio; here none is left)
 *  leaves zapped, flushes 2, 2                               2, 2
 *  conversions           257 + 3 + 4 + 767 = 1,031 requested and done, 257 + 767 = 1,024 no-ops,
 *                        262,144 + 4 = 262,148 pages converted (both)
 *  PSC requests 1,031; PVALIDATE at 2M: 1,024 chunks × 2 = 2,048 (both).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runScenario } from '../../src/sim/run.js';
import { parseScenario } from '../../src/sim/scenario.js';

const SCENARIO = `
name: hand-4g
guest: 4GiB
vm: snp
backing: 1G
uapi: in-place
vcpus: 4
workload:
  type: snp-lazy-accept
  chunk: 4MiB
  order: sequential
  initial: private
  bounce: 1GiB
  percpu_shared: true
  io_every: 16
  io_size: 16KiB
compare:
  split: [eager, lazy]
seed: 1
`;

test('4 GiB SNP guest on 1G pages: eager vs lazy split, checked by hand', () => {
  const r = runScenario(parseScenario(SCENARIO, 'hand-4g.yaml'));
  const [eager, lazy] = r.policies;
  assert.ok(eager !== undefined && lazy !== undefined);
  assert.equal(eager.label, 'split=eager');
  assert.equal(lazy.label, 'split=lazy');
  for (const p of [eager, lazy]) {
    assert.equal(p.steps, 767);
    assert.equal(p.final.sim.events, 767);
    assert.equal(p.final.sim.conversions_requested, 1031);
    assert.equal(p.final.sim.conversions_done, 1031);
    assert.equal(p.final.sim.conversions_noop, 1024);
    assert.equal(p.final.sim.conversions_failed, 0);
    assert.equal(p.final.sim.eagain_returns, 0);
    assert.equal(p.final.sim.pages_converted, 262148);
    assert.equal(p.final.sim.host_io, 47);
    assert.equal(p.final.sim.content_lost, 0);
    assert.equal(p.final.host_faults, 188);
    assert.equal(p.final.sigbus, 0);
    assert.equal(p.final.zapped_leaves, 2);
    assert.equal(p.final.tlb_flushes, 2);
    assert.equal(p.final.merges, 0);
    assert.deepEqual(p.final.arch, { psc_requests: 1031, pvalidate_2m: 2048, pvalidate_4k: 0 });
    assert.deepEqual(p.final.model_conversions, { done: 1031, eagain: 0, failed: 0, pages: 262148 });
  }
  // Eager: B2 and B3 split at conversion; B2's private memory maps at 4K.
  assert.deepEqual(eager.final.stage2_raw, { '4k': 261175, '2m': 0, '1g': 524288 });
  assert.deepEqual(eager.final.stage2, { '4k': 261175, '2m': 524288, '1g': 0 });
  assert.deepEqual(eager.final.huge_folios, { whole_2m: 0, split_2m: 0, whole_1g: 2, split_1g: 2 });
  assert.equal(eager.final.splits, 2);
  assert.equal(eager.final.vmemmap_pages_allocated, 8190);
  assert.equal(eager.final.vmemmap_pages_in_use, 8190);
  assert.equal(eager.final.guest_faults, 261179);
  assert.equal(eager.final.invalidations, 7);
  // Lazy: only B3 splits, at the host's first fault; B2 maps at 2M around its mixed 2M.
  assert.deepEqual(lazy.final.stage2_raw, { '4k': 55, '2m': 261120, '1g': 524288 });
  assert.deepEqual(lazy.final.stage2, { '4k': 55, '2m': 785408, '1g': 0 });
  assert.deepEqual(lazy.final.huge_folios, { whole_2m: 0, split_2m: 0, whole_1g: 3, split_1g: 1 });
  assert.equal(lazy.final.splits, 1);
  assert.equal(lazy.final.vmemmap_pages_allocated, 4095);
  assert.equal(lazy.final.vmemmap_pages_in_use, 4095);
  assert.equal(lazy.final.guest_faults, 569);
  assert.equal(lazy.final.invalidations, 8);
});
