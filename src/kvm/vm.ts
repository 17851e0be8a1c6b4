/**
 * A VM (struct kvm): memslots, VM-level memory attributes, stage-2 tables, vCPUs, and the
 * GmemOwnerOps that guest_memfd calls back into. The VM lives while its fd, any vCPU fd or any
 * guest_memfd file holds a reference (users_count).
 */
import { assert } from '../lib/assert.js';
import { RangeMap } from '../lib/rangemap.js';
import { type Level, PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K } from '../lib/types.js';
import { toU64, U64_MAX } from '../lib/u64.js';
import type { GmemOwnerOps, InvalidateFilter } from '../gmem/consumer.js';
import { GmemFile } from '../gmem/file.js';
import { gmemBind, gmemUnbind } from '../gmem/bind.js';
import { PRIVATE } from '../gmem/inode.js';
import type { Mm } from '../mm/mm.js';
import type { PhysMem } from '../mm/memmap.js';
import { EINVAL } from '../uapi/errno.js';
import { SyscallError } from '../uapi/errors.js';
import { KVM_CAP_EXIT_HYPERCALL, KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../uapi/kvm.js';
import type { KvmEnableCap, KvmMemoryAttributes, KvmUserspaceMemoryRegion2 } from '../uapi/syscalls.js';
import { exitHypercallMask, vmSupportedAttributes } from './caps.js';
import { type KernelConfig } from './config.js';
import { checkRegion, KVM_MMU_MAX_GFN, type Memslot, type MemslotLookup } from './memslot.js';
import type { MmuVm } from './mmu.js';
import { Stage2 } from './stage2.js';
import { type ContentEffect, vmArch, type VmArch } from './arch.js';

/** gfns are below 2^52 (64-bit gpa); the attribute map covers them all. */
const GFN_LIMIT = 2 ** 52;

export class Kvm implements GmemOwnerOps, MmuVm, MemslotLookup {
  readonly vm_id: number;
  readonly type: number;
  readonly has_private_mem: boolean;
  /** What the VM type changes: who chooses private, mapping limits, contents on conversion. */
  readonly arch: VmArch;
  /** TDX: 2M ranges (gfn / 512) mapped private at 4K, never promoted again. */
  readonly demoted_2m = new Set<number>();
  readonly readonly_mem = true;
  /** users_count: the VM fd, vCPU fds, guest_memfd files. */
  private users = 1;
  destroyed = false;
  /** Memslots by id, and sorted by base_gfn for gfn lookups. Protected by slots_lock. */
  private readonly slotsById = new Map<number, Memslot>();
  private sorted: Memslot[] = [];
  /** VM-level attributes (kvm->mem_attr_array): gfn → attribute bits. */
  readonly attributes = new RangeMap<number>(GFN_LIMIT, 0);
  readonly stage2 = new Stage2();
  /** KVM_CAP_EXIT_HYPERCALL mask. */
  exit_hypercall_mask = 0;
  /** mmu_invalidate_seq and the in-progress count (faults retry while > 0). */
  mmu_invalidate_seq = 0;
  mmu_invalidate_in_progress = 0;
  nr_faults = 0;
  readonly vcpu_ids = new Set<number>();

  constructor(
    vm_id: number,
    type: number,
    readonly cfg: KernelConfig,
    readonly phys: PhysMem,
    readonly mm: Mm,
    private readonly onDestroy: (vm: Kvm) => void,
  ) {
    this.vm_id = vm_id;
    this.type = type;
    this.arch = vmArch(type);
    this.has_private_mem = this.arch.has_private_mem;
    mm.addMmuNotifier(this.mmuNotifierInvalidate);
  }

  // ---- users_count -----------------------------------------------------------------------------

  kvmGet(): void {
    assert(!this.destroyed, 'kvm_get_kvm on a destroyed VM');
    this.users++;
  }

  kvmPut(): void {
    assert(this.users > 0, 'kvm_put_kvm underflow');
    if (--this.users === 0) this.destroy();
  }

  get refs(): number {
    return this.users;
  }

  /** kvm_destroy_vm: every memslot goes (guest_memfd files are already gone: they pinned us). */
  private destroy(): void {
    for (const slot of [...this.sorted]) this.deleteSlot(slot);
    this.mm.removeMmuNotifier(this.mmuNotifierInvalidate);
    this.destroyed = true;
    this.onDestroy(this);
  }

  // ---- GmemOwnerOps ----------------------------------------------------------------------------

  /** The firmware's effect on page contents when pages change sides (GmemOwnerOps). */
  contentEffect(to_private: boolean): ContentEffect {
    return to_private ? this.arch.to_private : this.arch.to_shared;
  }

  /** The arch limit on a new mapping at `gfn` (RMP / S-EPT levels, TDX no-promotion). */
  archMaxLevel(gfn: number, is_private: boolean): Level {
    if (!is_private) return this.arch.max_shared_level;
    if (this.arch.no_promotion && this.demoted_2m.has(Math.floor(gfn / 512))) return PG_LEVEL_4K;
    return this.arch.max_private_level;
  }

  /** A private leaf was installed at `level`: TDX remembers a 4K one (GUEST_INHIBIT). */
  notePrivateMapping(gfn: number, level: Level): void {
    if (this.arch.no_promotion && level === PG_LEVEL_4K) this.demoted_2m.add(Math.floor(gfn / 512));
  }

  invalidateBegin(): void {
    this.mmu_invalidate_in_progress++;
  }

  zapGfnRange(gfn_start: number, gfn_end: number, filter: InvalidateFilter): void {
    // The filter only matters for VMs with separate private page tables (TDX mirror roots); TDX
    // also splits private leaves that cross the range's edges first, so accepted memory around a
    // conversion or a punch stays mapped (TDX huge-page support). Other VMs zap crossing leaves
    // whole; they refault.
    if (!this.hasMirrorRoots()) {
      this.stage2.zap(gfn_start, gfn_end, 'both');
      return;
    }
    for (const block of this.stage2.splitEdges(gfn_start, gfn_end, filter === 'shared' ? 'shared' : 'private')) {
      // The demoted 2M range now has 4K private leaves: never promoted again.
      this.notePrivateMapping(block * 512, PG_LEVEL_4K);
    }
    this.stage2.zap(gfn_start, gfn_end, filter);
  }

  invalidateEnd(): void {
    assert(this.mmu_invalidate_in_progress > 0, 'unbalanced mmu_invalidate_end');
    this.mmu_invalidate_in_progress--;
    this.mmu_invalidate_seq++;
  }

  splitHugeMappings(gfn_start: number, gfn_end: number): void {
    for (const block of this.stage2.dropHuge(gfn_start, gfn_end, this.hasMirrorRoots())) {
      this.notePrivateMapping(block * 512, PG_LEVEL_4K);
    }
  }

  /** TDX keeps private mappings in a separate (mirror / S-EPT) root; the other types share one. */
  private hasMirrorRoots(): boolean {
    return this.arch.no_promotion; // TDX
  }

  /** MMU notifier: host PTEs of [hva_start, hva_end) are going away. */
  private readonly mmuNotifierInvalidate = (hva_start: number, hva_end: number): void => {
    for (const slot of this.sorted) {
      const s_start = slot.userspace_addr;
      const s_end = slot.userspace_addr + slot.npages * 4096;
      if (s_end <= hva_start || s_start >= hva_end) continue;
      const lo = Math.max(hva_start, s_start);
      const hi = Math.min(hva_end, s_end);
      const g0 = slot.base_gfn + Math.floor((lo - s_start) / 4096);
      const g1 = slot.base_gfn + Math.ceil((hi - s_start) / 4096);
      this.mmu_invalidate_in_progress++;
      this.stage2.zap(g0, g1, 'shared');
      this.mmu_invalidate_in_progress--;
      this.mmu_invalidate_seq++;
    }
  };

  // ---- memslots --------------------------------------------------------------------------------

  byId(id: number): Memslot | undefined {
    return this.slotsById.get(id);
  }

  overlaps(id: number, base_gfn: number, end_gfn: number): boolean {
    for (const s of this.sorted) if (s.id !== id && s.base_gfn < end_gfn && s.end_gfn > base_gfn) return true;
    return false;
  }

  get memslots(): readonly Memslot[] {
    return this.sorted;
  }

  slotFor(gfn: number): Memslot | null {
    const a = this.sorted;
    let lo = 0;
    let hi = a.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const s = a[mid] as Memslot;
      if (gfn < s.base_gfn) hi = mid - 1;
      else if (gfn >= s.end_gfn) lo = mid + 1;
      else return s;
    }
    return null;
  }

  private insertSorted(s: Memslot): void {
    this.sorted.push(s);
    this.sorted.sort((a, b) => a.base_gfn - b.base_gfn);
  }

  /**
   * KVM_SET_USER_MEMORY_REGION(2). `resolveFd` maps an fd number to its open file (undefined:
   * not open → EBADF).
   */
  setUserMemoryRegion(m: KvmUserspaceMemoryRegion2, v2: boolean, resolveFd: (fd: number) => unknown): void {
    const change = checkRegion(m, v2, this);
    switch (change.kind) {
      case 'noop':
        return;
      case 'delete':
        this.deleteSlot(change.old);
        return;
      case 'move':
        this.stage2.zap(change.old.base_gfn, change.old.end_gfn, 'both');
        change.old.base_gfn = change.base_gfn;
        this.sorted.sort((a, b) => a.base_gfn - b.base_gfn);
        return;
      case 'flags':
        change.old.flags = change.flags;
        return;
      case 'create': {
        const slot = change.slot;
        if (slot.has_gmem) {
          const file = resolveFd(change.guest_memfd);
          if (file === undefined) throw new SyscallError(9 /* EBADF */, 'ioctl(KVM_SET_USER_MEMORY_REGION2)', 'guest_memfd not open');
          gmemBind(this, slot, file, change.gmem_offset);
        }
        if (slot.end_gfn - 1 > KVM_MMU_MAX_GFN) {
          gmemUnbind(slot); // kvm_arch_prepare_memory_region failed: undo the bind
          throw new SyscallError(EINVAL, 'ioctl(KVM_SET_USER_MEMORY_REGION2)', 'beyond the max gfn');
        }
        this.slotsById.set(slot.id, slot);
        this.insertSorted(slot);
        return;
      }
    }
  }

  private deleteSlot(slot: Memslot): void {
    this.stage2.zap(slot.base_gfn, slot.end_gfn, 'both');
    gmemUnbind(slot);
    this.slotsById.delete(slot.id);
    this.sorted.splice(this.sorted.indexOf(slot), 1);
  }

  // ---- attributes ------------------------------------------------------------------------------

  /** kvm_mem_is_private: from guest_memfd in the in-place designs, else from VM attributes. */
  memIsPrivate(gfn: number): boolean {
    if (!this.has_private_mem) return false;
    if (this.cfg.uapi === 'v6.18') return (this.attributes.get(gfn) & KVM_MEMORY_ATTRIBUTE_PRIVATE) !== 0;
    // In-place designs: guest_memfd decides for slots bound to a file that tracks shareability.
    const slot = this.slotFor(gfn);
    const sh = slot?.gmem_file?.inode.shareability ?? null;
    if (slot !== null && sh !== null) return sh.get(gfn - slot.base_gfn + slot.gmem_pgoff) === PRIVATE;
    // kvm_gmem_is_private: no slot or no file → not private. rfc-1g falls back to VM attributes.
    if (this.cfg.uapi === 'in-place') return false;
    return (this.attributes.get(gfn) & KVM_MEMORY_ATTRIBUTE_PRIVATE) !== 0;
  }

  /** The level limit from the slot's alignment (lpage_info disallow_lpage). */
  maxLevelFor(slot: Memslot, gfn: number): Level {
    for (const level of [PG_LEVEL_1G, PG_LEVEL_2M] as const) {
      const nr = level === PG_LEVEL_1G ? 262144 : 512;
      const head = Math.floor(gfn / nr) * nr;
      if (head < slot.base_gfn || head + nr > slot.end_gfn) continue;
      if ((slot.base_gfn - slot.gmem_pgoff) % nr !== 0) continue;
      if (!slot.gmem_only && slot.gmem_file === null && ((slot.userspace_addr / 4096) - slot.base_gfn) % nr !== 0) continue;
      if (!this.attributes.uniform(head, head + nr).found) continue;
      return level;
    }
    return PG_LEVEL_4K;
  }

  /** KVM_SET_MEMORY_ATTRIBUTES: checks in the kernel's order, no-op if unchanged, zap, store. */
  setMemoryAttributes(a: KvmMemoryAttributes): void {
    const name = 'ioctl(KVM_SET_MEMORY_ATTRIBUTES)';
    const flags = toU64(a.flags, name);
    const attrs = toU64(a.attributes, name);
    const address = toU64(a.address, name);
    const size = toU64(a.size, name);
    if (flags !== 0n) throw new SyscallError(EINVAL, name, 'flags');
    if ((attrs & ~BigInt(vmSupportedAttributes(this.cfg, this))) !== 0n) throw new SyscallError(EINVAL, name, 'attributes');
    if (size === 0n || address + size > U64_MAX) throw new SyscallError(EINVAL, name, 'size');
    if (address % 4096n !== 0n || size % 4096n !== 0n) throw new SyscallError(EINVAL, name, 'alignment');
    const start = Number(address / 4096n);
    const end = Number((address + size) / 4096n);
    const value = Number(attrs);
    if (this.attributes.allEqual(start, end, value)) return;
    this.invalidateBegin();
    this.stage2.zap(start, end, 'both');
    this.attributes.set(start, end, value);
    this.invalidateEnd();
  }

  enableCap(c: KvmEnableCap): void {
    const name = 'ioctl(KVM_ENABLE_CAP)';
    if ((c.flags ?? 0) !== 0) throw new SyscallError(EINVAL, name, 'flags');
    if (c.cap === KVM_CAP_EXIT_HYPERCALL) {
      const mask = toU64(c.args?.[0], name);
      if ((mask & ~BigInt(exitHypercallMask(this.cfg))) !== 0n) throw new SyscallError(EINVAL, name, 'hypercall mask');
      this.exit_hypercall_mask = Number(mask);
      return;
    }
    throw new SyscallError(EINVAL, name, `capability ${c.cap} cannot be enabled`);
  }

  /** For the kernel layer: is `file` a guest_memfd of this VM? */
  ownsGmem(file: unknown): boolean {
    return file instanceof GmemFile && file.owner === this;
  }
}
