/**
 * tools/testing/selftests/kvm/x86/private_mem_conversions_test.c with its defaults (1 vCPU, 1
 * memslot, anonymous shared backing): upstream-linux.md §4.2. Needs a SW_PROTECTED VM, memory
 * attributes and guest code. The guest converts with KVM_HC_MAP_GPA_RANGE, which exits to user
 * space (KVM_CAP_EXIT_HYPERCALL); the host loop fallocates the gmem and sets the attributes, and on
 * each SYNC ucall checks (and for PMC_SYNC_SHARED rewrites) its shared view of the memory.
 */
import assert from 'node:assert/strict';
import {
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE,
} from '../../src/uapi/linux.js';
import {
  KVM_CAP_EXIT_HYPERCALL, KVM_CAP_MEMORY_ATTRIBUTES, KVM_EXIT_HYPERCALL, KVM_EXIT_IO, KVM_HC_MAP_GPA_RANGE,
  KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_SW_PROTECTED_VM,
} from '../../src/uapi/kvm.js';
import type { GuestApi, GuestGenerator } from '../../src/kvm/guest.js';
import {
  filled, firstMismatch, forBackends, kcase, NEEDS_HYPERCALL_OP, PAGE, type Session, SZ_4G, UCALL_ABORT, UCALL_DONE,
  UCALL_SYNC,
  PMC_BASE_DATA_SLOT, PMC_MAP_GPA_DO_FALLOCATE, PMC_MAP_GPA_SET_ATTRIBUTES, PMC_MAP_GPA_SHARED, PMC_PER_CPU_DATA_SIZE,
  PMC_PER_CPU_SIZE, PMC_SYNC_PRIVATE, PMC_SYNC_SHARED, PMC_TEST_RANGES,
} from './common.js';

const BASE_DATA_GPA = SZ_4G;

/** Hypercall return codes (include/uapi/linux/kvm_para.h). */
const KVM_ENOSYS = 1000;
const KVM_EINVAL = 22;

/** What the guest asserted, as the ucall it makes (UCALL_ABORT, line, gpa, expected, got). */
class GuestAssert {
  static *memcmp(g: GuestApi, gpa: number, pattern: number, size: number, line: number): GuestGenerator {
    const mem = (yield g.read(gpa, size)) as Uint8Array;
    const i = firstMismatch(mem, pattern);
    if (i >= 0) yield g.ucall(UCALL_ABORT, line, gpa + i, pattern, mem[i] as number);
  }

  static *hypercallOk(g: GuestApi, gpa: number, size: number, flags: number, line: number): GuestGenerator {
    const ret = (yield g.hypercall(KVM_HC_MAP_GPA_RANGE, gpa, size / PAGE, flags, 0)) as number;
    if (ret !== 0) yield g.ucall(UCALL_ABORT, line, gpa, 0, ret);
  }
}

function* memset(g: GuestApi, gpa: number, v: number, size: number): GuestGenerator {
  yield g.write(gpa, filled(size, v));
}

function* mapMem(g: GuestApi, gpa: number, size: number, shared: boolean, fallocate: boolean): GuestGenerator {
  let flags = PMC_MAP_GPA_SET_ATTRIBUTES;
  if (shared) flags |= PMC_MAP_GPA_SHARED;
  if (fallocate) flags |= PMC_MAP_GPA_DO_FALLOCATE;
  yield* GuestAssert.hypercallOk(g, gpa, size, flags, 1);
}

function* syncShared(g: GuestApi, gpa: number, size: number, cur: number, next: number): GuestGenerator {
  yield g.ucall(UCALL_SYNC, PMC_SYNC_SHARED, gpa, size, cur, next);
}

function* syncPrivate(g: GuestApi, gpa: number, size: number, pattern: number): GuestGenerator {
  yield g.ucall(UCALL_SYNC, PMC_SYNC_PRIVATE, gpa, size, pattern);
}

