/**
 * The stage-2 fault path (kvm_mmu_page_fault → kvm_mmu_faultin_pfn → map), x86 TDP flavour:
 * decide private vs shared, find the pfn (guest_memfd or the memslot's hva), pick the mapping
 * level, install the leaf. A fault that KVM cannot serve becomes an exit to user space.
 */
import { gmemGetPfn } from '../gmem/bind.js';
import { type Level, type Pfn, PG_LEVEL_4K, orderToLevel } from '../lib/types.js';
import type { Mm } from '../mm/mm.js';
import type { PhysMem } from '../mm/memmap.js';
import { SignalError } from '../uapi/errors.js';
import { EFAULT } from '../uapi/errno.js';
import { KVM_MEM_READONLY, KVM_MEMORY_EXIT_FLAG_PRIVATE } from '../uapi/kvm.js';
import type { Memslot } from './memslot.js';
import { SPTE_GMEM, SPTE_PRIVATE, type Stage2 } from './stage2.js';

export type FaultResult =
  | { kind: 'mapped'; pfn: Pfn }
  /** Emulated MMIO: no memslot, or a write to a read-only slot. */
  | { kind: 'mmio' }
  /** KVM_EXIT_MEMORY_FAULT with KVM_RUN failing with `errno`. */
  | { kind: 'memory_fault'; errno: number; flags: number };

export interface MmuVm {
  readonly stage2: Stage2;
  readonly phys: PhysMem;
  readonly mm: Mm;
  slotFor(gfn: number): Memslot | null;
  /** kvm_mem_is_private(kvm, gfn). */
  memIsPrivate(gfn: number): boolean;
  /** Largest level allowed by the slot's alignment and mixed attributes (lpage_info). */
  maxLevelFor(slot: Memslot, gfn: number): Level;
  /** The arch limit (SNP RMP, TDX S-EPT: private ≤ 2M; TDX no promotion). */
  archMaxLevel(gfn: number, is_private: boolean): Level;
  notePrivateMapping(gfn: number, level: Level): void;
  nr_faults: number;
}

/**
 * Handle a guest access to `gfn`; `is_private` is the access's private-ness (for SW_PROTECTED
 * VMs, the attribute at fault time). Maps the page or returns the exit.
 */
export function pageFault(vm: MmuVm, gfn: number, write: boolean, is_private: boolean): FaultResult {
  const present = vm.stage2.lookup(gfn);
  if (present !== null && ((present.flags & SPTE_PRIVATE) !== 0) === is_private) {
    return { kind: 'mapped', pfn: (present.pfn + (gfn - present.gfn)) as Pfn };
  }
  vm.nr_faults++;
  const fault_flags = is_private ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0;
  if (is_private !== vm.memIsPrivate(gfn)) return { kind: 'memory_fault', errno: EFAULT, flags: fault_flags };
  const slot = vm.slotFor(gfn);
  if (slot === null) {
    // Emulated MMIO is never allowed for private accesses.
    return is_private ? { kind: 'memory_fault', errno: EFAULT, flags: fault_flags } : { kind: 'mmio' };
  }
  if (write && (slot.flags & KVM_MEM_READONLY) !== 0) return { kind: 'mmio' };
  if (is_private || slot.gmem_only) return faultinGmem(vm, slot, gfn, is_private, fault_flags);
  return faultinHva(vm, slot, gfn, write);
}

function faultinGmem(vm: MmuVm, slot: Memslot, gfn: number, is_private: boolean, fault_flags: number): FaultResult {
  if (!slot.has_gmem) return { kind: 'memory_fault', errno: EFAULT, flags: fault_flags };
  const r = gmemGetPfn(vm.phys, slot, gfn);
  if (typeof r === 'number') return { kind: 'memory_fault', errno: r, flags: fault_flags };
  const level = Math.min(orderToLevel(r.max_order), vm.maxLevelFor(slot, gfn), vm.archMaxLevel(gfn, is_private)) as Level;
  mapLeaf(vm, gfn, r.pfn, level, (is_private ? SPTE_PRIVATE : 0) | SPTE_GMEM);
  if (is_private) vm.notePrivateMapping(gfn, level);
  return { kind: 'mapped', pfn: r.pfn };
}

/** The shared path: hva → pfn through the host page tables (GUP), mapped at 4K. */
function faultinHva(vm: MmuVm, slot: Memslot, gfn: number, write: boolean): FaultResult {
  let p: Pfn;
  try {
    p = vm.mm.translate(slot.hvaOf(gfn), write);
  } catch (e) {
    if (e instanceof SignalError) return { kind: 'memory_fault', errno: EFAULT, flags: 0 };
    throw e;
  }
  mapLeaf(vm, gfn, p, PG_LEVEL_4K, 0);
  return { kind: 'mapped', pfn: p };
}

function mapLeaf(vm: MmuVm, gfn: number, p: Pfn, level: Level, flags: number): void {
  const present = vm.stage2.lookup(gfn);
  // A leaf of the other kind (private vs shared) is replaced, as a fault after conversion does.
  if (present !== null) vm.stage2.zap(present.gfn, present.gfn + 1, 'both');
  if (level === PG_LEVEL_4K) {
    vm.stage2.map(gfn, p, level, flags);
    return;
  }
  const nr = level === 2 ? 512 : 262144;
  const head_gfn = Math.floor(gfn / nr) * nr;
  vm.stage2.zap(head_gfn, head_gfn + nr, 'both');
  vm.stage2.map(head_gfn, (p - (gfn - head_gfn)) as Pfn, level, flags);
}
