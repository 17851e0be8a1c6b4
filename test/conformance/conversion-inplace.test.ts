/**
 * The final in-place conversion series (uapi 'in-place', in-place-conversion-and-hugetlb.md §6.1):
 * - x86/guest_memfd_conversions_test.c, every row, with the fixture `gmem_conversions`: a
 *   SW_PROTECTED VM, a guest_memfd created GUEST_MEMFD_FLAG_MMAP [| INIT_SHARED] and mmap()ed by the
 *   host, bound by memslot 1 at GPA 4 GiB; conversions with KVM_SET_MEMORY_ATTRIBUTES2 on the
 *   guest_memfd fd. Multi-page tests (indexing, unallocated_folios, elevated_refcount) run their
 *   body once per test_page on a fresh VM, as the selftest's MULTIPAGE macro does.
 * - x86/private_mem_conversions_test.c with gmem attributes: guest_memfd MMAP | INIT_SHARED is
 *   the host's view of guest memory too; KVM_HC_MAP_GPA_RANGE exits drive fallocate and
 *   KVM_SET_MEMORY_ATTRIBUTES2; on PMC_SYNC_PRIVATE the host's read of each page must SIGBUS. Run with
 *   the defaults and, as the .sh wrapper does, with -m 2 and -n 2 -m 2 (the vCPUs take turns).
 * - x86/private_mem_kvm_exits_test.c with gmem attributes: memory is private by default; with
 *   the memslot deleted the read becomes emulated MMIO (read, len 8, at the GPA); the
 *   "memslot not private" case does not apply (the selftest returns early).
 *
 * - pre_fault_memory_test.c with gmem attributes: the range is made private through the guest_memfd;
 *   KVM_PRE_FAULT_MEMORY maps it; with the memslot gone the gfn is shared (no slot), so the call
 *   ends in emulated MMIO (ENOENT), not the 6.18 memory fault (EFAULT).
 * - gmem_convert_fault_race.c, single-threaded: the in-flight KVM fault's folio reference is the
 *   model's holdTransientRef hook; set_private over the range must fail with EAGAIN and a
 *   page-aligned error_offset inside it, and succeed once the reference is gone.
 *
 * forked_accesses: the model is one process. The parent and the child are two MAP_SHARED mappings
 * of the same guest_memfd (the child's mapping stands for the fork-inherited one): conversion must
 * unmap the page from every mapping, and a later access through either must SIGBUS.
 *
 * Everything runs under both split policies (eager, lazy): with order-0 pages they must not differ,
 * and the invariant checker runs after every call under each.
 */
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_CAP_EXIT_HYPERCALL, KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_CAP_PRE_FAULT_MEMORY, KVM_EXIT_HYPERCALL, KVM_PRE_FAULT_MEMORY,
  KVM_EXIT_IO, KVM_EXIT_MMIO, KVM_HC_MAP_GPA_RANGE, KVM_MEM_GUEST_MEMFD, KVM_SET_MEMORY_ATTRIBUTES,
  KVM_SET_MEMORY_ATTRIBUTES2, KVM_X86_SW_PROTECTED_VM,
} from '../../src/uapi/kvm.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MAP_SHARED } from '../../src/uapi/linux.js';
import type { GuestApi, GuestGenerator } from '../../src/kvm/guest.js';
import type { KvmPreFaultMemory } from '../../src/uapi/syscalls.js';
import type { Backend } from '../lib/harness.js';
import { expectErrno } from '../lib/harness.js';
import {
  filled, firstMismatch, forBackends, kcase, PAGE, type Session, SZ_2M, UCALL_ABORT, UCALL_DONE, UCALL_SYNC,
  PMC_BASE_DATA_SLOT, PMC_MAP_GPA_DO_FALLOCATE, PMC_MAP_GPA_SET_ATTRIBUTES, PMC_MAP_GPA_SHARED, PMC_PER_CPU_DATA_SIZE,
  PMC_PER_CPU_SIZE, PMC_SYNC_PRIVATE, PMC_SYNC_SHARED, PMC_TEST_RANGES,
} from './common.js';
import { ch, ConvFixture, needInPlace, PRIVATE, RW, TEST_GPA, withModel } from './conversion-common.js';

