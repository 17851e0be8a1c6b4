/**
 * GuestProgram: a backend-neutral description of straight-line guest code, as a list of ops.
 *
 * The host backend compiles it to x86-64 machine code (guest-codegen.ts, loaded by
 * guest-loader.ts); the model backend can run the same list as generator guest code
 * (guestProgramCode below). Both produce the same exits:
 *
 * - `fill`  writes `byte` to every byte of [gpa, gpa+len), one byte store at a time, ascending.
 * - `check` reads every byte of [gpa, gpa+len), ascending. At the first byte that is not `byte`
 *           the guest makes the ucall [GUEST_UCALL_CHECK_FAILED, gpa_of_that_byte, got, expected]
 *           and then halts for good (every later KVM_RUN exits KVM_EXIT_HLT). No exit on success.
 * - `read`  loads the byte at gpa and makes the ucall [GUEST_UCALL_READ, gpa, value].
 * - `ucall` makes the ucall with these args (at most 8; each a u64).
 * - `hlt`   halts for good: KVM_RUN exits KVM_EXIT_HLT, now and on every later KVM_RUN.
 * - The end of the list is an implicit `hlt`.
 *
 * A ucall is KVM_EXIT_IO on UCALL_PIO_PORT, read as `kvmRun(vcpu).ucall`; entering KVM_RUN again
 * continues after it. A memory access that exits (KVM_EXIT_MMIO, or KVM_EXIT_MEMORY_FAULT with
 * EFAULT) is retried or completed by the next KVM_RUN, as with any guest.
 */
import { KVM_EXIT_IO, KVM_RUN } from '../uapi/kvm.js';
import type { Syscalls } from '../uapi/syscalls.js';

export type GuestProgramOp =
  | { readonly op: 'fill'; readonly gpa: number; readonly len: number; readonly byte: number }
  | { readonly op: 'check'; readonly gpa: number; readonly len: number; readonly byte: number }
  | { readonly op: 'read'; readonly gpa: number }
  | { readonly op: 'ucall'; readonly args: readonly number[] }
  | { readonly op: 'hlt' };

export type GuestProgram = readonly GuestProgramOp[];

/** First arg of the ucall a failing `check` makes ('FAIL' in ASCII). */
export const GUEST_UCALL_CHECK_FAILED = 0x4641494c;
/** First arg of the ucall a `read` makes ('READ' in ASCII). */
export const GUEST_UCALL_READ = 0x52454144;
export const GUEST_PROGRAM_MAX_UCALL_ARGS = 8;

/** Rejects a program no backend can run (a construction error in the caller, not a kernel answer). */
export function validateGuestProgram(program: GuestProgram): void {
  program.forEach((op, i) => {
    const where = `guest program op ${i} (${op.op})`;
    if (op.op === 'fill' || op.op === 'check') {
      if (!Number.isInteger(op.byte) || op.byte < 0 || op.byte > 0xff) throw new RangeError(`${where}: byte must be 0..255`);
      if (!Number.isSafeInteger(op.len) || op.len < 0) throw new RangeError(`${where}: len must be a non-negative integer`);
    }
    if (op.op !== 'ucall' && op.op !== 'hlt' && (!Number.isSafeInteger(op.gpa) || op.gpa < 0)) {
      throw new RangeError(`${where}: gpa must be a non-negative integer`);
    }
    if (op.op === 'ucall' && op.args.length > GUEST_PROGRAM_MAX_UCALL_ARGS) {
      throw new RangeError(`${where}: at most ${GUEST_PROGRAM_MAX_UCALL_ARGS} args`);
    }
  });
}

/** The guest operations the model backend's generator guest code yields (CONTRACT.md "Guest code"). */
export interface GuestOpsApi<Op> {
  read(gpa: number, length: number): Op;
  write(gpa: number, data: Uint8Array): Op;
  ucall(...args: number[]): Op;
}

/** The program as model guest code: `model.setGuestCode(vcpu, guestProgramCode(program))`. */
export function guestProgramCode<Op>(program: GuestProgram): (g: GuestOpsApi<Op>) => Generator<Op, void, unknown> {
  validateGuestProgram(program);
  return function* run(g) {
    for (const op of program) {
      switch (op.op) {
        case 'fill': {
          // One byte store at a time, as the machine code does: an MMIO region sees len exits of 1.
          const one = new Uint8Array([op.byte]);
          for (let i = 0; i < op.len; i++) yield g.write(op.gpa + i, one);
          break;
        }
        case 'check': {
          for (let i = 0; i < op.len; i++) {
            const got = ((yield g.read(op.gpa + i, 1)) as Uint8Array)[0] as number;
            if (got !== op.byte) {
              yield g.ucall(GUEST_UCALL_CHECK_FAILED, op.gpa + i, got, op.byte);
              return;
            }
          }
          break;
        }
        case 'read': {
          const got = (yield g.read(op.gpa, 1)) as Uint8Array;
          yield g.ucall(GUEST_UCALL_READ, op.gpa, got[0] as number);
          break;
        }
        case 'ucall':
          yield g.ucall(...op.args);
          break;
        case 'hlt':
          return;
      }
    }
  };
}

export interface GuestRunResult {
  /** The ucalls made, in order. */
  ucalls: number[][];
  /** The exit that ended the run (not a ucall): KVM_EXIT_HLT, KVM_EXIT_MMIO, ... */
  exit_reason: number;
}

/**
 * Enters the vCPU until an exit other than a ucall (on either backend), collecting ucalls.
 * A failing KVM_RUN throws its SyscallError as usual (e.g. EFAULT with a memory-fault exit).
 */
export function runGuest(sys: Syscalls, vcpuFd: number, max_exits = 1000): GuestRunResult {
  const run = sys.kvmRun(vcpuFd);
  const ucalls: number[][] = [];
  for (let i = 0; i < max_exits; i++) {
    sys.ioctl(vcpuFd, KVM_RUN);
    const args = run.exit_reason === KVM_EXIT_IO ? run.ucall : null;
    if (args === null) return { ucalls, exit_reason: run.exit_reason };
    ucalls.push(args);
  }
  throw new Error(`runGuest: still making ucalls after ${max_exits} exits`);
}
