/**
 * Shared machinery of the conformance suite. Every case is written against the Syscalls interface
 * only and runs once per backend (model, host). A case states what it needs (a VM type in
 * KVM_CAP_VM_TYPES, a capability value, guest code, an optional Syscalls extension); the need is
 * decided on the backend itself (KVM_CHECK_EXTENSION, `typeof k.fn`), never by a list of backend
 * names, and an unmet need skips the case with the reason printed. The model must never skip: a
 * need the model does not meet fails the case instead.
 *
 * A Session owns every fd and mapping a case creates and releases them at the end, because the
 * host backend is one process-wide kernel shared by all cases of a file.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { digestModel } from '../../src/checker/digest.js';
import type { ModelKernel } from '../../src/kernel/model-kernel.js';
import type { GuestCode } from '../../src/kvm/guest.js';
import { loadGuestProgram, type LoadedGuest } from '../../src/host/guest-loader.js';
import { guestProgramCode, type GuestProgram } from '../../src/host/guest-program.js';
import {
  KVM_CAP_EXIT_HYPERCALL, KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS, KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_CAP_MEMORY_FAULT_INFO, KVM_CAP_MULTI_ADDRESS_SPACE, KVM_CAP_NR_MEMSLOTS, KVM_CAP_PRE_FAULT_MEMORY,
  KVM_CAP_READONLY_MEM, KVM_CAP_USER_MEMORY2, KVM_CAP_VM_TYPES, KVM_CHECK_EXTENSION, KVM_CREATE_GUEST_MEMFD,
  KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_ENABLE_CAP, KVM_RUN, KVM_SET_MEMORY_ATTRIBUTES, KVM_SET_USER_MEMORY_REGION2,
} from '../../src/uapi/kvm.js';
import { MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, O_RDWR, PROT_READ, PROT_WRITE } from '../../src/uapi/linux.js';
import type { KvmRun, KvmUserspaceMemoryRegion2, U64 } from '../../src/uapi/syscalls.js';
import { type Backend, backends, expectErrno, type TestKernel } from '../lib/harness.js';

export const PAGE = 4096;
export const SZ_2M = 2 * 1024 * 1024;
export const SZ_4G = 4 * 1024 * 1024 * 1024;

/** The ucall commands of the selftests' ucall_common.h (enum ucall_cmds). */
export const UCALL_SYNC = 1;
export const UCALL_ABORT = 2;
export const UCALL_DONE = 4;

/**
 * Host skip reasons of cases whose guest code is model-only generator code (GuestCode), because a
 * GuestProgram (fill/check/read/ucall/hlt) cannot express it.
 */
export const NEEDS_HYPERCALL_OP = 'needs a hypercall op the host code generator does not emit';
export const NEEDS_GENERATOR_GUEST_CODE =
  'needs generator guest code (GuestCode), which only a backend with setGuestCode runs; it is not expressible as a GuestProgram';

/**
 * The host loader identity-maps GVA = GPA with 4-level paging: a GuestProgram can only touch GPAs
 * below 2^47 (the canonical lower half).
 */
export const LOADER_MAX_GPA = 2 ** 47;

export const BACKENDS: Backend[] = await backends();

/** The x86 VM types the suite knows by name. */
export const VM_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: 'KVM_X86_DEFAULT_VM', 1: 'KVM_X86_SW_PROTECTED_VM', 2: 'KVM_X86_SEV_VM', 3: 'KVM_X86_SEV_ES_VM',
  4: 'KVM_X86_SNP_VM', 5: 'KVM_X86_TDX_VM',
};

export const CAP_NAMES: Readonly<Record<number, string>> = {
  [KVM_CAP_USER_MEMORY2]: 'KVM_CAP_USER_MEMORY2', [KVM_CAP_MEMORY_FAULT_INFO]: 'KVM_CAP_MEMORY_FAULT_INFO',
  [KVM_CAP_MEMORY_ATTRIBUTES]: 'KVM_CAP_MEMORY_ATTRIBUTES', [KVM_CAP_GUEST_MEMFD]: 'KVM_CAP_GUEST_MEMFD',
  [KVM_CAP_VM_TYPES]: 'KVM_CAP_VM_TYPES', [KVM_CAP_PRE_FAULT_MEMORY]: 'KVM_CAP_PRE_FAULT_MEMORY',
  [KVM_CAP_GUEST_MEMFD_FLAGS]: 'KVM_CAP_GUEST_MEMFD_FLAGS', [KVM_CAP_READONLY_MEM]: 'KVM_CAP_READONLY_MEM',
  [KVM_CAP_NR_MEMSLOTS]: 'KVM_CAP_NR_MEMSLOTS', [KVM_CAP_EXIT_HYPERCALL]: 'KVM_CAP_EXIT_HYPERCALL',
  [KVM_CAP_MULTI_ADDRESS_SPACE]: 'KVM_CAP_MULTI_ADDRESS_SPACE',
};

