/**
 * openHostKernel(): the Syscalls interface over the machine's real kernel and /dev/kvm.
 *
 * Every method passes straight through to the kernel and reports its answer: a negative return
 * becomes SyscallError(errno, '<syscall>'). Nothing the kernel validates is validated here; an
 * integer argument that no C caller could pass (a fractional, NaN or infinite number) is answered
 * EINVAL without a call, as the Syscalls contract says.
 *
 * The backend refuses only what would corrupt the Node process itself (HostRefusedError):
 * closing an fd it did not open; unmapping, remapping, madvising, mprotecting or storing into
 * memory it did not map; letting the kernel write through an integer pointer into such memory;
 * passing a raw struct buffer smaller than the request encodes (see address-space.ts).
 */
import { readFileSync } from 'node:fs';
import { EBADF, EFAULT, EINVAL, EPERM } from '../uapi/errno.js';
import { SignalError, SyscallError } from '../uapi/errors.js';
import { ioc_dir, IOC_NONE, IOC_READ, ioc_size, ioc_type } from '../uapi/ioctl.js';
import {
  KVM_CREATE_GUEST_MEMFD, KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_GET_VCPU_MMAP_SIZE, KVMIO,
} from '../uapi/kvm.js';
import { MAP_FIXED, MAP_FIXED_NOREPLACE, MMAP_MIN_ADDR, O_RDWR, PAGE_SIZE, TASK_SIZE } from '../uapi/linux.js';
import type { IoctlArg, Stat, Syscalls, U64 } from '../uapi/syscalls.js';
import { firstForeignAddress, OwnedRanges } from './address-space.js';
import { loadGuestProgram, type LoadedGuest } from './guest-loader.js';
import type { GuestProgram } from './guest-program.js';
import { ioctlSyscallName, NonIntegerFieldError, STRUCT_CODECS, type StructArg } from './ioctl-codec.js';
import { HostKvmRun } from './kvm-run.js';
import { loadNative, type NativeAddon, type SyscallNumbers } from './native.js';

const SIGBUS = 7;
const SIGSEGV = 11;
const F_GETFD = 1;
/** The largest encoded ioctl size (14 bits): the scratch buffer fits any struct argument. */
const IOCTL_SCRATCH_BYTES = 1 << 14;

/** Loader slots of setGuestProgram(): one per vCPU, 1 MiB each from 3 GiB. */
const GUEST_SLOT_BASE = 32000;
const GUEST_GPA_BASE = 0xc000_0000;
const GUEST_SLOT_BYTES = 1 << 20;

/** ioctls that return a new fd, which the caller may then close. */
const FD_RETURNING_IOCTLS: ReadonlySet<number> = new Set([KVM_CREATE_VM, KVM_CREATE_VCPU, KVM_CREATE_GUEST_MEMFD]);

/**
 * A call the host backend will not make because it would corrupt the Node process. It is a
 * SyscallError (EPERM) so that callers catching SyscallError keep working, but it is not the
 * kernel's answer: `refused` tells it apart.
 */
export class HostRefusedError extends SyscallError {
  readonly refused = true;
  constructor(syscall: string, why: string) {
    super(EPERM, syscall, `refused by the host backend: ${why}`);
    this.name = 'HostRefusedError';
  }
}

export interface HostKernelOptions {
  /** The KVM device; default /dev/kvm. */
  devicePath?: string;
  /** The addon; default native/build/Release/gmem_host.node in this package. */
  addonPath?: string;
}

let lastUnavailableReason: string | null = null;

/** Why the last openHostKernel() returned null; null after a successful one. */
export function hostKernelUnavailableReason(): string | null {
  return lastUnavailableReason;
}

/** The host kernel, or null (never a throw) where the addon or /dev/kvm is missing or unusable. */
export function openHostKernel(options: HostKernelOptions = {}): Syscalls | null {
  const load = loadNative(options.addonPath);
  if (!load.addon) {
    lastUnavailableReason = load.reason;
    return null;
  }
  const devicePath = options.devicePath ?? '/dev/kvm';
  const kvm = probeKvm(load.addon, devicePath);
  if (typeof kvm === 'string') {
    lastUnavailableReason = kvm;
    return null;
  }
  lastUnavailableReason = null;
  return new HostKernel(load.addon, kvm.vcpu_mmap_size_bytes);
}

