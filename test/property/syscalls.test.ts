/**
 * Property test: seeded random sequences of system calls with random, often invalid, arguments
 * on the model. After every call the invariant checker passes, and a call that failed with a
 * SyscallError left the whole model exactly as it was (same digest). fast-check shrinks a failing
 * sequence to a minimal reproducer. Seeded: the same run every time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkInvariants } from '../../src/checker/invariants.js';
import { digestModel } from '../../src/checker/digest.js';
import { createModelKernel, type ModelKernel } from '../../src/kernel/model-kernel.js';
import { GmemFile } from '../../src/gmem/file.js';
import type { GmemUapi } from '../../src/gmem/inode.js';
import { SignalError, SyscallError } from '../../src/uapi/errors.js';
import * as K from '../../src/uapi/kvm.js';
import * as L from '../../src/uapi/linux.js';
import type { KvmUserspaceMemoryRegion2 } from '../../src/uapi/syscalls.js';

/** Values that sit on the kernel's edges: alignment, sign, overflow. */
const EDGE_U64: Array<number | bigint> = [
  0, 1, 4095, 4096, 8192, 12288, 16384, 65536, 2 ** 20, 2 ** 21, 2 ** 30, 2 ** 32, 2 ** 40, -4096, 0.5,
  (1n << 63n) - 4096n, 1n << 63n, (1n << 64n) - 4096n, (1n << 64n) - 1n,
];
const SIZES = [4096, 4 * 4096, 16 * 4096, 2 ** 21, 2 ** 40, 0, 4097, -4096];
const REQUESTS = [
  K.KVM_GET_API_VERSION, K.KVM_CREATE_VM, K.KVM_CHECK_EXTENSION, K.KVM_CREATE_VCPU, K.KVM_SET_USER_MEMORY_REGION,
  K.KVM_SET_USER_MEMORY_REGION2, K.KVM_SET_MEMORY_ATTRIBUTES, K.KVM_CREATE_GUEST_MEMFD, K.KVM_ENABLE_CAP,
  K.KVM_RUN, K.KVM_PRE_FAULT_MEMORY, K.KVM_GET_VCPU_MMAP_SIZE, 0x1234,
];
const FALLOC_MODES = [
  0, L.FALLOC_FL_KEEP_SIZE, L.FALLOC_FL_KEEP_SIZE | L.FALLOC_FL_PUNCH_HOLE, L.FALLOC_FL_PUNCH_HOLE,
  L.FALLOC_FL_ZERO_RANGE, L.FALLOC_FL_KEEP_SIZE | L.FALLOC_FL_ZERO_RANGE, L.FALLOC_FL_COLLAPSE_RANGE, 0x100,
];
const GMEM_FLAGS = [0, 1, 2, 3, 4, 5, 1n << 63n];
const PROTS = [L.PROT_READ | L.PROT_WRITE, L.PROT_READ, L.PROT_READ | L.PROT_EXEC, L.PROT_NONE];
const MAP_FLAGS = [L.MAP_SHARED, L.MAP_PRIVATE, L.MAP_SHARED | L.MAP_ANONYMOUS, L.MAP_PRIVATE | L.MAP_ANONYMOUS, 0,
  L.MAP_SHARED | L.MAP_FIXED];
const GPAS = [0, 2 ** 32, 2 ** 32 + 4096, 2 ** 32 + 2 ** 21, 0xc0000000, 2 ** 52 - 4096, 2 ** 33, 2 ** 33 + 2 ** 21 + 4096];
const MADVICE = [L.MADV_DONTNEED, L.MADV_REMOVE, L.MADV_HUGEPAGE, L.MADV_COLLAPSE, L.MADV_PAGEOUT, 99];

/** One random call: a kind and a vector of choices, resolved against the live model when run. */
interface Op {
  kind: number;
  c: number[];
}

const opArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.nat(20),
  c: fc.array(fc.nat(1 << 20), { minLength: 8, maxLength: 8 }),
});

function pick<T>(xs: readonly T[], c: number): T {
  return xs[c % xs.length] as T;
}

interface Env {
  k: ModelKernel;
  /** Ops that may legitimately change state while failing (KVM_RUN fills kvm_run; fallocate ENOMEM keeps pages). */
  mayChangeOnError: boolean;
  /** Errors after which some state may differ (a conversion's EAGAIN leaves host PTEs unmapped: they refault). */
  mayChangeOn: ReadonlySet<string>;
}

