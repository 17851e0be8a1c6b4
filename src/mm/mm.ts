/**
 * One process's address space (struct mm_struct): VMAs, user page tables, page faults, user
 * copies (load/store) and long-term GUP pins.
 *
 * Page tables map 4 KiB pages only (the host never maps huge guest_memfd folios); a table covers
 * 512 pages (2 MiB of VA) as Int32Array(pfn + 1). Each present PTE holds one folio reference and
 * one mapcount.
 */
import { assert } from '../lib/assert.js';
import { type Pfn } from '../lib/types.js';
import { EACCES, EEXIST, EFAULT, EINVAL, ENOMEM, EOVERFLOW } from '../uapi/errno.js';
import { SignalError, SyscallError } from '../uapi/errors.js';
import {
  MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, MAP_SHARED, MAP_SHARED_VALIDATE, MAP_TYPE, PROT_EXEC,
  PROT_READ, PROT_WRITE, TASK_SIZE, MMAP_MIN_ADDR,
} from '../uapi/linux.js';
import { keysInRange } from '../lib/keys.js';
import type { PhysMem } from './memmap.js';
import { type VmOps, VM_FAULT_SIGBUS } from './mapping.js';

const PAGE = 4096;
const TABLE = 512;
/** Top-down allocation starts here, as mmap_base does (no randomisation: determinism). */
const MMAP_BASE = 0x7f0000000000;
const ALIGN_2M = 2 * 1024 * 1024;
/** Limits: vm.max_map_count and a bound on one user copy. */
export const MAX_MAP_COUNT = 65530;
export const MAX_COPY_BYTES = 1 << 30;

export class Vma {
  constructor(
    public start: number,
    public end: number,
    public prot: number,
    /** VM_SHARED: a MAP_SHARED mapping. */
    public shared: boolean,
    /** VM_MAYEXEC: cleared on noexec mounts. */
    public mayexec: boolean,
    public readonly ops: VmOps,
    /** File index of `start`. */
    public pgoff: number,
  ) {}

  get nr_pages(): number {
    return (this.end - this.start) / PAGE;
  }

  /** File index of the page at `addr`. */
  indexOf(addr: number): number {
    return this.pgoff + Math.floor((addr - this.start) / PAGE);
  }
}

export interface Pin {
  readonly pfns: Int32Array;
}

export class Mm {
  /** Sorted by start, non-overlapping. */
  private vmas: Vma[] = [];
  private readonly tables = new Map<number, Int32Array>();
  private readonly tableCounts = new Map<number, number>();
  private lastVma: Vma | null = null;
  private readonly pins = new Map<number, Pin>();
  /** mmu_notifier subscribers (KVM): told before PTEs of [hva_start, hva_end) are cleared. */
  private readonly notifiers: Array<(hva_start: number, hva_end: number) => void> = [];
  private nextPinId = 1;
  /** Present PTEs (model metric). */
  nr_ptes = 0;

  constructor(private readonly phys: PhysMem) {}

  /** Bytes the model holds for page tables and VMAs. */
  get heap_bytes(): number {
    return this.tables.size * (TABLE * 4 + 64) + this.vmas.length * 128;
  }

  get vmaList(): readonly Vma[] {
    return this.vmas;
  }

  get pinList(): ReadonlyMap<number, Pin> {
    return this.pins;
  }

  // ---- VMA lookup ------------------------------------------------------------------------------

