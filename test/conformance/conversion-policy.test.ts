/**
 * The design knobs of in-place-conversion-and-hugetlb.md §7 (src/kvm/policy.ts) as they show through
 * the uAPI plus the model's metrics(), on HugeTLB-backed guest_memfds of both generations
 * (rfc-1g: SUPPORT_SHARED | HUGETLB | size bits; in-place: HUGETLB + page_order, private at create):
 *
 * - split 'eager' vs 'lazy' (§4.3, debate 8): a 4K to-shared conversion inside a whole huge folio
 *   splits it at once (eager), or leaves it whole until the host faults the shared page (lazy).
 *   Under both, KVM maps a page at the block's level only while the whole block is private; inside
 *   a mixed block eager maps 4K (the folio is 4K pages, 1G split straight to 4K), lazy maps the
 *   largest uniform level the whole folio allows (4K in a mixed 2M block; 2M for a page whose 2M
 *   range is uniform in a mixed 1G block). Converting back merges (merge 'eager') and the huge
 *   mapping returns.
 * - merge 'on-free': converting back leaves the block split; truncation returns it to the pool.
 * - atomicity 'all-or-nothing' vs 'per-huge-page' vs 'rollback' (debate 6), on a conversion over
 *   four huge blocks: (a) to private with one pinned 4K page in block 2 → EAGAIN; (b) to shared
 *   when the page allocator has vmemmap pages for only two splits → ENOMEM. What stays converted.
 * - error_offset 'max-start-folio' / 'folio-head' / 'unset' (debate 5) on that EAGAIN, and on an
 *   EAGAIN from a whole huge folio that begins below the request (lazy split + a transient
 *   reference), the only case where the folio head and max(start, folio) differ.
 * - punch 'zero-partial' vs 'aligned-only' (debate 10): a 4K punch inside a huge page.
 * - lru 'drain-once' / 'no-drain' / 'off-lru' (debate 5, LRU handling) on a just-faulted 4K page.
 * - the KVM mapping level's other limit (§4.2): a memslot whose gfn and guest_memfd offset are not
 *   congruent modulo 2M is mapped at 4K only.
 *
 * These cases assert the model's metrics, so on a kernel with the uAPI they would still need the
 * model: on the host they skip, as every conversion case does, by KVM_CHECK_EXTENSION.
 */
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  GUEST_MEMFD_FLAG_HUGETLB, GUEST_MEMFD_FLAG_INIT_PRIVATE, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP,
  GUEST_MEMFD_FLAG_SUPPORT_SHARED,
  KVM_CAP_GUEST_MEMFD_FLAGS, KVM_CREATE_GUEST_MEMFD,
} from '../../src/uapi/kvm.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../../src/uapi/linux.js';
import type { ModelKernelOptions } from '../../src/kernel/model-kernel.js';
import type { Backend } from '../lib/harness.js';
import { expectErrno } from '../lib/harness.js';
import { forBackends, kcase, PAGE, type Session, Skip, SZ_2M } from './common.js';
import {
  ch, ConvFixture, GIB, modelMetrics, needInPlace, needRfc1g, SIZES, TEST_GPA, type UnitSize, withModel,
} from './conversion-common.js';

const KEEP = FALLOC_FL_KEEP_SIZE;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
type Gen = 'rfc-1g' | 'in-place';
const SIZE_2M = SIZES[1] as UnitSize;
const SIZE_1G = SIZES[2] as UnitSize;

function opts(gen: Gen, size: UnitSize, units: number, policy: Record<string, string>, memoryBytes?: number): ModelKernelOptions {
  const o: ModelKernelOptions = { uapi: gen, policy };
  if (size.name === '2M') {
    o.hugepages = { '2M': units };
    o.memoryBytes = memoryBytes ?? GIB;
  } else {
    o.hugepages = { '1G': units };
    o.memoryBytes = memoryBytes ?? (units + 1) * GIB;
  }
  return o;
}

/**
 * A HugeTLB guest_memfd of `units` huge pages, private at create (rfc-1g: INIT_PRIVATE; in-place:
 * private is the only choice with HUGETLB) unless `shared` (rfc-1g default; in-place: converted
 * to shared right after create).
 */