/** A case's need is not met on this backend: the case is skipped with `reason`. */
export class Skip extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'Skip';
  }
}

/** One describe() per backend; an unavailable backend's suite is skipped with its reason. */
export function forBackends(title: string, body: (b: Backend) => void): void {
  for (const b of BACKENDS) {
    const opts = b.unavailable !== null ? { skip: `${b.name}: ${b.unavailable}` } : {};
    describe(`${title} [${b.name}]`, opts, () => {
      if (b.unavailable === null) body(b);
    });
  }
}

export interface CaseOptions {
  /** Mark the case todo with this reason (a known model gap, reported). */
  todo?: string;
}

/**
 * A conformance case: a fresh Session (model: a fresh v6.18 kernel), the body, then every fd and
 * mapping the body left behind is released. A Skip thrown by a need skips the case with the
 * reason on the host; on the model it fails, because the model implements everything it claims.
 */
export function kcase(b: Backend, name: string, body: (s: Session, t: TestContext) => void, opts: CaseOptions = {}): void {
  const testOpts = opts.todo !== undefined ? { todo: opts.todo } : {};
  test(name, testOpts, (t) => {
    const s = new Session(b);
    let failed = true;
    try {
      body(s, t);
      failed = false;
    } catch (e) {
      if (e instanceof Skip) {
        failed = false;
        if (b.name === 'model') throw new Error(`the model must not skip a case, but a need is unmet: ${e.reason}`);
        t.skip(e.reason);
        return;
      }
      throw e;
    } finally {
      s.dispose(failed);
    }
  });
}

/** struct kvm_userspace_memory_region2 with the selftests' defaults for absent fields. */
export function region(r: Partial<KvmUserspaceMemoryRegion2> & { slot: number; guest_phys_addr: U64; memory_size: U64 }): KvmUserspaceMemoryRegion2 {
  return { flags: 0, userspace_addr: 0, guest_memfd_offset: 0, guest_memfd: 0, ...r };
}

/** Loader slots of Session.program() on a backend without setGuestCode: per VM, 1 MiB each from 3 GiB. */
const LOADER_SLOT_BASE = 32000;
const LOADER_GPA_BASE = 0xc000_0000;
const LOADER_SLOT_BYTES = 1 << 20;

/** A GuestProgram loaded into a vCPU by the host loader; `vm` becomes null when the case closes the VM fd. */
interface LoadedProgram {
  vm: number | null;
  readonly loaded: LoadedGuest;
}

export class Session {
  readonly k: TestKernel;
  private readonly fds = new Set<number>();
  private readonly maps: Array<{ addr: number; len: number }> = [];
  private kvm_fd = -1;
  /** vCPU fd → the VM fd it was created on. */
  private readonly vcpuVm = new Map<number, number>();
  /** vCPU fd → its loaded program (loader path only; reloaded for the next program). */
  private readonly programs = new Map<number, LoadedProgram>();
  /** Loaded programs of vCPUs the case closed: their slots and memory are released at the end. */
  private readonly retired: LoadedProgram[] = [];
  /** VM fd → how many loader slots it has used. */
  private readonly loaderSlots = new Map<number, number>();

  constructor(readonly backend: Backend) {
    this.k = backend.make({ uapi: 'v6.18' });
  }

  get isModel(): boolean {
    return this.backend.name === 'model';
  }

  // ---- fds ---------------------------------------------------------------------------------------

  /** Track an fd the case created; it is closed at the end unless the case closes it. */
  own(fd: number): number {
    assert.ok(Number.isInteger(fd) && fd >= 0, `not an fd: ${fd}`);
    this.fds.add(fd);
    return fd;
  }

