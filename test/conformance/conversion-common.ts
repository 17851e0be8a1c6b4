/**
 * Shared machinery of the conversion and HugeTLB conformance files (in-place-conversion-and-hugetlb.md
 * §6): a model kernel of the right uAPI generation behind the harness's backends, the needs that
 * skip a case on a kernel without the conversion uAPI (decided by KVM_CHECK_EXTENSION), and the
 * selftests' fixture: a KVM_X86_SW_PROTECTED_VM with one vCPU, a guest_memfd mmap()ed MAP_SHARED
 * by the host, bound by a memslot at GPA 4 GiB whose userspace_addr is that same mapping (R51's
 * add_memslot and the final series' vm_mem_add with a mappable guest_memfd both do this).
 *
 * Host accesses go through load/store on the mapping ("host can't fault" = SIGBUS on both a load
 * and a store, where the selftests fork a child or use TEST_EXPECT_SIGBUS); guest accesses are
 * guest code run by KVM_RUN: one read of the byte, a ucall that reports it, the write, then HLT.
 */
import assert from 'node:assert/strict';
import type { ModelKernel, ModelKernelOptions } from '../../src/kernel/model-kernel.js';
import type { ModelMetrics } from '../../src/kernel/metrics.js';
import type { GuestApi } from '../../src/kvm/guest.js';
import {
  GUEST_MEMFD_FLAG_HUGETLB, GUESTMEM_HUGETLB_FLAG_1GB, GUESTMEM_HUGETLB_FLAG_2MB, KVM_CAP_GMEM_CONVERSION,
  KVM_CAP_GMEM_HUGETLB, KVM_CAP_GMEM_SHARED_MEM, KVM_CREATE_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES, KVM_EXIT_HLT, KVM_EXIT_IO,
  KVM_GMEM_CONVERT_PRIVATE, KVM_GMEM_CONVERT_SHARED, KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_SET_MEMORY_ATTRIBUTES2, KVM_X86_SW_PROTECTED_VM,
} from '../../src/uapi/kvm.js';
import { MAP_SHARED, PROT_READ, PROT_WRITE } from '../../src/uapi/linux.js';
import type { KvmGmemConvert, KvmMemoryAttributes2, U64 } from '../../src/uapi/syscalls.js';
import type { Backend } from '../lib/harness.js';
import { expectSignalIn, PAGE, type Session, Skip, SZ_2M, SZ_4G, UCALL_SYNC } from './common.js';

export const PRIVATE = KVM_MEMORY_ATTRIBUTE_PRIVATE;
export const SZ_1G = 1024 * 1024 * 1024;
export const GIB = SZ_1G;
/** The selftests' data GPA (SZ_4G, above the APIC page). */
export const TEST_GPA = SZ_4G;
export const RW = PROT_READ | PROT_WRITE;

export type ConvUapi = 'in-place' | 'rfc-1g';

/**
 * The same backend, but the model it makes is of the given uAPI generation (and pools, memory,
 * policies). The host backend is unchanged: it is what it is, and its capabilities decide.
 */
export function withModel(b: Backend, opts: ModelKernelOptions): Backend {
  if (b.name !== 'model') return b;
  return { name: b.name, unavailable: b.unavailable, make: (o?: ModelKernelOptions) => b.make({ ...o, ...opts }) };
}

/** The model's metrics (the host has no introspection: null). */
export function metricsOf(s: Session): ModelMetrics | null {
  return s.isModel ? (s.k as unknown as ModelKernel).metrics() : null;
}

/** Like metricsOf, for cases that only make sense on the model (it never skips). */
export function modelMetrics(s: Session): ModelMetrics {
  const m = metricsOf(s);
  assert.ok(m !== null, 'model metrics');
  return m;
}

// ---- needs (skip reasons on a kernel without the uAPI) -------------------------------------------

/**
 * main() of x86/guest_memfd_conversions_test.c (final series): KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES
 * must report KVM_MEMORY_ATTRIBUTE_PRIVATE, and KVM_X86_SW_PROTECTED_VM must exist. Conversion is
 * checked first, so that a kernel without in-place conversion says so.
 */
export function needInPlace(s: Session): void {
  const v = s.cap(KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES);
  if ((v & PRIVATE) === 0) {
    throw new Skip(`needs in-place conversion: KVM_CHECK_EXTENSION(KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES = ${KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES}) answers ${v}, not KVM_MEMORY_ATTRIBUTE_PRIVATE (this kernel has no in-place conversion)`);
  }
  s.needVmType(KVM_X86_SW_PROTECTED_VM);
  s.needGuestCode();
}

/**
 * main() of R51's guest_memfd_conversions_test.c: KVM_CAP_GMEM_SHARED_MEM and KVM_CAP_GMEM_CONVERSION
 * (and KVM_CAP_GMEM_HUGETLB for the HugeTLB sizes), SW_PROTECTED VMs.
 */
