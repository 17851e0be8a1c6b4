/**
 * The KVM-facing side of guest_memfd: binding memslots to a file range, unbinding, and the
 * stage-2 fault lookup (kvm_gmem_get_pfn).
 */
import { assert } from '../lib/assert.js';
import type { Pfn } from '../lib/types.js';
import { PG_hwpoison, type PhysMem } from '../mm/memmap.js';
import { EFAULT, EHWPOISON, EINVAL, EIO, ENOMEM } from '../uapi/errno.js';
import { SyscallError } from '../uapi/errors.js';
import type { GmemOwnerOps, GmemSlot } from './consumer.js';
import { GmemFile } from './file.js';
import type { GmemInode } from './inode.js';
import { GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_SUPPORT_SHARED } from '../uapi/kvm.js';

/**
 * kvm_gmem_bind, after the memslot checks. `file` is what the fd names (null: not open → the
 * caller already answered EBADF). Checks in the kernel's order; changes nothing on failure.
 */
export function gmemBind(owner: GmemOwnerOps, slot: GmemSlot, file: unknown, offset_u64: bigint): void {
  if (!(file instanceof GmemFile)) throw new SyscallError(EINVAL, 'ioctl(KVM_SET_USER_MEMORY_REGION2)', 'not a guest_memfd');
  if (file.owner !== owner) throw new SyscallError(EINVAL, 'ioctl(KVM_SET_USER_MEMORY_REGION2)', 'guest_memfd of another VM');
  const inode = file.inode;
  const offset = BigInt.asIntN(64, offset_u64);
  const size = BigInt(slot.npages) * 4096n;
  if (offset < 0n || offset % 4096n !== 0n || offset + size > BigInt(inode.size_bytes)) {
    throw new SyscallError(EINVAL, 'ioctl(KVM_SET_USER_MEMORY_REGION2)', 'guest_memfd offset out of range');
  }
  const start = Number(offset / 4096n);
  const end = start + slot.npages;
  inode.invalidate_lock.downWrite();
  try {
    if (!file.bindings.allEqual(start, end, null)) {
      // 6.18 and mainline answer EINVAL for an overlapping file range (kvm-x86/next: EEXIST).
      throw new SyscallError(EINVAL, 'ioctl(KVM_SET_USER_MEMORY_REGION2)', 'guest_memfd range already bound');
    }
    slot.gmem_file = file;
    slot.gmem_pgoff = start;
    slot.gmem_only = (inode.flags & BigInt(inode.uapi === 'rfc-1g' ? GUEST_MEMFD_FLAG_SUPPORT_SHARED : GUEST_MEMFD_FLAG_MMAP)) !== 0n;
    file.bindings.set(start, end, slot);
  } finally {
    inode.invalidate_lock.upWrite();
  }
}

/** kvm_gmem_unbind: clear the binding range; the memory stays in the file. */
export function gmemUnbind(slot: GmemSlot): void {
  const file = slot.gmem_file;
  if (file === null) return; // the file was released first; release cleared the pointer
  const inode = file.inode;
  inode.invalidate_lock.downWrite();
  try {
    file.bindings.set(slot.gmem_pgoff, slot.gmem_pgoff + slot.npages, null);
    slot.gmem_file = null;
  } finally {
    inode.invalidate_lock.upWrite();
  }
}

export interface GmemPfn {
  pfn: Pfn;
  /** The largest order KVM may map this pfn at, from the folio and its alignment. */
  max_order: number;
}

/**
 * kvm_gmem_get_pfn: the pfn behind `gfn` of `slot`, allocating and zeroing on first use.
 * Errors are returned as errno (the MMU turns them into KVM_EXIT_MEMORY_FAULT).
 */
export function gmemGetPfn(phys: PhysMem, slot: GmemSlot, gfn: number): GmemPfn | number {
  const file = slot.gmem_file;
  if (file === null || file.released) return EFAULT;
  const inode = file.inode;
  const index = gfn - slot.base_gfn + slot.gmem_pgoff;
  assert(index >= 0 && index < inode.nr_pages, () => `gfn ${gfn} outside slot ${slot.id}'s binding`);
  if (file.bindings.get(index) !== slot) return EIO;
  inode.invalidate_lock.downRead();
  try {
    const page = inode.getPage(phys, index);
    if (page < 0) return ENOMEM;
    const f = inode.pages.lookup(index);
    assert(f !== null, 'page vanished from the page cache');
    if (phys.testFlag(f.head, PG_hwpoison)) return EHWPOISON;
    inode.preparePage(phys, index);
    return { pfn: page as Pfn, max_order: maxOrder(inode, f.order, index) };
  } finally {
    inode.invalidate_lock.upRead();
  }
}

/**
 * The largest order KVM may map `index` at: the folio's order, lowered while the block is mixed
 * (the inode's lpage_info-like record; with lazy splitting a whole folio can sit in a mixed block).
 */
function maxOrder(inode: GmemInode, folio_order: number, index: number): number {
  for (const order of [18, 9]) {
    if (folio_order >= order && !inode.isMixed(order, index)) return order;
  }
  return 0;
}