  close(fd: number): void {
    this.k.close(fd);
    this.forget(fd);
  }

  /** Forget an fd without closing it (it was closed by other means). */
  disown(fd: number): void {
    this.forget(fd);
  }

  /** The fd number is free again: drop what the session knew about the file behind it. */
  private forget(fd: number): void {
    this.fds.delete(fd);
    if (fd === this.kvm_fd) this.kvm_fd = -1;
    this.vcpuVm.delete(fd);
    const p = this.programs.get(fd);
    if (p !== undefined) {
      this.programs.delete(fd);
      this.retired.push(p);
    }
    if (this.loaderSlots.delete(fd)) {
      for (const q of [...this.programs.values(), ...this.retired]) if (q.vm === fd) q.vm = null;
    }
  }

  /** The session's /dev/kvm fd. */
  kvm(): number {
    if (this.kvm_fd < 0) this.kvm_fd = this.own(this.k.open('/dev/kvm', O_RDWR));
    return this.kvm_fd;
  }

  /** KVM_CHECK_EXTENSION on /dev/kvm, or on `fd` (a VM). */
  cap(cap: number, fd: number = this.kvm()): number {
    return this.k.ioctl(fd, KVM_CHECK_EXTENSION, cap);
  }

  vmTypes(): number {
    return this.cap(KVM_CAP_VM_TYPES);
  }

  vm(type = 0): number {
    return this.own(this.k.ioctl(this.kvm(), KVM_CREATE_VM, type));
  }

  vcpu(vm: number, id = 0): number {
    const fd = this.own(this.k.ioctl(vm, KVM_CREATE_VCPU, id));
    this.vcpuVm.set(fd, vm);
    return fd;
  }