const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
const MMAP = GUEST_MEMFD_FLAG_MMAP;
const INIT_SHARED = GUEST_MEMFD_FLAG_INIT_SHARED;

/** gmem_conversions_do_setup(nr_pages, flags). */
function setup(s: Session, nrPages: number, flags: number): ConvFixture {
  needInPlace(s);
  return new ConvFixture(s, { uapi: 'in-place', size: nrPages * PAGE, flags: flags | MMAP, slot: 1 });
}

// ---- the selftest's helpers ----------------------------------------------------------------------

function testPrivate(t: ConvFixture, pg: number, start: number, w: number): void {
  t.hostCannotFault(pg * PAGE);
  t.guestRmw(pg * PAGE, start, w);
  t.hostCannotFault(pg * PAGE);
}

function testConvertToPrivate(t: ConvFixture, pg: number, start: number, w: number): void {
  t.setPrivate(pg * PAGE, PAGE);
  testPrivate(t, pg, start, w);
}

function testShared(t: ConvFixture, pg: number, start: number, hw: number, gw: number): void {
  t.hostRmw(pg * PAGE, start, hw);
  t.guestRmw(pg * PAGE, hw, gw);
  assert.equal(t.hostRead(pg * PAGE), gw, `host reads the guest's write at page ${pg}`);
}

function testConvertToShared(t: ConvFixture, pg: number, start: number, hw: number, gw: number): void {
  t.setShared(pg * PAGE, PAGE);
  testShared(t, pg, start, hw, gw);
}

/** (x << 4) + n, the indexing test's per-page values. */
const combine = (x: number, n: number): number => ((x << 4) + n) & 0xff;

