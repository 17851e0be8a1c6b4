/**
 * The host backend: the Syscalls interface over the machine's real kernel and /dev/kvm, and
 * guest code for real vCPUs.
 *
 *   host-kernel.ts    openHostKernel(): every Syscalls method, straight to the kernel (plus the
 *                     setGuestProgram extension: a GuestProgram on a vCPU)
 *   native.ts         loading the N-API addon (native/gmem_host.c)
 *   ioctl-codec.ts    struct arguments in the kernel's layout, by request number
 *   kvm-run.ts        the vCPU's kvm_run as a live object over its mapping
 *   address-space.ts  which memory the backend may unmap or write (never Node's own)
 *   guest-program.ts  GuestProgram: backend-neutral straight-line guest code, and runGuest()
 *   guest-codegen.ts  GuestProgram → x86-64 machine code
 *   guest-loader.ts   loadGuestProgram(): a memslot, page tables, GDT, long mode, registers
 *   ucall-abi.ts      how guest code passes a ucall's args to user space
 */
export { HostKernel, HostRefusedError, hostKernelUnavailableReason, openHostKernel, type HostKernelOptions } from './host-kernel.js';
export { HostKvmRun } from './kvm-run.js';
export {
  GUEST_PROGRAM_MAX_UCALL_ARGS, GUEST_UCALL_CHECK_FAILED, GUEST_UCALL_READ, guestProgramCode, runGuest,
  validateGuestProgram, type GuestOpsApi, type GuestProgram, type GuestProgramOp, type GuestRunResult,
} from './guest-program.js';
export { compileGuestProgram } from './guest-codegen.js';
export { loadGuestProgram, type GuestLoaderOptions, type LoadedGuest } from './guest-loader.js';