export function needRfc1g(s: Session, hugetlb = false): void {
  const conv = s.cap(KVM_CAP_GMEM_CONVERSION);
  const shared = s.cap(KVM_CAP_GMEM_SHARED_MEM);
  if (conv === 0 || shared === 0) {
    throw new Skip(`needs the 1G-page RFC's conversion ioctls: KVM_CHECK_EXTENSION(KVM_CAP_GMEM_CONVERSION = ${KVM_CAP_GMEM_CONVERSION}) answers ${conv}, KVM_CAP_GMEM_SHARED_MEM (${KVM_CAP_GMEM_SHARED_MEM}) answers ${shared} (this kernel has no KVM_GMEM_CONVERT_*)`);
  }
  if (hugetlb) {
    const h = s.cap(KVM_CAP_GMEM_HUGETLB);
    if (h === 0) throw new Skip(`needs KVM_CAP_GMEM_HUGETLB (${KVM_CAP_GMEM_HUGETLB}): it answers 0`);
  }
  s.needVmType(KVM_X86_SW_PROTECTED_VM);
  s.needGuestCode();
}

// ---- sizes -----------------------------------------------------------------------------------------

export interface UnitSize {
  readonly name: '4K' | '2M' | '1G';
  readonly bytes: number;
  /** R51 flag bits for this size: HUGETLB | GUESTMEM_HUGETLB_FLAG_xB, or 0. */
  readonly r51Flags: bigint;
  readonly hugetlb: boolean;
  /** The sysfs directory of the hstate. */
  readonly sysfs: string;
}

export const SIZES: readonly UnitSize[] = [
  { name: '4K', bytes: PAGE, r51Flags: 0n, hugetlb: false, sysfs: '' },
  { name: '2M', bytes: SZ_2M, r51Flags: BigInt(GUEST_MEMFD_FLAG_HUGETLB) | GUESTMEM_HUGETLB_FLAG_2MB, hugetlb: true, sysfs: '/sys/kernel/mm/hugepages/hugepages-2048kB' },
  { name: '1G', bytes: SZ_1G, r51Flags: BigInt(GUEST_MEMFD_FLAG_HUGETLB) | GUESTMEM_HUGETLB_FLAG_1GB, hugetlb: true, sysfs: '/sys/kernel/mm/hugepages/hugepages-1048576kB' },
];

/**
 * Model options for an R51 test of `units` units of `size`: enough pool pages for the file, and
 * host memory that holds the pool plus room for the page allocator.
 */
export function r51ModelOpts(size: UnitSize, units: number, policy: Record<string, string> = {}): ModelKernelOptions {
  const opts: ModelKernelOptions = { uapi: 'rfc-1g', policy };
  if (size.name === '2M') {
    opts.hugepages = { '2M': units + 2 };
    opts.memoryBytes = 2 * GIB;
  } else if (size.name === '1G') {
    opts.hugepages = { '1G': Math.max(4, units) };
    opts.memoryBytes = (Math.max(4, units) + 4) * GIB;
  }
  return opts;
}

// ---- the fixture -------------------------------------------------------------------------------------

export interface FixtureOptions {
  uapi: ConvUapi;
  /** Total guest_memfd (and memslot) size in bytes. */
  size: number;
  /** guest_memfd creation flags. */
  flags: U64;
  /** Memslot id: 1 in the final series, 10 in R51. */
  slot: number;
  /** HugeTLB page order for the in-place uAPI's `page_order` field. */
  page_order?: number;
  /** The memslot's GPA (default TEST_GPA, 4 GiB). */
  gpa?: number;
}

/** What a failed conversion reported. */
export interface ConvError {
  code: string;
  error_offset: number | bigint | undefined;
}

/** One VM + vCPU + guest_memfd + its host mapping + the memslot, as the selftests set them up. */
export class ConvFixture {
  readonly vm: number;
  readonly vcpu: number;
  readonly gmem: number;
  /** Host virtual address of the guest_memfd mapping (offset 0). */
  readonly mem: number;
  /** The memslot's GPA: guest accesses to offset `off` go to gpa + off. */
  readonly gpa: number;
  private closed = false;

  constructor(readonly s: Session, readonly o: FixtureOptions) {
    this.gpa = o.gpa ?? TEST_GPA;
    this.vm = s.vm(KVM_X86_SW_PROTECTED_VM);
    this.vcpu = s.vcpu(this.vm);
    const args: { size: number; flags: U64; page_order?: number } = { size: o.size, flags: o.flags };
    if (o.page_order !== undefined) args.page_order = o.page_order;
    this.gmem = s.own(s.k.ioctl(this.vm, KVM_CREATE_GUEST_MEMFD, args));
    this.mem = s.mmap(o.size, RW, MAP_SHARED, this.gmem, 0);
    s.setRegion(this.vm, {
      slot: o.slot, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: this.gpa, memory_size: o.size,
      userspace_addr: this.mem, guest_memfd: this.gmem, guest_memfd_offset: 0,
    });
  }

  /** kvm_vm_free + munmap + close(gmem), in the selftests' cleanup order. */
  teardown(): void {
    if (this.closed) return;
    this.closed = true;
    this.s.close(this.vcpu);
    this.s.close(this.vm);
    this.s.munmap(this.mem, this.o.size);
    this.s.close(this.gmem);
  }

