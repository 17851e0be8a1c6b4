/**
 * KVM_CREATE_GUEST_MEMFD (kvm_gmem_create): flag and size checks per uAPI generation, in the
 * kernel's order. Nothing is allocated per page: a 1 TiB file costs what a 4 KiB one does.
 *
 *   v6.18:    flags ⊆ supported (MMAP, INIT_SHARED where allowed); size > 0, 4K-aligned.
 *   in-place: + HUGETLB (1<<2) with `page_order` (9 or 18; non-zero only with HUGETLB), HUGETLB
 *             and INIT_SHARED exclusive, size a multiple of the huge page size.
 *   rfc-1g:   SUPPORT_SHARED, INIT_PRIVATE (needs SUPPORT_SHARED), HUGETLB with log2 of the page
 *             size in flag bits 58..63 (0 = default hstate, 2 MiB on x86; 21 and 30 exist).
 */
import { EINVAL } from '../uapi/errno.js';
import { SyscallError } from '../uapi/errors.js';
import {
  GUEST_MEMFD_FLAG_HUGETLB, GUEST_MEMFD_FLAG_INIT_PRIVATE, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP,
  GUEST_MEMFD_FLAG_SUPPORT_SHARED, GUESTMEM_HUGETLB_FLAG_MASK, GUESTMEM_HUGETLB_FLAG_SHIFT,
} from '../uapi/kvm.js';
import type { GmemUapi, GmemInodeInit } from './inode.js';

const NAME = 'ioctl(KVM_CREATE_GUEST_MEMFD)';
const SIZE_SHIFT = BigInt(GUESTMEM_HUGETLB_FLAG_SHIFT);
const SIZE_MASK = BigInt(GUESTMEM_HUGETLB_FLAG_MASK) << SIZE_SHIFT;
/** x86 hstates: folio orders that exist. */
const HSTATE_ORDERS = [9, 18];

const has = (flags: bigint, bit: number): boolean => (flags & BigInt(bit)) !== 0n;

/** The decoded creation request, or a thrown SyscallError (EINVAL) in the kernel's order. */
export function checkCreate(uapi: GmemUapi, size: bigint, flags: bigint, supported: bigint, page_order: number,
  default_shared = uapi === 'rfc-1g'): Omit<GmemInodeInit, 'ino' | 'mapping_id'> {
  const extra = uapi === 'rfc-1g' ? SIZE_MASK : 0n;
  if ((flags & ~(supported | extra)) !== 0n) throw new SyscallError(EINVAL, NAME, `flags 0x${flags.toString(16)} not supported`);
  let huge_order = 0;
  if (uapi === 'in-place') {
    if (page_order !== 0 && !has(flags, GUEST_MEMFD_FLAG_HUGETLB)) throw new SyscallError(EINVAL, NAME, 'page_order without HUGETLB');
    if (has(flags, GUEST_MEMFD_FLAG_HUGETLB)) {
      if (!HSTATE_ORDERS.includes(page_order)) throw new SyscallError(EINVAL, NAME, `no hstate of order ${page_order}`);
      if (has(flags, GUEST_MEMFD_FLAG_INIT_SHARED)) throw new SyscallError(EINVAL, NAME, 'HUGETLB with INIT_SHARED');
      huge_order = page_order;
    }
  } else if (uapi === 'rfc-1g') {
    const log2 = Number((flags & SIZE_MASK) >> SIZE_SHIFT);
    if (log2 !== 0 && !has(flags, GUEST_MEMFD_FLAG_HUGETLB)) throw new SyscallError(EINVAL, NAME, 'page size bits without HUGETLB');
    if (has(flags, GUEST_MEMFD_FLAG_HUGETLB)) {
      const order = log2 === 0 ? 9 : log2 - 12;
      if (!HSTATE_ORDERS.includes(order)) throw new SyscallError(EINVAL, NAME, `no hstate of 2^${log2} bytes`);
      huge_order = order;
    }
  }
  const align = 4096n << BigInt(huge_order);
  if (BigInt.asIntN(64, size) <= 0n || size % align !== 0n) throw new SyscallError(EINVAL, NAME, 'size');
  const nr_pages = Number(size / 4096n);
  switch (uapi) {
    case 'v6.18':
    case 'in-place':
      return {
        nr_pages, flags, uapi, huge_order,
        mmap_allowed: has(flags, GUEST_MEMFD_FLAG_MMAP),
        // v6.18 has one file-wide state; in-place: INIT_SHARED, else the default state (policy).
        init_shared: has(flags, GUEST_MEMFD_FLAG_INIT_SHARED) || (uapi === 'in-place' && default_shared),
        per_index_shareability: uapi === 'in-place',
      };
    case 'rfc-1g': {
      const support_shared = has(flags, GUEST_MEMFD_FLAG_SUPPORT_SHARED);
      const init_private = has(flags, GUEST_MEMFD_FLAG_INIT_PRIVATE);
      if (init_private && !support_shared) throw new SyscallError(EINVAL, NAME, 'INIT_PRIVATE needs SUPPORT_SHARED');
      return {
        nr_pages, flags, uapi, huge_order,
        mmap_allowed: support_shared,
        // Without SUPPORT_SHARED the file has no shareability tree: all private.
        init_shared: support_shared && !init_private && default_shared,
        per_index_shareability: support_shared,
      };
    }
  }
}
