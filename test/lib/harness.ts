/**
 * The test harness: which backends a conformance case runs on, and the checked model.
 *
 * - `checked(kernel)` wraps a model kernel so that the invariant checker runs after EVERY call
 *   (successful or failing), which is how every test obeys "check after every operation".
 * - `backends()` lists the model (always) and the host (when /dev/kvm and the native helper are
 *   there; otherwise the host entry carries the printed reason it is skipped).
 * - `needs(...)` lets a case state what it requires (VM type, capability, uapi) and skips with
 *   the reason where the backend lacks it — decided by KVM_CHECK_EXTENSION, never by a list.
 */
import { checkInvariants } from '../../src/checker/invariants.js';
import { createModelKernel, type ModelKernel, type ModelKernelOptions } from '../../src/kernel/model-kernel.js';
import type { GuestCode } from '../../src/kvm/guest.js';
import { KVM_CAP_VM_TYPES, KVM_CHECK_EXTENSION } from '../../src/uapi/kvm.js';
import { O_RDWR } from '../../src/uapi/linux.js';
import type { Syscalls } from '../../src/uapi/syscalls.js';

export type TestKernel = Syscalls & {
  /** Model only: guest code for a vCPU. */
  setGuestCode?: (vcpuFd: number, code: GuestCode) => void;
};

export interface Backend {
  readonly name: 'model' | 'host';
  /** A fresh kernel (the host backend is one process-wide; it returns the same). */
  make(opts?: ModelKernelOptions): TestKernel;
  /** Why this backend cannot run here, or null. */
  readonly unavailable: string | null;
}

/** Wrap a model kernel so the invariant checker runs after every call. */
export function checked(k: ModelKernel): ModelKernel {
  return new Proxy(k, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function' || prop === 'constructor') return v;
      return (...args: unknown[]) => {
        try {
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        } finally {
          checkInvariants(target);
        }
      };
    },
  });
}

export function modelKernel(opts?: ModelKernelOptions): ModelKernel {
  return checked(createModelKernel(opts));
}

export const modelBackend: Backend = {
  name: 'model',
  make: (opts) => modelKernel({ uapi: 'v6.18', ...opts }),
  unavailable: null,
};

let hostBackendCache: Backend | null = null;

/** The host backend, loaded lazily so a machine without the native helper still runs the model. */
export async function hostBackend(): Promise<Backend> {
  if (hostBackendCache !== null) return hostBackendCache;
  let unavailable: string | null = null;
  let sys: Syscalls | null = null;
  try {
    // A computed specifier: the model runs even where the host backend is not built.
    const specifier = '../../src/host/host-kernel.js';
    const mod = (await import(specifier)) as {
      openHostKernel(): Syscalls | null;
      hostKernelUnavailableReason?(): string | null;
    };
    sys = mod.openHostKernel();
    if (sys === null) unavailable = mod.hostKernelUnavailableReason?.() ?? '/dev/kvm cannot be opened';
  } catch (e) {
    unavailable = `host backend failed to load: ${(e as Error).message}`;
  }
  const host = sys;
  hostBackendCache = {
    name: 'host',
    make: () => {
      if (host === null) throw new Error(`host backend unavailable: ${unavailable}`);
      return host;
    },
    unavailable,
  };
  if (unavailable !== null) console.log(`# host backend skipped: ${unavailable}`);
  return hostBackendCache;
}

export async function backends(): Promise<Backend[]> {
  return [modelBackend, await hostBackend()];
}

/** VM types the backend supports (KVM_CAP_VM_TYPES), as a bitmask. */
export function vmTypes(sys: Syscalls): number {
  const kvm = sys.open('/dev/kvm', O_RDWR);
  try {
    return sys.ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES);
  } finally {
    sys.close(kvm);
  }
}

/** A capability's answer on /dev/kvm. */
export function systemCap(sys: Syscalls, cap: number): number {
  const kvm = sys.open('/dev/kvm', O_RDWR);
  try {
    return sys.ioctl(kvm, KVM_CHECK_EXTENSION, cap);
  } finally {
    sys.close(kvm);
  }
}

/**
 * Expect `fn` to throw SyscallError with `code`; returns the error. A different error, or
 * success, fails the test with the call named.
 */
export function expectErrno(code: string, fn: () => unknown, what = ''): Error {
  try {
    fn();
  } catch (e) {
    const err = e as { code?: string; message?: string };
    if (err.code === code) return e as Error;
    throw new Error(`${what}: expected ${code}, got ${err.code ?? 'a non-syscall error'}: ${err.message ?? String(e)}`);
  }
  throw new Error(`${what}: expected ${code}, the call succeeded`);
}

/** Expect a SignalError with `signal`. */
export function expectSignal(signal: 'SIGBUS' | 'SIGSEGV', fn: () => unknown, what = ''): void {
  try {
    fn();
  } catch (e) {
    const err = e as { signal?: string; message?: string };
    if (err.signal === signal) return;
    throw new Error(`${what}: expected ${signal}, got ${err.message ?? String(e)}`);
  }
  throw new Error(`${what}: expected ${signal}, the access succeeded`);
}