function setup(s: Session, gen: Gen, size: UnitSize, units: number, shared: boolean, gpa = TEST_GPA): ConvFixture {
  if (gen === 'rfc-1g') {
    needRfc1g(s, true);
    const flags = BigInt(GUEST_MEMFD_FLAG_SUPPORT_SHARED | (shared ? 0 : GUEST_MEMFD_FLAG_INIT_PRIVATE)) | size.r51Flags;
    return new ConvFixture(s, { uapi: 'rfc-1g', size: units * size.bytes, flags, slot: 10, gpa });
  }
  needInPlace(s);
  const f = s.cap(KVM_CAP_GUEST_MEMFD_FLAGS);
  if ((f & GUEST_MEMFD_FLAG_HUGETLB) === 0) throw new Skip(`needs GUEST_MEMFD_FLAG_HUGETLB in KVM_CAP_GUEST_MEMFD_FLAGS: it answers 0x${f.toString(16)}`);
  const t = new ConvFixture(s, {
    uapi: 'in-place', size: units * size.bytes, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_HUGETLB, slot: 1,
    page_order: size.name === '2M' ? 9 : 18, gpa,
  });
  if (shared) t.setShared(0, units * size.bytes);
  return t;
}

/** Whole and split huge folios of the size, and the stage-2 mapping of the test's pages by level. */
function folios(s: Session, size: UnitSize): { whole: number; split: number } {
  const h = modelMetrics(s).huge_folios;
  return size.name === '2M' ? { whole: h.whole_2m, split: h.split_2m } : { whole: h.whole_1g, split: h.split_1g };
}

function hugeMapped(s: Session, size: UnitSize): number {
  const m = modelMetrics(s).stage2_pages;
  return size.name === '2M' ? m['2m'] : m['1g'];
}

// ---- split policy ----------------------------------------------------------------------------------