function defineGmemConversions(b: Backend): void {
  kcase(b, 'init_private: test_private(0, 0, A); convert_to_shared(0, A, B, C); convert_to_private(0, C, E)', (s) => {
    const t = setup(s, 1, 0);
    testPrivate(t, 0, 0, ch('A'));
    testConvertToShared(t, 0, ch('A'), ch('B'), ch('C'));
    testConvertToPrivate(t, 0, ch('C'), ch('E'));
  });

  kcase(b, 'init_shared: test_shared(0, 0, A, B); convert_to_private(0, B, C); convert_to_shared(0, C, D, E)', (s) => {
    const t = setup(s, 1, INIT_SHARED);
    testShared(t, 0, 0, ch('A'), ch('B'));
    testConvertToPrivate(t, 0, ch('B'), ch('C'));
    testConvertToShared(t, 0, ch('C'), ch('D'), ch('E'));
  });

  kcase(b, 'indexing: 4 pages INIT_SHARED, test_page 0..3 (fresh VM each): all shared rmw from the highest index; only test_page converts to private and back; per-page values intact', (s) => {
    const N = 4;
    for (let tp = 0; tp < N; tp++) {
      const t = setup(s, N, INIT_SHARED);
      const i_ = (i: number, n: number): number => combine(i, n);
      for (let i = N - 1; i >= 0; i--) testShared(t, i, 0, i_(i, 0), i_(i, 2));
      testConvertToPrivate(t, tp, i_(tp, 2), i_(tp, 3));
      for (let i = 0; i < N; i++) {
        if (i === tp) testPrivate(t, tp, i_(tp, 3), i_(tp, 4));
        else testShared(t, i, i_(i, 2), i_(i, 3), i_(i, 4));
      }
      testConvertToShared(t, tp, i_(tp, 4), i_(tp, 5), i_(tp, 6));
      for (let i = 0; i < N; i++) testShared(t, i, i === tp ? i_(tp, 6) : i_(i, 4), i_(i, 7), i_(i, 8));
      t.teardown();
    }
  });

  kcase(b, 'before_allocation_shared: INIT_SHARED, never touched; convert_to_private(0, 0, A): the guest sees a zero page', (s) => {
    const t = setup(s, 1, INIT_SHARED);
    testConvertToPrivate(t, 0, 0, ch('A'));
  });

  kcase(b, 'before_allocation_private: private, never touched; convert_to_shared(0, 0, A, B): the host sees a zero page', (s) => {
    const t = setup(s, 1, 0);
    testConvertToShared(t, 0, 0, ch('A'), ch('B'));
  });

  kcase(b, 'unallocated_folios: 8 pages INIT_SHARED, test_page 0..7 (fresh VM each): host writes A at test_page and page 4; set_private(all 8); test_private(A if faulted else 0, B) each; convert_to_shared(B, C, D) each', (s) => {
    const N = 8;
    const SECOND = 4;
    for (let tp = 0; tp < N; tp++) {
      const t = setup(s, N, INIT_SHARED);
      t.hostWrite(tp * PAGE, ch('A'));
      t.hostWrite(SECOND * PAGE, ch('A'));
      t.setPrivate(0, N * PAGE);
      for (let i = 0; i < N; i++) testPrivate(t, i, i === tp || i === SECOND ? ch('A') : 0, ch('B'));
      for (let i = 0; i < N; i++) testConvertToShared(t, i, ch('B'), ch('C'), ch('D'));
      t.teardown();
    }
  });

  kcase(b, 'truncate: INIT_SHARED; host 0→A; PUNCH_HOLE; host 0→A (fresh page); convert_to_private(A, B); PUNCH_HOLE; test_private(0, A): punch zeroes, never changes the attribute', (s) => {
    const t = setup(s, 1, INIT_SHARED);
    t.hostRmw(0, 0, ch('A'));
    s.k.fallocate(t.gmem, PUNCH, 0, PAGE);
    t.hostRmw(0, 0, ch('A'));
    testConvertToPrivate(t, 0, ch('A'), ch('B'));
    s.k.fallocate(t.gmem, PUNCH, 0, PAGE);
    testPrivate(t, 0, 0, ch('A'));
  });

  kcase(b, 'forked_accesses (two mappings for parent and child): parent test_shared(0, 0, 0xA, 0xB); child host 0xB→0xC; parent convert_to_private(0xC, 0xD); child read and write SIGBUS', (s) => {
    const t = setup(s, 1, INIT_SHARED);
    // The child's view: the mapping it inherited across fork(), here a second MAP_SHARED mapping.
    const child = s.mmap(PAGE, RW, MAP_SHARED, t.gmem, 0);
    testShared(t, 0, 0, 0xa, 0xb);
    assert.equal(s.k.load(child, 1)[0], 0xb, 'child sees the parent\'s page');
    s.k.store(child, Uint8Array.of(0xc));
    testConvertToPrivate(t, 0, 0xc, 0xd);
    t.hostCannotFault(0, child);
  });

  kcase(b, 'elevated_refcount: 4 pages INIT_SHARED, test_page 0..3 (fresh VM each), test_page pinned: bulk set_private → EAGAIN at test_page×4096; per page: test_page EAGAIN, others convert (B→C); unpin; bulk set_private succeeds; test_page still B, others C (→ D)', (s) => {
    const N = 4;
    for (let tp = 0; tp < N; tp++) {
      const t = setup(s, N, INIT_SHARED);
      const pin = s.k.pin(t.mem + tp * PAGE, PAGE);
      for (let i = 0; i < N; i++) testShared(t, i, 0, ch('A'), ch('B'));
      assert.deepEqual(t.tryConvert(0, N * PAGE, true), { code: 'EAGAIN', error_offset: tp * PAGE }, `bulk, test_page ${tp}`);
      for (let i = 0; i < N; i++) {
        if (i === tp) {
          assert.deepEqual(t.tryConvert(i * PAGE, PAGE, true), { code: 'EAGAIN', error_offset: tp * PAGE }, `page ${i}`);
          // Nothing changed: the pinned page is still shared and holds its value.
          assert.equal(t.hostRead(i * PAGE), ch('B'));
        } else {
          testConvertToPrivate(t, i, ch('B'), ch('C'));
        }
      }
      s.k.unpin(pin);
      t.setPrivate(0, N * PAGE);
      for (let i = 0; i < N; i++) testPrivate(t, i, i === tp ? ch('B') : ch('C'), ch('D'));
      t.teardown();
    }
  });
}

// ---- private_mem_conversions_test.c with gmem attributes -----------------------------------------------

const BASE_DATA_GPA = TEST_GPA;

