/**
 * A vCPU: struct kvm_run as a live object, KVM_RUN over guest code, KVM_PRE_FAULT_MEMORY.
 * An operation that exits to user space stays suspended at the piece that exited; the next
 * KVM_RUN resumes it there (a memory-fault exit retries the access, an MMIO read takes its data
 * from run.mmio.data, a hypercall returns run.hypercall.ret to the guest).
 */
import { assert } from '../lib/assert.js';
import { toU64, U64_MAX } from '../lib/u64.js';
import { levelPages } from '../lib/types.js';
import { EAGAIN, EINTR, EINVAL, ENOENT } from '../uapi/errno.js';
import { SyscallError } from '../uapi/errors.js';
import {
  KVM_EXIT_HLT, KVM_EXIT_HYPERCALL, KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_IO_OUT, KVM_EXIT_MEMORY_FAULT,
  KVM_EXIT_MMIO, KVM_EXIT_UNKNOWN, KVM_HC_MAP_GPA_RANGE, UCALL_PIO_PORT, ARM_SMCCC_KVM_FUNC_HYP_MEMINFO,
  ARM_SMCCC_KVM_FUNC_MEM_SHARE, ARM_SMCCC_KVM_FUNC_MEM_UNSHARE,
} from '../uapi/kvm.js';
import type { KvmPreFaultMemory, KvmRun } from '../uapi/syscalls.js';
import { type GuestCode, type GuestGenerator, type GuestOp, guestApi } from './guest.js';
import { pageFault } from './mmu.js';
import type { Kvm } from './vm.js';

/** Hypercall return codes (include/uapi/linux/kvm_para.h), negated as the guest sees them. */
export const KVM_ENOSYS = 1000;
export const KVM_EINVAL = 22;
/** Model limit: guest operations executed by one KVM_RUN before it returns EINTR, as if signalled. */
export const MAX_GUEST_OPS_PER_RUN = 1_000_000;
/** KVM's MMIO exits carry at most 8 bytes. */
const MMIO_MAX_BYTES = 8;
const PAGE = 4096;

interface Suspended {
  op: GuestOp;
  /** Bytes of a read/write already done. */
  done: number;
  buf: Uint8Array | null;
  /** An MMIO read of `mmio_len` bytes waits for run.mmio.data. */
  mmio_len: number;
}

export function newKvmRun(): KvmRun {
  return {
    immediate_exit: 0,
    exit_reason: KVM_EXIT_UNKNOWN,
    memory_fault: { flags: 0, gpa: 0, size: 0 },
    hypercall: { nr: 0, args: [0, 0, 0, 0, 0, 0], ret: 0, flags: 0 },
    mmio: { phys_addr: 0, data: new Uint8Array(8), len: 0, is_write: 0 },
    io: { direction: 0, size: 0, port: 0, count: 0, data_offset: 0 },
    ucall: null,
  };
}

export class Vcpu {
  readonly run: KvmRun = newKvmRun();
  private code: GuestCode | null = null;
  private gen: GuestGenerator | null = null;
  private cur: Suspended | null = null;
  /** What to send into the generator when it resumes. */
  private pending_value: unknown = undefined;
  /** A hypercall exit is waiting for user space's run.hypercall.ret. */
  private awaiting_hypercall_ret = false;
  halted = false;
  nr_runs = 0;

  constructor(readonly vcpu_id: number, readonly vm: Kvm) {}

  setGuestCode(code: GuestCode): void {
    this.code = code;
    this.gen = null;
    this.cur = null;
    this.halted = false;
    this.awaiting_hypercall_ret = false;
  }

  /** KVM_RUN. Returns 0, or throws SyscallError (EFAULT with a memory-fault exit, EINTR). */
  kvmRun(): number {
    const run = this.run;
    this.nr_runs++;
    if (run.immediate_exit !== 0) {
      // x86 returns -EINTR before entering and leaves exit_reason as it was (seen on the host too).
      throw new SyscallError(EINTR, 'ioctl(KVM_RUN)', 'immediate_exit');
    }
    run.ucall = null;
    this.completeUserExit();
    if (this.code === null || this.halted) {
      // No guest code: the vCPU executes hlt.
      this.halted = true;
      run.exit_reason = KVM_EXIT_HLT;
      return 0;
    }
    if (this.gen === null) this.gen = this.code(guestApi);
    for (let steps = 0; steps < MAX_GUEST_OPS_PER_RUN; steps++) {
      if (this.cur === null) {
        const r = this.gen.next(this.pending_value);
        this.pending_value = undefined;
        if (r.done === true) {
          this.halted = true;
          run.exit_reason = KVM_EXIT_HLT;
          return 0;
        }
        this.cur = { op: r.value, done: 0, buf: r.value.op === 'read' ? new Uint8Array(r.value.length) : null, mmio_len: 0 };
      }
      if (this.step(this.cur)) return 0;
    }
    run.exit_reason = KVM_EXIT_INTR;
    throw new SyscallError(EINTR, 'ioctl(KVM_RUN)', 'guest ran MAX_GUEST_OPS_PER_RUN operations without an exit');
  }