function defineSplit(b: Backend, gen: Gen, size: UnitSize): void {
  const nr = size.bytes / PAGE;
  const k = nr / 2; // the 4K page converted to shared
  for (const split of ['eager', 'lazy'] as const) {
    kcase(withModel(b, opts(gen, size, 2, { split })), `[${gen}, ${size.name}, split ${split}] all-private block: KVM maps it huge; convert one 4K page shared: ${split === 'eager' ? 'the folio splits at once' : 'the folio stays whole'}; a private page of the mixed block is mapped at ${size.name === '1G' && split === 'lazy' ? '2M' : '4K'}; ${split === 'lazy' ? 'the host fault on the shared page splits it; ' : ''}convert back: merged, huge mapping again`, (s) => {
      const t = setup(s, gen, size, 1, false);
      t.guestRmw(0, 0, ch('A'));
      assert.deepEqual(folios(s, size), { whole: 1, split: 0 }, 'the first guest fault allocated one whole huge folio');
      assert.equal(hugeMapped(s, size), nr, `KVM maps the all-private block at ${size.name}`);
      const m0 = modelMetrics(s);
      t.setShared(k * PAGE, PAGE);
      const m1 = modelMetrics(s);
      assert.equal(hugeMapped(s, size), 0, 'the conversion zapped the huge mapping');
      if (split === 'eager') {
        assert.equal(m1.splits, m0.splits + 1, 'eager: split at conversion');
        assert.deepEqual(folios(s, size), { whole: 0, split: 1 });
        assert.ok(m1.vmemmap_pages_in_use > m0.vmemmap_pages_in_use, 'the split took vmemmap pages');
      } else {
        assert.equal(m1.splits, m0.splits, 'lazy: no split at conversion');
        assert.deepEqual(folios(s, size), { whole: 1, split: 0 }, 'lazy: the folio stays whole');
      }
      // The guest's private page 0, inside a mixed block: never at the block's level. A split
      // folio is 4K pages (R51 splits 1G straight to 4K); a whole 1G folio under lazy splitting
      // can still be mapped at 2M where the 2M range around the page is uniform.
      t.guestRmw(0, ch('A'), ch('B'));
      assert.equal(hugeMapped(s, size), 0, 'no mapping at the level of the mixed block');
      const st = modelMetrics(s).stage2_pages;
      if (size.name === '1G' && split === 'lazy') assert.deepEqual([st['4k'], st['2m']], [0, 512], 'page 0 mapped at 2M (its 2M range is all private)');
      else assert.deepEqual([st['4k'], st['2m']], [1, 0], 'page 0 mapped at 4K');
      // The guest's shared page: still no split under lazy (KVM does not need a 4K folio).
      t.guestRmw(k * PAGE, 0, ch('C'));
      assert.deepEqual(folios(s, size), split === 'eager' ? { whole: 0, split: 1 } : { whole: 1, split: 0 });
      // The host faults the shared page: it maps 4K pages only, so now the block is split.
      t.hostRmw(k * PAGE, ch('C'), ch('D'));
      assert.deepEqual(folios(s, size), { whole: 0, split: 1 }, 'after the host fault the block is split');
      assert.equal(modelMetrics(s).splits, m0.splits + 1, 'exactly one split in all');
      t.hostCannotFault(0);
      const m2 = modelMetrics(s);
      t.setPrivate(k * PAGE, PAGE);
      assert.equal(modelMetrics(s).merges, m2.merges + 1, 'converting back merged the block (merge eager)');
      assert.deepEqual(folios(s, size), { whole: 1, split: 0 });
      assert.equal(modelMetrics(s).vmemmap_pages_in_use, m0.vmemmap_pages_in_use, 'the merge gave the vmemmap pages back');
      t.guestRmw(k * PAGE, ch('D'), ch('E'));
      t.guestRmw(0, ch('B'), ch('F'));
      assert.equal(hugeMapped(s, size), nr, `KVM maps the all-private block at ${size.name} again`);
      t.hostCannotFault(k * PAGE);
    });
  }

  kcase(withModel(b, opts(gen, size, 2, { merge: 'on-free' })), `[${gen}, ${size.name}, merge on-free] converting back leaves the block split and mapped at 4K; PUNCH_HOLE frees it to the pool`, (s) => {
    const t = setup(s, gen, size, 1, false);
    t.guestRmw(0, 0, ch('A'));
    t.setShared(k * PAGE, PAGE);
    t.hostRmw(k * PAGE, 0, ch('B'));
    const m0 = modelMetrics(s);
    t.setPrivate(k * PAGE, PAGE);
    assert.equal(modelMetrics(s).merges, m0.merges, 'no merge at conversion');
    assert.deepEqual(folios(s, size), { whole: 0, split: 1 });
    t.guestRmw(0, ch('A'), ch('C'));
    assert.equal(hugeMapped(s, size), 0, 'a split block is mapped at 4K even when all private');
    const free = Number(s.k.readFile(`${size.sysfs}/free_hugepages`).trim());
    s.k.fallocate(t.gmem, PUNCH, 0, size.bytes);
    assert.deepEqual(folios(s, size), { whole: 0, split: 0 });
    assert.equal(Number(s.k.readFile(`${size.sysfs}/free_hugepages`).trim()), free + 1, 'the page is back in the pool');
  });
}

/**
 * The KVM side of the mapping level (§4.2): a memslot whose base gfn and guest_memfd offset are
 * not congruent modulo the huge page loses that level for the whole slot (R51 "Set disallow_lpage
 * on base_gfn and guest_memfd pgoff misalignment"; the agreed policy: allowed, but no huge pages).
 */
function defineMisalignedSlot(b: Backend, gen: Gen): void {
  const size = SIZE_2M;
  const S = size.bytes;
  for (const misaligned of [false, true]) {
    kcase(withModel(b, opts(gen, size, 2, {})), `[${gen}] an all-private 2M block behind a memslot ${misaligned ? 'at GPA 4 GiB + 4 KiB (gfn − offset not 2M-aligned): mapped at 4K' : 'at GPA 4 GiB (aligned): mapped at 2M'}`, (s) => {
      const t = setup(s, gen, size, 2, false, TEST_GPA + (misaligned ? PAGE : 0));
      // Offset S − 4K: with the misaligned slot its gpa starts the second 2M-aligned gfn block.
      t.guestRmw(S - PAGE, 0, ch('A'));
      t.guestRmw(S, 0, ch('B'));
      const st = modelMetrics(s).stage2_pages;
      assert.deepEqual(folios(s, size), { whole: 2, split: 0 }, 'the folios are huge either way');
      if (misaligned) assert.deepEqual([st['4k'], st['2m']], [2, 0], 'huge mappings disallowed for the slot');
      else assert.deepEqual([st['4k'], st['2m']], [0, 2 * 512], 'each access mapped its 2M block');
    });
  }
}