const NONE: ReadonlySet<string> = new Set();
/** Conversion failures: host PTEs already removed stay removed (they refault); per-huge-page keeps earlier batches. */
const CONVERSION_PARTIAL: ReadonlySet<string> = new Set(['EAGAIN', 'ENOMEM']);

function fdOf(k: ModelKernel, c: number): number {
  const fds = k.state.fds.entries().map(([fd]) => fd);
  if (c % 11 === 0 || fds.length === 0) return pick([-1, 9999, 0], c);
  return pick(fds, c);
}

/** Most of the time an fd of the kind the call wants (so success paths run), else any fd. */
function fdOfKind(k: ModelKernel, kind: string, c: number): number {
  const fds = k.state.fds.entries().filter(([, f]) => f.kind === kind).map(([fd]) => fd);
  if (c % 4 === 0 || fds.length === 0) return fdOf(k, c);
  return pick(fds, c >> 2);
}

/** Usually a page-aligned value inside a 16-page file, sometimes an edge value. */
function offOf(c: number): number | bigint {
  return c % 3 === 0 ? pick(EDGE_U64, c >> 2) : ((c >> 2) % 17) * 4096;
}

function lenOf(c: number): number | bigint {
  return c % 3 === 0 ? pick(EDGE_U64.slice(0, 12), c >> 2) : (1 + ((c >> 2) % 4)) * 4096;
}

const REQUEST_KIND = new Map<number, string>([
  [K.KVM_GET_API_VERSION, 'kvm'], [K.KVM_CREATE_VM, 'kvm'], [K.KVM_CHECK_EXTENSION, 'vm'], [K.KVM_CREATE_VCPU, 'vm'],
  [K.KVM_SET_USER_MEMORY_REGION, 'vm'], [K.KVM_SET_USER_MEMORY_REGION2, 'vm'], [K.KVM_SET_MEMORY_ATTRIBUTES, 'vm'],
  [K.KVM_CREATE_GUEST_MEMFD, 'vm'], [K.KVM_ENABLE_CAP, 'vm'], [K.KVM_RUN, 'vcpu'], [K.KVM_PRE_FAULT_MEMORY, 'vcpu'],
  [K.KVM_GET_VCPU_MMAP_SIZE, 'kvm'], [0x1234, 'gmem'],
]);

function addrOf(k: ModelKernel, c: number, c2: number): number {
  const vmas = k.state.mm.vmaList;
  if (c % 7 === 0 || vmas.length === 0) return pick([0, 4096, 0x7f0000000000, 123], c2);
  const v = pick(vmas, c);
  return v.start + (c2 % Math.max(1, Math.min(v.nr_pages + 1, 64))) * 4096;
}

function regionArg(k: ModelKernel, c: number[]): KvmUserspaceMemoryRegion2 {
  const flags = pick([0, K.KVM_MEM_GUEST_MEMFD, K.KVM_MEM_GUEST_MEMFD | K.KVM_MEM_READONLY, K.KVM_MEM_READONLY, 8], c[1] as number);
  return {
    slot: pick([0, 1, 10, 0x10001, K.KVM_USER_MEM_SLOTS], c[2] as number),
    flags,
    guest_phys_addr: pick(GPAS, c[3] as number),
    memory_size: pick([0, 4096, 4 * 4096, 16 * 4096, 4097], c[4] as number),
    userspace_addr: (c[5] as number) % 3 === 0 ? 0 : addrOf(k, c[5] as number, c[6] as number),
    guest_memfd_offset: pick([0, 4096, 1, 8192], c[6] as number),
    guest_memfd: fdOfKind(k, 'gmem', c[7] as number),
  };
}

/** Guest code: a few accesses and hypercalls over the usual slot addresses. */
function guestProgram(c: number[]): Parameters<ModelKernel['setGuestCode']>[1] {
  const steps = c.slice(0, 4);
  return function* (g) {
    for (const x of steps) {
      const gpa = pick(GPAS, x) + (x % 4) * 4096;
      switch (x % 4) {
        case 0: yield g.read(gpa, 8); break;
        case 1: yield g.write(gpa, new Uint8Array([x & 0xff])); break;
        case 2: yield g.hypercall(K.KVM_HC_MAP_GPA_RANGE, gpa, 1 + (x % 3), x % 2 === 0 ? 0x10 : 0); break;
        default: yield g.ucall(x);
      }
    }
  };
}

