/**
 * The Syscalls interface: the surface both backends (model and host) implement, exactly as
 * shared/spec/CONTRACT.md gives it, plus a few extensions (marked) that the kernel also has.
 */

/** A u64 field: a number (exact below 2^53) or a bigint. */
export type U64 = number | bigint;

/** struct kvm_create_guest_memfd (64 bytes). `page_order` is the in-place+HugeTLB field. */
export interface KvmCreateGuestMemfd {
  size: U64;
  flags: U64;
  page_order?: number;
  reserved?: U64[];
}

/** struct kvm_userspace_memory_region2 (160 bytes); the v1 ioctl reads the first five fields. */
export interface KvmUserspaceMemoryRegion2 {
  slot: number;
  flags: number;
  guest_phys_addr: U64;
  memory_size: U64;
  userspace_addr: U64;
  guest_memfd_offset?: U64;
  guest_memfd?: number;
  pad1?: number;
  pad2?: U64[];
}

/** struct kvm_memory_attributes (VM ioctl, 32 bytes). */
export interface KvmMemoryAttributes {
  address: U64;
  size: U64;
  attributes: U64;
  flags: U64;
}

/** struct kvm_memory_attributes2 (guest_memfd ioctl, 128 bytes). `error_offset` is written back on error. */
export interface KvmMemoryAttributes2 {
  offset: U64;
  size: U64;
  attributes: U64;
  flags: U64;
  error_offset?: U64;
  reserved?: U64[];
}

/** struct kvm_gmem_convert (rfc-1g, 64 bytes). `error_offset` must be 0 in, is written back on error. */
export interface KvmGmemConvert {
  offset: U64;
  size: U64;
  error_offset?: U64;
  reserved?: U64[];
}

/** struct kvm_pre_fault_memory (64 bytes): gpa and size are in/out. */
export interface KvmPreFaultMemory {
  gpa: U64;
  size: U64;
  flags: U64;
  padding?: U64[];
}

/** struct kvm_enable_cap (104 bytes). */
export interface KvmEnableCap {
  cap: number;
  flags?: number;
  args?: U64[];
}

export interface KvmRunMemoryFault { flags: number; gpa: number; size: number }
export interface KvmRunHypercall { nr: number; args: number[]; ret: number; flags: number }
export interface KvmRunMmio { phys_addr: number; data: Uint8Array; len: number; is_write: number }
export interface KvmRunIo { direction: number; size: number; port: number; count: number; data_offset: number }

/**
 * struct kvm_run as an object. The live object: what the caller writes (hypercall.ret,
 * immediate_exit) is what the next KVM_RUN reads.
 */
export interface KvmRun {
  immediate_exit: number;
  exit_reason: number;
  memory_fault: KvmRunMemoryFault;
  hypercall: KvmRunHypercall;
  mmio: KvmRunMmio;
  io: KvmRunIo;
  /** The arguments of the guest's last ucall (KVM_EXIT_IO on UCALL_PIO_PORT), else null. */
  ucall: number[] | null;
  /** KVM_EXIT_INTERNAL_ERROR / FAIL_ENTRY detail, where the backend has it. */
  internal?: { suberror: number; data: number[] };
}

export interface Stat {
  st_size: number;
  st_blksize: number;
  st_blocks: number;
  st_ino: number;
  /** Extension: st_mode and st_nlink, as fstat(2) gives them. */
  st_mode?: number;
  st_nlink?: number;
}

/** The argument of ioctl(): an integer for _IO requests, a struct object for the others. */
export type IoctlArg = number | bigint | object;

export interface Syscalls {
  open(path: string, flags: number): number;
  close(fd: number): void;
  ioctl(fd: number, request: number, arg?: IoctlArg): number;
  fallocate(fd: number, mode: number, offset: U64, len: U64): void;
  mmap(addr: number, length: number, prot: number, flags: number, fd: number, offset: number): number;
  munmap(addr: number, length: number): void;
  read(fd: number, buf: Uint8Array): number;
  write(fd: number, buf: Uint8Array): number;
  pread(fd: number, buf: Uint8Array, offset: number): number;
  pwrite(fd: number, buf: Uint8Array, offset: number): number;
  lseek(fd: number, offset: number, whence: number): number;
  fstat(fd: number): Stat;
  load(addr: number, length: number): Uint8Array;
  store(addr: number, data: Uint8Array): void;
  pin(addr: number, length: number): number;
  unpin(pinId: number): void;
  kvmRun(vcpuFd: number): KvmRun;
  readFile(path: string): string;

  // ---- Extensions (the kernel has them; CONTRACT.md allows extending) ----
  /** dup(2). */
  dup?(fd: number): number;
  /** madvise(2). */
  madvise?(addr: number, length: number, advice: number): void;
  /** mprotect(2). */
  mprotect?(addr: number, length: number, prot: number): void;
  /** ftruncate(2). */
  ftruncate?(fd: number, length: number): void;
  /** fsync(2). */
  fsync?(fd: number): void;
  /** Which backend this is: 'model' or 'host'. */
  readonly backend?: 'model' | 'host';
}