// ---- atomicity and error_offset -------------------------------------------------------------------

const ATOMICITY = ['all-or-nothing', 'per-huge-page', 'rollback'] as const;

function definePinned(b: Backend, gen: Gen): void {
  const size = SIZE_2M;
  const S = size.bytes;
  const N = 4;
  const pinAt = 2 * S + 5 * PAGE;
  for (const atomicity of ATOMICITY) {
    for (const error_offset of ['max-start-folio', 'folio-head', 'unset'] as const) {
      const converted = atomicity === 'per-huge-page' ? [0, 1] : [];
      kcase(withModel(b, opts(gen, size, N, { atomicity, error_offset })), `[${gen}, atomicity ${atomicity}, error_offset ${error_offset}] 4 shared 2M blocks, 4K page 5 of block 2 pinned, convert all to private → EAGAIN, error_offset ${error_offset === 'unset' ? 'left as passed (0)' : '= the pinned page'}; converted: ${converted.length === 0 ? 'nothing' : 'blocks 0 and 1'}`, (s) => {
        const t = setup(s, gen, size, N, true);
        for (let u = 0; u < N; u++) t.hostRmw(u * S, null, ch('A', u));
        const pin = s.k.pin(t.mem + pinAt, PAGE);
        const arg = t.convArg(0, N * S, true);
        arg.error_offset = 0;
        expectErrno('EAGAIN', () => t.convIoctl(arg, true), 'convert with a pinned page');
        assert.equal(arg.error_offset, error_offset === 'unset' ? 0 : pinAt, 'error_offset');
        for (let u = 0; u < N; u++) {
          if (converted.includes(u)) {
            t.hostCannotFault(u * S);
            t.guestRmw(u * S, ch('A', u), null);
          } else {
            t.hostRmw(u * S, ch('A', u), null);
          }
        }
        assert.deepEqual(folios(s, size), { whole: converted.length, split: N - converted.length }, 'converted blocks merged, the others stay split');
        s.k.unpin(pin);
        t.setPrivate(0, N * S);
        assert.deepEqual(folios(s, size), { whole: N, split: 0 });
        for (let u = 0; u < N; u++) t.guestRmw(u * S, ch('A', u), null);
      });
    }
  }
}

/**
 * error_offset when the offending folio is a whole huge folio that starts below the request: only
 * possible under lazy splitting (a shared page inside a whole folio), with a reference nobody can
 * take through the uAPI — a transient one, as an in-flight KVM fault holds (the model's
 * holdTransientRef hook). R51 reports the folio head, below the requested start; the final design
 * max(start, folio); 'unset' leaves the field.
 */
