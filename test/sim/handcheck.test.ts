/**
 * The README comparison on a guest small enough to check by hand: a 4 GiB SEV-SNP guest on 1G
 * HugeTLB pages, eager vs lazy split. Every expected number below is derived in the comments.
 *
 * The guest runs on the model's KVM_X86_SNP_VM (uapi in-place has it: KVM_CAP_VM_TYPES bit 4), so
 * the levels are the model's own: private leaves are at most 2M (RMP entries are 4K or 2M), and
 * each access is private or shared as the guest says (bounce buffers and GHCBs shared, the rest
 * private). The simulator adds no level rule for SNP: `stage2` (as SNP maps it) = `stage2_model`.
 *
 * Units: a page is 4 KiB; a 2M leaf maps 512 pages, a 1G leaf 262,144; 1 GiB = 262,144 pages.
 * The guest has 4 1G blocks: B0 [0,1G) B1 [1G,2G) B2 [2G,3G) B3 [3G,4G); chunks are 4 MiB,
 * chunk i = [4i MiB, 4(i+1) MiB), 1024 chunks, 256 per block, 2 2M ranges each.
 *
 * Layout (lazy-accept.ts): low = min(4 GiB, guest) = 4 GiB; bounce pool = 1 GiB at
 * align2M(4G − 1G) = 3G: exactly B3. Per-CPU pages (4 vCPUs): cpu i's GHCB at 3G − 2M + 8K·i,
 * its private backup page right after: all in the last 2M of B2. Boot-accepted chunks:
 * [align4M(3G − 2M), 4G) = [3G − 4M, 4G) = chunks 767..1023 (257 chunks). Events: the other
 * 767 chunks, 0..766, in address order.
 *
 * Boot (vCPU 0):
 *  1. 257 chunks: PSC →private (a no-op: guest_memfd starts private), PVALIDATE at 2M (2 per
 *     chunk), the sweep KVM_PRE_FAULT_MEMORY over the chunk. Each chunk is two uniform private 2M
 *     ranges of a 1G folio: the model maps min(1G folio, 1G slot alignment, SNP's 2M) = 2M, two
 *     faults and two 2M leaves per chunk. Chunk 767 allocates B2's folio, chunk 768 B3's.
 *     → 514 faults, 514 2M leaves (2 in B2, 512 in B3).
 *  2. The pool →shared: 3 PSCs (253 × 2M = 506 MiB, 506 MiB, 12 MiB); each invalidates exactly
 *     its range and zaps the 2M leaves there. Lazy: 253, 253 and 6 leaves (512 in all), one TLB
 *     flush each (3). Eager: the first PSC zaps its 253 leaves (1 flush) and splits B3's folio to
 *     4K (split #1), and no leaf may stay larger than the folio: B3's other 259 2M leaves go too
 *     (1 flush); the other two PSCs find nothing. Eager: 512 leaves, 2 flushes.
 *  3. 4 GHCB pages →shared, one PSC each, each an invalidation of exactly the converted page (the
 *     in-place series zaps the range, not the whole folio; a huge leaf crossing it goes whole on
 *     SNP). The first zaps the 2M leaf of chunk 767's upper half [3G − 2M, 3G) (1 flush). Lazy: its
 *     lower half [3G − 4M, 3G − 2M) stays mapped at 2M. Eager: B2's folio is split (split #2) and
 *     that lower 2M leaf goes with it (1 more leaf, 1 more flush). Then each CPU writes its GHCB
 *     (a shared access) and its backup page (a private access), all in the last 2M of B2, which is
 *     mixed: 8 faults, 8 4K leaves under both policies (eager: the folio is 4K folios; lazy: the
 *     folio is whole but the 2M range is mixed, so the largest order KVM may map is 0). A shared
 *     guest access goes straight to guest_memfd (the slot is guest_memfd-only for an MMAP file):
 *     no host fault, no lazy split.
 * Events 0..766 (chunk n each, PSC no-op + 2 PVALIDATE at 2M + the sweep):
 *  - Chunks 0..511 (B0, B1): two 2M leaves each: 1,024 faults, 1,024 × 512 = 524,288 pages at 2M.
 *  - Chunks 512..766 (B2 but its last 4 MiB): 255 chunks × 1024 = 261,120 pages. Eager: B2's
 *    folio is 4K folios, so 261,120 4K leaves and faults. Lazy: the folio is whole and each 2M
 *    of these chunks is uniformly private, so 255 × 2 = 510 2M leaves (510 faults).
 *  - io_every 16: events 15, 31, ..., 751 → 47 virtio requests through slots 0..46 of the pool
 *    (16 KiB = 4 pages each). Even requests are disk reads (host writes then the guest reads),
 *    odd ones writes (guest writes then the host reads): the host touches 4 pages per request
 *    (47 × 4 = 188 host faults), the guest one page, shared, mapped 4K (B3's folio is 4K folios:
 *    eager since boot, lazy since request 0's host fault split it, split #1): 47 faults, 47 4K
 *    leaves.
 *
 * Totals:
 *                        eager                               lazy
 *  stage-2 at 4K         261,120 + 8 + 47 = 261,175          8 + 47 = 55
 *  stage-2 at 2M         1,024 × 512 = 524,288               (1,024 + 510 + 1) × 512 = 785,920
 *                                                            (+1: chunk 767's lower 2M, mapped at boot
 *                                                            and never zapped)
 *  stage-2 at 1G         0 (SNP: private ≤ 2M; the shared pool is 4K folios)
 *  (the per-level figures the simulator's ≤ 2M clamp of the SW_PROTECTED vehicle's 1G leaves used to
 *  give; the fault and zap counts differ: the model now faults and zaps the 2M leaves one by one)
 *  1G folios whole/split 2 / 2 (B0, B1 / B2, B3)             3 / 1 (B3 split)
 *  splits, merges        2, 0                                1, 0
 *  vmemmap pages         2 × 4,095 = 8,190                   4,095   (a 1G folio: 4,096 vmemmap pages, HVO keeps 1)
 *  stage-2 faults        514 + 8 + 1,024 + 261,120 + 47      514 + 8 + 1,024 + 510 + 47 = 2,103
 *                        = 262,713
 *  host faults           188                                 188
 *  invalidations         3 pool + 4 GHCB = 7 (no-ops do none) 7 + 1: the host fault that splits B3
 *                                                            invalidates B3's KVM mappings (a huge leaf
 *                                                            may map the whole folio; here none is left)
 *  leaves zapped, flushes 512 + 2 = 514, 2 + 2 = 4           512 + 1 = 513, 3 + 1 = 4
 *  conversions           257 + 3 + 4 + 767 = 1,031 requested and done, 257 + 767 = 1,024 no-ops,
 *                        262,144 + 4 = 262,148 pages converted, no memory-fault exit (both)
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
    assert.equal(p.final.tlb_flushes, 4);
    assert.equal(p.final.merges, 0);
    assert.deepEqual(p.final.arch, { psc_requests: 1031, pvalidate_2m: 2048, pvalidate_4k: 0 });
    assert.deepEqual(p.final.model_conversions, { done: 1031, eagain: 0, failed: 0, pages: 262148 });
    assert.equal(p.final.sim.implicit_conversions, 0);
    assert.equal(p.vm_type.name, 'KVM_X86_SNP_VM');
    assert.deepEqual(p.final.stage2, p.final.stage2_model, 'no simulator level rule on the SNP VM type');
  }
  assert.equal(r.scenario.sim_level_rules, null);
  // Eager: B2 and B3 split at conversion; B2's private memory maps at 4K.
  assert.deepEqual(eager.final.stage2_model, { '4k': 261175, '2m': 524288, '1g': 0 });
  assert.equal(eager.final.zapped_leaves, 514);
  assert.deepEqual(eager.final.huge_folios, { whole_2m: 0, split_2m: 0, whole_1g: 2, split_1g: 2 });
  assert.equal(eager.final.splits, 2);
  assert.equal(eager.final.vmemmap_pages_allocated, 8190);
  assert.equal(eager.final.vmemmap_pages_in_use, 8190);
  assert.equal(eager.final.guest_faults, 262713);
  assert.equal(eager.final.invalidations, 7);
  // Lazy: only B3 splits, at the host's first fault; B2 maps at 2M around its mixed 2M.
  assert.deepEqual(lazy.final.stage2_model, { '4k': 55, '2m': 785920, '1g': 0 });
  assert.equal(lazy.final.zapped_leaves, 513);
  assert.deepEqual(lazy.final.huge_folios, { whole_2m: 0, split_2m: 0, whole_1g: 3, split_1g: 1 });
  assert.equal(lazy.final.splits, 1);
  assert.equal(lazy.final.vmemmap_pages_allocated, 4095);
  assert.equal(lazy.final.vmemmap_pages_in_use, 4095);
  assert.equal(lazy.final.guest_faults, 2103);
  assert.equal(lazy.final.invalidations, 8);
});