  /** Feed user space's answer to the last exit back into the suspended operation. */
  private completeUserExit(): void {
    const cur = this.cur;
    if (this.awaiting_hypercall_ret) {
      this.awaiting_hypercall_ret = false;
      this.pending_value = this.run.hypercall.ret;
      this.cur = null;
      return;
    }
    if (cur !== null && cur.mmio_len > 0) {
      (cur.buf as Uint8Array).set(this.run.mmio.data.subarray(0, cur.mmio_len), cur.done);
      cur.done += cur.mmio_len;
      cur.mmio_len = 0;
      this.finishIfDone(cur);
    }
  }

  private finishIfDone(cur: Suspended): void {
    const length = cur.op.op === 'read' ? cur.op.length : cur.op.op === 'write' ? cur.op.data.length : 0;
    if (cur.done >= length) {
      this.pending_value = cur.op.op === 'read' ? cur.buf : undefined;
      this.cur = null;
    }
  }

  /** Execute (part of) the current op. Returns true when KVM_RUN must return to user space. */
  private step(cur: Suspended): boolean {
    const op = cur.op;
    switch (op.op) {
      case 'read':
      case 'write':
        return this.access(cur);
      case 'hypercall':
        return this.hypercall(op.nr, op.args);
      case 'ucall': {
        const run = this.run;
        run.exit_reason = KVM_EXIT_IO;
        run.io = { direction: KVM_EXIT_IO_OUT, size: 4, port: UCALL_PIO_PORT, count: 1, data_offset: 4096 };
        run.ucall = [...op.args];
        this.cur = null;
        return true;
      }
    }
  }

  private access(cur: Suspended): boolean {
    const op = cur.op as Extract<GuestOp, { op: 'read' | 'write' }>;
    const write = op.op === 'write';
    const length = write ? op.data.length : op.length;
    const vm = this.vm;
    while (cur.done < length) {
      const gpa = op.gpa + cur.done;
      const gfn = Math.floor(gpa / PAGE);
      const off = gpa % PAGE;
      const n = Math.min(PAGE - off, length - cur.done);
      const is_private = this.accessIsPrivate(gfn, op.private);
      const r = pageFault(vm, gfn, write, is_private);
      if (r.kind === 'mapped') {
        if (write) vm.phys.contents.write(r.pfn, off, op.data, cur.done, n);
        else vm.phys.contents.read(r.pfn, off, cur.buf as Uint8Array, cur.done, n);
        cur.done += n;
        continue;
      }
      const run = this.run;
      if (r.kind === 'mmio') {
        const len = Math.min(n, MMIO_MAX_BYTES);
        run.exit_reason = KVM_EXIT_MMIO;
        run.mmio = { phys_addr: gpa, data: new Uint8Array(8), len, is_write: write ? 1 : 0 };
        if (write) {
          run.mmio.data.set(op.data.subarray(cur.done, cur.done + len));
          cur.done += len;
          this.finishIfDone(cur);
        } else {
          cur.mmio_len = len;
        }
        return true;
      }
      run.exit_reason = KVM_EXIT_MEMORY_FAULT;
      run.memory_fault = { flags: r.flags, gpa: gfn * PAGE, size: PAGE };
      throw new SyscallError(r.errno, 'ioctl(KVM_RUN)', 'KVM_EXIT_MEMORY_FAULT');
    }
    this.finishIfDone(cur);
    return false;
  }

  /**
   * SNP/TDX: the guest chooses (C-bit / shared bit; private unless it says shared); SW_PROTECTED:
   * the access follows the attribute; DEFAULT: always shared.
   */
  private accessIsPrivate(gfn: number, wanted: boolean | undefined): boolean {
    const vm = this.vm;
    if (vm.arch.guest_chooses) return wanted ?? true;
    return vm.has_private_mem && vm.memIsPrivate(gfn);
  }

