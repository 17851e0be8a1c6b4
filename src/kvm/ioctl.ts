/**
 * ioctl dispatch for the KVM files, by file kind and request, with the kernel's answers for the
 * wrong file (KVM_CREATE_GUEST_MEMFD on /dev/kvm → EINVAL, KVM_PRE_FAULT_MEMORY on a VM → ENOTTY,
 * anything on a 6.18 guest_memfd → ENOTTY).
 */
import { toU64 } from '../lib/u64.js';
import type { GmemFile } from '../gmem/file.js';
import { EEXIST, EFAULT, EINVAL, ENOTTY } from '../uapi/errno.js';
import { SyscallError } from '../uapi/errors.js';
import { ioc_type } from '../uapi/ioctl.js';
import {
  KVM_API_VERSION, KVM_CHECK_EXTENSION, KVM_CREATE_GUEST_MEMFD, KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_ENABLE_CAP,
  KVM_GET_API_VERSION, KVM_GET_VCPU_MMAP_SIZE, KVM_PRE_FAULT_MEMORY, KVM_RUN, KVM_SET_MEMORY_ATTRIBUTES,
  KVM_SET_USER_MEMORY_REGION, KVM_SET_USER_MEMORY_REGION2, KVMIO,
} from '../uapi/kvm.js';
import type {
  IoctlArg, KvmCreateGuestMemfd, KvmEnableCap, KvmMemoryAttributes, KvmPreFaultMemory, KvmUserspaceMemoryRegion2,
} from '../uapi/syscalls.js';
import type { KFile } from '../vfs/file.js';
import { checkExtension, KVM_MAX_VCPU_IDS, KVM_MAX_VCPUS } from './caps.js';
import type { KernelConfig } from './config.js';
import { type VcpuFile, type VmFile } from './files.js';
import type { Kvm } from './vm.js';

/** What the ioctl handlers need from the kernel around them. */
export interface IoctlContext {
  readonly cfg: KernelConfig;
  /** KVM_CREATE_VM: a new VM and its fd. */
  createVm(type: number): number;
  /** KVM_CREATE_VCPU: a new vCPU of `vm` and its fd. */
  createVcpu(vm: Kvm, id: number): number;
  /** KVM_CREATE_GUEST_MEMFD: checks, inode, file, fd. */
  createGuestMemfd(vm: Kvm, args: KvmCreateGuestMemfd): number;
  /** The open file an fd names, for memslot binding. */
  fileOf(fd: number): KFile | undefined;
  /** Conversion ioctls on a guest_memfd (in-place / rfc-1g); null when the uAPI has none. */
  gmemIoctl(file: GmemFile, request: number, arg: IoctlArg | undefined): number;
}

/** vcpu_mmap_size: the kvm_run page, the PIO page and the coalesced-MMIO page. */
export const KVM_VCPU_MMAP_SIZE = 3 * 4096;

/** The integer argument of an _IO request (a pointer-sized value). */
function intArg(arg: IoctlArg | undefined, name: string): bigint {
  if (arg === undefined) return 0n;
  if (typeof arg === 'number' || typeof arg === 'bigint') return toU64(arg, name);
  throw new SyscallError(EINVAL, name, 'expected an integer argument');
}

/** The struct argument of an _IOW/_IOWR request; a non-object is a bad user pointer (EFAULT). */
function structArg<T>(arg: IoctlArg | undefined, name: string): T {
  if (arg === null || typeof arg !== 'object') throw new SyscallError(EFAULT, name, 'expected a struct argument');
  return arg as T;
}

export function kvmDevIoctl(ctx: IoctlContext, request: number, arg: IoctlArg | undefined): number {
  switch (request) {
    case KVM_GET_API_VERSION:
      if (intArg(arg, 'ioctl(KVM_GET_API_VERSION)') !== 0n) throw new SyscallError(EINVAL, 'ioctl(KVM_GET_API_VERSION)');
      return KVM_API_VERSION;
    case KVM_CREATE_VM: {
      const type = intArg(arg, 'ioctl(KVM_CREATE_VM)');
      if (type > 0xffffffffn) throw new SyscallError(EINVAL, 'ioctl(KVM_CREATE_VM)', 'type');
      return ctx.createVm(Number(type));
    }
    case KVM_CHECK_EXTENSION:
      return checkExtension(ctx.cfg, null, capArg(arg));
    case KVM_GET_VCPU_MMAP_SIZE:
      if (intArg(arg, 'ioctl(KVM_GET_VCPU_MMAP_SIZE)') !== 0n) throw new SyscallError(EINVAL, 'ioctl(KVM_GET_VCPU_MMAP_SIZE)');
      return KVM_VCPU_MMAP_SIZE;
    default:
      throw new SyscallError(EINVAL, `ioctl(0x${request.toString(16)})`, 'not a /dev/kvm ioctl');
  }
}