function* memcmpG(g: GuestApi, gpa: number, pattern: number, size: number, line: number): GuestGenerator {
  const mem = (yield g.read(gpa, size)) as Uint8Array;
  const i = firstMismatch(mem, pattern);
  if (i >= 0) yield g.ucall(UCALL_ABORT, line, gpa + i, pattern, mem[i] as number);
}

function* memsetG(g: GuestApi, gpa: number, v: number, size: number): GuestGenerator {
  yield g.write(gpa, filled(size, v));
}

function* mapGpa(g: GuestApi, gpa: number, size: number, flags: number, line: number): GuestGenerator {
  const ret = (yield g.hypercall(KVM_HC_MAP_GPA_RANGE, gpa, size / PAGE, flags, 0)) as number;
  if (ret !== 0) yield g.ucall(UCALL_ABORT, line, gpa, 0, ret);
}

function* mapMem(g: GuestApi, gpa: number, size: number, shared: boolean, fallocate: boolean): GuestGenerator {
  yield* mapGpa(g, gpa, size, PMC_MAP_GPA_SET_ATTRIBUTES | (shared ? PMC_MAP_GPA_SHARED : 0) | (fallocate ? PMC_MAP_GPA_DO_FALLOCATE : 0), 1);
}

function* explicitConversion(g: GuestApi, base: number, doFallocate: boolean): GuestGenerator {
  const defP = 0xaa;
  const initP = 0xcc;
  // Memory is shared by default (INIT_SHARED).
  yield* memsetG(g, base, defP, PMC_PER_CPU_DATA_SIZE);
  yield* memcmpG(g, base, defP, PMC_PER_CPU_DATA_SIZE, 10);
  yield g.ucall(UCALL_SYNC, PMC_SYNC_SHARED, base, PMC_PER_CPU_DATA_SIZE, defP, initP);
  yield* memcmpG(g, base, initP, PMC_PER_CPU_DATA_SIZE, 11);
  for (const [offset, size] of PMC_TEST_RANGES) {
    const gpa = base + offset;
    const [p1, p2, p3, p4] = [0x11, 0x22, 0x33, 0x44];
    yield* memsetG(g, gpa, p1, size);
    yield* mapMem(g, gpa, size, false, doFallocate);
    if (size > PAGE) {
      yield* memsetG(g, gpa, p2, PAGE);
    } else {
      yield* memsetG(g, gpa, p2, size);
      yield g.ucall(UCALL_SYNC, PMC_SYNC_PRIVATE, gpa, size, p1);
      yield* memcmpG(g, gpa, p2, size, 12);
      if (gpa > base) yield* memcmpG(g, base, initP, gpa - base, 13);
      if (gpa + size < base + PMC_PER_CPU_DATA_SIZE) yield* memcmpG(g, gpa + size, initP, base + PMC_PER_CPU_DATA_SIZE - (gpa + size), 14);
      for (let j = 0; j < size; j += PAGE) {
        if (((j / PAGE) & 1) !== 0) {
          yield* mapMem(g, gpa + j, PAGE, true, doFallocate);
          yield g.ucall(UCALL_SYNC, PMC_SYNC_SHARED, gpa + j, PAGE, p1, p3);
          yield* memcmpG(g, gpa + j, p3, PAGE, 15);
        } else {
          yield g.ucall(UCALL_SYNC, PMC_SYNC_PRIVATE, gpa + j, PAGE, p1);
        }
      }
    }
    yield* mapMem(g, gpa, size, true, doFallocate);
    yield* memsetG(g, gpa, p3, size);
    yield g.ucall(UCALL_SYNC, PMC_SYNC_SHARED, gpa, size, p3, p4);
    yield* memcmpG(g, gpa, p4, size, 16);
    // Free all private memory (PUNCH_HOLE); with in-place conversion that zeroed the shared
    // memory too, so the pattern is reset for the next range.
    yield* mapMem(g, base, PMC_PER_CPU_DATA_SIZE, true, true);
    yield* memsetG(g, base, initP, PMC_PER_CPU_DATA_SIZE);
  }
}