function* explicitConversion(g: GuestApi, base: number, doFallocate: boolean): GuestGenerator {
  const defP = 0xaa;
  const initP = 0xcc;
  yield* memset(g, base, defP, PMC_PER_CPU_DATA_SIZE);
  yield* GuestAssert.memcmp(g, base, defP, PMC_PER_CPU_DATA_SIZE, 10);
  yield* syncShared(g, base, PMC_PER_CPU_DATA_SIZE, defP, initP);
  yield* GuestAssert.memcmp(g, base, initP, PMC_PER_CPU_DATA_SIZE, 11);

  for (const [offset, size] of PMC_TEST_RANGES) {
    const gpa = base + offset;
    const [p1, p2, p3, p4] = [0x11, 0x22, 0x33, 0x44];
    yield* memset(g, gpa, p1, size);
    yield* mapMem(g, gpa, size, false, doFallocate);
    if (size > PAGE) {
      yield* memset(g, gpa, p2, PAGE);
    } else {
      yield* memset(g, gpa, p2, size);
      yield* syncPrivate(g, gpa, size, p1);
      yield* GuestAssert.memcmp(g, gpa, p2, size, 12);
      if (gpa > base) yield* GuestAssert.memcmp(g, base, initP, gpa - base, 13);
      if (gpa + size < base + PMC_PER_CPU_DATA_SIZE) yield* GuestAssert.memcmp(g, gpa + size, initP, base + PMC_PER_CPU_DATA_SIZE - (gpa + size), 14);
      for (let j = 0; j < size; j += PAGE) {
        if (((j / PAGE) & 1) !== 0) {
          yield* mapMem(g, gpa + j, PAGE, true, doFallocate);
          yield* syncShared(g, gpa + j, PAGE, p1, p3);
          yield* GuestAssert.memcmp(g, gpa + j, p3, PAGE, 15);
        } else {
          yield* syncPrivate(g, gpa + j, PAGE, p1);
        }
      }
    }
    // skip:
    yield* mapMem(g, gpa, size, true, doFallocate);
    yield* memset(g, gpa, p3, size);
    yield* syncShared(g, gpa, size, p3, p4);
    yield* GuestAssert.memcmp(g, gpa, p4, size, 16);
    yield* memset(g, gpa, initP, size);
    yield* mapMem(g, base, PMC_PER_CPU_DATA_SIZE, true, true);
  }
}

function* punchHole(g: GuestApi, gpa: number, size: number): GuestGenerator {
  yield* GuestAssert.hypercallOk(g, gpa, size, PMC_MAP_GPA_SHARED | PMC_MAP_GPA_DO_FALLOCATE, 2);
}

function* testPunchHole(g: GuestApi, base: number, precise: boolean): GuestGenerator {
  const initP = 0xcc;
  yield* mapMem(g, base, PMC_PER_CPU_DATA_SIZE, false, false);
  for (const [offset, size] of PMC_TEST_RANGES) {
    const gpa = base + offset;
    yield* punchHole(g, base, PMC_PER_CPU_DATA_SIZE);
    if (precise) {
      yield* memset(g, gpa, initP, size);
      yield* GuestAssert.memcmp(g, gpa, initP, size, 20);
    } else {
      yield* memset(g, base, initP, PMC_PER_CPU_DATA_SIZE);
      yield* GuestAssert.memcmp(g, base, initP, PMC_PER_CPU_DATA_SIZE, 21);
    }
    yield* punchHole(g, gpa, size);
    yield* GuestAssert.memcmp(g, gpa, 0, size, 22);
  }
}

/** The phases the guest runs, each as the selftest's guest_code() would run it. */
type Phase = (g: GuestApi, base: number) => GuestGenerator;
const PHASES: ReadonlyArray<[string, Phase]> = [
  ['guest_test_explicit_conversion(do_fallocate = false)', (g, base) => explicitConversion(g, base, false)],
  ['guest_test_explicit_conversion(do_fallocate = true)', (g, base) => explicitConversion(g, base, true)],
  ['guest_test_punch_hole(precise = false)', (g, base) => testPunchHole(g, base, false)],
  ['guest_test_punch_hole(precise = true)', (g, base) => testPunchHole(g, base, true)],
];

