/**
 * Memslots (struct kvm_memory_slot) and KVM_SET_USER_MEMORY_REGION(2): the checks of
 * __kvm_set_memory_region in the kernel's order, then create / delete / move / flags-only.
 */
import { EEXIST, EINVAL } from '../uapi/errno.js';
import { SyscallError } from '../uapi/errors.js';
import {
  KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_MAX_NR_PAGES, KVM_MEM_READONLY, KVM_USER_MEM_SLOTS,
} from '../uapi/kvm.js';
import type { KvmUserspaceMemoryRegion2 } from '../uapi/syscalls.js';
import { toU32, toU64, U64_MAX } from '../lib/u64.js';
import type { GmemSlot } from '../gmem/consumer.js';
import type { GmemFile } from '../gmem/file.js';

/** x86 TASK_SIZE_MAX for access_ok: (1 << 47) - PAGE_SIZE. */
const TASK_SIZE_MAX = (1n << 47n) - 4096n;
/** The model's guest physical address width (MAXPHYADDR 52): kvm_mmu_max_gfn. */
export const KVM_MMU_MAX_GFN = 2 ** 40 - 1;

export class Memslot implements GmemSlot {
  gmem_file: GmemFile | null = null;
  gmem_pgoff = 0;
  gmem_only = false;
  constructor(
    readonly id: number,
    public base_gfn: number,
    readonly npages: number,
    public flags: number,
    readonly userspace_addr: number,
  ) {}

  get has_gmem(): boolean {
    return (this.flags & KVM_MEM_GUEST_MEMFD) !== 0;
  }

  get end_gfn(): number {
    return this.base_gfn + this.npages;
  }

  /** The host virtual address of `gfn` (__gfn_to_hva_memslot). */
  hvaOf(gfn: number): number {
    return this.userspace_addr + (gfn - this.base_gfn) * 4096;
  }
}

/** What the region request decoded to, ready to apply. */
export type RegionChange =
  | { kind: 'noop' }
  | { kind: 'delete'; old: Memslot }
  | { kind: 'create'; slot: Memslot; guest_memfd: number; gmem_offset: bigint }
  | { kind: 'move'; old: Memslot; base_gfn: number }
  | { kind: 'flags'; old: Memslot; flags: number };

export interface MemslotLookup {
  byId(id: number): Memslot | undefined;
  overlaps(id: number, base_gfn: number, end_gfn: number): boolean;
  readonly readonly_mem: boolean;
}

const NAME = 'ioctl(KVM_SET_USER_MEMORY_REGION2)';

/**
 * Decode and validate a region request exactly as the kernel orders its checks, up to (not
 * including) the guest_memfd bind. Throws SyscallError; changes nothing.
 */
export function checkRegion(m: KvmUserspaceMemoryRegion2, v2: boolean, slots: MemslotLookup): RegionChange {
  const name = v2 ? NAME : 'ioctl(KVM_SET_USER_MEMORY_REGION)';
  const slot = toU32(m.slot, name);
  const flags = toU32(m.flags, name);
  const gpa = toU64(m.guest_phys_addr, name);
  const size = toU64(m.memory_size, name);
  const uaddr = toU64(m.userspace_addr, name);
  const gmem_offset = v2 && (flags & KVM_MEM_GUEST_MEMFD) !== 0 ? toU64(m.guest_memfd_offset, name) : 0n;
  const guest_memfd = v2 ? toU32(m.guest_memfd, name) | 0 : -1;

  if ((slot & 0xffff) >= KVM_USER_MEM_SLOTS) throw new SyscallError(EINVAL, name, 'slot id');
  if (!v2 && (flags & ~(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY)) !== 0) throw new SyscallError(EINVAL, name, 'v1 flags');
  // check_memory_region_flags
  let valid = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_GUEST_MEMFD;
  if ((flags & KVM_MEM_GUEST_MEMFD) !== 0) valid &= ~KVM_MEM_LOG_DIRTY_PAGES;
  if (slots.readonly_mem && (flags & KVM_MEM_GUEST_MEMFD) === 0) valid |= KVM_MEM_READONLY;
  if ((flags & ~valid) !== 0) throw new SyscallError(EINVAL, name, 'flags');

  const as_id = slot >>> 16;
  const id = slot & 0xffff;
  if (size % 4096n !== 0n) throw new SyscallError(EINVAL, name, 'memory_size not page aligned');
  if (gpa % 4096n !== 0n) throw new SyscallError(EINVAL, name, 'guest_phys_addr not page aligned');
  if (uaddr % 4096n !== 0n || size > TASK_SIZE_MAX || uaddr > TASK_SIZE_MAX - size) {
    throw new SyscallError(EINVAL, name, 'userspace_addr');
  }
  if ((flags & KVM_MEM_GUEST_MEMFD) !== 0 && (gmem_offset % 4096n !== 0n || gmem_offset + size > U64_MAX)) {
    throw new SyscallError(EINVAL, name, 'guest_memfd_offset');
  }
  if (as_id >= 1) throw new SyscallError(EINVAL, name, 'address space id');
  if (gpa + size > U64_MAX) throw new SyscallError(EINVAL, name, 'guest_phys_addr + memory_size wraps');
  if (size / 4096n > BigInt(KVM_MEM_MAX_NR_PAGES)) throw new SyscallError(EINVAL, name, 'too many pages');

  const old = slots.byId(id);
  if (size === 0n) {
    if (old === undefined) throw new SyscallError(EINVAL, name, 'deleting a slot that does not exist');
    return { kind: 'delete', old };
  }
  const base_gfn = Number(gpa / 4096n);
  const npages = Number(size / 4096n);
  if (old !== undefined) {
    // gmem slots are immutable: they can only be deleted and re-created.
    if ((flags & KVM_MEM_GUEST_MEMFD) !== 0 || old.has_gmem) throw new SyscallError(EINVAL, name, 'guest_memfd slots are immutable');
    if (Number(uaddr) !== old.userspace_addr || npages !== old.npages || ((flags ^ old.flags) & KVM_MEM_READONLY) !== 0) {
      throw new SyscallError(EINVAL, name, 'only a move or a flags change may modify a slot');
    }
    if (base_gfn !== old.base_gfn) {
      if (slots.overlaps(id, base_gfn, base_gfn + npages)) throw new SyscallError(EEXIST, name, 'overlaps another slot');
      if (base_gfn + npages - 1 > KVM_MMU_MAX_GFN) throw new SyscallError(EINVAL, name, 'beyond the max gfn');
      return { kind: 'move', old, base_gfn };
    }
    if (flags !== old.flags) return { kind: 'flags', old, flags };
    return { kind: 'noop' };
  }
  if (slots.overlaps(id, base_gfn, base_gfn + npages)) throw new SyscallError(EEXIST, name, 'overlaps another slot');
  // kvm_gmem_bind runs next (EBADF / EINVAL), then kvm_arch_prepare_memory_region.
  const s = new Memslot(id, base_gfn, npages, flags, Number(uaddr));
  return { kind: 'create', slot: s, guest_memfd, gmem_offset };
}