function defineTransientErrorOffset(b: Backend, gen: Gen): void {
  const size = SIZE_2M;
  const S = size.bytes;
  const k = 17;
  for (const error_offset of ['max-start-folio', 'folio-head', 'unset'] as const) {
    const want = error_offset === 'max-start-folio' ? S + k * PAGE : error_offset === 'folio-head' ? S : 0;
    kcase(withModel(b, opts(gen, size, 2, { split: 'lazy', error_offset })), `[${gen}, split lazy, error_offset ${error_offset}] a transient reference on the whole folio of block 1; converting its shared page ${k} back to private → EAGAIN, error_offset ${error_offset === 'max-start-folio' ? '= the requested start' : error_offset === 'folio-head' ? '= the folio head, below the start' : 'left as passed (0)'}; after release it converts`, (s) => {
      const t = setup(s, gen, size, 2, false);
      const hook = s.k as unknown as { holdTransientRef?: (fd: number, off: number) => number; releaseTransientRef?: (h: number) => void };
      assert.ok(typeof hook.holdTransientRef === 'function' && typeof hook.releaseTransientRef === 'function', 'the model\'s holdTransientRef hook');
      t.guestRmw(S, 0, ch('A'));
      t.setShared(S + k * PAGE, PAGE);
      assert.deepEqual(folios(s, size), { whole: 1, split: 0 }, 'lazy: block 1 is still one whole folio');
      const h = hook.holdTransientRef(t.gmem, S);
      const arg = t.convArg(S + k * PAGE, PAGE, true);
      arg.error_offset = 0;
      expectErrno('EAGAIN', () => t.convIoctl(arg, true), 'transient reference');
      assert.equal(arg.error_offset, want, 'error_offset');
      hook.releaseTransientRef(h);
      t.setPrivate(S + k * PAGE, PAGE);
      t.guestRmw(S, ch('A'), null);
    });
  }
}

/**
 * Leave exactly `free` order-0 frames in the page allocator: fallocate a 4K guest_memfd larger than
 * the allocator (ENOMEM; the pages allocated stay), then punch `free` of them.
 */
function leaveBuddyFrames(s: Session, t: ConvFixture, gen: Gen, free: number): void {
  const flags = gen === 'rfc-1g' ? GUEST_MEMFD_FLAG_SUPPORT_SHARED : GUEST_MEMFD_FLAG_MMAP;
  const filler = s.own(s.k.ioctl(t.vm, KVM_CREATE_GUEST_MEMFD, { size: GIB, flags }));
  expectErrno('ENOMEM', () => s.k.fallocate(filler, KEEP, 0, GIB), 'filling the page allocator');
  s.k.fallocate(filler, PUNCH, 0, free * PAGE);
}

function defineVmemmapExhaustion(b: Backend, gen: Gen): void {
  const size = SIZE_2M;
  const S = size.bytes;
  const N = 4;
  // vmemmap pages a 2M split needs (HVO keeps 1 of 8); room for two splits, not three.
  const PER_SPLIT = 7;
  for (const atomicity of ATOMICITY) {
    const shared = atomicity === 'per-huge-page' ? [0, 1] : [];
    const errAt = atomicity === 'per-huge-page' ? 2 * S : 0;
    kcase(withModel(b, opts(gen, size, N, { atomicity }, N * SZ_2M + SZ_2M)), `[${gen}, atomicity ${atomicity}] 4 private 2M blocks, vmemmap pages for 2 splits: convert all to shared → ENOMEM, error_offset ${errAt / S === 0 ? '0' : '= block 2'}; ${atomicity === 'rollback' ? 'two splits done, then undone (merged back); ' : ''}shared now: ${shared.length === 0 ? 'nothing' : 'blocks 0 and 1'}`, (s) => {
      const t = setup(s, gen, size, N, false);
      for (let u = 0; u < N; u++) t.guestRmw(u * S, 0, ch('A', u));
      leaveBuddyFrames(s, t, gen, 2 * PER_SPLIT + 1);
      const m0 = modelMetrics(s);
      const arg = t.convArg(0, N * S, false);
      expectErrno('ENOMEM', () => t.convIoctl(arg, false), 'convert to shared without vmemmap pages');
      assert.equal(arg.error_offset, errAt, 'error_offset');
      const m1 = modelMetrics(s);
      assert.equal(m1.splits - m0.splits, atomicity === 'all-or-nothing' ? 0 : 2, 'splits done');
      assert.equal(m1.merges - m0.merges, atomicity === 'rollback' ? 2 : 0, 'splits undone');
      assert.deepEqual(folios(s, size), { whole: N - shared.length, split: shared.length });
      for (let u = 0; u < N; u++) {
        if (shared.includes(u)) t.hostRmw(u * S, ch('A', u), null);
        else t.hostCannotFault(u * S);
        t.guestRmw(u * S, ch('A', u), null);
      }
    });
  }
}

// ---- punch policy ------------------------------------------------------------------------------------

