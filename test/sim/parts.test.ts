/** The simulator's parts on their own: the device on the model's IOMMU domain, arch rules, the index permutation, sizes. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RangeMap } from '../../src/lib/rangemap.js';
import { Rng } from '../../src/lib/rng.js';
import { TdxBackend } from '../../src/sim/arch/tdx.js';
import { acceptLevel, clampLevels } from '../../src/sim/arch/types.js';
import { SimCounters } from '../../src/sim/counters.js';
import { IommuDevice } from '../../src/sim/iommu.js';
import { createModelKernel } from '../../src/kernel/model-kernel.js';
import {
  GUEST_MEMFD_FLAG_HUGETLB, GUEST_MEMFD_FLAG_MMAP, KVM_CREATE_GUEST_MEMFD, KVM_CREATE_VM, KVM_SET_MEMORY_ATTRIBUTES2,
  KVM_X86_SW_PROTECTED_VM,
} from '../../src/uapi/kvm.js';
import { O_RDWR } from '../../src/uapi/linux.js';
import { autoBounce } from '../../src/sim/workloads/lazy-accept.js';
import { IndexPermutation } from '../../src/sim/workloads/types.js';
import { formatBytes, parseDuration, parseSize } from '../../src/sim/units.js';

const P1G = 262144;

const P2M = 512;

/**
 * The device on the model's IOMMU domain (src/sim/iommu.ts): a 2 GiB SW_PROTECTED guest_memfd on 1G
 * HugeTLB pages with lazy splitting (the folio stays whole, so the model may map huge IOPTEs), the
 * second 1G shared as a DMA pool and mapped at IOVA = GPA.
 */
function device(mode: 'vfio-4k' | 'unmap-remap' | 'refresh', maxLevel: 1 | 2 | 3 = 3) {
  const k = createModelKernel({ uapi: 'in-place', hugepages: { '1G': 2 }, memoryBytes: 4 * 2 ** 30, policy: { split: 'lazy' } });
  const vm = k.ioctl(k.open('/dev/kvm', O_RDWR), KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
  const gmem = k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: 2 * 2 ** 30, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_HUGETLB, page_order: 18 });
  const shared = new RangeMap<boolean>(2 * P1G, false);
  const c = new SimCounters();
  const dev = new IommuDevice(k, mode, gmem, (gpa) => gpa, 2 * P1G, maxLevel, c, 4,
    (g0, g1) => [...shared.runs(g0, g1)].filter((r) => r.value).map((r) => [r.start, r.end]));
  /** What the VMM does (Vmm.convert): the device around the conversion ioctl. */
  const convert = (g0: number, g1: number, toPrivate: boolean): void => {
    if (toPrivate) dev.beforePrivate(g0, g1);
    k.ioctl(gmem, KVM_SET_MEMORY_ATTRIBUTES2, { offset: g0 * 4096, size: (g1 - g0) * 4096, attributes: toPrivate ? 8 : 0, flags: 0 });
    shared.set(g0, g1, !toPrivate);
    dev.afterConvert(g0, g1, toPrivate, true);
  };
  return { k, dev, c, convert };
}

/** Share [1G, 2G), post DMA around it, convert one 4K page in the middle to private and back. */
function scenario(mode: 'vfio-4k' | 'unmap-remap' | 'refresh', maxLevel: 1 | 2 | 3 = 3): ReturnType<typeof device> {
  const t = device(mode, maxLevel);
  t.convert(P1G, 2 * P1G, false);
  // In flight: one DMA in the pool's first 2M block, one in its second (around g), one far off.
  assert.equal(t.dev.dma((P1G + 100) * 4096, 4 * 4096), true);
  assert.equal(t.dev.dma((P1G + 600) * 4096, 4 * 4096), true);
  assert.equal(t.dev.dma((P1G + 200_000) * 4096, 4 * 4096), true);
  const g = P1G + 1000;
  t.convert(g, g + 1, true);
  assert.equal(t.dev.anyIopte(g, g + 1), false, 'nothing maps the private page');
  assert.equal(t.dev.dma(g * 4096, 4096), false, 'DMA to it faults');
  assert.notEqual(t.dev.dom.iopt.lookup(g + 1), null, 'the neighbour is still mapped');
  t.convert(g, g + 1, false);
  return t;
}

test('vfio-4k (the model\'s pin): 4K IOPTEs only, every shared page pinned once, no window', () => {
  const { k, dev, c } = scenario('vfio-4k');
  assert.equal(dev.model_mode, 'pin');
  assert.deepEqual(dev.pages(), { '4k': P1G, '2m': 0, '1g': 0 });
  assert.equal(dev.pinnedPages(), P1G, 'the 4K page came back and was pinned again');
  assert.equal(c.dma_gap_hits, 0);
  assert.equal(k.metrics().dma_faults, 1, 'the one DMA to the private page');
});

test('unmap-remap: a 4K conversion inside the 1G IOPTE is a window over the whole 1G for the DMA in flight', () => {
  const { k, dev, c } = scenario('unmap-remap');
  // The model zapped the 1G leaf whole: its 262,143 still-shared pages were the window.
  assert.equal(dev.dom.window_pages, P1G - 1);
  assert.equal(c.dma_gap_hits, 3, 'all three DMAs in flight were inside the 1G IOPTE, outside the page');
  // Mapped back as 511 × 2M + the 2M around the page at 4K; →shared maps the page at 4K: no re-merge.
  assert.deepEqual(dev.pages(), { '4k': P2M, '2m': 511 * P2M, '1g': 0 });
  assert.equal(k.metrics().dma_faults, 1);
});

test('refresh: split in place with no window, and re-merged to 1G once the block is uniform again', () => {
  const { dev, c } = scenario('refresh');
  assert.equal(dev.dom.window_pages, 0);
  // One hitless split of the 1G IOPTE (→private), one hitless re-merge (→shared: the 1G folio is
  // whole under lazy splitting and the block uniformly shared again).
  assert.equal(dev.dom.refreshes, 2);
  assert.equal(c.dma_gap_hits, 0);
  assert.deepEqual(dev.pages(), { '4k': 0, '2m': 0, '1g': P1G });
  assert.equal(dev.pinnedPages(), 0, 'no pins: guest_memfd keeps the pages');
});

test('the VM type\'s IOPTE limit (SNP: ≤ 2M) is the simulator\'s: 1G counted at 2M, a window is one 2M leaf', () => {
  const t = device('unmap-remap', 2);
  t.convert(P1G, 2 * P1G, false);
  assert.deepEqual(t.dev.pages(), { '4k': 0, '2m': P1G, '1g': 0 }, 'the model maps 1G; SNP would map 2M leaves');
  for (const at of [100, 600, 200_000]) t.dev.dma((P1G + at) * 4096, 4 * 4096);
  t.convert(P1G + 1000, P1G + 1001, true);
  // Only the DMA in the 2M block [P1G + 512, P1G + 1024) around the page was in SNP's window.
  assert.equal(t.c.dma_gap_hits, 1);
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
