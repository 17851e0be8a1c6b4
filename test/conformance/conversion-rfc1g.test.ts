/**
 * R51 (the 1G-page RFC, uapi 'rfc-1g'): tools/testing/selftests/kvm/guest_memfd_conversions_test.c
 * as its main() runs it — test_with_size(S) for S = 4K, 2M and 1G (in-place-conversion-and-hugetlb.md
 * §6.2). Every test sets up a fresh SW_PROTECTED VM, a guest_memfd of SUPPORT_SHARED [| INIT_PRIVATE]
 * [| HUGETLB | GUESTMEM_HUGETLB_FLAG_2MB/1GB] mmap()ed by the host and bound at GPA 4 GiB (slot 10);
 * "page" is one S-sized unit, accessed at its first byte. convert_* retries once on EAGAIN (the
 * selftest's helper), except where EAGAIN is the point. Pins are GUP long-term write pins
 * (sys.pin, the selftest's gup_test PIN_LONGTERM_TEST_START).
 *
 * Deviations from the selftest, all for run time and all for S = 1G only:
 * - test_conversion_if_not_all_folios_allocated runs page_to_fault ∈ {0, 7, 8, 15} (the first,
 *   the one before and the one equal to second_page_to_fault 8, and the last) instead of 0..15;
 * - where the selftest pins a whole unit, a 1G unit is pinned by two 4K pins, its first and its
 *   last 4K page (262,144 pinned PTEs would make the invariant checker, run after every call, take
 *   minutes). Any pinned subpage blocks the conversion or merge equally; the first one is what
 *   error_offset reports.
 *
 * The subfolio tests also run under both split policies (eager: R51; lazy: the design
 * alternative) and assert the folio structure each leaves (metrics()).
 */
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  GUEST_MEMFD_FLAG_INIT_PRIVATE, GUEST_MEMFD_FLAG_SUPPORT_SHARED,
} from '../../src/uapi/kvm.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../../src/uapi/linux.js';
import type { Backend } from '../lib/harness.js';
import { expectErrno } from '../lib/harness.js';
import { forBackends, kcase, PAGE, type Session } from './common.js';
import {
  ch, ConvFixture, metricsOf, modelMetrics, needRfc1g, r51ModelOpts, SIZES, TEST_GPA, type UnitSize, withModel,
} from './conversion-common.js';

const SLOT = 10;
const KEEP = FALLOC_FL_KEEP_SIZE;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
const X = null;

/** setup_test(total_size, init_private): the R51 fixture. */
function setup(s: Session, size: UnitSize, units: number, initPrivate: boolean): ConvFixture {
  needRfc1g(s, size.hugetlb);
  const flags = BigInt(GUEST_MEMFD_FLAG_SUPPORT_SHARED | (initPrivate ? GUEST_MEMFD_FLAG_INIT_PRIVATE : 0)) | size.r51Flags;
  return new ConvFixture(s, { uapi: 'rfc-1g', size: size.bytes * units, flags, slot: SLOT });
}

/**
 * pin_pages(addr, S): one long-term pin of the unit; for 1G, pins of its first and last 4K page
 * (see the header). Returns the unpin.
 */
function pinUnit(s: Session, size: UnitSize, addr: number): () => void {
  const ids = size.name === '1G' ? [s.k.pin(addr, PAGE), s.k.pin(addr + size.bytes - PAGE, PAGE)] : [s.k.pin(addr, size.bytes)];
  return () => {
    for (const id of ids) s.k.unpin(id);
  };
}

/** free_hugepages / resv_hugepages of the size's hstate (model and host read the same sysfs files). */
function pool(s: Session, size: UnitSize): { free: number; resv: number } {
  return {
    free: Number(s.k.readFile(`${size.sysfs}/free_hugepages`).trim()),
    resv: Number(s.k.readFile(`${size.sysfs}/resv_hugepages`).trim()),
  };
}

