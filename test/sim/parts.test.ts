/** The simulator's parts on their own: IOMMU importers, arch rules, the index permutation, sizes. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RangeMap } from '../../src/lib/rangemap.js';
import { Rng } from '../../src/lib/rng.js';
import { TdxBackend } from '../../src/sim/arch/tdx.js';
import { acceptLevel, clampLevels } from '../../src/sim/arch/types.js';
import { SimCounters } from '../../src/sim/counters.js';
import { Iommu } from '../../src/sim/iommu.js';
import { autoBounce } from '../../src/sim/workloads/lazy-accept.js';
import { IndexPermutation } from '../../src/sim/workloads/types.js';
import { formatBytes, parseDuration, parseSize } from '../../src/sim/units.js';

const P1G = 262144;

function importer(mode: 'vfio-4k' | 'unmap-remap' | 'refresh'): { io: Iommu; shared: RangeMap<boolean>; c: SimCounters; pins: Map<number, number> } {
  const shared = new RangeMap<boolean>(4 * P1G, false);
  const c = new SimCounters();
  const pins = new Map<number, number>();
  let next = 1;
  const io = new Iommu(mode, 3, {
    hvaOf: (gpa) => gpa,
    pin: (_hva, len) => { pins.set(next, len); return next++; },
    unpin: (id) => { assert.ok(pins.delete(id), `unpin of unknown pin ${id}`); },
    isShared: (g) => shared.get(g),
    sharedRuns: (g0, g1) => [...shared.runs(g0, g1)].filter((r) => r.value).map((r) => [r.start, r.end]),
  }, c, 4);
  return { io, shared, c, pins };
}

/** Share [1G, 2G), post DMA around it, convert one 4K page in the middle to private and back. */
function scenario(mode: 'vfio-4k' | 'unmap-remap' | 'refresh'): ReturnType<typeof importer> {
  const t = importer(mode);
  t.shared.set(P1G, 2 * P1G, true);
  t.io.populate(P1G, 2 * P1G);
  assert.equal(t.io.dma(P1G + 100, P1G + 104), true);
  assert.equal(t.io.dma(P1G + 200_000, P1G + 200_004), true);
  const g = P1G + 1000;
  t.io.discard(g, g + 1);
  t.shared.set(g, g + 1, false);
  assert.equal(t.io.anyMapped(g, g + 1), false, 'nothing maps the private page');
  assert.equal(t.io.levelAt(g + 1), mode === 'vfio-4k' ? 1 : 1, 'the neighbour is still mapped');
  assert.equal(t.io.levelAt(P1G + 200_000), mode === 'vfio-4k' ? 1 : 2);
  t.shared.set(g, g + 1, true);
  t.io.populate(g, g + 1);
  return t;
}

test('vfio-4k: 4K IOPTEs only, pinned, no hole', () => {
  const { io, c, pins } = scenario('vfio-4k');
  assert.deepEqual(io.pages(), { '4k': P1G, '2m': 0, '1g': 0 });
  assert.equal(c.dma_gap_hits, 0);
  let pinned = 0;
  for (const len of pins.values()) pinned += len / 4096;
  assert.equal(pinned, P1G, 'every mapped page pinned once');
});

test('unmap-remap: a discard inside a 1G IOPTE is a window for the DMA in flight', () => {
  const { io, c } = scenario('unmap-remap');
  assert.equal(c.dma_gap_hits, 2, 'both DMAs in flight were inside the 1G IOPTE unmapped whole');
  // The 1G leaf came back as 511 × 2M + the 2M around the page at 4K; no re-merge after populate.
  assert.deepEqual(io.pages(), { '4k': 512, '2m': 511 * 512, '1g': 0 });
  assert.equal(io.splits, 0);
});

test('refresh: split in place, no hole, merged back once uniform', () => {
  const { io, c, pins } = scenario('refresh');
  assert.equal(c.dma_gap_hits, 0);
  assert.equal(io.splits, 2, '1G → 2M, then the 2M → 4K');
  assert.equal(io.merges, 1);
  assert.deepEqual(io.pages(), { '4k': 0, '2m': 0, '1g': P1G });
  assert.equal(pins.size, 0, 'no pins: guest_memfd keeps the pages');
});