  gmem(vm: number, size: U64, flags: U64 = 0): number {
    return this.own(this.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size, flags }));
  }

  setRegion(vm: number, r: Partial<KvmUserspaceMemoryRegion2> & { slot: number; guest_phys_addr: U64; memory_size: U64 }): void {
    this.k.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, region(r));
  }

  deleteSlot(vm: number, slot: number, flags = 0): void {
    this.setRegion(vm, { slot, flags, guest_phys_addr: 0, memory_size: 0 });
  }

  setAttributes(vm: number, address: U64, size: U64, attributes: U64): void {
    this.k.ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, { address, size, attributes, flags: 0 });
  }

  enableExitHypercall(vm: number, mask: number): void {
    this.k.ioctl(vm, KVM_ENABLE_CAP, { cap: KVM_CAP_EXIT_HYPERCALL, flags: 0, args: [mask, 0, 0, 0] });
  }

  // ---- mappings ----------------------------------------------------------------------------------

  mmap(len: number, prot: number, flags: number, fd: number, offset = 0, addr = 0): number {
    const a = this.k.mmap(addr, len, prot, flags, fd, offset);
    this.maps.push({ addr: a, len });
    return a;
  }

  /** An anonymous read/write mapping (MAP_PRIVATE, as the selftests' VM_MEM_SRC_ANONYMOUS). */
  anon(len: number, shared = false): number {
    return this.mmap(len, PROT_READ | PROT_WRITE, (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
  }

  munmap(addr: number, len: number): void {
    this.k.munmap(addr, len);
    const i = this.maps.findIndex((m) => m.addr === addr && m.len === len);
    if (i >= 0) this.maps.splice(i, 1);
  }

  // ---- needs -------------------------------------------------------------------------------------

  needVmType(type: number): void {
    const types = this.vmTypes();
    if ((types & (1 << type)) === 0) {
      throw new Skip(`needs ${VM_TYPE_NAMES[type] ?? `VM type ${type}`}: KVM_CAP_VM_TYPES = 0x${types.toString(16)}`);
    }
  }

  /** The capability (on /dev/kvm, or on `fd`) must have every bit of `mask` (default: non-zero). */
  needCap(cap: number, mask = 0, fd?: number): number {
    const v = this.cap(cap, fd);
    const ok = mask === 0 ? v !== 0 : (v & mask) === mask;
    if (!ok) {
      const want = mask === 0 ? 'non-zero' : `0x${mask.toString(16)}`;
      throw new Skip(`needs ${CAP_NAMES[cap] ?? `cap ${cap}`} ${want}${fd === undefined ? '' : ' on the VM'}: it answers ${v}`);
    }
    return v;
  }

  /**
   * Generator guest code (GuestCode) needs a backend with setGuestCode (the model). A case whose
   * guest code is not expressible as a GuestProgram says why in `why`, the reason it is skipped
   * on a backend without setGuestCode; everything expressible runs through program() instead.
   */
  needGuestCode(why: string = NEEDS_GENERATOR_GUEST_CODE): (vcpuFd: number, code: GuestCode) => void {
    const set = this.k.setGuestCode;
    if (typeof set !== 'function') throw new Skip(why);
    return set.bind(this.k);
  }

  /** An optional Syscalls extension (dup, madvise, mprotect, ftruncate, fsync). */
  needExt<K extends 'dup' | 'madvise' | 'mprotect' | 'ftruncate' | 'fsync'>(name: K): NonNullable<TestKernel[K]> {
    const fn = this.k[name];
    if (typeof fn !== 'function') throw new Skip(`the ${this.backend.name} backend does not provide the ${name}() extension of Syscalls`);
    return (fn as (...a: never[]) => unknown).bind(this.k) as NonNullable<TestKernel[K]>;
  }

  // ---- vCPU --------------------------------------------------------------------------------------

  /** Model-only generator guest code; `why`: the skip reason elsewhere (see needGuestCode). */
  guest(vcpu: number, code: GuestCode, why?: string): void {
    this.needGuestCode(why)(vcpu, code);
  }

  /**
   * Runs `program` on the vCPU from its next KVM_RUN, on either backend: with setGuestCode (the
   * model) as generator code (guestProgramCode); otherwise as real x86-64 code through the host
   * loader, loaded once per vCPU (x86 refuses a second KVM_SET_CPUID2 after KVM_RUN) into a loader
   * slot of its own (slot 32000 + n at GPA 3 GiB + n MiB, n counting per VM) and reloaded for the
   * next program, which restarts the vCPU at its first instruction. The loader slots are deleted
   * and their memory unmapped at the end of the case.
   */
  program(vcpu: number, program: GuestProgram): void {
    const set = this.k.setGuestCode;
    if (typeof set === 'function') {
      set.call(this.k, vcpu, guestProgramCode(program));
      return;
    }
    for (const op of program) {
      const end = op.op === 'fill' || op.op === 'check' ? op.gpa + op.len : op.op === 'read' ? op.gpa + 1 : 0;
      if (end > LOADER_MAX_GPA) {
        throw new Skip(`needs a guest access at gpa 0x${(end - 1).toString(16)}: the host loader identity-maps only GPAs below 2^47 (4-level paging)`);
      }
    }
    const p = this.programs.get(vcpu);
    if (p !== undefined) {
      p.loaded.reload(program);
      return;
    }
    const vm = this.vcpuVm.get(vcpu);
    if (vm === undefined) throw new Error(`program(): fd ${vcpu} is not a vCPU this session created`);
    const n = this.loaderSlots.get(vm) ?? 0;
    const loaded = loadGuestProgram(this.k, vm, vcpu, program,
      { slot: LOADER_SLOT_BASE + n, gpa: LOADER_GPA_BASE + n * LOADER_SLOT_BYTES, size_bytes: LOADER_SLOT_BYTES });
    this.loaderSlots.set(vm, n + 1);
    this.programs.set(vcpu, { vm, loaded });
  }

  /** KVM_RUN; returns the live kvm_run. A failing KVM_RUN throws SyscallError. */
  run(vcpu: number): KvmRun {
    this.k.ioctl(vcpu, KVM_RUN, 0);
    return this.k.kvmRun(vcpu);
  }

  // ---- state probes ------------------------------------------------------------------------------

  /** The fd number the next open would get (the lowest free one). */
  nextFd(): number {
    const fd = this.k.open('/dev/kvm', O_RDWR);
    this.k.close(fd);
    return fd;
  }

  /** The model's whole-state digest; null on the host (which has no introspection). */
  digest(): string | null {
    return this.isModel ? digestModel(this.k as unknown as ModelKernel) : null;
  }

  /**
   * `fn` must fail with `code` and change nothing: on the model the whole-state digest is equal
   * before and after; on both backends no fd was left behind.
   */
  failsCleanly(code: string, fn: () => unknown, what: string): void {
    const before = this.digest();
    const fd_before = this.nextFd();
    expectErrno(code, fn, what);
    assert.equal(this.nextFd(), fd_before, `${what}: the failed call left an fd behind`);
    if (before !== null) assert.equal(this.digest(), before, `${what}: the failed call changed the model`);
  }

  // ---- teardown ----------------------------------------------------------------------------------

  dispose(quiet: boolean): void {
    const errors: unknown[] = [];
    // Loader slots first, while their VM fds are open: delete the slot and unmap its memory; where
    // the case closed the VM, the slot went (or goes) with it and only the memory is left.
    for (const p of [...this.programs.values(), ...this.retired]) {
      try {
        if (p.vm !== null) p.loaded.unload();
        else this.k.munmap(p.loaded.hva, p.loaded.size_bytes);
      } catch (e) {
        errors.push(e);
        if (p.vm !== null) {
          try {
            this.k.munmap(p.loaded.hva, p.loaded.size_bytes); // the slot deletion failed: the memory still goes
          } catch {
            // already unmapped by unload()
          }
        }
      }
    }
    this.programs.clear();
    this.retired.length = 0;
    this.loaderSlots.clear();
    this.vcpuVm.clear();
    for (const m of this.maps.splice(0).reverse()) {
      try {
        this.k.munmap(m.addr, m.len);
      } catch (e) {
        errors.push(e);
      }
    }
    for (const fd of [...this.fds].reverse()) {
      try {
        this.k.close(fd);
      } catch (e) {
        errors.push(e);
      }
    }
    this.fds.clear();
    this.kvm_fd = -1;
    if (!quiet && errors.length > 0) throw errors[0];
  }
}

/** Bytes all equal to `v`, or the first offset that differs, for compact assertion messages. */
export function firstMismatch(buf: Uint8Array, v: number): number {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== v) return i;
  return -1;
}

