/**
 * The conversion ioctls, exactly as each uAPI spells them (in-place-conversion-and-hugetlb.md
 * §1.1, §1.3; upstream-linux.md §2H):
 * - 'in-place': KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd fd, struct kvm_memory_attributes2
 *   { offset, size, attributes, flags = 0, error_offset } (error_offset written back on error).
 * - 'rfc-1g': KVM_GMEM_CONVERT_PRIVATE / KVM_GMEM_CONVERT_SHARED on the guest_memfd fd, struct
 *   kvm_gmem_convert { offset, size, error_offset = 0 }.
 * - 'v6.18': KVM_SET_MEMORY_ATTRIBUTES on the VM fd, struct kvm_memory_attributes
 *   { address, size, attributes, flags = 0 }; shared and private are different memory.
 */
import type { GmemUapi } from '../gmem/inode.js';
import { SyscallError } from '../uapi/errors.js';
import {
  KVM_GMEM_CONVERT_PRIVATE, KVM_GMEM_CONVERT_SHARED, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_SET_MEMORY_ATTRIBUTES,
  KVM_SET_MEMORY_ATTRIBUTES2,
} from '../uapi/kvm.js';
import type { KvmGmemConvert, KvmMemoryAttributes, KvmMemoryAttributes2, Syscalls } from '../uapi/syscalls.js';

export interface ConvertTarget {
  readonly k: Syscalls;
  readonly uapi: GmemUapi;
  readonly vmFd: number;
  readonly gmemFd: number;
  /** guest_memfd offset of gpa 0 (the one memslot binds the file at offset 0, gpa 0). */
  readonly gmemOffsetOf: (gpa: number) => number;
}

export type ConvertOutcome =
  | { ok: true }
  | { ok: false; errno: number; code: string; error_offset: number | undefined };

/** One conversion ioctl. Never throws for a kernel error: the outcome carries errno and error_offset. */
export function convertIoctl(t: ConvertTarget, gpa: number, size: number, toPrivate: boolean): ConvertOutcome {
  try {
    switch (t.uapi) {
      case 'in-place': {
        const a: KvmMemoryAttributes2 = {
          offset: t.gmemOffsetOf(gpa), size, attributes: toPrivate ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0, flags: 0, error_offset: 0,
        };
        try {
          t.k.ioctl(t.gmemFd, KVM_SET_MEMORY_ATTRIBUTES2, a);
        } catch (e) {
          throw withOffset(e, a.error_offset);
        }
        return { ok: true };
      }
      case 'rfc-1g': {
        const c: KvmGmemConvert = { offset: t.gmemOffsetOf(gpa), size, error_offset: 0 };
        try {
          t.k.ioctl(t.gmemFd, toPrivate ? KVM_GMEM_CONVERT_PRIVATE : KVM_GMEM_CONVERT_SHARED, c);
        } catch (e) {
          throw withOffset(e, c.error_offset);
        }
        return { ok: true };
      }
      case 'v6.18': {
        const a: KvmMemoryAttributes = { address: gpa, size, attributes: toPrivate ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0, flags: 0 };
        t.k.ioctl(t.vmFd, KVM_SET_MEMORY_ATTRIBUTES, a);
        return { ok: true };
      }
    }
  } catch (e) {
    if (e instanceof OffsetError) {
      return { ok: false, errno: e.err.errno, code: e.err.code, error_offset: e.error_offset };
    }
    if (e instanceof SyscallError) return { ok: false, errno: e.errno, code: e.code, error_offset: undefined };
    throw e;
  }
}

class OffsetError extends Error {
  constructor(readonly err: SyscallError, readonly error_offset: number | undefined) {
    super(err.message);
  }
}

function withOffset(e: unknown, off: unknown): unknown {
  if (!(e instanceof SyscallError)) return e;
  const n = typeof off === 'bigint' ? Number(off) : typeof off === 'number' ? off : undefined;
  return new OffsetError(e, n);
}