/** Opens the device once to learn the kvm_run mapping size; a reason string where that fails. */
function probeKvm(addon: NativeAddon, devicePath: string): { vcpu_mmap_size_bytes: number } | string {
  const fd = addon.open(devicePath, O_RDWR);
  if (fd < 0) return `open ${devicePath}: ${new SyscallError(-fd, 'open').code}`;
  const size = addon.sys(addon.nr.ioctl, fd, KVM_GET_VCPU_MMAP_SIZE, 0);
  addon.sys(addon.nr.close, fd);
  if (size < 0) return `ioctl(KVM_GET_VCPU_MMAP_SIZE) on ${devicePath}: ${new SyscallError(-size, 'ioctl').code}`;
  return { vcpu_mmap_size_bytes: size };
}

/**
 * What the backend created. fds and mappings belong to the process, not to one HostKernel, so
 * every instance shares this: an fd opened through one may be closed through another.
 */
class ProcessResources {
  /** fds opened through the backend (open, dup, fd-returning ioctls): the only ones it will close. */
  readonly fds = new Set<number>();
  /** Mappings made through mmap(): the only memory it will unmap, remap, madvise, mprotect or store to. */
  readonly ranges = new OwnedRanges();
  /** vCPU fd → its kvm_run, mapped once. */
  readonly kvmRuns = new Map<number, HostKvmRun>();
  /** pin id → the io_uring fd holding the pin. */
  readonly pins = new Map<number, number>();
  nextPinId = 1;
  /** vCPU fd → the VM fd it was created on (for setGuestProgram). */
  readonly vcpuVm = new Map<number, number>();
  /** vCPU fd → its loaded guest program. */
  readonly guests = new Map<number, LoadedGuest>();
  /** VM fd → how many loader slots setGuestProgram has used in it. */
  readonly guestSlotsUsed = new Map<number, number>();
}

const processResources = new ProcessResources();

function isIntegerArg(arg: IoctlArg | undefined): arg is number | bigint | undefined {
  return arg === undefined || typeof arg === 'number' || typeof arg === 'bigint';
}

export class HostKernel implements Syscalls {
  readonly backend = 'host' as const;
  private readonly nr: SyscallNumbers;
  private readonly ownedFds = processResources.fds;
  private readonly ownedRanges = processResources.ranges;
  private readonly kvmRuns = processResources.kvmRuns;
  private readonly pins = processResources.pins;
  private readonly scratch = new Uint8Array(IOCTL_SCRATCH_BYTES);
  private readonly scratchView = new DataView(this.scratch.buffer);
  private readonly statOut = new Float64Array(6);

  constructor(private readonly native: NativeAddon, private readonly vcpu_mmap_size_bytes: number) {
    this.nr = native.nr;
  }

  // ---- files ---------------------------------------------------------------------------------

  open(path: string, flags: number): number {
    const fd = this.check(this.native.open(path, flags), 'open');
    this.ownedFds.add(fd);
    return fd;
  }

  close(fd: number): void {
    if (!this.ownedFds.has(fd) && this.native.sys(this.nr.fcntl, fd, F_GETFD) >= 0) {
      throw new HostRefusedError('close', `fd ${fd} was not opened through this backend`);
    }
    this.check(this.native.sys(this.nr.close, fd), 'close');
    this.forgetFd(fd);
  }

  dup(fd: number): number {
    const copy = this.check(this.native.sys(this.nr.dup, fd), 'dup');
    this.ownedFds.add(copy);
    return copy;
  }

  read(fd: number, buf: Uint8Array): number {
    return this.check(this.native.rw(this.nr.read, fd, buf), 'read');
  }

  write(fd: number, buf: Uint8Array): number {
    return this.check(this.native.rw(this.nr.write, fd, buf), 'write');
  }

  pread(fd: number, buf: Uint8Array, offset: number): number {
    return this.check(this.native.rw(this.nr.pread64, fd, buf, offset), 'pread');
  }