interface Counts {
  hypercalls: number;
  syncs: number;
}

/** test_mem_conversions(anonymous, 1 vCPU, 1 memslot) running `phases`, then GUEST_DONE. */
function testMemConversions(s: Session, phases: readonly Phase[]): Counts {
  s.needVmType(KVM_X86_SW_PROTECTED_VM);
  s.needCap(KVM_CAP_MEMORY_ATTRIBUTES, KVM_MEMORY_ATTRIBUTE_PRIVATE);
  s.needGuestCode(NEEDS_HYPERCALL_OP); // the guest converts with KVM_HC_MAP_GPA_RANGE
  const memfdSize = PMC_PER_CPU_SIZE;
  const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
  const vcpu = s.vcpu(vm);
  s.needCap(KVM_CAP_EXIT_HYPERCALL, 1 << KVM_HC_MAP_GPA_RANGE, vm);
  s.enableExitHypercall(vm, 1 << KVM_HC_MAP_GPA_RANGE);
  const memfd = s.gmem(vm, memfdSize, 0);
  const hva = s.anon(memfdSize);
  s.setRegion(vm, {
    slot: PMC_BASE_DATA_SLOT, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: BASE_DATA_GPA, memory_size: memfdSize,
    userspace_addr: hva, guest_memfd: memfd, guest_memfd_offset: 0,
  });
  const base = BASE_DATA_GPA;
  s.guest(vcpu, function* (g: GuestApi) {
    for (const phase of phases) yield* phase(g, base);
    yield g.ucall(UCALL_DONE);
  });

  const counts: Counts = { hypercalls: 0, syncs: 0 };
  for (;;) {
    const run = s.run(vcpu);
    if (run.exit_reason === KVM_EXIT_HYPERCALL) {
      // handle_exit_hypercall
      const [gpa = 0, npages = 0, flags = 0] = run.hypercall.args;
      const size = npages * PAGE;
      assert.equal(run.hypercall.nr, KVM_HC_MAP_GPA_RANGE);
      const shared = (flags & PMC_MAP_GPA_SHARED) !== 0;
      if ((flags & PMC_MAP_GPA_DO_FALLOCATE) !== 0) {
        // vm_guest_mem_fallocate: the gpa range → the gmem range of the one slot.
        s.k.fallocate(memfd, FALLOC_FL_KEEP_SIZE | (shared ? FALLOC_FL_PUNCH_HOLE : 0), gpa - BASE_DATA_GPA, size);
      }
      if ((flags & PMC_MAP_GPA_SET_ATTRIBUTES) !== 0) s.setAttributes(vm, gpa, size, shared ? 0 : KVM_MEMORY_ATTRIBUTE_PRIVATE);
      run.hypercall.ret = 0;
      counts.hypercalls++;
      continue;
    }
    assert.equal(run.exit_reason, KVM_EXIT_IO, `unexpected exit ${run.exit_reason}`);
    const uc = run.ucall;
    assert.ok(uc !== null, 'a ucall');
    if (uc[0] === UCALL_ABORT) assert.fail(`guest assertion ${uc[1]} failed at gpa 0x${(uc[2] ?? 0).toString(16)}: expected 0x${(uc[3] ?? 0).toString(16)}, got 0x${(uc[4] ?? 0).toString(16)}`);
    if (uc[0] === UCALL_DONE) break;
    assert.equal(uc[0], UCALL_SYNC, `unknown ucall ${uc[0]}`);
    const [, kind, gpa = 0, size = 0, cur = 0, next = 0] = uc;
    assert.ok(kind === PMC_SYNC_SHARED || kind === PMC_SYNC_PRIVATE, `unknown sync command ${kind}`);
    // In all cases the host observes the shared data; for PMC_SYNC_SHARED it writes the new pattern.
    const view = s.k.load(hva + (gpa - BASE_DATA_GPA), size);
    const i = firstMismatch(view, cur);
    assert.equal(i, -1, `host expected 0x${cur.toString(16)} at gpa 0x${(gpa + i).toString(16)}, got 0x${(view[i] ?? 0).toString(16)}`);
    if (kind === PMC_SYNC_SHARED) s.k.store(hva + (gpa - BASE_DATA_GPA), filled(size, next));
    counts.syncs++;
  }
  s.close(vcpu);
  s.close(vm);
  // The gmem still pins the (closed) VM: punch and allocate all of it, then close it.
  s.k.fallocate(memfd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, memfdSize);
  s.k.fallocate(memfd, FALLOC_FL_KEEP_SIZE, 0, memfdSize);
  s.close(memfd);
  return counts;
}