  // ---- host --------------------------------------------------------------------------------------

  hostRead(off: number): number {
    return this.s.k.load(this.mem + off, 1)[0] as number;
  }

  hostWrite(off: number, v: number): void {
    this.s.k.store(this.mem + off, Uint8Array.of(v & 0xff));
  }

  /** host_use_memory / host_do_rmw: check the byte (null: don't), then write (null: don't). */
  hostRmw(off: number, expect: number | null, write: number | null): void {
    if (expect !== null) assert.equal(this.hostRead(off), expect & 0xff, `host read at offset 0x${off.toString(16)}`);
    if (write !== null) this.hostWrite(off, write);
  }

  /** assert_host_cannot_fault / TEST_EXPECT_SIGBUS on a write and on a read. */
  hostCannotFault(off: number, mem = this.mem): void {
    const page = mem + Math.floor(off / PAGE) * PAGE;
    expectSignalIn('SIGBUS', () => this.s.k.store(mem + off, Uint8Array.of(0x5a)), page, page + PAGE, `host store at offset 0x${off.toString(16)}`);
    expectSignalIn('SIGBUS', () => this.s.k.load(mem + off, 1), page, page + PAGE, `host load at offset 0x${off.toString(16)}`);
  }

  // ---- guest -------------------------------------------------------------------------------------

  /**
   * guest_use_memory / run_guest_do_rmw: the guest reads the byte at the slot's GPA + off, reports it with a
   * ucall, writes `write` (null: don't), and halts. `expect` null: not checked.
   */
  guestRmw(off: number, expect: number | null, write: number | null): number {
    const gpa = this.gpa + off;
    this.s.guest(this.vcpu, function* (g: GuestApi) {
      const got = (yield g.read(gpa, 1)) as Uint8Array;
      yield g.ucall(UCALL_SYNC, got[0] as number);
      if (write !== null) yield g.write(gpa, Uint8Array.of(write & 0xff));
    });
    let run = this.s.run(this.vcpu);
    assert.equal(run.exit_reason, KVM_EXIT_IO, `guest access at offset 0x${off.toString(16)}: exit ${run.exit_reason}`);
    const got = run.ucall?.[1] as number;
    if (expect !== null) assert.equal(got, expect & 0xff, `guest read at offset 0x${off.toString(16)}`);
    run = this.s.run(this.vcpu);
    assert.equal(run.exit_reason, KVM_EXIT_HLT, `guest write at offset 0x${off.toString(16)}: exit ${run.exit_reason}`);
    return got;
  }

  // ---- conversion ----------------------------------------------------------------------------------

  /** The conversion's struct: kvm_memory_attributes2 (in-place) or kvm_gmem_convert (rfc-1g). */
  convArg(offset: U64, size: U64, to_private: boolean): KvmMemoryAttributes2 | KvmGmemConvert {
    return this.o.uapi === 'in-place'
      ? { offset, size, attributes: to_private ? PRIVATE : 0, flags: 0 }
      : { offset, size, error_offset: 0 };
  }

  /** The raw ioctl: KVM_SET_MEMORY_ATTRIBUTES2 (in-place) or KVM_GMEM_CONVERT_* (rfc-1g) with `arg`. */
  convIoctl(arg: KvmMemoryAttributes2 | KvmGmemConvert, to_private: boolean): number {
    const req = this.o.uapi === 'in-place' ? KVM_SET_MEMORY_ATTRIBUTES2 : to_private ? KVM_GMEM_CONVERT_PRIVATE : KVM_GMEM_CONVERT_SHARED;
    return this.s.k.ioctl(this.gmem, req, arg);
  }

  /** The conversion, or what it failed with (a non-syscall error is rethrown). */
  tryConvert(offset: number, size: number, to_private: boolean): ConvError | null {
    const arg = this.convArg(offset, size, to_private);
    try {
      this.convIoctl(arg, to_private);
      return null;
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (typeof code !== 'string') throw e;
      return { code, error_offset: arg.error_offset };
    }
  }

  /** gmem_set_private / gmem_set_shared (final) or guest_memfd_convert_* (R51: one retry on EAGAIN): must succeed. */
  convert(offset: number, size: number, to_private: boolean): void {
    let err = this.tryConvert(offset, size, to_private);
    if (err !== null && err.code === 'EAGAIN' && this.o.uapi === 'rfc-1g') err = this.tryConvert(offset, size, to_private);
    assert.equal(err, null, `convert [0x${offset.toString(16)}, +0x${size.toString(16)}) to ${to_private ? 'private' : 'shared'}: ${err?.code}`);
  }

  setPrivate(offset: number, size: number): void {
    this.convert(offset, size, true);
  }

  setShared(offset: number, size: number): void {
    this.convert(offset, size, false);
  }
}

/** 'A' + n as the selftests write their chars. */
export const ch = (c: string, n = 0): number => (c.charCodeAt(0) + n) & 0xff;