export function assertFilled(buf: Uint8Array, v: number, what: string): void {
  const i = firstMismatch(buf, v);
  assert.equal(i, -1, `${what}: expected 0x${v.toString(16)} everywhere, byte ${i} is 0x${(buf[i] ?? 0).toString(16)}`);
}

export function filled(len: number, v: number): Uint8Array {
  return new Uint8Array(len).fill(v);
}

/**
 * `fn` must raise `signal` (SignalError) at an address in [lo, hi): the faulting page, since a
 * host memset may fault anywhere in the first inaccessible page.
 */
export function expectSignalIn(signal: 'SIGBUS' | 'SIGSEGV', fn: () => unknown, lo: number, hi: number, what: string): void {
  try {
    fn();
  } catch (e) {
    const err = e as { signal?: string; addr?: number; message?: string };
    if (err.signal !== signal) throw new Error(`${what}: expected ${signal}, got ${err.message ?? String(e)}`);
    assert.ok(typeof err.addr === 'number' && err.addr >= lo && err.addr < hi,
      `${what}: ${signal} at 0x${(err.addr ?? -1).toString(16)}, expected in [0x${lo.toString(16)}, 0x${hi.toString(16)})`);
    return;
  }
  throw new Error(`${what}: expected ${signal}, the access succeeded`);
}

/** A test context helper: note something in the TAP output. */
export function note(t: TestContext, msg: string): void {
  t.diagnostic(msg);
}

// ---- private_mem_conversions_test.c: the selftest's constants (shared by the 6.18 and in-place suites) ----

export const PMC_BASE_DATA_SLOT = 10;
export const PMC_PER_CPU_DATA_SIZE = SZ_2M + PAGE;
/** align_up(PER_CPU_DATA_SIZE, max(2 MiB, 4 KiB)) for the anonymous backing. */
export const PMC_PER_CPU_SIZE = 2 * SZ_2M;
export const PMC_SYNC_SHARED = 0;
export const PMC_SYNC_PRIVATE = 1;
export const PMC_MAP_GPA_SET_ATTRIBUTES = 1 << 0;
export const PMC_MAP_GPA_SHARED = 1 << 1;
export const PMC_MAP_GPA_DO_FALLOCATE = 1 << 2;
/** The (offset, size) ranges the guest converts. */
export const PMC_TEST_RANGES: ReadonlyArray<[number, number]> = [[0, PAGE], [0, SZ_2M], [PAGE, PAGE], [PAGE, SZ_2M], [SZ_2M, PAGE]];