function definePunch(b: Backend, gen: Gen): void {
  const size = SIZE_2M;
  for (const punch of ['zero-partial', 'aligned-only'] as const) {
    kcase(withModel(b, opts(gen, size, 2, { punch })), `[${gen}, punch ${punch}] a 4K PUNCH_HOLE inside a huge page ${punch === 'zero-partial' ? 'succeeds and zeroes that 4K only, freeing nothing' : '→ EINVAL, nothing changes'}; a huge-aligned punch frees the page`, (s) => {
      const t = setup(s, gen, size, 1, true);
      t.hostRmw(0, null, ch('A'));
      t.hostRmw(PAGE, null, ch('B'));
      const blocks = s.k.fstat(t.gmem).st_blocks;
      if (punch === 'zero-partial') {
        s.k.fallocate(t.gmem, PUNCH, 0, PAGE);
        t.hostRmw(0, 0, null);
      } else {
        s.failsCleanly('EINVAL', () => s.k.fallocate(t.gmem, PUNCH, 0, PAGE), '4K punch');
        s.failsCleanly('EINVAL', () => s.k.fallocate(t.gmem, KEEP, PAGE, PAGE), '4K allocate');
        t.hostRmw(0, ch('A'), null);
      }
      t.hostRmw(PAGE, ch('B'), null);
      assert.equal(s.k.fstat(t.gmem).st_blocks, blocks, 'st_blocks unchanged');
      s.k.fallocate(t.gmem, PUNCH, 0, size.bytes);
      assert.equal(s.k.fstat(t.gmem).st_blocks, 0);
      t.hostRmw(PAGE, 0, null);
    });
  }
}

// ---- LRU batch references -----------------------------------------------------------------------------

/**
 * debate 5's LRU handling: a freshly allocated order-0 folio sits in the per-CPU LRU add batch with
 * an extra reference. 'drain-once' (IPC-v2+) drains and re-checks; 'no-drain' fails with EAGAIN
 * until something drains (the model's lruAddDrainAll hook); 'off-lru' (R51, IPC-v1) never has the
 * reference.
 */
function defineLru(b: Backend, gen: Gen): void {
  for (const lru of ['drain-once', 'no-drain', 'off-lru'] as const) {
    kcase(withModel(b, { uapi: gen, policy: { lru } }), `[${gen}, lru ${lru}] a page the host just faulted in (4K file) converts to private ${lru === 'no-drain' ? '→ EAGAIN at that page until the LRU batch is drained' : 'at once'}`, (s) => {
      if (gen === 'rfc-1g') needRfc1g(s);
      else needInPlace(s);
      const flags = gen === 'rfc-1g' ? GUEST_MEMFD_FLAG_SUPPORT_SHARED : GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
      const t = new ConvFixture(s, { uapi: gen, size: 4 * PAGE, flags, slot: 1 });
      t.hostRmw(2 * PAGE, 0, ch('A'));
      if (lru === 'no-drain') {
        assert.deepEqual(t.tryConvert(0, 4 * PAGE, true), { code: 'EAGAIN', error_offset: 2 * PAGE });
        t.hostRmw(2 * PAGE, ch('A'), null);
        const hook = s.k as unknown as { lruAddDrainAll?: () => void };
        assert.ok(typeof hook.lruAddDrainAll === 'function', 'the model\'s lruAddDrainAll hook');
        hook.lruAddDrainAll();
      }
      t.setPrivate(0, 4 * PAGE);
      t.hostCannotFault(2 * PAGE);
      t.guestRmw(2 * PAGE, ch('A'), null);
    });
  }
}

forBackends('conversion policies (§7: split, merge, atomicity, error_offset, punch)', (b) => {
  for (const gen of ['rfc-1g', 'in-place'] as const) {
    describe(`uapi ${gen}`, () => {
      defineSplit(b, gen, SIZE_2M);
      defineSplit(b, gen, SIZE_1G);
      defineMisalignedSlot(b, gen);
      definePinned(b, gen);
      defineTransientErrorOffset(b, gen);
      defineVmemmapExhaustion(b, gen);
      definePunch(b, gen);
      defineLru(b, gen);
    });
  }
});