  private hypercall(nr: number, args: readonly number[]): boolean {
    if (this.vm.cfg.arch === 'arm64') return this.hypercallArm64(nr, args);
    if (nr === KVM_HC_MAP_GPA_RANGE) {
      const gpa = args[0] ?? 0;
      const npages = args[1] ?? 0;
      // __kvm_emulate_hypercall: -KVM_ENOSYS unless user space opted in, before the argument checks.
      if ((this.vm.exit_hypercall_mask & (1 << KVM_HC_MAP_GPA_RANGE)) === 0) return this.completeHypercall(-KVM_ENOSYS);
      if (gpa % PAGE !== 0 || npages <= 0 || !Number.isSafeInteger(gpa / PAGE + npages)) {
        return this.completeHypercall(-KVM_EINVAL);
      }
      const run = this.run;
      run.exit_reason = KVM_EXIT_HYPERCALL;
      run.hypercall = { nr, args: [0, 1, 2, 3, 4, 5].map((i) => args[i] ?? 0), ret: 0, flags: 1 /* LONG_MODE */ };
      this.awaiting_hypercall_ret = true;
      return true;
    }
    return this.completeHypercall(-KVM_ENOSYS);
  }

  /**
   * pKVM's guest hypercalls (vendor-hyp SMCCC): HYP_MEMINFO answers the share granule; MEM_SHARE /
   * MEM_UNSHARE of one granule at an IPA exit to user space (when enabled with KVM_CAP_EXIT_HYPERCALL),
   * so that the VMM converts the page in guest_memfd (Sean's model: user space is the decision
   * maker). args[0] is the IPA.
   */
  private hypercallArm64(nr: number, args: readonly number[]): boolean {
    if (nr === ARM_SMCCC_KVM_FUNC_HYP_MEMINFO) return this.completeHypercall(PAGE);
    if (nr !== ARM_SMCCC_KVM_FUNC_MEM_SHARE && nr !== ARM_SMCCC_KVM_FUNC_MEM_UNSHARE) return this.completeHypercall(-KVM_ENOSYS);
    if (!this.vm.has_private_mem) return this.completeHypercall(-KVM_ENOSYS);
    const ipa = args[0] ?? 0;
    if (ipa % PAGE !== 0 || ipa < 0) return this.completeHypercall(-KVM_EINVAL);
    if ((this.vm.exit_hypercall_mask & (1 << nr)) === 0) return this.completeHypercall(-KVM_ENOSYS);
    const run = this.run;
    run.exit_reason = KVM_EXIT_HYPERCALL;
    run.hypercall = { nr, args: [0, 1, 2, 3, 4, 5].map((i) => args[i] ?? 0), ret: 0, flags: 0 };
    this.awaiting_hypercall_ret = true;
    return true;
  }

  private completeHypercall(ret: number): boolean {
    this.pending_value = ret;
    this.cur = null;
    return false;
  }

  /** KVM_PRE_FAULT_MEMORY: map [gpa, gpa + size) as read faults; 0 if any progress, else the error. */
  preFaultMemory(r: KvmPreFaultMemory): number {
    const name = 'ioctl(KVM_PRE_FAULT_MEMORY)';
    const flags = toU64(r.flags, name);
    let gpa = toU64(r.gpa, name);
    let size = toU64(r.size, name);
    if (flags !== 0n) throw new SyscallError(EINVAL, name, 'flags');
    if (gpa % 4096n !== 0n || size % 4096n !== 0n || gpa + size <= gpa || gpa + size > U64_MAX) {
      throw new SyscallError(EINVAL, name, 'range');
    }
    const full = size;
    let err = 0;
    while (size > 0n) {
      const gfn = Number(gpa / 4096n);
      const vm = this.vm;
      const res = pageFault(vm, gfn, false, vm.memIsPrivate(gfn));
      if (res.kind !== 'mapped') {
        err = res.kind === 'mmio' ? ENOENT : res.errno;
        if (res.kind === 'memory_fault') {
          this.run.exit_reason = KVM_EXIT_MEMORY_FAULT;
          this.run.memory_fault = { flags: res.flags, gpa: gfn * PAGE, size: PAGE };
        }
        break;
      }
      // A huge leaf covers more than one page: advance to its end.
      const leaf = vm.stage2.lookup(gfn);
      assert(leaf !== null, 'pre-fault mapped nothing');
      const leaf_end = BigInt(leaf.gfn + levelPages(leaf.level)) * 4096n;
      const step = leaf_end - gpa < size ? leaf_end - gpa : size;
      gpa += step;
      size -= step;
    }
    r.gpa = toNumberOrBig(gpa);
    r.size = toNumberOrBig(size);
    if (size !== full) return 0;
    throw new SyscallError(err === 0 ? EAGAIN : err, name);
  }
}

function toNumberOrBig(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

