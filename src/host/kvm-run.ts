/**
 * The vCPU's struct kvm_run as a live object: every field is a getter/setter over the mapped
 * page (an external ArrayBuffer over the kernel's mapping), so a write such as
 * `hypercall.ret = 0` or `immediate_exit = 1` is what the next KVM_RUN reads, and a read after
 * KVM_RUN sees what the kernel wrote. Offsets: shared/spec/upstream-linux.md §1.2 (x86).
 */
import { KVM_EXIT_IO, KVM_EXIT_IO_OUT, KVM_SYNC_X86_REGS, UCALL_PIO_PORT } from '../uapi/kvm.js';
import type { KvmRun, KvmRunHypercall, KvmRunIo, KvmRunMemoryFault, KvmRunMmio } from '../uapi/syscalls.js';
import { KVM_REGS_INDEX, UCALL_ARG_REGS, UCALL_MAX_ARGS, type GprName } from './ucall-abi.js';

const TWO_POW_32 = 2 ** 32;

export const KVM_RUN_OFFSET = {
  request_interrupt_window: 0,
  immediate_exit: 1,
  exit_reason: 8,
  if_flag: 13,
  /** The exit union: every exit's details start here. */
  exit: 32,
  kvm_valid_regs: 288,
  kvm_dirty_regs: 296,
  /** struct kvm_sync_regs; its first member is struct kvm_regs. */
  sync_regs: 304,
} as const;

const U = KVM_RUN_OFFSET.exit;

/** A u64 as a number: exact below 2^53, which covers addresses, sizes and exit codes. */
function getU64(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * TWO_POW_32;
}

function setU64(view: DataView, offset: number, value: number): void {
  const v = Math.trunc(value);
  const high = Math.floor(v / TWO_POW_32);
  view.setUint32(offset, v - high * TWO_POW_32, true);
  view.setUint32(offset + 4, high, true);
}

class MemoryFaultView implements KvmRunMemoryFault {
  constructor(private readonly view: DataView) {}
  get flags(): number { return getU64(this.view, U); }
  set flags(v: number) { setU64(this.view, U, v); }
  get gpa(): number { return getU64(this.view, U + 8); }
  set gpa(v: number) { setU64(this.view, U + 8, v); }
  get size(): number { return getU64(this.view, U + 16); }
  set size(v: number) { setU64(this.view, U + 16, v); }
}

const HYPERCALL_NR_ARGS = 6;

class HypercallView implements KvmRunHypercall {
  constructor(private readonly view: DataView) {}
  get nr(): number { return getU64(this.view, U); }
  set nr(v: number) { setU64(this.view, U, v); }
  /** A copy of args[6]; the kernel reads none of them back. */
  get args(): number[] {
    return Array.from({ length: HYPERCALL_NR_ARGS }, (_, i) => getU64(this.view, U + 8 + 8 * i));
  }
  set args(values: number[]) {
    values.slice(0, HYPERCALL_NR_ARGS).forEach((v, i) => setU64(this.view, U + 8 + 8 * i, v));
  }
  /** What the guest's hypercall returns once KVM_RUN is entered again. */
  get ret(): number { return getU64(this.view, U + 56); }
  set ret(v: number) { setU64(this.view, U + 56, v); }
  get flags(): number { return getU64(this.view, U + 64); }
  set flags(v: number) { setU64(this.view, U + 64, v); }
}

const MMIO_DATA_BYTES = 8;

class MmioView implements KvmRunMmio {
  /** data[8], live: for a read exit, what the caller writes here is what the guest's load returns. */
  readonly data: Uint8Array;
  constructor(private readonly view: DataView) {
    this.data = new Uint8Array(view.buffer, view.byteOffset + U + 8, MMIO_DATA_BYTES);
  }
  get phys_addr(): number { return getU64(this.view, U); }
  set phys_addr(v: number) { setU64(this.view, U, v); }
  get len(): number { return this.view.getUint32(U + 16, true); }
  set len(v: number) { this.view.setUint32(U + 16, v, true); }
  get is_write(): number { return this.view.getUint8(U + 20); }
  set is_write(v: number) { this.view.setUint8(U + 20, v); }
}