function* testPunchHole(g: GuestApi, base: number, precise: boolean): GuestGenerator {
  const initP = 0xcc;
  yield* mapMem(g, base, PMC_PER_CPU_DATA_SIZE, false, false);
  for (const [offset, size] of PMC_TEST_RANGES) {
    const gpa = base + offset;
    yield* mapGpa(g, base, PMC_PER_CPU_DATA_SIZE, PMC_MAP_GPA_SHARED | PMC_MAP_GPA_DO_FALLOCATE, 2);
    if (precise) {
      yield* memsetG(g, gpa, initP, size);
      yield* memcmpG(g, gpa, initP, size, 20);
    } else {
      yield* memsetG(g, base, initP, PMC_PER_CPU_DATA_SIZE);
      yield* memcmpG(g, base, initP, PMC_PER_CPU_DATA_SIZE, 21);
    }
    yield* mapGpa(g, gpa, size, PMC_MAP_GPA_SHARED | PMC_MAP_GPA_DO_FALLOCATE, 2);
    yield* memcmpG(g, gpa, 0, size, 22);
  }
}

/**
 * test_mem_conversions(shmem → guest_memfd MMAP | INIT_SHARED, nr_vcpus, nr_memslots): one
 * guest_memfd of per_cpu_size × nr_vcpus, split evenly over the memslots (each its own host mapping
 * of the file at the slot's offset, as vm_mem_add maps it). The selftest runs the vCPUs in threads;
 * here they take turns, one KVM_RUN each, until every one is done.
 */
