/**
 * The guest_memfd conversion ioctls, decoded and validated in the kernel's order:
 *   in-place: KVM_SET_MEMORY_ATTRIBUTES2 (struct kvm_memory_attributes2, error_offset written
 *             back on any error);
 *   rfc-1g:   KVM_GMEM_CONVERT_SHARED / _PRIVATE (struct kvm_gmem_convert; error_offset must be 0
 *             on input; size 0 succeeds; copied back only on error).
 */
import { toU64 } from '../lib/u64.js';
import { EFAULT, EINVAL, ENOTTY } from '../uapi/errno.js';
import { SyscallError } from '../uapi/errors.js';
import {
  KVM_GMEM_CONVERT_PRIVATE, KVM_GMEM_CONVERT_SHARED, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_SET_MEMORY_ATTRIBUTES2,
} from '../uapi/kvm.js';
import type { IoctlArg, KvmGmemConvert, KvmMemoryAttributes2, U64 } from '../uapi/syscalls.js';
import type { GmemContext } from './context.js';
import { gmemConvert } from './convert.js';
import type { GmemFile } from './file.js';

const U64_LIMIT = 1n << 64n;

function structArg<T>(arg: IoctlArg | undefined, name: string): T {
  if (arg === null || typeof arg !== 'object') throw new SyscallError(EFAULT, name, 'expected a struct argument');
  return arg as T;
}

/** A number when exact, else a bigint: how out fields are written back. */
function u64Out(v: bigint): U64 {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

export function gmemIoctl(file: GmemFile, ctx: GmemContext, request: number, arg: IoctlArg | undefined): number {
  const uapi = file.inode.uapi;
  if (uapi === 'in-place' && request === KVM_SET_MEMORY_ATTRIBUTES2) {
    return setMemoryAttributes2(file, ctx, structArg<KvmMemoryAttributes2>(arg, 'ioctl(KVM_SET_MEMORY_ATTRIBUTES2)'));
  }
  if (uapi === 'rfc-1g' && (request === KVM_GMEM_CONVERT_SHARED || request === KVM_GMEM_CONVERT_PRIVATE)) {
    const name = request === KVM_GMEM_CONVERT_PRIVATE ? 'ioctl(KVM_GMEM_CONVERT_PRIVATE)' : 'ioctl(KVM_GMEM_CONVERT_SHARED)';
    return gmemConvertIoctl(file, ctx, structArg<KvmGmemConvert>(arg, name), request === KVM_GMEM_CONVERT_PRIVATE, name);
  }
  throw new SyscallError(ENOTTY, `ioctl(0x${request.toString(16)})`, 'not a guest_memfd ioctl');
}

/** A non-negative safe integer given as a number: the fast path needs no bigint arithmetic. */
const small = (v: U64 | undefined): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function setMemoryAttributes2(file: GmemFile, ctx: GmemContext, a: KvmMemoryAttributes2): number {
  const name = 'ioctl(KVM_SET_MEMORY_ATTRIBUTES2)';
  if (small(a.offset) && small(a.size) && small(a.attributes) && small(a.flags) && a.reserved === undefined) {
    return setMemoryAttributes2Fast(file, ctx, a, a.offset, a.size, a.attributes, a.flags);
  }
  const offset = toU64(a.offset, name);
  const size = toU64(a.size, name);
  const attributes = toU64(a.attributes, name);
  const flags = toU64(a.flags, name);
  if (flags !== 0n) throw new SyscallError(EINVAL, name, 'flags');
  for (const r of a.reserved ?? []) if (toU64(r, name) !== 0n) throw new SyscallError(EINVAL, name, 'reserved');
  if (!file.owner.has_private_mem) throw new SyscallError(EINVAL, name, 'the VM has no private memory');
  if ((attributes & ~BigInt(KVM_MEMORY_ATTRIBUTE_PRIVATE)) !== 0n) throw new SyscallError(EINVAL, name, 'attributes');
  if (size === 0n || offset + size >= U64_LIMIT) throw new SyscallError(EINVAL, name, 'size');
  if (offset % 4096n !== 0n || size % 4096n !== 0n) throw new SyscallError(EINVAL, name, 'alignment');
  const i_size = BigInt(file.inode.size_bytes);
  if (offset >= i_size || offset + size > i_size) throw new SyscallError(EINVAL, name, 'range past i_size');
  const start = Number(offset / 4096n);
  const r = gmemConvert(file.inode, ctx, start, start + Number(size / 4096n), attributes !== 0n);
  if (r.errno === 0) return 0;
  if (r.error_index !== null) a.error_offset = u64Out(BigInt(r.error_index) * 4096n);
  throw new SyscallError(r.errno, name);
}

/**
 * The same checks in the same order on exact numbers (offset + size < 2^54 cannot overflow u64);
 * `attributes & ~PRIVATE` is `attributes ∉ {0, PRIVATE}` for a non-negative integer.
 */
function setMemoryAttributes2Fast(file: GmemFile, ctx: GmemContext, a: KvmMemoryAttributes2,
  offset: number, size: number, attributes: number, flags: number): number {
  const name = 'ioctl(KVM_SET_MEMORY_ATTRIBUTES2)';
  if (flags !== 0) throw new SyscallError(EINVAL, name, 'flags');
  if (!file.owner.has_private_mem) throw new SyscallError(EINVAL, name, 'the VM has no private memory');
  if (attributes !== 0 && attributes !== KVM_MEMORY_ATTRIBUTE_PRIVATE) throw new SyscallError(EINVAL, name, 'attributes');
  if (size === 0) throw new SyscallError(EINVAL, name, 'size');
  if (offset % 4096 !== 0 || size % 4096 !== 0) throw new SyscallError(EINVAL, name, 'alignment');
  const i_size = file.inode.size_bytes;
  if (offset >= i_size || offset + size > i_size) throw new SyscallError(EINVAL, name, 'range past i_size');
  const start = offset / 4096;
  const r = gmemConvert(file.inode, ctx, start, start + size / 4096, attributes !== 0);
  if (r.errno === 0) return 0;
  if (r.error_index !== null) a.error_offset = r.error_index * 4096;
  throw new SyscallError(r.errno, name);
}

function gmemConvertIoctl(file: GmemFile, ctx: GmemContext, c: KvmGmemConvert, to_private: boolean, name: string): number {
  const offset = toU64(c.offset, name);
  const size = toU64(c.size, name);
  if (toU64(c.error_offset, name) !== 0n) throw new SyscallError(EINVAL, name, 'error_offset must be 0');
  if (size === 0n) return 0;
  const i_size = BigInt(file.inode.size_bytes);
  if (offset + size >= U64_LIMIT || offset > i_size || offset + size > i_size) throw new SyscallError(EINVAL, name, 'range');
  if (offset % 4096n !== 0n || size % 4096n !== 0n) throw new SyscallError(EINVAL, name, 'alignment');
  // Without SUPPORT_SHARED there is no shareability tree: the work list is empty, a no-op.
  if (file.inode.shareability === null) return 0;
  const start = Number(offset / 4096n);
  const r = gmemConvert(file.inode, ctx, start, start + Number(size / 4096n), to_private);
  if (r.errno === 0) return 0;
  if (r.error_index !== null) c.error_offset = u64Out(BigInt(r.error_index) * 4096n);
  throw new SyscallError(r.errno, name);
}
