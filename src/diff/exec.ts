/**
 * Run a diff program on one backend and record every outcome: a return value, an errno, a signal,
 * the bytes a load read, the exits a guest run made. Everything a program created is torn down at
 * the end (the host backend is this process: nothing may leak into the next program).
 */
import { SignalError, SyscallError } from '../uapi/errors.js';
import {
  KVM_EXIT_MMIO, KVM_CREATE_GUEST_MEMFD, KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_MEM_GUEST_MEMFD, KVM_SET_USER_MEMORY_REGION2,
} from '../uapi/kvm.js';
import { O_RDWR } from '../uapi/linux.js';
import type { Syscalls } from '../uapi/syscalls.js';
import { guestProgramCode, runGuest, type GuestProgram } from '../host/guest-program.js';
import { HOST_PVM_GMEM_NULL_UADDR_MMIO } from '../host/deviations.js';
import type { DiffOp, DiffProgram } from './program.js';

export type Outcome = string;

/** A guest run is cut after this many MMIO exits (each answered and resumed). */
const MAX_MMIO_EXITS_PER_RUN = 16;

/**
 * How a backend runs guest programs: the model takes generator code, the host real machine code
 * loaded once per vCPU (x86 refuses a second KVM_SET_CPUID2 after KVM_RUN) and reloaded after.
 */
export interface LoadedGuestCode {
  reload(program: GuestProgram): void;
  unload(): void;
}

export interface GuestRunner {
  load(sys: Syscalls, vmFd: number, vcpuFd: number, program: GuestProgram): LoadedGuestCode;
}

export const modelGuestRunner: GuestRunner = {
  load(sys, _vmFd, vcpuFd, program) {
    const setGuestCode = (sys as { setGuestCode?: (fd: number, code: unknown) => void }).setGuestCode;
    if (setGuestCode === undefined) throw new Error('model guest runner on a backend without setGuestCode');
    setGuestCode.call(sys, vcpuFd, guestProgramCode(program));
    return {
      reload: (p) => setGuestCode.call(sys, vcpuFd, guestProgramCode(p)),
      unload: () => undefined,
    };
  },
};

/**
 * The named, evidenced deviation of this host that the diff steers around (declared with its
 * evidence in src/host/deviations.ts): kvm_pvm serves
 * guest accesses through userspace_addr even for guest_memfd slots, and exits to MMIO where it maps
 * nothing (§5 rows 70, 73). A guest run in a VM with such a slot is not compared.
 */
export const KNOWN_DEVIATION = `${HOST_PVM_GMEM_NULL_UADDR_MMIO.name} (${HOST_PVM_GMEM_NULL_UADDR_MMIO.rows.join(', ')})`;

function describe(e: unknown): Outcome {
  if (e instanceof SyscallError) return `errno ${e.code}`;
  if (e instanceof SignalError) return `signal ${e.signal}`;
  throw e;
}

function hex(b: Uint8Array): string {
  // Runs of equal bytes, so a 4 KiB load stays readable.
  const out: string[] = [];
  for (let i = 0; i < b.length;) {
    let j = i;
    while (j < b.length && b[j] === b[i]) j++;
    out.push(`${(b[i] as number).toString(16).padStart(2, '0')}x${j - i}`);
    i = j;
  }
  return out.join(' ');
}

export interface ExecResult {
  outcomes: Outcome[];
  /** Ops that ran (compared); a skipped op (known deviation) is not counted. */
  compared: number;
}