function runOp(env: Env, op: Op): void {
  const { k } = env;
  const c = op.c;
  const c0 = c[0] as number;
  env.mayChangeOnError = false;
  env.mayChangeOn = NONE;
  switch (op.kind) {
    case 0:
      k.open(c0 % 5 === 0 ? '/dev/null' : '/dev/kvm', L.O_RDWR);
      return;
    case 1:
      // Closing is rarer than the rest, so that files live long enough to be used.
      if (c0 % 3 === 0) k.close(fdOf(k, c[1] as number));
      else k.fstat(fdOf(k, c[1] as number));
      return;
    case 2:
    case 3:
    case 4: {
      const req = pick(REQUESTS, c[1] as number);
      const fd = fdOfKind(k, REQUEST_KIND.get(req) as string, c0);
      let arg: unknown;
      switch (req) {
        case K.KVM_CREATE_VM: arg = pick([0, 1, 2, 4, 5, 7, 2 ** 32], c[2] as number); break;
        case K.KVM_CHECK_EXTENSION: arg = pick([K.KVM_CAP_GUEST_MEMFD, K.KVM_CAP_GUEST_MEMFD_FLAGS, K.KVM_CAP_VM_TYPES,
          K.KVM_CAP_MEMORY_ATTRIBUTES, K.KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES, 9999, -1], c[2] as number); break;
        case K.KVM_CREATE_VCPU: arg = pick([0, 1, 4096, -1], c[2] as number); break;
        case K.KVM_SET_USER_MEMORY_REGION:
        case K.KVM_SET_USER_MEMORY_REGION2: arg = regionArg(k, c); break;
        case K.KVM_SET_MEMORY_ATTRIBUTES:
          arg = { address: pick(GPAS, c[2] as number), size: lenOf(c[3] as number),
            attributes: pick([0, 8, 16, 9], c[4] as number), flags: (c[5] as number) % 9 === 0 ? 1 : 0 };
          break;
        case K.KVM_CREATE_GUEST_MEMFD:
          arg = { size: (c[2] as number) % 2 === 0 ? 16 * 4096 : pick(SIZES, c[2] as number), flags: pick(GMEM_FLAGS, c[3] as number),
            reserved: (c[4] as number) % 5 === 0 ? [1] : undefined };
          break;
        case K.KVM_ENABLE_CAP:
          arg = { cap: pick([K.KVM_CAP_EXIT_HYPERCALL, 1], c[2] as number), flags: (c[3] as number) % 7 === 0 ? 1 : 0,
            args: [pick([4096, 0, 1, 4097], c[4] as number)] };
          break;
        case K.KVM_RUN: {
          env.mayChangeOnError = true;
          const f = k.state.fds.get(fd);
          if (f?.kind === 'vcpu' && (c[3] as number) % 3 === 0) k.setGuestCode(fd, guestProgram(c.slice(4)));
          if (f?.kind === 'vcpu' && (c[2] as number) % 4 === 0) k.kvmRun(fd).hypercall.ret = 0;
          arg = undefined;
          break;
        }
        case K.KVM_PRE_FAULT_MEMORY:
          env.mayChangeOnError = true;
          arg = { gpa: pick(GPAS, c[2] as number), size: lenOf(c[3] as number), flags: (c[4] as number) % 9 === 0 ? 1 : 0 };
          break;
        default: arg = (c[2] as number) % 2 === 0 ? 0 : {};
      }
      k.ioctl(fd, req, arg as never);
      return;
    }
    case 5:
    case 6: {
      const mode = pick(FALLOC_MODES, c[1] as number);
      env.mayChangeOnError = (mode & L.FALLOC_FL_PUNCH_HOLE) === 0; // ENOMEM keeps the pages allocated so far
      // A HugeTLB punch stops at a block it cannot merge (EAGAIN): blocks before it stay punched.
      env.mayChangeOn = CONVERSION_PARTIAL;
      k.fallocate(fdOfKind(k, 'gmem', c0), mode, offOf(c[2] as number), lenOf(c[3] as number));
      return;
    }
    case 7:
      k.mmap((c[1] as number) % 4 === 0 ? addrOf(k, c[1] as number, c[2] as number) : 0,
        pick([4096, 4 * 4096, 64 * 4096, 0, 4097], c[3] as number), pick(PROTS, c[4] as number),
        pick(MAP_FLAGS, c[5] as number), fdOfKind(k, 'gmem', c0), pick([0, 4096, 1, 2 ** 20], c[6] as number));
      return;
    case 8:
      k.munmap(addrOf(k, c0, c[1] as number), pick([4096, 8192, 64 * 4096, 0], c[2] as number));
      return;
    case 9:
    case 10:
      k.store(addrOf(k, c0, c[1] as number), new Uint8Array(pick([1, 8, 4096, 5000], c[2] as number)).fill((c[3] as number) & 0xff));
      return;
    case 11:
      k.load(addrOf(k, c0, c[1] as number), pick([1, 8, 4096, 9000], c[2] as number));
      return;
    case 12: {
      const pins = [...k.state.mm.pinList.keys()];
      // GUP faults pages in one by one: pages before a failing one stay mapped (kernel behaviour).
      env.mayChangeOnError = true;
      if ((c0 % 2 === 0 || pins.length === 0)) k.pin(addrOf(k, c[1] as number, c[2] as number), pick([1, 4096, 3 * 4096], c[3] as number));
      else k.unpin((c0 % 9 === 0) ? 424242 : pick(pins, c[1] as number));
      return;
    }
    case 13:
      // madvise applies to the mapped parts of a range, then reports ENOMEM for the holes.
      env.mayChangeOnError = true;
      k.madvise(addrOf(k, c0, c[1] as number), pick([4096, 8192, 0, 64 * 4096], c[2] as number), pick(MADVICE, c[3] as number));
      return;
    case 14:
      k.mprotect(addrOf(k, c0, c[1] as number), pick([4096, 8192], c[2] as number), pick(PROTS, c[3] as number));
      return;
    case 15:
      k.dup(fdOf(k, c0));
      return;
    case 16:
    case 17: {
      // In-place conversion (or the R51 ioctls): often valid ranges, sometimes edge values, mostly
      // on a file whose VM has private memory.
      const convertible = k.state.fds.entries()
        .filter(([, f]) => f instanceof GmemFile && f.owner.has_private_mem).map(([fd]) => fd);
      const fd = c0 % 5 !== 0 && convertible.length > 0 ? pick(convertible, c0) : fdOfKind(k, 'gmem', c0);
      // Mostly inside a 16-page file; one in four over a 2-huge-page file; one in eight an edge value.
      const wide = (c[1] as number) % 4 === 0;
      const offset = (c[1] as number) % 8 === 1 ? pick(EDGE_U64, c[2] as number)
        : ((c[2] as number) % (wide ? 1024 : 16)) * 4096;
      const size = (c[3] as number) % 8 === 1 ? pick(EDGE_U64, c[4] as number)
        : (1 + ((c[4] as number) % (wide ? 700 : 8))) * 4096;
      env.mayChangeOn = CONVERSION_PARTIAL;
      if (k.cfg.uapi === 'rfc-1g') {
        const req = (c[5] as number) % 2 === 0 ? K.KVM_GMEM_CONVERT_PRIVATE : K.KVM_GMEM_CONVERT_SHARED;
        k.ioctl(fd, req, { offset, size, error_offset: (c[6] as number) % 13 === 0 ? 4096 : 0 });
      } else {
        k.ioctl(fd, K.KVM_SET_MEMORY_ATTRIBUTES2, { offset, size, attributes: pick([8, 0, 8, 0, 16], c[5] as number),
          flags: (c[6] as number) % 17 === 0 ? 1 : 0, reserved: (c[7] as number) % 19 === 0 ? [1] : undefined });
      }
      return;
    }
    case 19: {
      // An IOMMU importer: create, map a file range, DMA, unmap, destroy.
      const doms = [...k.state.iommus.keys()];
      const which = (c[1] as number) % 5;
      if (doms.length === 0 || which === 0) {
        k.iommuCreateDomain(pick(['pin', 'unmap-remap', 'refresh'] as const, c[2] as number));
      } else if (which === 1 || which === 2) {
        k.iommuMapFile(pick(doms, c[2] as number), fdOfKind(k, 'gmem', c0), ((c[3] as number) % 16) * 4096,
          (1 + ((c[4] as number) % 8)) * 4096, ((c[5] as number) % 8) * 2 ** 21);
      } else if (which === 3) {
        const d = pick(doms, c[2] as number);
        k.dma(d, ((c[3] as number) % 8) * 2 ** 21 + ((c[4] as number) % 16) * 4096, 64,
          (c[5] as number) % 2 === 0 ? new Uint8Array(64).fill(c0 & 0xff) : undefined);
      } else {
        const d = pick(doms, c[2] as number);
        const areas = k.state.iommus.get(d)?.areas.length ?? 0;
        if (areas > 0 && (c[3] as number) % 3 !== 0) k.iommuUnmapFile(d, (c[4] as number) % areas);
        else k.iommuDestroyDomain(d);
      }
      return;
    }
    case 18: {
      // Another CPU's in-flight reference (a KVM fault between get_pfn and the SPTE), held a while.
      const held = [...k.state.transient_refs.keys()];
      if (c0 % 2 === 0 && held.length > 0) k.releaseTransientRef(pick(held, c[1] as number));
      else k.holdTransientRef(fdOfKind(k, 'gmem', c[1] as number), ((c[2] as number) % 20) * 4096);
      return;
    }
    default: {
      const fd = fdOf(k, c0);
      switch (c[1] as number % 5) {
        case 0: k.fstat(fd); return;
        case 1: k.lseek(fd, 0, (c[2] as number) % 6); return;
        case 2: k.pread(fd, new Uint8Array(8), pick([0, -1], c[2] as number)); return;
        case 3: k.read(fd, new Uint8Array(8)); return;
        default: k.ftruncate(fd, 4096);
      }
    }
  }
}

