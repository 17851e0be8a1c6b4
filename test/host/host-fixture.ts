/**
 * Shared machinery of the host backend's own tests (test/host). Each test gets a Fixture that
 * owns every fd and mapping it creates and releases them at the end, because the host backend is
 * one real kernel shared by every test of the process. Where /dev/kvm or the addon is missing,
 * hostTest() skips with the reason printed.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { hostKernelUnavailableReason, openHostKernel } from '../../src/host/host-kernel.js';
import { SignalError, SyscallError, type SignalName } from '../../src/uapi/errors.js';
import {
  KVM_CREATE_GUEST_MEMFD, KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_SET_USER_MEMORY_REGION2,
} from '../../src/uapi/kvm.js';
import { MAP_ANONYMOUS, MAP_SHARED, O_RDWR, PROT_READ, PROT_WRITE } from '../../src/uapi/linux.js';
import type { KvmUserspaceMemoryRegion2, Syscalls, U64 } from '../../src/uapi/syscalls.js';

export const PAGE = 4096;
export const sys: Syscalls | null = openHostKernel();
export const unavailable: string | null = sys ? null : `host backend unavailable: ${hostKernelUnavailableReason() ?? '?'}`;

/** The errno a call fails with, or 0 when it succeeds. */
export function errnoOf(fn: () => unknown): number {
  try {
    fn();
    return 0;
  } catch (err) {
    if (err instanceof SyscallError) return err.errno;
    throw err;
  }
}

/** The signal a memory access raises (and its address), or null when it does not fault. */
export function signalOf(fn: () => unknown): { signal: SignalName; addr: number } | null {
  try {
    fn();
    return null;
  } catch (err) {
    if (err instanceof SignalError) return { signal: err.signal, addr: err.addr };
    throw err;
  }
}

export function filled(len_bytes: number, byte: number): Uint8Array {
  return new Uint8Array(len_bytes).fill(byte);
}

export function assertFilled(bytes: Uint8Array, byte: number, what: string): void {
  const i = bytes.findIndex((b) => b !== byte);
  assert.equal(i, -1, `${what}: byte ${i} is 0x${bytes[i]?.toString(16)}, expected 0x${byte.toString(16)}`);
}

export class Fixture {
  private readonly fds: number[] = [];
  private readonly maps: Array<[number, number]> = [];
  readonly kvm: number;

  constructor(readonly k: Syscalls) {
    this.kvm = this.fd(k.open('/dev/kvm', O_RDWR));
  }

  /** Registers an fd for release at the end of the test. */
  fd(fd: number): number {
    this.fds.push(fd);
    return fd;
  }

  /** Closes an fd now (and not again at the end). */
  close(fd: number): void {
    const i = this.fds.lastIndexOf(fd);
    if (i >= 0) this.fds.splice(i, 1);
    this.k.close(fd);
  }

  /** Unmaps now (and not again at the end). */
  munmap(addr: number, len_bytes: number): void {
    const i = this.maps.findIndex(([a, l]) => a === addr && l === len_bytes);
    if (i >= 0) this.maps.splice(i, 1);
    this.k.munmap(addr, len_bytes);
  }

  vm(type = 0): number {
    return this.fd(this.k.ioctl(this.kvm, KVM_CREATE_VM, type));
  }

  vcpu(vm: number, id = 0): number {
    return this.fd(this.k.ioctl(vm, KVM_CREATE_VCPU, id));
  }

  gmem(vm: number, size: U64, flags: U64 = 0): number {
    return this.fd(this.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size, flags }));
  }

  mmap(len_bytes: number, prot: number, flags: number, fd: number, offset = 0): number {
    const addr = this.k.mmap(0, len_bytes, prot, flags, fd, offset);
    this.maps.push([addr, len_bytes]);
    return addr;
  }

  /** Unmaps at the end of the test a mapping made by someone else through the backend. */
  adopt(addr: number, len_bytes: number): void {
    this.maps.push([addr, len_bytes]);
  }

  anon(len_bytes: number): number {
    return this.mmap(len_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1);
  }

  region(vm: number, r: Partial<KvmUserspaceMemoryRegion2> & { slot: number }): void {
    this.k.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, {
      flags: 0, guest_phys_addr: 0, memory_size: 0, userspace_addr: 0, guest_memfd_offset: 0, guest_memfd: 0, ...r,
    });
  }

  /** Closes what is still open (a test may have closed some itself) and unmaps everything. */
  dispose(): void {
    for (const [addr, len] of this.maps.reverse()) errnoOf(() => this.k.munmap(addr, len));
    for (const fd of this.fds.reverse()) errnoOf(() => this.k.close(fd));
  }
}

/** A test on the real host kernel; skipped, with the reason printed, where there is none. */
export function hostTest(name: string, body: (f: Fixture, t: TestContext) => void): void {
  test(name, (t) => {
    if (!sys) {
      t.skip(unavailable ?? 'host backend unavailable');
      return;
    }
    const f = new Fixture(sys);
    try {
      body(f, t);
    } finally {
      f.dispose();
    }
  });
}