function testMemConversions(s: Session, nrVcpus = 1, nrMemslots = 1): { hypercalls: number; syncs: number; sigbus: number } {
  needInPlace(s);
  const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
  const vcpus = Array.from({ length: nrVcpus }, (_, i) => s.vcpu(vm, i));
  s.needCap(KVM_CAP_EXIT_HYPERCALL, 1 << KVM_HC_MAP_GPA_RANGE, vm);
  s.enableExitHypercall(vm, 1 << KVM_HC_MAP_GPA_RANGE);
  const memfdSize = PMC_PER_CPU_SIZE * nrVcpus;
  const slotSize = memfdSize / nrMemslots;
  assert.equal(slotSize * nrMemslots, memfdSize);
  const memfd = s.gmem(vm, memfdSize, MMAP | INIT_SHARED);
  const hvas: number[] = [];
  for (let i = 0; i < nrMemslots; i++) {
    const hva = s.mmap(slotSize, RW, MAP_SHARED, memfd, slotSize * i);
    hvas.push(hva);
    s.setRegion(vm, {
      slot: PMC_BASE_DATA_SLOT + i, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: BASE_DATA_GPA + slotSize * i, memory_size: slotSize,
      userspace_addr: hva, guest_memfd: memfd, guest_memfd_offset: slotSize * i,
    });
  }
  /** addr_gpa2hva. */
  const gpa2hva = (gpa: number): number => {
    const i = Math.floor((gpa - BASE_DATA_GPA) / slotSize);
    return (hvas[i] as number) + (gpa - BASE_DATA_GPA - slotSize * i);
  };
  vcpus.forEach((vcpu, i) => {
    const base = BASE_DATA_GPA + i * PMC_PER_CPU_SIZE;
    s.guest(vcpu, function* (g: GuestApi) {
      yield* explicitConversion(g, base, false);
      yield* explicitConversion(g, base, true);
      yield* testPunchHole(g, base, false);
      yield* testPunchHole(g, base, true);
      yield g.ucall(UCALL_DONE);
    });
  });
  const counts = { hypercalls: 0, syncs: 0, sigbus: 0 };
  const done = new Set<number>();
  while (done.size < nrVcpus) {
    for (const vcpu of vcpus) {
      if (done.has(vcpu)) continue;
      const run = s.run(vcpu);
      if (run.exit_reason === KVM_EXIT_HYPERCALL) {
        assert.equal(run.hypercall.nr, KVM_HC_MAP_GPA_RANGE);
        const [gpa = 0, npages = 0, flags = 0] = run.hypercall.args;
        const size = npages * PAGE;
        const shared = (flags & PMC_MAP_GPA_SHARED) !== 0;
        // The gmem is one file at offsets gpa − BASE across the slots: one call covers a range
        // the selftest's helpers split per memslot.
        if ((flags & PMC_MAP_GPA_DO_FALLOCATE) !== 0) {
          s.k.fallocate(memfd, FALLOC_FL_KEEP_SIZE | (shared ? FALLOC_FL_PUNCH_HOLE : 0), gpa - BASE_DATA_GPA, size);
        }
        if ((flags & PMC_MAP_GPA_SET_ATTRIBUTES) !== 0) {
          // vm_mem_set_memory_attributes with gmem attributes: the gmem ioctl at the file offset.
          s.k.ioctl(memfd, KVM_SET_MEMORY_ATTRIBUTES2, { offset: gpa - BASE_DATA_GPA, size, attributes: shared ? 0 : PRIVATE, flags: 0 });
        }
        run.hypercall.ret = 0;
        counts.hypercalls++;
        continue;
      }
      assert.equal(run.exit_reason, KVM_EXIT_IO, `unexpected exit ${run.exit_reason}`);
      const uc = run.ucall;
      assert.ok(uc !== null, 'a ucall');
      if (uc[0] === UCALL_ABORT) assert.fail(`guest assertion ${uc[1]} failed at gpa 0x${(uc[2] ?? 0).toString(16)}: expected 0x${(uc[3] ?? 0).toString(16)}, got 0x${(uc[4] ?? 0).toString(16)}`);
      if (uc[0] === UCALL_DONE) {
        done.add(vcpu);
        continue;
      }
      assert.equal(uc[0], UCALL_SYNC);
      const [, kind, gpa = 0, size = 0, cur = 0, next = 0] = uc;
      for (let i = 0; i < size; i += PAGE) {
        const n = Math.min(PAGE, size - i);
        const addr = gpa2hva(gpa + i);
        if (kind === PMC_SYNC_PRIVATE) {
          // In-place: the host's view is guest memory itself, and private memory SIGBUSes.
          try {
            s.k.load(addr, 1);
            assert.fail(`host read of private gpa 0x${(gpa + i).toString(16)} did not SIGBUS`);
          } catch (e) {
            assert.equal((e as { signal?: string }).signal, 'SIGBUS', (e as Error).message);
            counts.sigbus++;
          }
        } else {
          const view = s.k.load(addr, n);
          const j = firstMismatch(view, cur);
          assert.equal(j, -1, `host expected 0x${cur.toString(16)} at gpa 0x${(gpa + i + j).toString(16)}, got 0x${(view[j] ?? 0).toString(16)}`);
        }
        if (kind === PMC_SYNC_SHARED) s.k.store(addr, filled(n, next));
      }
      counts.syncs++;
    }
  }
  for (const vcpu of vcpus) s.close(vcpu);
  s.close(vm);
  // Allocate and free memory after closing the VM fd: the guest_memfd holds the VM.
  s.k.fallocate(memfd, PUNCH, 0, memfdSize);
  s.k.fallocate(memfd, FALLOC_FL_KEEP_SIZE, 0, memfdSize);
  return counts;
}

// ---- pre_fault_memory_test.c with gmem attributes --------------------------------------------------

const PF_SIZE = SZ_2M + PAGE;

/** The selftest's pre_fault_memory(): retry while progress is made; returns the bytes left and the last errno. */
function preFault(s: Session, vcpu: number, gpa: number, size: number): { left: number; errno: string } {
  const range: KvmPreFaultMemory = { gpa, size, flags: 0 };
  let errno = '';
  for (let iter = 0; iter < 10_000; iter++) {
    const prev = Number(range.size);
    try {
      s.k.ioctl(vcpu, KVM_PRE_FAULT_MEMORY, range);
      errno = '';
    } catch (e) {
      errno = (e as { code?: string }).code ?? String(e);
    }
    assert.equal(Number(range.size) < prev, errno === '', 'range.size shrinks iff the call succeeds');
    if (errno !== '' ? errno !== 'EINTR' : Number(range.size) === 0) break;
  }
  return { left: Number(range.size), errno };
}

// ---- private_mem_kvm_exits_test.c with gmem attributes -----------------------------------------------

const EXITS_TEST_GPA = 0xc0000000;
const EXITS_TEST_SLOT = 10;

