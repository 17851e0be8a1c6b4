/**
 * KVM_CREATE_GUEST_MEMFD (kvm_gmem_create): flag and size checks per uAPI generation, then a new
 * inode and its first file. Nothing is allocated per page: a 1 TiB file costs what a 4 KiB one does.
 */
import { EINVAL } from '../uapi/errno.js';
import { SyscallError } from '../uapi/errors.js';
import {
  GUEST_MEMFD_FLAG_INIT_PRIVATE, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_SUPPORT_SHARED,
} from '../uapi/kvm.js';
import type { GmemUapi, GmemInodeInit } from './inode.js';

const NAME = 'ioctl(KVM_CREATE_GUEST_MEMFD)';

/** The decoded creation request, or a thrown SyscallError (EINVAL) in the kernel's order. */
export function checkCreate(uapi: GmemUapi, size: bigint, flags: bigint, supported: bigint):
  Omit<GmemInodeInit, 'ino' | 'mapping_id'> {
  if ((flags & ~supported) !== 0n) throw new SyscallError(EINVAL, NAME, `flags 0x${flags.toString(16)} not supported`);
  if (BigInt.asIntN(64, size) <= 0n || size % 4096n !== 0n) throw new SyscallError(EINVAL, NAME, 'size');
  const nr_pages = Number(size / 4096n);
  switch (uapi) {
    case 'v6.18':
      return {
        nr_pages, flags, uapi,
        mmap_allowed: (flags & BigInt(GUEST_MEMFD_FLAG_MMAP)) !== 0n,
        init_shared: (flags & BigInt(GUEST_MEMFD_FLAG_INIT_SHARED)) !== 0n,
        per_index_shareability: false,
      };
    case 'in-place':
      return {
        nr_pages, flags, uapi,
        mmap_allowed: (flags & BigInt(GUEST_MEMFD_FLAG_MMAP)) !== 0n,
        init_shared: (flags & BigInt(GUEST_MEMFD_FLAG_INIT_SHARED)) !== 0n,
        per_index_shareability: true,
      };
    case 'rfc-1g': {
      const support_shared = (flags & BigInt(GUEST_MEMFD_FLAG_SUPPORT_SHARED)) !== 0n;
      const init_private = (flags & BigInt(GUEST_MEMFD_FLAG_INIT_PRIVATE)) !== 0n;
      if (init_private && !support_shared) throw new SyscallError(EINVAL, NAME, 'INIT_PRIVATE needs SUPPORT_SHARED');
      return {
        nr_pages, flags, uapi,
        mmap_allowed: support_shared,
        // Without SUPPORT_SHARED the file has no shareability tree: all private.
        init_shared: support_shared && !init_private,
        per_index_shareability: support_shared,
      };
    }
  }
}