class IoView implements KvmRunIo {
  constructor(private readonly view: DataView) {}
  get direction(): number { return this.view.getUint8(U); }
  set direction(v: number) { this.view.setUint8(U, v); }
  get size(): number { return this.view.getUint8(U + 1); }
  set size(v: number) { this.view.setUint8(U + 1, v); }
  get port(): number { return this.view.getUint16(U + 2, true); }
  set port(v: number) { this.view.setUint16(U + 2, v, true); }
  get count(): number { return this.view.getUint32(U + 4, true); }
  set count(v: number) { this.view.setUint32(U + 4, v, true); }
  /** Offset of the port data from the start of the kvm_run mapping. */
  get data_offset(): number { return getU64(this.view, U + 8); }
  set data_offset(v: number) { setU64(this.view, U + 8, v); }
}

const INTERNAL_MAX_DATA = 16;

export class HostKvmRun implements KvmRun {
  readonly memory_fault: KvmRunMemoryFault;
  readonly hypercall: KvmRunHypercall;
  readonly mmio: KvmRunMmio;
  readonly io: KvmRunIo;
  private readonly view: DataView;

  /** `mapping` is the whole kvm_run mapping (KVM_GET_VCPU_MMAP_SIZE bytes: kvm_run, then the PIO page). */
  constructor(readonly mapping: ArrayBuffer) {
    this.view = new DataView(mapping);
    this.memory_fault = new MemoryFaultView(this.view);
    this.hypercall = new HypercallView(this.view);
    this.mmio = new MmioView(this.view);
    this.io = new IoView(this.view);
  }

  get immediate_exit(): number { return this.view.getUint8(KVM_RUN_OFFSET.immediate_exit); }
  set immediate_exit(v: number) { this.view.setUint8(KVM_RUN_OFFSET.immediate_exit, v); }
  get request_interrupt_window(): number { return this.view.getUint8(KVM_RUN_OFFSET.request_interrupt_window); }
  set request_interrupt_window(v: number) { this.view.setUint8(KVM_RUN_OFFSET.request_interrupt_window, v); }
  get exit_reason(): number { return this.view.getUint32(KVM_RUN_OFFSET.exit_reason, true); }
  set exit_reason(v: number) { this.view.setUint32(KVM_RUN_OFFSET.exit_reason, v, true); }
  /** Which sync-regs sets the kernel stores into kvm_run on every exit (KVM_SYNC_X86_*). */
  get kvm_valid_regs(): number { return getU64(this.view, KVM_RUN_OFFSET.kvm_valid_regs); }
  set kvm_valid_regs(v: number) { setU64(this.view, KVM_RUN_OFFSET.kvm_valid_regs, v); }
  get kvm_dirty_regs(): number { return getU64(this.view, KVM_RUN_OFFSET.kvm_dirty_regs); }
  set kvm_dirty_regs(v: number) { setU64(this.view, KVM_RUN_OFFSET.kvm_dirty_regs, v); }

  /** A synced general-purpose register (valid when kvm_valid_regs has KVM_SYNC_X86_REGS). */
  syncedReg(name: GprName | 'rip' | 'rflags'): number {
    return getU64(this.view, KVM_RUN_OFFSET.sync_regs + 8 * KVM_REGS_INDEX[name]);
  }

  /** The PIO data of the current KVM_EXIT_IO (size * count bytes at data_offset), live. */
  ioData(): Uint8Array {
    const io = this.io;
    return new Uint8Array(this.mapping, io.data_offset, io.size * io.count);
  }

  /**
   * The args of a ucall (ucall-abi.ts): a 4-byte OUT to UCALL_PIO_PORT carrying the count,
   * args in the synced registers. null for any other exit, or when registers are not synced.
   */
  get ucall(): number[] | null {
    if (this.exit_reason !== KVM_EXIT_IO) return null;
    const io = this.io;
    if (io.port !== UCALL_PIO_PORT || io.direction !== KVM_EXIT_IO_OUT || io.size !== 4 || io.count !== 1) return null;
    if ((this.kvm_valid_regs & KVM_SYNC_X86_REGS) === 0) return null;
    const nr_args = Math.min(this.view.getUint32(io.data_offset, true), UCALL_MAX_ARGS);
    return UCALL_ARG_REGS.slice(0, nr_args).map((reg) => this.syncedReg(reg));
  }

  get internal(): { suberror: number; data: number[] } {
    const ndata = Math.min(this.view.getUint32(U + 4, true), INTERNAL_MAX_DATA);
    return {
      suberror: this.view.getUint32(U, true),
      data: Array.from({ length: ndata }, (_, i) => getU64(this.view, U + 8 + 8 * i)),
    };
  }
}