function exitsSetup(s: Session, gmem: boolean, sync: boolean): { vm: number; vcpu: number } {
  needInPlace(s);
  const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
  const vcpu = s.vcpu(vm);
  s.guest(vcpu, function* (g: GuestApi) {
    yield g.read(EXITS_TEST_GPA, 8);
    if (sync) yield g.ucall(UCALL_SYNC);
    for (;;) yield g.read(EXITS_TEST_GPA, 8);
  });
  const anon = s.anon(PAGE);
  if (gmem) {
    const fd = s.gmem(vm, PAGE, 0);
    s.setRegion(vm, { slot: EXITS_TEST_SLOT, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: EXITS_TEST_GPA, memory_size: PAGE, userspace_addr: anon, guest_memfd: fd });
  } else {
    s.setRegion(vm, { slot: EXITS_TEST_SLOT, flags: 0, guest_phys_addr: EXITS_TEST_GPA, memory_size: PAGE, userspace_addr: anon });
  }
  // No vm_mem_set_private: with gmem attributes the memory is private by default.
  return { vm, vcpu };
}

function expectMmioRead(s: Session, vcpu: number): void {
  const run = s.run(vcpu);
  assert.equal(run.exit_reason, KVM_EXIT_MMIO, 'a read of a gpa without memslot is emulated MMIO');
  assert.equal(run.mmio.phys_addr, EXITS_TEST_GPA);
  assert.equal(run.mmio.len, 8);
  assert.equal(run.mmio.is_write, 0);
}

forBackends('x86/guest_memfd_conversions_test.c (§6.1, uapi in-place)', (b) => {
  for (const split of ['eager', 'lazy'] as const) {
    describe(`policy split ${split}`, () => defineGmemConversions(withModel(b, { uapi: 'in-place', policy: { split } })));
  }
});

forBackends('x86/private_mem_conversions_test.c with gmem attributes (§6.1, uapi in-place)', (b) => {
  const runs: ReadonlyArray<[string, number, number]> = [['eager', 1, 1], ['lazy', 1, 1], ['eager', 1, 2], ['eager', 2, 2]];
  for (const [split, n, m] of runs) {
    kcase(withModel(b, { uapi: 'in-place', policy: { split } }), `[split ${split}, -n ${n} -m ${m}] guest_code(): explicit(false), explicit(true), punch(false), punch(true), GUEST_DONE; conversions by KVM_HC_MAP_GPA_RANGE exits → KVM_SET_MEMORY_ATTRIBUTES2; host SIGBUS on private syncs`, (s) => {
      const c = testMemConversions(s, n, m);
      assert.ok(c.hypercalls > 0 && c.syncs > 0, 'the guest converted through hypercall exits and synced');
      assert.ok(c.sigbus > 0, 'the host saw private pages SIGBUS');
    });
  }
});

forBackends('pre_fault_memory_test.c with gmem attributes (§6.1, uapi in-place)', (b) => {
  kcase(withModel(b, { uapi: 'in-place' }), 'set private through the guest_memfd; (0, size) → 0 left; again; (size−4K, 8K) and (size, 4K) → ENOENT, 4K left; the guest reads every page; slot deleted → ENOENT (no slot: shared, emulated MMIO), recreated → completes', (s) => {
    needInPlace(s);
    s.needCap(KVM_CAP_PRE_FAULT_MEMORY);
    const t = new ConvFixture(s, { uapi: 'in-place', size: PF_SIZE, flags: MMAP | INIT_SHARED, slot: 10 });
    t.setPrivate(0, PF_SIZE);
    const gpa = TEST_GPA;
    assert.deepEqual(preFault(s, t.vcpu, gpa, PF_SIZE), { left: 0, errno: '' });
    assert.deepEqual(preFault(s, t.vcpu, gpa, PF_SIZE), { left: 0, errno: '' });
    assert.deepEqual(preFault(s, t.vcpu, gpa + PF_SIZE - PAGE, 2 * PAGE), { left: PAGE, errno: 'ENOENT' });
    assert.deepEqual(preFault(s, t.vcpu, gpa + PF_SIZE, PAGE), { left: PAGE, errno: 'ENOENT' });
    for (let off = 0; off < PF_SIZE; off += PAGE) t.guestRmw(off, 0, null);
    t.hostCannotFault(0);
    s.deleteSlot(t.vm, 10);
    assert.deepEqual(preFault(s, t.vcpu, gpa, SZ_2M), { left: SZ_2M, errno: 'ENOENT' });
    s.setRegion(t.vm, { slot: 10, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: gpa, memory_size: PF_SIZE, userspace_addr: t.mem, guest_memfd: t.gmem, guest_memfd_offset: 0 });
    assert.deepEqual(preFault(s, t.vcpu, gpa, SZ_2M), { left: 0, errno: '' });
  });
});

