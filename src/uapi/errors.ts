import { errnoName } from './errno.js';

/**
 * A failing system call: what the kernel returns as -errno.
 * `syscall` names the call ('ioctl(KVM_CREATE_GUEST_MEMFD)', 'fallocate', ...).
 */
export class SyscallError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly syscall: string;
  constructor(errno: number, syscall: string, detail?: string) {
    const code = errnoName(errno);
    super(`${syscall}: ${code}${detail ? ` (${detail})` : ''}`);
    this.name = 'SyscallError';
    this.errno = errno;
    this.code = code;
    this.syscall = syscall;
  }
}

export type SignalName = 'SIGBUS' | 'SIGSEGV';

/** A user-space memory access that the kernel answers with a signal. `addr` is the faulting host virtual address. */
export class SignalError extends Error {
  readonly signal: SignalName;
  readonly addr: number;
  constructor(signal: SignalName, addr: number, detail?: string) {
    super(`${signal} at 0x${addr.toString(16)}${detail ? ` (${detail})` : ''}`);
    this.name = 'SignalError';
    this.signal = signal;
    this.addr = addr;
  }
}