forBackends('private_mem_conversions_test.c (§4.2)', (b) => {
  for (const [name, phase] of PHASES) {
    kcase(b, `${name}, then GUEST_DONE: only hypercall and ucall exits, every host and guest check holds`, (s) => {
      const counts = testMemConversions(s, [phase]);
      assert.ok(counts.hypercalls > 0, 'the guest converted through KVM_HC_MAP_GPA_RANGE exits');
      if (name.startsWith('guest_test_explicit')) assert.ok(counts.syncs > 0, 'the host checked its shared view');
    });
  }

  kcase(b, 'guest_code(): explicit(false), explicit(true), punch(false), punch(true), GUEST_DONE in one run', (s) => {
    testMemConversions(s, PHASES.map(([, p]) => p));
  });

  kcase(b, 'KVM_HC_MAP_GPA_RANGE (x86 __kvm_emulate_hypercall): -KVM_ENOSYS before KVM_CAP_EXIT_HYPERCALL even for bad arguments; then bad arguments → -KVM_EINVAL without an exit', (s) => {
    const vm = s.vm(0);
    const vcpu = s.vcpu(vm);
    s.guest(vcpu, function* (g: GuestApi) {
      const before = (yield g.hypercall(KVM_HC_MAP_GPA_RANGE, BASE_DATA_GPA + 1, 0, 0, 0)) as number;
      yield g.ucall(UCALL_SYNC, before);
      const unaligned = (yield g.hypercall(KVM_HC_MAP_GPA_RANGE, BASE_DATA_GPA + 1, 1, 0, 0)) as number;
      const nopages = (yield g.hypercall(KVM_HC_MAP_GPA_RANGE, BASE_DATA_GPA, 0, 0, 0)) as number;
      const good = (yield g.hypercall(KVM_HC_MAP_GPA_RANGE, BASE_DATA_GPA, 1, 0, 0)) as number;
      yield g.ucall(UCALL_DONE, unaligned, nopages, good);
    }, NEEDS_HYPERCALL_OP);
    let run = s.run(vcpu);
    assert.equal(run.exit_reason, KVM_EXIT_IO);
    assert.deepEqual(run.ucall, [UCALL_SYNC, -KVM_ENOSYS]);
    s.needCap(KVM_CAP_EXIT_HYPERCALL, 1 << KVM_HC_MAP_GPA_RANGE, vm);
    s.enableExitHypercall(vm, 1 << KVM_HC_MAP_GPA_RANGE);
    run = s.run(vcpu);
    assert.equal(run.exit_reason, KVM_EXIT_HYPERCALL, 'only the valid call exits');
    assert.deepEqual([run.hypercall.nr, ...run.hypercall.args.slice(0, 3)], [KVM_HC_MAP_GPA_RANGE, BASE_DATA_GPA, 1, 0]);
    run.hypercall.ret = 7;
    run = s.run(vcpu);
    assert.equal(run.exit_reason, KVM_EXIT_IO);
    assert.deepEqual(run.ucall, [UCALL_DONE, -KVM_EINVAL, -KVM_EINVAL, 7], 'the guest gets -KVM_EINVAL twice, then user space\'s ret');
  });
});