function defineSize(b: Backend, size: UnitSize): void {
  const S = size.bytes;
  const be = (units: number, policy: Record<string, string> = {}): Backend => withModel(b, r51ModelOpts(size, units, policy));

  kcase(be(1), 'test_sharing: host X→A; guest A→B; convert private; host cannot fault; guest B→C; convert shared; host C→D; guest D→E', (s) => {
    const t = setup(s, size, 1, false);
    t.hostRmw(0, X, ch('A'));
    t.guestRmw(0, ch('A'), ch('B'));
    t.setPrivate(0, S);
    t.hostCannotFault(0);
    t.guestRmw(0, ch('B'), ch('C'));
    t.setShared(0, S);
    t.hostRmw(0, ch('C'), ch('D'));
    t.guestRmw(0, ch('D'), ch('E'));
    t.teardown();
  });

  kcase(be(1), 'test_init_mappable_false: INIT_PRIVATE; host cannot fault; guest X→A; convert shared; host A→B; guest B→C', (s) => {
    const t = setup(s, size, 1, true);
    t.hostCannotFault(0);
    t.guestRmw(0, X, ch('A'));
    t.setShared(0, S);
    t.hostRmw(0, ch('A'), ch('B'));
    t.guestRmw(0, ch('B'), ch('C'));
    t.teardown();
  });

  kcase(be(1), 'test_conversion_before_allocation: convert private with no folio; host cannot fault; guest X→A; convert shared; host A→B; guest B→C', (s) => {
    const t = setup(s, size, 1, false);
    t.setPrivate(0, S);
    t.hostCannotFault(0);
    t.guestRmw(0, X, ch('A'));
    t.setShared(0, S);
    t.hostRmw(0, ch('A'), ch('B'));
    t.guestRmw(0, ch('B'), ch('C'));
    t.teardown();
  });

  const TOTAL = 16;
  const SECOND = 8;
  const toFault = size.name === '1G' ? [0, 7, 8, 15] : Array.from({ length: TOTAL }, (_, i) => i);
  kcase(be(TOTAL), `test_conversion_if_not_all_folios_allocated: 16 units, page_to_fault ∈ {${size.name === '1G' ? toFault.join(', ') : '0..15'}} (fresh VM each): host X→A at it and unit 8; convert all private; each unit host cannot fault, guest (A if faulted)→B; convert all shared; host B→C, guest C→D`, (s) => {
    for (const page of toFault) {
      const t = setup(s, size, TOTAL, false);
      t.hostRmw(page * S, X, ch('A'));
      t.hostRmw(SECOND * S, X, ch('A'));
      t.setPrivate(0, TOTAL * S);
      for (let i = 0; i < TOTAL; i++) {
        t.hostCannotFault(i * S);
        t.guestRmw(i * S, i === page || i === SECOND ? ch('A') : X, ch('B'));
      }
      t.setShared(0, TOTAL * S);
      for (let i = 0; i < TOTAL; i++) {
        t.hostRmw(i * S, ch('B'), ch('C'));
        t.guestRmw(i * S, ch('C'), ch('D'));
      }
      t.teardown();
    }
  });

  kcase(be(4), 'test_conversions_should_not_affect_surrounding_pages: 4 units host X→A, guest A→B; convert unit 2 private: it cannot fault, guest B→D; others host B→C, guest C→D; convert back: all host D→E, guest E→F', (s) => {
    const N = 4;
    const P = 2;
    const t = setup(s, size, N, false);
    for (let i = 0; i < N; i++) {
      t.hostRmw(i * S, X, ch('A'));
      t.guestRmw(i * S, ch('A'), ch('B'));
    }
    t.setPrivate(P * S, S);
    for (let i = 0; i < N; i++) {
      if (i === P) {
        t.hostCannotFault(i * S);
        t.guestRmw(i * S, ch('B'), ch('D'));
      } else {
        t.hostRmw(i * S, ch('B'), ch('C'));
        t.guestRmw(i * S, ch('C'), ch('D'));
      }
    }
    t.setShared(P * S, S);
    for (let i = 0; i < N; i++) {
      t.hostRmw(i * S, ch('D'), ch('E'));
      t.guestRmw(i * S, ch('E'), ch('F'));
    }
    t.teardown();
  });

  kcase(be(4), 'test_conversions_should_fail_if_memory_has_elevated_refcount: page_to_convert 0..3 (fresh VM each): pin the unit; all units host X→A, guest A→B; convert it private → EAGAIN, error_offset = page_to_convert × S; unpin; convert succeeds; it cannot fault, others host B→C; guest →D; convert back; host →E, guest E→F', (s) => {
    const N = 4;
    for (let P = 0; P < N; P++) {
      const t = setup(s, size, N, false);
      const unpin = pinUnit(s, size, t.mem + P * S);
      for (let i = 0; i < N; i++) {
        t.hostRmw(i * S, X, ch('A'));
        t.guestRmw(i * S, ch('A'), ch('B'));
      }
      const err = t.tryConvert(P * S, S, true);
      assert.deepEqual(err, { code: 'EAGAIN', error_offset: P * S }, `page_to_convert ${P}`);
      unpin();
      t.setPrivate(P * S, S);
      for (let i = 0; i < N; i++) {
        if (i === P) t.hostCannotFault(i * S);
        else t.hostRmw(i * S, ch('B'), ch('C'));
        t.guestRmw(i * S, i === P ? X : ch('C'), ch('D'));
      }
      t.setShared(P * S, S);
      for (let i = 0; i < N; i++) {
        t.hostRmw(i * S, i === P ? X : ch('D'), ch('E'));
        t.guestRmw(i * S, ch('E'), ch('F'));
      }
      t.teardown();
    }
  });

  kcase(be(1), 'test_truncate_should_not_change_mappability: host X→A; punch succeeds; host X→A; convert private; host cannot fault; guest A→A; punch; host cannot fault; guest X→A', (s) => {
    const t = setup(s, size, 1, false);
    t.hostRmw(0, X, ch('A'));
    s.k.fallocate(t.gmem, PUNCH, 0, S);
    t.hostRmw(0, X, ch('A'));
    t.setPrivate(0, S);
    t.hostCannotFault(0);
    t.guestRmw(0, ch('A'), ch('A'));
    s.k.fallocate(t.gmem, PUNCH, 0, S);
    t.hostCannotFault(0);
    t.guestRmw(0, X, ch('A'));
    t.teardown();
  });

  kcase(be(1), 'test_fault_type_independent_of_mem_attributes: INIT_PRIVATE, VM attribute shared; host cannot fault, guest X→A; gmem convert shared + VM attribute private; host X→A; guest X→A', (s) => {
    const t = setup(s, size, 1, true);
    s.setAttributes(t.vm, TEST_GPA, S, 0);
    t.hostCannotFault(0);
    t.guestRmw(0, X, ch('A'));
    t.setShared(0, S);
    s.setAttributes(t.vm, TEST_GPA, S, 8);
    t.hostRmw(0, X, ch('A'));
    t.guestRmw(0, X, ch('A'));
    t.teardown();
  });

  kcase(be(1), `test_truncate_shared_while_pinned: fallocate the unit, pin it; PUNCH_HOLE ${size.hugetlb ? '→ EAGAIN (the split huge page cannot be merged while pinned)' : 'succeeds (no merge needed)'}; unpin; PUNCH_HOLE succeeds`, (s) => {
    const t = setup(s, size, 1, false);
    s.k.fallocate(t.gmem, KEEP, 0, S);
    const unpin = pinUnit(s, size, t.mem);
    if (size.hugetlb) expectErrno('EAGAIN', () => s.k.fallocate(t.gmem, PUNCH, 0, S), 'punch while pinned');
    else s.k.fallocate(t.gmem, PUNCH, 0, S);
    unpin();
    s.k.fallocate(t.gmem, PUNCH, 0, S);
    t.teardown();
  });

  kcase(be(1), 'test_truncate_private: INIT_PRIVATE; fallocate; PUNCH_HOLE succeeds (no merge needed)', (s) => {
    const t = setup(s, size, 1, true);
    s.k.fallocate(t.gmem, KEEP, 0, S);
    s.k.fallocate(t.gmem, PUNCH, 0, S);
    t.teardown();
  });

  kcase(be(1), `test_close_with_pinning: init_private true, then false (pinned); fallocate; close VM, munmap, close gmem while pinned never fails; unpin${size.hugetlb ? '; the huge page is back in the pool (free_hugepages, resv_hugepages at baseline)' : ''}`, (s) => {
    for (const initPrivate of [true, false]) {
      const base = size.hugetlb ? pool(s, size) : null;
      const before = metricsOf(s);
      const t = setup(s, size, 1, initPrivate);
      s.k.fallocate(t.gmem, KEEP, 0, S);
      if (size.hugetlb) assert.equal(pool(s, size).free, (base?.free ?? 0) - 1, 'fallocate took a pool page');
      const unpin = initPrivate ? null : pinUnit(s, size, t.mem);
      t.teardown();
      if (unpin !== null) {
        if (size.hugetlb) assert.equal(pool(s, size).free, (base?.free ?? 0) - 1, 'a pinned page is not back in the pool yet');
        unpin();
      }
      if (base !== null) assert.deepEqual(pool(s, size), base, `init_private ${initPrivate}: the huge page is back in the pool`);
      const after = metricsOf(s);
      if (before !== null && after !== null) {
        assert.equal(after.order0_folios, before.order0_folios, 'no order-0 folio left behind');
        assert.equal(after.vmemmap_pages_in_use, before.vmemmap_pages_in_use, 'no vmemmap of a split page left behind');
        assert.deepEqual(after.huge_folios, before.huge_folios, 'no huge folio left behind');
      }
    }
  });

  if (!size.hugetlb) return;
  const nr = S / PAGE;
  const inc = nr >> 1;

  for (const split of ['eager', 'lazy'] as const) {
    kcase(be(1, { split }), `test_allocate_subfolios [split ${split}]: host writes 'A'+i at 4K subpages i = nr-1, nr/2-1 (backwards), then reads each back`, (s) => {
      const t = setup(s, size, 1, false);
      for (let i = nr - 1; i >= 0; i -= inc) t.hostRmw(i * PAGE, X, ch('A', i));
      for (let i = nr - 1; i >= 0; i -= inc) t.hostRmw(i * PAGE, ch('A', i), ch('A', i));
      const m = metricsOf(s);
      if (m !== null) {
        // The host maps 4K pages only: under both policies the block was split by the host fault.
        assert.equal(size.name === '2M' ? m.huge_folios.split_2m : m.huge_folios.split_1g, 1, 'the shared huge folio is split');
      }
      t.teardown();
    });

    kcase(be(1, { split }), `test_convert_subfolios [split ${split}]: INIT_PRIVATE; guest X→A at subpages 0, nr/2; convert subpage nr/2 (4K) shared: host A→B there, others cannot fault; guest X→B; convert it back; guest B→C; host cannot fault anywhere`, (s) => {
      const t = setup(s, size, 1, true);
      const sub = (f: 'whole' | 'split'): number => {
        const h = modelMetrics(s).huge_folios;
        return size.name === '2M' ? (f === 'whole' ? h.whole_2m : h.split_2m) : (f === 'whole' ? h.whole_1g : h.split_1g);
      };
      for (let i = 0; i < nr; i += inc) {
        t.guestRmw(i * PAGE, X, ch('A'));
        t.hostCannotFault(i * PAGE);
      }
      const toConvert = Math.ceil(nr / 2 / inc) * inc;
      const m0 = metricsOf(s);
      t.setShared(toConvert * PAGE, PAGE);
      if (m0 !== null) {
        const m1 = modelMetrics(s);
        if (split === 'eager') {
          assert.equal(m1.splits, m0.splits + 1, 'eager: the 4K to-shared conversion split the huge folio at once');
          assert.equal(sub('split'), 1);
        } else {
          assert.equal(m1.splits, m0.splits, 'lazy: no split at conversion');
          assert.equal(sub('whole'), 1, 'lazy: the folio stays whole until the host faults the shared page');
        }
      }
      for (let i = 0; i < nr; i += inc) {
        if (i === toConvert) t.hostRmw(i * PAGE, ch('A'), ch('B'));
        else t.hostCannotFault(i * PAGE);
        t.guestRmw(i * PAGE, X, ch('B'));
      }
      if (m0 !== null) assert.equal(sub('split'), 1, 'after the host fault the block is split under both policies');
      const m2 = metricsOf(s);
      t.setPrivate(toConvert * PAGE, PAGE);
      if (m2 !== null) {
        assert.equal(modelMetrics(s).merges, m2.merges + 1, 'converting back merged the block');
        assert.equal(sub('whole'), 1);
      }
      for (let i = 0; i < nr; i += inc) {
        t.guestRmw(i * PAGE, ch('B'), ch('C'));
        t.hostCannotFault(i * PAGE);
      }
      t.teardown();
    });
  }
}

forBackends('R51 guest_memfd_conversions_test.c (§6.2, uapi rfc-1g)', (b) => {
  for (const size of SIZES) {
    describe(`test_with_size(${size.name})`, () => defineSize(b, size));
  }
});