  findVma(addr: number): Vma | null {
    const last = this.lastVma;
    if (last !== null && addr >= last.start && addr < last.end) return last;
    const vmas = this.vmas;
    let lo = 0;
    let hi = vmas.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = vmas[mid] as Vma;
      if (addr < v.start) hi = mid - 1;
      else if (addr >= v.end) lo = mid + 1;
      else {
        this.lastVma = v;
        return v;
      }
    }
    return null;
  }

  private overlaps(start: number, end: number): boolean {
    return this.vmas.some((v) => v.start < end && v.end > start);
  }

  private insertVma(v: Vma): void {
    let i = 0;
    while (i < this.vmas.length && (this.vmas[i] as Vma).start < v.start) i++;
    this.vmas.splice(i, 0, v);
  }

  /** Top-down first fit below MMAP_BASE, 2 MiB-aligned for mappings of 2 MiB or more (or `min_align`). */
  private getUnmappedArea(len: number, min_align: number): number {
    const align = Math.max(min_align, len >= ALIGN_2M ? ALIGN_2M : PAGE);
    let top = MMAP_BASE;
    for (let i = this.vmas.length - 1; i >= -1; i--) {
      const v = i >= 0 ? (this.vmas[i] as Vma) : null;
      if (v !== null && v.start >= top) continue;
      const floor = v === null ? MMAP_MIN_ADDR : v.end;
      const cand = Math.floor((top - len) / align) * align;
      if (cand >= floor) return cand;
      if (v !== null) top = Math.min(top, v.start);
    }
    return -1;
  }

  // ---- mmap / munmap / mprotect ----------------------------------------------------------------

  /**
   * do_mmap after the caller's file checks. Validates like the kernel, in its order, and changes
   * nothing on failure. `ops` is the object mapped; the file-specific mmap hook ran already.
   */
  mmapRegion(addr: number, len: number, prot: number, flags: number, ops: VmOps, pgoff: number,
    shared: boolean, mayexec: boolean, align_bytes = PAGE): number {
    const len_aligned = Math.ceil(len / PAGE) * PAGE;
    if (len_aligned > TASK_SIZE) throw new SyscallError(ENOMEM, 'mmap');
    if (pgoff + len_aligned / PAGE > Number.MAX_SAFE_INTEGER) throw new SyscallError(EOVERFLOW, 'mmap');
    if (this.vmas.length >= MAX_MAP_COUNT) throw new SyscallError(ENOMEM, 'mmap', 'max_map_count');
    let start: number;
    if ((flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) !== 0) {
      if (addr % align_bytes !== 0) throw new SyscallError(EINVAL, 'mmap', 'MAP_FIXED address not aligned');
      if (addr < MMAP_MIN_ADDR || addr + len_aligned > TASK_SIZE) throw new SyscallError(ENOMEM, 'mmap');
      if ((flags & MAP_FIXED_NOREPLACE) !== 0 && this.overlaps(addr, addr + len_aligned)) {
        throw new SyscallError(EEXIST, 'mmap');
      }
      start = addr;
    } else {
      const hint = Math.floor(addr / PAGE) * PAGE;
      if (hint >= MMAP_MIN_ADDR && hint % align_bytes === 0 && hint + len_aligned <= TASK_SIZE &&
        !this.overlaps(hint, hint + len_aligned)) {
        start = hint;
      } else {
        start = this.getUnmappedArea(len_aligned, align_bytes);
        if (start < 0) throw new SyscallError(ENOMEM, 'mmap');
      }
    }
    // Point of no return: MAP_FIXED replaces what was there.
    if ((flags & MAP_FIXED) !== 0) this.unmapRange(start, start + len_aligned);
    const v = new Vma(start, start + len_aligned, prot, shared, mayexec, ops, pgoff);
    this.insertVma(v);
    ops.open(v);
    return start;
  }

  /** Validates the mapping type as do_mmap does; returns whether it is shared. */
  static mapType(flags: number): 'shared' | 'private' | null {
    const t = flags & MAP_TYPE;
    if (t === MAP_SHARED || t === MAP_SHARED_VALIDATE) return 'shared';
    if (t === MAP_PRIVATE) return 'private';
    return null;
  }

  munmap(addr: number, len: number): void {
    if (addr % PAGE !== 0 || len === 0 || !Number.isInteger(len) || len < 0) {
      throw new SyscallError(EINVAL, 'munmap');
    }
    const end = addr + Math.ceil(len / PAGE) * PAGE;
    if (end > TASK_SIZE || addr > TASK_SIZE) throw new SyscallError(EINVAL, 'munmap');
    this.unmapRange(addr, end);
  }

  /** Remove every mapping in [start, end), splitting VMAs at the edges. */
  private unmapRange(start: number, end: number): void {
    this.splitAt(start);
    this.splitAt(end);
    const doomed = this.vmas.filter((v) => v.start >= start && v.end <= end);
    for (const v of doomed) {
      this.zapVma(v, v.start, v.end);
      this.vmas.splice(this.vmas.indexOf(v), 1);
      if (this.lastVma === v) this.lastVma = null;
      v.ops.close(v);
    }
  }

  /** Split the VMA containing `addr` (if any, and not at its start) into two. */
  private splitAt(addr: number): void {
    const v = this.findVma(addr);
    if (v === null || v.start === addr) return;
    const tail = new Vma(addr, v.end, v.prot, v.shared, v.mayexec, v.ops, v.indexOf(addr));
    v.end = addr;
    this.insertVma(tail);
    tail.ops.open(tail);
    this.lastVma = null;
  }

  mprotect(addr: number, len: number, prot: number): void {
    if (addr % PAGE !== 0 || !Number.isInteger(len) || len < 0) throw new SyscallError(EINVAL, 'mprotect');
    // x86 arch_validate_prot: READ, WRITE, EXEC and PROT_SEM (0x8, a no-op) are valid.
    if ((prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | 0x8)) !== 0) throw new SyscallError(EINVAL, 'mprotect');
    if (len === 0) return;
    const end = addr + Math.ceil(len / PAGE) * PAGE;
    // Every page must be mapped (ENOMEM), and a noexec mapping refuses PROT_EXEC (EACCES): both
    // are checked before anything changes.
    let cursor = addr;
    for (const v of this.vmas) {
      if (v.end <= cursor || v.start >= end) continue;
      if (v.start > cursor) throw new SyscallError(ENOMEM, 'mprotect');
      if ((prot & PROT_EXEC) !== 0 && !v.mayexec) throw new SyscallError(EACCES, 'mprotect');
      cursor = v.end;
    }
    if (cursor < end) throw new SyscallError(ENOMEM, 'mprotect');
    this.splitAt(addr);
    this.splitAt(end);
    for (const v of this.vmas) {
      if (v.start >= addr && v.end <= end) {
        v.prot = prot;
        // Write permission removed: PTEs would be write-protected; the model re-checks the VMA
        // on every access, so nothing to do for the tables.
      }
    }
  }

  // ---- page tables -----------------------------------------------------------------------------

  /** The pfn mapped at virtual page `vpn`, or -1. */
  pteAt(vpn: number): number {
    const t = this.tables.get(Math.floor(vpn / TABLE));
    if (t === undefined) return -1;
    return (t[vpn % TABLE] as number) - 1;
  }

  private setPte(vpn: number, p: Pfn): void {
    const key = Math.floor(vpn / TABLE);
    let t = this.tables.get(key);
    if (t === undefined) {
      t = new Int32Array(TABLE);
      this.tables.set(key, t);
      this.tableCounts.set(key, 0);
    }
    assert(t[vpn % TABLE] === 0, () => `PTE at vpn ${vpn} already present`);
    t[vpn % TABLE] = p + 1;
    this.tableCounts.set(key, (this.tableCounts.get(key) as number) + 1);
    this.phys.incMap(p);
    this.nr_ptes++;
  }

  /** Clear the PTEs of [start, end) inside VMA v; returns how many were present. */
  private zapVma(_v: Vma, start: number, end: number): number {
    return this.zapVpns(start / PAGE, end / PAGE);
  }

  addMmuNotifier(fn: (hva_start: number, hva_end: number) => void): void {
    this.notifiers.push(fn);
  }

  removeMmuNotifier(fn: (hva_start: number, hva_end: number) => void): void {
    const i = this.notifiers.indexOf(fn);
    if (i >= 0) this.notifiers.splice(i, 1);
  }

  private zapVpns(vpn0: number, vpn1: number): number {
    for (const fn of this.notifiers) fn(vpn0 * PAGE, vpn1 * PAGE);
    let n = 0;
    for (const key of keysInRange(this.tables, Math.floor(vpn0 / TABLE), Math.ceil(vpn1 / TABLE))) {
      const t = this.tables.get(key) as Int32Array;
      const lo = Math.max(vpn0, key * TABLE) - key * TABLE;
      const hi = Math.min(vpn1, (key + 1) * TABLE) - key * TABLE;
      let count = this.tableCounts.get(key) as number;
      for (let i = lo; i < hi; i++) {
        const e = t[i] as number;
        if (e === 0) continue;
        t[i] = 0;
        count--;
        n++;
        this.phys.decMap((e - 1) as Pfn);
      }
      if (count === 0) {
        this.tables.delete(key);
        this.tableCounts.delete(key);
      } else {
        this.tableCounts.set(key, count);
      }
    }
    this.nr_ptes -= n;
    return n;
  }

  /**
   * unmap_mapping_range for one VMA: zap the PTEs mapping file indices [start, end).
   * Returns the number of PTEs removed.
   */
  zapVmaIndices(v: Vma, start: number, end: number): number {
    const lo = Math.max(start, v.pgoff);
    const hi = Math.min(end, v.pgoff + v.nr_pages);
    if (lo >= hi) return 0;
    return this.zapVpns(v.start / PAGE + (lo - v.pgoff), v.start / PAGE + (hi - v.pgoff));
  }

  // ---- faults and user copies ------------------------------------------------------------------

  /**
   * The pfn behind `addr` for an access, faulting it in: throws SignalError as the CPU + kernel
   * would (SIGSEGV: no VMA or no permission; SIGBUS: the fault handler refused).
   */
  translate(addr: number, write: boolean): Pfn {
    const v = this.findVma(addr);
    if (v === null) throw new SignalError('SIGSEGV', addr, 'no mapping');
    if ((v.prot & (write ? PROT_WRITE : PROT_READ)) === 0) throw new SignalError('SIGSEGV', addr, 'access denied');
    const vpn = Math.floor(addr / PAGE);
    const e = this.pteAt(vpn);
    if (e >= 0) return e as Pfn;
    const p = v.ops.fault(v.indexOf(addr), write);
    if (p === VM_FAULT_SIGBUS) throw new SignalError('SIGBUS', addr);
    this.setPte(vpn, p as Pfn);
    return p as Pfn;
  }

  load(addr: number, length: number): Uint8Array {
    checkCopy(addr, length, 'load');
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const a = addr + done;
      const off = a % PAGE;
      const n = Math.min(PAGE - off, length - done);
      const p = this.translate(a, false);
      this.phys.contents.read(p, off, out, done, n);
      done += n;
    }
    return out;
  }

  store(addr: number, data: Uint8Array): void {
    checkCopy(addr, data.length, 'store');
    let done = 0;
    while (done < data.length) {
      const a = addr + done;
      const off = a % PAGE;
      const n = Math.min(PAGE - off, data.length - done);
      const p = this.translate(a, true);
      this.phys.contents.write(p, off, data, done, n);
      done += n;
    }
  }

  /**
   * pin_user_pages(FOLL_LONGTERM | FOLL_WRITE): fault every page in for write and take a pin on
   * its folio. All or nothing: a page that cannot be pinned → EFAULT, no pin left behind.
   */
  pin(addr: number, length: number): number {
    if (!Number.isInteger(addr) || !Number.isInteger(length) || length <= 0 || addr < 0) {
      throw new SyscallError(EINVAL, 'pin');
    }
    if (length > MAX_COPY_BYTES) throw new SyscallError(ENOMEM, 'pin');
    const first = Math.floor(addr / PAGE);
    const last = Math.floor((addr + length - 1) / PAGE);
    const pfns = new Int32Array(last - first + 1);
    let n = 0;
    try {
      for (let vpn = first; vpn <= last; vpn++) {
        const v = this.findVma(vpn * PAGE);
        if (v === null || (v.prot & PROT_WRITE) === 0) throw new SyscallError(EFAULT, 'pin');
        let p: number;
        try {
          p = this.translate(vpn * PAGE, true);
        } catch (e) {
          if (e instanceof SignalError) throw new SyscallError(EFAULT, 'pin', e.signal);
          throw e;
        }
        this.phys.pinFolio(p as Pfn);
        pfns[n++] = p;
      }
    } catch (e) {
      for (let i = 0; i < n; i++) this.phys.unpinFolio(pfns[i] as Pfn);
      throw e;
    }
    const id = this.nextPinId++;
    this.pins.set(id, { pfns });
    return id;
  }

  unpin(id: number): void {
    const pin = this.pins.get(id);
    if (pin === undefined) throw new SyscallError(EINVAL, 'unpin', `no pin ${id}`);
    this.pins.delete(id);
    for (const p of pin.pfns) this.phys.unpinFolio(p as Pfn);
  }

  /** Every present PTE as [vpn, pfn] (checker), ascending. */
  *ptes(): IterableIterator<[number, Pfn]> {
    const keys = [...this.tables.keys()].sort((a, b) => a - b);
    for (const key of keys) {
      const t = this.tables.get(key) as Int32Array;
      for (let i = 0; i < TABLE; i++) if (t[i] !== 0) yield [key * TABLE + i, ((t[i] as number) - 1) as Pfn];
    }
  }
}

function checkCopy(addr: number, length: number, what: string): void {
  if (!Number.isInteger(addr) || !Number.isInteger(length) || length < 0) {
    throw new SyscallError(EINVAL, what, 'address and length must be integers');
  }
  if (length > MAX_COPY_BYTES) throw new SyscallError(EINVAL, what, 'copy larger than 1 GiB');
  if (addr < 0 || addr + length > 2 ** 64) throw new SignalError('SIGSEGV', Math.max(addr, 0));
}