export function execProgram(sys: Syscalls, guest: GuestRunner, prog: DiffProgram): ExecResult {
  const fds = new Map<number, number>(); // op index → fd
  const maps = new Map<number, { addr: number; len: number }>(); // op index → mapping
  const vcpus = new Map<number, { fd: number; code: LoadedGuestCode | null }>(); // vm op index → vcpu
  // vm op index → slot → whether a guest access there leaves the shared subset (guest_memfd slot,
  // or userspace_addr naming no live mapping of this program)
  const slotsOutsideSubset = new Map<number, Map<number, number | null>>();
  const kvm = sys.open('/dev/kvm', O_RDWR);
  const fdOf = (i: number): number => fds.get(i) ?? -1;
  const outcomes: Outcome[] = [];
  let compared = 0;
  try {
    prog.forEach((op, i) => {
      const r = runOne(op, i);
      if (!r.startsWith('skipped')) compared++;
      outcomes.push(r);
    });
  } finally {
    for (const [, m] of maps) tryIt(() => sys.munmap(m.addr, m.len));
    for (const [, v] of vcpus) {
      tryIt(() => v.code?.unload());
      tryIt(() => sys.close(v.fd));
    }
    for (const [, fd] of fds) tryIt(() => sys.close(fd));
    tryIt(() => sys.close(kvm));
  }
  return { outcomes, compared };

  function runOne(op: DiffOp, i: number): Outcome {
    try {
      switch (op.op) {
        case 'create_vm': {
          const fd = sys.ioctl(kvm, KVM_CREATE_VM, 0);
          fds.set(i, fd);
          return 'ok';
        }
        case 'create_gmem': {
          const fd = sys.ioctl(fdOf(op.vm), KVM_CREATE_GUEST_MEMFD, { size: op.size, flags: op.flags });
          fds.set(i, fd);
          return 'ok';
        }
        case 'fallocate':
          sys.fallocate(fdOf(op.gmem), op.mode, op.offset, op.len);
          return 'ok';
        case 'mmap': {
          const addr = sys.mmap(0, op.len, op.prot, op.flags, fdOf(op.gmem), op.offset);
          maps.set(i, { addr, len: op.len });
          return 'ok';
        }
        case 'munmap': {
          const m = maps.get(op.map);
          if (m === undefined) return 'skipped (no mapping)';
          sys.munmap(m.addr, m.len);
          maps.delete(op.map);
          return 'ok';
        }
        case 'store': {
          const m = maps.get(op.map);
          if (m === undefined || op.offset + op.len > m.len) return 'skipped (outside the mapping)';
          sys.store(m.addr + op.offset, new Uint8Array(op.len).fill(op.byte));
          return 'ok';
        }
        case 'load': {
          const m = maps.get(op.map);
          if (m === undefined || op.offset + op.len > m.len) return 'skipped (outside the mapping)';
          return `bytes ${hex(sys.load(m.addr + op.offset, op.len))}`;
        }
        case 'fstat': {
          const st = sys.fstat(fdOf(op.gmem));
          return `size ${st.st_size} blksize ${st.st_blksize} blocks ${st.st_blocks}`;
        }
        case 'memslot': {
          const m = maps.get(op.map);
          sys.ioctl(fdOf(op.vm), KVM_SET_USER_MEMORY_REGION2, {
            slot: op.slot, flags: op.flags, guest_phys_addr: op.gpa, memory_size: op.size,
            userspace_addr: m?.addr ?? 0, guest_memfd_offset: op.gmem_offset, guest_memfd: fdOf(op.gmem),
          });
          const slots = slotsOutsideSubset.get(op.vm) ?? new Map<number, number | null>();
          // null: always outside (a guest_memfd slot); a map index: outside once that mapping is gone.
          slots.set(op.slot, (op.flags & KVM_MEM_GUEST_MEMFD) !== 0 || m === undefined ? null : op.map);
          slotsOutsideSubset.set(op.vm, slots);
          return 'ok';
        }
        case 'delete_slot':
          sys.ioctl(fdOf(op.vm), KVM_SET_USER_MEMORY_REGION2, {
            slot: op.slot, flags: 0, guest_phys_addr: 0, memory_size: 0, userspace_addr: 0,
          });
          slotsOutsideSubset.get(op.vm)?.delete(op.slot);
          return 'ok';
        case 'close': {
          const fd = fdOf(op.fd);
          sys.close(fd);
          fds.delete(op.fd);
          return 'ok';
        }
        case 'guest': {
          for (const map of slotsOutsideSubset.get(op.vm)?.values() ?? []) {
            if (map === null || !maps.has(map)) return `skipped (${KNOWN_DEVIATION})`;
          }
          const vm = fdOf(op.vm);
          let vcpu = vcpus.get(op.vm);
          if (vcpu === undefined) {
            vcpu = { fd: sys.ioctl(vm, KVM_CREATE_VCPU, 0), code: null };
            vcpus.set(op.vm, vcpu);
          }
          if (vcpu.code === null) vcpu.code = guest.load(sys, vm, vcpu.fd, op.program);
          else vcpu.code.reload(op.program);
          // Run to the end: an MMIO exit is answered with zeros (reads) and the guest resumed, so
          // every run ends halted and the next program starts from a clean vCPU on both backends.
          const parts: string[] = [];
          const run = sys.kvmRun(vcpu.fd);
          for (let n = 0; n < MAX_MMIO_EXITS_PER_RUN; n++) {
            const r = runGuest(sys, vcpu.fd, 64);
            parts.push(`ucalls ${JSON.stringify(r.ucalls)} exit ${r.exit_reason}`);
            if (r.exit_reason !== KVM_EXIT_MMIO) break;
            parts.push(`mmio ${run.mmio.phys_addr.toString(16)} len ${run.mmio.len} w ${run.mmio.is_write}`);
            run.mmio.data.fill(0);
          }
          return parts.join('; ');
        }
      }
    } catch (e) {
      return describe(e);
    }
  }
}

function tryIt(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof SyscallError)) throw e;
  }
}