  pwrite(fd: number, buf: Uint8Array, offset: number): number {
    return this.check(this.native.rw(this.nr.pwrite64, fd, buf, offset), 'pwrite');
  }

  lseek(fd: number, offset: number, whence: number): number {
    return this.check(this.native.sys(this.nr.lseek, fd, offset, whence), 'lseek');
  }

  fstat(fd: number): Stat {
    this.check(this.native.fstat(fd, this.statOut), 'fstat');
    const [st_size = 0, st_blksize = 0, st_blocks = 0, st_ino = 0, st_mode = 0, st_nlink = 0] = this.statOut;
    return { st_size, st_blksize, st_blocks, st_ino, st_mode, st_nlink };
  }

  fallocate(fd: number, mode: number, offset: U64, len: U64): void {
    this.check(this.native.sys(this.nr.fallocate, fd, mode, offset, len), 'fallocate');
  }

  ftruncate(fd: number, length: number): void {
    this.check(this.native.sys(this.nr.ftruncate, fd, length), 'ftruncate');
  }

  fsync(fd: number): void {
    this.check(this.native.sys(this.nr.fsync, fd), 'fsync');
  }

  readFile(path: string): string {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (typeof e.errno === 'number') throw new SyscallError(Math.abs(e.errno), e.syscall ?? 'open', path);
      throw err;
    }
  }

  // ---- ioctl ---------------------------------------------------------------------------------

  ioctl(fd: number, request: number, arg?: IoctlArg): number {
    let r: number;
    if (isIntegerArg(arg)) {
      this.refuseForeignPointer(request, arg);
      r = this.native.sys(this.nr.ioctl, fd, request, arg ?? 0);
    } else if (arg instanceof Uint8Array) {
      r = this.rawIoctl(fd, request, arg);
    } else {
      r = this.structIoctl(fd, request, arg as StructArg);
    }
    if (r < 0) throw new SyscallError(-r, ioctlSyscallName(request));
    if (FD_RETURNING_IOCTLS.has(request >>> 0)) this.ownedFds.add(r);
    if (request === KVM_CREATE_VCPU) processResources.vcpuVm.set(r, fd);
    return r;
  }

  /** A Uint8Array is the struct's raw bytes, in and out; it must hold what the request encodes. */
  private rawIoctl(fd: number, request: number, bytes: Uint8Array): number {
    if (bytes.byteLength < ioc_size(request)) {
      throw new HostRefusedError(ioctlSyscallName(request),
        `a ${bytes.byteLength}-byte buffer for a ${ioc_size(request)}-byte struct would let the kernel overrun it`);
    }
    return this.native.ioctlBuf(fd, request, bytes);
  }

  /** Known structs are laid out by codec; any other object becomes a zeroed buffer of the encoded size. */
  private structIoctl(fd: number, request: number, arg: StructArg): number {
    const codec = STRUCT_CODECS.get(request >>> 0);
    const size_bytes = codec?.size_bytes ?? ioc_size(request);
    // A size-less request still gets a page of zeroes behind its pointer.
    this.scratch.fill(0, 0, size_bytes > 0 ? size_bytes : PAGE_SIZE);
    try {
      codec?.encode(this.scratchView, arg);
    } catch (err) {
      if (err instanceof NonIntegerFieldError) return this.nonIntegerFieldAnswer(fd, request);
      throw err;
    }
    const r = this.native.ioctlBuf(fd, request, this.scratch);
    codec?.copyOut?.(this.scratchView, arg);
    return r;
  }

  /**
   * A struct field no C caller could fill (fractional, NaN): the answer is EINVAL, but only where
   * the kernel would get as far as reading the struct. Every codec's ioctl copies its argument in
   * first, so a probe with a NULL argument changes nothing and tells which: EFAULT means the
   * kernel would have read the fields (→ EINVAL); any other error (EBADF, ENOTTY, EIO in a forked
   * child, ...) comes first and is the answer.
   */
  private nonIntegerFieldAnswer(fd: number, request: number): number {
    const probe = this.native.sys(this.nr.ioctl, fd, request, 0);
    return probe === -EFAULT || probe >= 0 ? -EINVAL : probe;
  }

  /**
   * An integer argument is passed as is; if it is the address of memory the backend does not own
   * and the request may write through it, that write would land in Node's memory. Requests that
   * may write: any _IOR/_IOWR, and any direction-less request outside KVM (legacy ones such as
   * FIONREAD write through their argument; KVM's _IO requests take plain integers).
   */
  private refuseForeignPointer(request: number, arg: number | bigint | undefined): void {
    if (arg === undefined) return;
    const dir = ioc_dir(request);
    const mayWrite = (dir & IOC_READ) !== 0 || (dir === IOC_NONE && ioc_type(request) !== KVMIO);
    if (!mayWrite) return;
    const addr = Number(arg);
    if (addr < MMAP_MIN_ADDR || addr >= TASK_SIZE) return;
    const size_bytes = Math.max(ioc_size(request), 1);
    if (firstForeignAddress(this.ownedRanges, addr, size_bytes) !== null) {
      throw new HostRefusedError(ioctlSyscallName(request),
        `the kernel would write to 0x${addr.toString(16)}, which this backend did not map`);
    }
  }

  // ---- memory --------------------------------------------------------------------------------

  mmap(addr: number, length: number, prot: number, flags: number, fd: number, offset: number): number {
    if ((flags & MAP_FIXED) !== 0 && (flags & MAP_FIXED_NOREPLACE) === 0) {
      this.refuseForeignRange('mmap', addr, length, true);
    }
    const mapped = this.check(this.native.sys(this.nr.mmap, addr, length, prot, flags, fd, offset), 'mmap');
    this.ownedRanges.add(mapped, length);
    return mapped;
  }

  munmap(addr: number, length: number): void {
    this.refuseForeignRange('munmap', addr, length, true);
    this.check(this.native.sys(this.nr.munmap, addr, length), 'munmap');
    this.ownedRanges.remove(addr, length);
  }

  madvise(addr: number, length: number, advice: number): void {
    this.refuseForeignRange('madvise', addr, length, false);
    this.check(this.native.sys(this.nr.madvise, addr, length, advice), 'madvise');
  }

  mprotect(addr: number, length: number, prot: number): void {
    this.refuseForeignRange('mprotect', addr, length, false);
    this.check(this.native.sys(this.nr.mprotect, addr, length, prot), 'mprotect');
  }

  load(addr: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.checkSignal(this.native.guardedCopy(addr, out, false), 'load');
    return out;
  }

  store(addr: number, data: Uint8Array): void {
    if (data.byteLength === 0) return;
    const foreign = firstForeignAddress(this.ownedRanges, addr, data.byteLength);
    if (foreign !== null) {
      throw new HostRefusedError('store', `0x${foreign.toString(16)} belongs to a mapping this backend did not make`);
    }
    this.checkSignal(this.native.guardedCopy(addr, data, true), 'store');
  }

  /**
   * A long-term pin (FOLL_LONGTERM | FOLL_WRITE) through io_uring buffer registration; errors are
   * io_uring's (EFAULT where GUP refuses the range, e.g. a private guest_memfd page or no mapping).
   *
   * Measured on the kvm_pvm Linux 6.18 host: a guest_memfd MMAP|INIT_SHARED mapping pins (0; VmPin
   * in /proc/self/status grows by the range), so 6.18 does not refuse long-term pins of gmem pages;
   * an MMAP-only (private) gmem mapping fails EFAULT (14), as faulting it in is SIGBUS; anonymous
   * memory pins; a PROT_READ mapping is EFAULT (FOLL_WRITE).
   */
  pin(addr: number, length: number): number {
    const ring = this.check(this.native.pin(addr, length), 'io_uring_register(IORING_REGISTER_BUFFERS)');
    const id = processResources.nextPinId++;
    this.pins.set(id, ring);
    return id;
  }

  unpin(pinId: number): void {
    const ring = this.pins.get(pinId);
    if (ring === undefined) throw new SyscallError(EINVAL, 'unpin', `no pin ${pinId}`);
    this.pins.delete(pinId);
    this.check(this.native.unpin(ring), 'io_uring_register(IORING_UNREGISTER_BUFFERS)');
  }

  // ---- vCPU ----------------------------------------------------------------------------------

  /** The vCPU's kvm_run, mapped once per vCPU fd; a closed fd's object stays valid until collected. */
  kvmRun(vcpuFd: number): HostKvmRun {
    const cached = this.kvmRuns.get(vcpuFd);
    if (cached) return cached;
    const mapping = this.native.mapShared(vcpuFd, this.vcpu_mmap_size_bytes);
    if (typeof mapping === 'number') throw new SyscallError(-mapping, 'mmap(kvm_run)');
    const run = new HostKvmRun(mapping);
    this.kvmRuns.set(vcpuFd, run);
    return run;
  }

  /**
   * Extension: runs `program` on the vCPU from its next KVM_RUN (the host side of what the model
   * does with setGuestCode). Each vCPU gets a loader slot of its own (slot 32000 + n at GPA
   * 3 GiB + n MiB); a second program on the same vCPU replaces the first and restarts it.
   */
  setGuestProgram(vcpuFd: number, program: GuestProgram): void {
    const loaded = processResources.guests.get(vcpuFd);
    if (loaded) {
      loaded.reload(program);
      return;
    }
    const vmFd = processResources.vcpuVm.get(vcpuFd);
    if (vmFd === undefined) throw new SyscallError(EBADF, 'setGuestProgram', `fd ${vcpuFd} is not a vCPU created through this backend`);
    const n = processResources.guestSlotsUsed.get(vmFd) ?? 0;
    processResources.guestSlotsUsed.set(vmFd, n + 1);
    const guest = loadGuestProgram(this, vmFd, vcpuFd, program,
      { slot: GUEST_SLOT_BASE + n, gpa: GUEST_GPA_BASE + n * GUEST_SLOT_BYTES, size_bytes: GUEST_SLOT_BYTES });
    processResources.guests.set(vcpuFd, guest);
  }

  // ---- helpers -------------------------------------------------------------------------------

  private check(r: number, syscall: string): number {
    if (r < 0) throw new SyscallError(-r, syscall);
    return r;
  }

  /** The outcome of a guarded copy: 0, a signal number, or -errno for an argument no C caller could pass. */
  private checkSignal(signo: number, syscall: string): void {
    if (signo === 0) return;
    if (signo < 0) throw new SyscallError(-signo, syscall);
    const addr = this.native.lastFaultAddress();
    if (signo === SIGBUS) throw new SignalError('SIGBUS', addr);
    if (signo === SIGSEGV) throw new SignalError('SIGSEGV', addr);
    throw new Error(`unexpected signal ${signo} during a guarded copy`);
  }

  /**
   * Refuses a destructive call on memory the backend did not map. Arguments that the kernel
   * rejects before touching any mapping go through for the kernel's errno: an unaligned address,
   * a non-positive length, a non-integer (EINVAL from the addon), and, for munmap and mmap, a
   * range past TASK_SIZE (`bounded`). mprotect and madvise do not bound the range first: they
   * change every mapping up to the first hole, so such a range is checked like any other.
   */
  private refuseForeignRange(syscall: string, addr: number, length: number, bounded: boolean): void {
    if (!Number.isInteger(addr) || !Number.isInteger(length) || addr % PAGE_SIZE !== 0 || length <= 0) return;
    if (bounded && addr + length > TASK_SIZE) return;
    const foreign = firstForeignAddress(this.ownedRanges, addr, length);
    if (foreign !== null) {
      throw new HostRefusedError(syscall, `0x${foreign.toString(16)} belongs to a mapping this backend did not make`);
    }
  }

  private forgetFd(fd: number): void {
    this.ownedFds.delete(fd);
    // The number may be reused by the next open; a later kvmRun() or program must see the new file.
    this.kvmRuns.delete(fd);
    processResources.vcpuVm.delete(fd);
    processResources.guestSlotsUsed.delete(fd);
    const guest = processResources.guests.get(fd);
    if (guest) {
      // Nothing else runs in a closed vCPU's loader slot; its memory can go.
      processResources.guests.delete(fd);
      this.native.sys(this.nr.munmap, guest.hva, guest.size_bytes);
      this.ownedRanges.remove(guest.hva, guest.size_bytes);
    }
  }
}