/** Calls that succeeded, per op kind: printed so a reader sees the success paths are exercised. */
const succeeded = new Map<string, number>();

/** Run a sequence; returns the number of calls made. Throws on the first broken property. */
function runSequence(uapi: GmemUapi, ops: Op[], policy: Record<string, string> = {}): number {
  const k = createModelKernel({ uapi, memoryBytes: 64 * 2 ** 20, hugepages: uapi === 'v6.18' ? {} : { '2M': 8 }, policy });
  // A small world to start from: a VM of each type with a guest_memfd, a mapping, a memslot and
  // a vCPU each, so that random calls meet live state.
  const kvm = k.open('/dev/kvm', L.O_RDWR);
  for (const type of [0, 1]) {
    const vm = k.ioctl(kvm, K.KVM_CREATE_VM, type);
    const shared_flags = uapi === 'rfc-1g' ? K.GUEST_MEMFD_FLAG_SUPPORT_SHARED
      : K.GUEST_MEMFD_FLAG_MMAP | (type === 0 || uapi === 'in-place' ? K.GUEST_MEMFD_FLAG_INIT_SHARED : 0);
    const gmem = k.ioctl(vm, K.KVM_CREATE_GUEST_MEMFD, { size: 16 * 4096, flags: shared_flags });
    const hva = k.mmap(0, 16 * 4096, L.PROT_READ | L.PROT_WRITE, L.MAP_SHARED, gmem, 0);
    k.ioctl(vm, K.KVM_SET_USER_MEMORY_REGION2, { slot: 1, flags: K.KVM_MEM_GUEST_MEMFD, guest_phys_addr: 2 ** 32,
      memory_size: 16 * 4096, userspace_addr: hva, guest_memfd_offset: 0, guest_memfd: gmem });
    k.ioctl(vm, K.KVM_CREATE_VCPU, 0);
    k.ioctl(vm, K.KVM_ENABLE_CAP, { cap: K.KVM_CAP_EXIT_HYPERCALL, args: [1 << K.KVM_HC_MAP_GPA_RANGE] });
    if (uapi !== 'v6.18' && type === 1) {
      // A HugeTLB-backed file of two 2 MiB pages, bound at 8 GiB, mapped by the host.
      const huge = uapi === 'rfc-1g'
        ? k.ioctl(vm, K.KVM_CREATE_GUEST_MEMFD, { size: 2 * 2 ** 21, flags: BigInt(K.GUEST_MEMFD_FLAG_SUPPORT_SHARED | K.GUEST_MEMFD_FLAG_HUGETLB) | K.GUESTMEM_HUGETLB_FLAG_2MB })
        : k.ioctl(vm, K.KVM_CREATE_GUEST_MEMFD, { size: 2 * 2 ** 21, flags: K.GUEST_MEMFD_FLAG_MMAP | K.GUEST_MEMFD_FLAG_HUGETLB, page_order: 9 });
      const hhva = k.mmap(0, 2 * 2 ** 21, L.PROT_READ | L.PROT_WRITE, L.MAP_SHARED, huge, 0);
      k.ioctl(vm, K.KVM_SET_USER_MEMORY_REGION2, { slot: 2, flags: K.KVM_MEM_GUEST_MEMFD, guest_phys_addr: 2 ** 33,
        memory_size: 2 * 2 ** 21, userspace_addr: hhva, guest_memfd_offset: 0, guest_memfd: huge });
    }
  }
  const env: Env = { k, mayChangeOnError: false, mayChangeOn: NONE };
  for (const [i, op] of ops.entries()) {
    const before = digestModel(k);
    try {
      runOp(env, op);
      const key = `${k.cfg.uapi}${JSON.stringify(k.policy)}:${op.kind}`;
      succeeded.set(key, (succeeded.get(key) ?? 0) + 1);
    } catch (e) {
      if (e instanceof SyscallError) {
        if (!env.mayChangeOnError && !env.mayChangeOn.has(e.code)) {
          assert.equal(digestModel(k), before, `op ${i} (${JSON.stringify(op)}) failed with ${e.code} and changed the model`);
        }
      } else if (!(e instanceof SignalError)) {
        throw new Error(`op ${i} (${JSON.stringify(op)}) threw a non-kernel error: ${(e as Error).stack ?? String(e)}`);
      }
    }
    checkInvariants(k);
  }
  return ops.length;
}