forBackends('gmem_convert_fault_race.c, single-threaded (§6.1, uapi in-place)', (b) => {
  kcase(withModel(b, { uapi: 'in-place' }), '512 pages INIT_SHARED written by the guest; an in-flight fault\'s reference (holdTransientRef) on page 300: set_private(all) → EAGAIN, error_offset page-aligned and < size; released → set_private(all) succeeds; set_shared(all)', (s) => {
    needInPlace(s);
    const N = 512;
    const t = new ConvFixture(s, { uapi: 'in-place', size: N * PAGE, flags: MMAP | INIT_SHARED, slot: 10 });
    const hook = s.k as unknown as { holdTransientRef?: (fd: number, off: number) => number; releaseTransientRef?: (h: number) => void };
    assert.ok(typeof hook.holdTransientRef === 'function' && typeof hook.releaseTransientRef === 'function', 'the model\'s holdTransientRef hook');
    t.s.guest(t.vcpu, function* (g: GuestApi) {
      for (let i = 0; i < N; i++) yield g.write(TEST_GPA + i * PAGE, Uint8Array.of(i & 0xff));
    });
    t.s.run(t.vcpu);
    const h = hook.holdTransientRef(t.gmem, 300 * PAGE);
    const err = t.tryConvert(0, N * PAGE, true);
    assert.equal(err?.code, 'EAGAIN');
    const off = Number(err?.error_offset);
    assert.ok(off % PAGE === 0 && off < N * PAGE, `error_offset 0x${off.toString(16)}`);
    assert.equal(off, 300 * PAGE);
    hook.releaseTransientRef(h);
    t.setPrivate(0, N * PAGE);
    t.setShared(0, N * PAGE);
    t.hostRmw(300 * PAGE, 300 & 0xff, null);
  });
});

forBackends('x86/private_mem_kvm_exits_test.c with gmem attributes (§6.1, uapi in-place)', (b) => {
  const mb = withModel(b, { uapi: 'in-place' });
  kcase(mb, 'test_private_access_memslot_deleted: the guest reads its private page (default private); slot deleted between KVM_RUNs → KVM_EXIT_MMIO, read, len 8, at the GPA', (s) => {
    const { vm, vcpu } = exitsSetup(s, true, true);
    const run = s.run(vcpu);
    assert.equal(run.exit_reason, KVM_EXIT_IO, 'the private read succeeded without any attribute set');
    s.deleteSlot(vm, EXITS_TEST_SLOT);
    expectMmioRead(s, vcpu);
  });

  kcase(mb, 'test_private_access_memslot_deleted: slot deleted before the first KVM_RUN → the same KVM_EXIT_MMIO', (s) => {
    const { vm, vcpu } = exitsSetup(s, true, false);
    s.deleteSlot(vm, EXITS_TEST_SLOT);
    expectMmioRead(s, vcpu);
  });

  kcase(mb, 'test_private_access_memslot_not_private does not apply (the selftest returns): KVM_CAP_MEMORY_ATTRIBUTES = 0, VM-level PRIVATE → EINVAL, and a slot without guest_memfd is plain shared memory', (s) => {
    const { vm, vcpu } = exitsSetup(s, false, true);
    assert.equal(s.cap(KVM_CAP_MEMORY_ATTRIBUTES, vm), 0);
    expectErrno('EINVAL', () => s.k.ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, { address: EXITS_TEST_GPA, size: PAGE, attributes: PRIVATE, flags: 0 }), 'VM-level PRIVATE');
    const run = s.run(vcpu);
    assert.equal(run.exit_reason, KVM_EXIT_IO, 'the read went through the hva, no memory-fault exit');
  });
});