function capArg(arg: IoctlArg | undefined): number {
  const v = intArg(arg, 'ioctl(KVM_CHECK_EXTENSION)');
  return v > 0xffffffffn ? -1 : Number(BigInt.asIntN(32, v));
}

export function vmIoctl(ctx: IoctlContext, f: VmFile, request: number, arg: IoctlArg | undefined): number {
  const vm = f.vm;
  switch (request) {
    case KVM_CREATE_VCPU: {
      const id = intArg(arg, 'ioctl(KVM_CREATE_VCPU)');
      if (id >= BigInt(KVM_MAX_VCPU_IDS)) throw new SyscallError(EINVAL, 'ioctl(KVM_CREATE_VCPU)', 'vcpu id');
      if (vm.vcpu_ids.size >= KVM_MAX_VCPUS) throw new SyscallError(EINVAL, 'ioctl(KVM_CREATE_VCPU)', 'too many vcpus');
      if (vm.vcpu_ids.has(Number(id))) throw new SyscallError(EEXIST, 'ioctl(KVM_CREATE_VCPU)', 'vcpu id in use');
      return ctx.createVcpu(vm, Number(id));
    }
    case KVM_SET_USER_MEMORY_REGION:
    case KVM_SET_USER_MEMORY_REGION2: {
      const v2 = request === KVM_SET_USER_MEMORY_REGION2;
      const m = structArg<KvmUserspaceMemoryRegion2>(arg, v2 ? 'ioctl(KVM_SET_USER_MEMORY_REGION2)' : 'ioctl(KVM_SET_USER_MEMORY_REGION)');
      vm.setUserMemoryRegion(m, v2, (fd) => ctx.fileOf(fd));
      return 0;
    }
    case KVM_CHECK_EXTENSION:
      return checkExtension(ctx.cfg, vm, capArg(arg));
    case KVM_ENABLE_CAP:
      vm.enableCap(structArg<KvmEnableCap>(arg, 'ioctl(KVM_ENABLE_CAP)'));
      return 0;
    case KVM_SET_MEMORY_ATTRIBUTES:
      vm.setMemoryAttributes(structArg<KvmMemoryAttributes>(arg, 'ioctl(KVM_SET_MEMORY_ATTRIBUTES)'));
      return 0;
    case KVM_CREATE_GUEST_MEMFD:
      return ctx.createGuestMemfd(vm, structArg<KvmCreateGuestMemfd>(arg, 'ioctl(KVM_CREATE_GUEST_MEMFD)'));
    default:
      throw new SyscallError(ENOTTY, `ioctl(0x${request.toString(16)})`, 'not a VM ioctl');
  }
}

export function vcpuIoctl(_ctx: IoctlContext, f: VcpuFile, request: number, arg: IoctlArg | undefined): number {
  if (ioc_type(request) !== KVMIO) throw new SyscallError(EINVAL, `ioctl(0x${request.toString(16)})`, 'not a KVM ioctl');
  switch (request) {
    case KVM_RUN:
      if (intArg(arg, 'ioctl(KVM_RUN)') !== 0n) throw new SyscallError(EINVAL, 'ioctl(KVM_RUN)');
      return f.vcpu.kvmRun();
    case KVM_PRE_FAULT_MEMORY:
      return f.vcpu.preFaultMemory(structArg<KvmPreFaultMemory>(arg, 'ioctl(KVM_PRE_FAULT_MEMORY)'));
    default:
      throw new SyscallError(EINVAL, `ioctl(0x${request.toString(16)})`, 'not a vCPU ioctl');
  }
}

export function gmemFileIoctl(ctx: IoctlContext, f: GmemFile, request: number, arg: IoctlArg | undefined): number {
  if (ctx.cfg.uapi === 'v6.18') throw new SyscallError(ENOTTY, `ioctl(0x${request.toString(16)})`, 'guest_memfd has no ioctls in 6.18');
  return ctx.gmemIoctl(f, request, arg);
}