test('TDX on the vehicle: private leaves at most 2M, and split 2M blocks never promoted', () => {
  const tdx = new TdxBackend(false);
  const raw = { '4k': 0, '2m': 0, '1g': P1G };
  const view = { privateLevelAt: (): 0 | 1 | 2 | 3 => 3 as const };
  assert.deepEqual(tdx.effective(raw, view), { '4k': 0, '2m': P1G, '1g': 0 });
  tdx.converted(4096 * 513, 4096); // a 4K conversion inside the second 2M block
  tdx.accepted(4096 * 2048, 4096, 1); // a 4K re-accept in the fifth
  tdx.accepted(0, 2 ** 21, 2); // a 2M accept demotes nothing
  assert.deepEqual(tdx.effective(raw, view), { '4k': 1024, '2m': P1G - 1024, '1g': 0 });
  assert.deepEqual(tdx.counters(), { map_gpa_exits: 0, accept_2m: 1, accept_4k: 1, sim_demoted_2m_blocks: 2 });
});

test("TDX on the model's TDX VM: no clamp (the model's levels), the demotions the model lacks only where it maps a private 2M leaf", () => {
  const tdx = new TdxBackend(true);
  const model = { '4k': 512, '2m': 3 * 512, '1g': 0 };
  tdx.converted(4096 * 513, 4096); // block 1: the model has a private 2M leaf there → counts at 4K
  tdx.accepted(4096 * 2048, 4096, 1); // block 4: the model maps it shared or not at all → nothing to move
  const view = { privateLevelAt: (gfn: number): 0 | 1 | 2 | 3 => (gfn < 3 * 512 ? 2 : 0) };
  assert.deepEqual(tdx.effective(model, view), { '4k': 1024, '2m': 2 * 512, '1g': 0 });
  assert.deepEqual(tdx.effective(model, { privateLevelAt: () => 0 }), model);
});

test('level clamps and the accept level', () => {
  assert.deepEqual(clampLevels({ '4k': 1, '2m': 512, '1g': P1G }, 2), { '4k': 1, '2m': 512 + P1G, '1g': 0 });
  assert.deepEqual(clampLevels({ '4k': 1, '2m': 512, '1g': P1G }, 1), { '4k': 1 + 512 + P1G, '2m': 0, '1g': 0 });
  assert.equal(acceptLevel(0, 2 ** 30, 3), 3);
  assert.equal(acceptLevel(0, 2 ** 30, 2), 2);
  assert.equal(acceptLevel(4096, 2 ** 22, 2), 1);
});

test('the index permutation is a permutation, and seeded', () => {
  for (const n of [1, 2, 3, 1000, 4097]) {
    const p = new IndexPermutation(n, new Rng(9));
    const seen = new Set<number>();
    for (let i = 0; i < n; i++) seen.add(p.at(i));
    assert.equal(seen.size, n);
    assert.ok([...seen].every((x) => x >= 0 && x < n));
  }
  const a = new IndexPermutation(1000, new Rng(1));
  const b = new IndexPermutation(1000, new Rng(1));
  assert.deepEqual([0, 1, 2, 3].map((i) => a.at(i)), [0, 1, 2, 3].map((i) => b.at(i)));
});

test('sizes, durations, the SEV/TDX bounce pool rule', () => {
  assert.equal(parseSize('4GiB'), 2 ** 32);
  assert.equal(parseSize('256g'), 256 * 2 ** 30);
  assert.equal(parseSize('4 MiB'), 2 ** 22);
  assert.equal(parseSize(4096), 4096);
  assert.equal(typeof parseSize('4 GB/s'), 'string');
  assert.equal(parseDuration('250ms'), 0.25);
  assert.equal(parseDuration(2), 2);
  assert.equal(formatBytes(3 * 2 ** 29), '1.5 GiB');
  assert.equal(autoBounce(4 * 2 ** 30), 246 * 2 ** 20, '6% of 4 GiB = 245.8 MiB, up to a 2 MiB multiple');
  assert.equal(autoBounce(2 ** 30), 64 * 2 ** 20, 'at least 64 MiB');
  assert.equal(autoBounce(256 * 2 ** 30), 2 ** 30, 'at most 1 GiB');
});

test('progress: redrawn in place on a TTY, silent elsewhere for a run under a second', async () => {
  const { Progress } = await import('../../src/sim/progress.js');
  let tty = '';
  const p = new Progress({ isTTY: true, write: (s: string) => { tty += s; } }, ['split=eager', 'split=lazy']);
  p.update(0, 0.5);
  p.update(1, 1);
  p.done();
  assert.match(tty, /^\r\[#+\.*\] +25% {2}split=eager/);
  assert.match(tty, /100% {2}split=lazy/);
  assert.ok(tty.endsWith('\r\x1b[K'));
  let pipe = '';
  const q = new Progress({ isTTY: false, write: (s: string) => { pipe += s; } }, ['default']);
  q.update(0, 0.5);
  q.update(0, 1);
  q.done();
  assert.equal(pipe, '');
});