const RUNS: Array<{ uapi: GmemUapi; policy: Record<string, string>; numRuns: number }> = [
  { uapi: 'v6.18', policy: {}, numRuns: 72 },
  { uapi: 'in-place', policy: { split: 'eager' }, numRuns: 25 },
  { uapi: 'in-place', policy: { split: 'lazy' }, numRuns: 25 },
  { uapi: 'in-place', policy: { split: 'eager', atomicity: 'per-huge-page' }, numRuns: 15 },
  { uapi: 'rfc-1g', policy: { split: 'eager' }, numRuns: 20 },
  { uapi: 'rfc-1g', policy: { split: 'lazy', merge: 'on-free' }, numRuns: 15 },
  { uapi: 'in-place', policy: { lru: 'no-drain', default_state: 'shared', atomicity: 'rollback' }, numRuns: 15 },
];

let totalCalls = 0;

for (const { uapi, policy, numRuns } of RUNS) {
  const label = `${uapi} ${JSON.stringify(policy)}`;
  test(`random syscalls keep every invariant and failed calls change nothing (${label})`, () => {
    let calls = 0;
    const result = fc.check(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 150, size: 'max' }), (ops) => {
        calls += runSequence(uapi, ops, policy);
      }),
      { seed: 0x6d656d, numRuns },
    );
    if (result.failed) {
      // Replay the shrunk counterexample so the real error (and its message) is what fails the test.
      const [ops] = result.counterexample ?? [[]];
      console.log(`# minimal failing sequence (${label}): ${JSON.stringify(ops)}`);
      runSequence(uapi, ops, policy);
      assert.fail(`the shrunk sequence did not fail again: ${String(result.errorInstance)}`);
    }
    const ok = [...succeeded].filter(([key]) => key.startsWith(`${uapi}${JSON.stringify(createModelKernel({ uapi, policy }).policy)}:`))
      .map(([key, n]) => `${key.split(':').pop()}=${n}`);
    console.log(`# ${label}: ${calls} calls checked; succeeded by kind: ${ok.join(' ')}`);
    totalCalls += calls;
  });
}

test('the property runs made at least 10,000 calls in all', () => {
  assert.ok(totalCalls >= 10_000, `only ${totalCalls} calls`);
});
