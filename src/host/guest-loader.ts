/**
 * Loads a GuestProgram into a real vCPU on the host: a memslot of its own holding identity page
 * tables, a GDT, the code and a stack, and the vCPU put straight into 64-bit long mode
 * (KVM_SET_SREGS / KVM_SET_REGS), with no firmware and no mode switches.
 *
 * Loader slot layout (default 1 MiB at GPA 3 GiB, slot 32000):
 *   0x00000  PML4, then PDPT and PD pages (up to TABLE_AREA_BYTES)
 *   0x40000  GDT: null, 64-bit code (selector 8), data (selector 16)
 *   0x41000  code
 *   end      stack top (the last page is the stack)
 * The page tables identity-map, with 2 MiB pages, the low 4 GiB plus every 1 GiB region that
 * the program touches, and the loader slot itself.
 */
import { KVM_GET_SREGS, KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2, KVM_SET_REGS, KVM_SET_SREGS,
  KVM_SET_USER_MEMORY_REGION, KVM_SYNC_X86_REGS } from '../uapi/kvm.js';
import { MAP_ANONYMOUS, MAP_SHARED, O_RDWR, PAGE_SIZE, PROT_READ, PROT_WRITE } from '../uapi/linux.js';
import type { Syscalls } from '../uapi/syscalls.js';
import { compileGuestProgram } from './guest-codegen.js';
import type { GuestProgram } from './guest-program.js';
import { KVM_REGS_INDEX, KVM_REGS_SIZE_BYTES } from './ucall-abi.js';

export interface GuestLoaderOptions {
  /** Memslot id of the loader slot. Default 32000. */
  slot?: number;
  /** GPA of the loader slot. Default 0xC000_0000 (3 GiB). */
  gpa?: number;
  /** Size of the loader slot. Default 1 MiB. */
  size_bytes?: number;
}

export interface LoadedGuest {
  readonly slot: number;
  readonly gpa: number;
  readonly size_bytes: number;
  /** Host address of the loader slot's memory. */
  readonly hva: number;
  /** Replaces the code and restarts the vCPU at its first instruction (same slot, same VM). */
  reload(program: GuestProgram): void;
  /** Deletes the loader slot and unmaps its memory. */
  unload(): void;
}

const DEFAULT_SLOT = 32000;
const DEFAULT_GPA = 0xc000_0000;
const DEFAULT_SIZE_BYTES = 1 << 20;
const TABLE_AREA_BYTES = 0x40000;
const GDT_OFFSET = 0x40000;
const CODE_OFFSET = 0x41000;
const STACK_BYTES = PAGE_SIZE;
const GIB = 2 ** 30;
const MIB_2 = 2 ** 21;
const LOW_4G_REGIONS = 4;
const ENTRIES_PER_TABLE = 512;

const PTE_PRESENT_RW = 0x3;
const PDE_2M_PAGE = 0x83; // present, writable, page size
const GDT_ENTRIES = [0n, 0x00af9b000000ffffn, 0x00cf93000000ffffn]; // null, code64 (L=1), data
const CODE_SELECTOR = 8;
const DATA_SELECTOR = 16;

const CR0_PE = 1 << 0;
const CR0_MP = 1 << 1;
const CR0_ET = 1 << 4;
const CR0_NE = 1 << 5;
const CR0_WP = 1 << 16;
const CR0_AM = 1 << 18;
const CR0_PG = 2 ** 31;
const CR4_PAE = 1 << 5;
const EFER_LME = 1 << 8;
const EFER_LMA = 1 << 10;
const RFLAGS_RESERVED_1 = 1 << 1;

/** struct kvm_sregs (312 bytes): offsets used here. */
const SREGS = {
  size_bytes: 312,
  segment_bytes: 24,
  cs: 0, ds: 24, es: 48, fs: 72, gs: 96, ss: 120,
  gdt: 192, cr0: 224, cr3: 240, cr4: 248, efer: 264,
} as const;
/** struct kvm_cpuid2: u32 nent, u32 padding, then 40-byte entries. */
const CPUID_MAX_ENTRIES = 256;
const CPUID_ENTRY_BYTES = 40;

function setU64(view: DataView, offset: number, value: number | bigint): void {
  view.setBigUint64(offset, BigInt(value), true);
}

/** The 1 GiB regions (GPA >> 30) the page tables must identity-map. */
function regionsToMap(program: GuestProgram, loaderGpa: number, loaderSize: number): number[] {
  const regions = new Set<number>();
  for (let g = 0; g < LOW_4G_REGIONS; g++) regions.add(g);
  const addRange = (start: number, len: number): void => {
    for (let g = Math.floor(start / GIB); g <= Math.floor((start + Math.max(len, 1) - 1) / GIB); g++) regions.add(g);
  };
  addRange(loaderGpa, loaderSize);
  for (const op of program) {
    if (op.op === 'fill' || op.op === 'check') addRange(op.gpa, op.len);
    else if (op.op === 'read') addRange(op.gpa, 1);
  }
  return [...regions].sort((a, b) => a - b);
}

/** PML4 at offset 0, then one PDPT per 512 GiB and one PD per 1 GiB region, in order. */
function writePageTables(image: DataView, loaderGpa: number, regions: number[]): void {
  const pdpts = new Map<number, number>(); // PML4 index → PDPT offset in the slot
  let next = PAGE_SIZE;
  const allocate = (): number => {
    const at = next;
    next += PAGE_SIZE;
    if (next > TABLE_AREA_BYTES) throw new RangeError('guest loader: the program touches too many 1 GiB regions');
    return at;
  };
  for (const region of regions) {
    const pml4Index = Math.floor(region / ENTRIES_PER_TABLE);
    // 4-level paging identity-maps below 2^47 only: a PML4 index past 511 would overwrite the tables.
    if (pml4Index >= ENTRIES_PER_TABLE) {
      throw new RangeError(`guest loader: GPA 0x${(region * GIB).toString(16)} is beyond 4-level paging (2^47)`);
    }
    let pdpt = pdpts.get(pml4Index);
    if (pdpt === undefined) {
      pdpt = allocate();
      pdpts.set(pml4Index, pdpt);
      setU64(image, 8 * pml4Index, loaderGpa + pdpt + PTE_PRESENT_RW);
    }
    const pd = allocate();
    setU64(image, pdpt + 8 * (region % ENTRIES_PER_TABLE), loaderGpa + pd + PTE_PRESENT_RW);
    for (let j = 0; j < ENTRIES_PER_TABLE; j++) {
      setU64(image, pd + 8 * j, region * GIB + j * MIB_2 + PDE_2M_PAGE);
    }
  }
}

function buildImage(program: GuestProgram, loaderGpa: number, size_bytes: number): Uint8Array {
  const code = compileGuestProgram(program);
  if (CODE_OFFSET + code.byteLength > size_bytes - STACK_BYTES) {
    throw new RangeError(`guest loader: ${code.byteLength} bytes of code do not fit a ${size_bytes}-byte slot`);
  }
  const image = new Uint8Array(CODE_OFFSET + code.byteLength);
  const view = new DataView(image.buffer);
  writePageTables(view, loaderGpa, regionsToMap(program, loaderGpa, size_bytes));
  GDT_ENTRIES.forEach((entry, i) => setU64(view, GDT_OFFSET + 8 * i, entry));
  image.set(code, CODE_OFFSET);
  return image;
}

/** A flat 64-bit segment in struct kvm_segment. */
function writeSegment(view: DataView, offset: number, selector: number, code: boolean): void {
  setU64(view, offset, 0); // base
  view.setUint32(offset + 8, 0xffffffff, true); // limit
  view.setUint16(offset + 12, selector, true);
  view.setUint8(offset + 14, code ? 11 : 3); // type: execute/read accessed, or read/write accessed
  view.setUint8(offset + 15, 1); // present
  view.setUint8(offset + 16, 0); // dpl
  view.setUint8(offset + 17, code ? 0 : 1); // db (must be 0 for a 64-bit code segment)
  view.setUint8(offset + 18, 1); // s: code/data
  view.setUint8(offset + 19, code ? 1 : 0); // l: 64-bit
  view.setUint8(offset + 20, 1); // g
  view.setUint8(offset + 22, 0); // unusable
}

/** Long mode with paging from the loader's PML4; the other sregs keep the vCPU's values. */
function enterLongMode(sys: Syscalls, vcpuFd: number, loaderGpa: number): void {
  const sregs = new Uint8Array(SREGS.size_bytes);
  sys.ioctl(vcpuFd, KVM_GET_SREGS, sregs);
  const view = new DataView(sregs.buffer);
  writeSegment(view, SREGS.cs, CODE_SELECTOR, true);
  for (const seg of [SREGS.ds, SREGS.es, SREGS.fs, SREGS.gs, SREGS.ss]) writeSegment(view, seg, DATA_SELECTOR, false);
  setU64(view, SREGS.gdt, loaderGpa + GDT_OFFSET);
  view.setUint16(SREGS.gdt + 8, 8 * GDT_ENTRIES.length - 1, true);
  setU64(view, SREGS.cr0, (CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG) >>> 0);
  setU64(view, SREGS.cr3, loaderGpa);
  setU64(view, SREGS.cr4, CR4_PAE);
  setU64(view, SREGS.efer, EFER_LME | EFER_LMA);
  sys.ioctl(vcpuFd, KVM_SET_SREGS, sregs);
}

function resetRegs(sys: Syscalls, vcpuFd: number, loaderGpa: number, size_bytes: number): void {
  const regs = new Uint8Array(KVM_REGS_SIZE_BYTES);
  const view = new DataView(regs.buffer);
  setU64(view, 8 * KVM_REGS_INDEX.rip, loaderGpa + CODE_OFFSET);
  setU64(view, 8 * KVM_REGS_INDEX.rsp, loaderGpa + size_bytes);
  setU64(view, 8 * KVM_REGS_INDEX.rflags, RFLAGS_RESERVED_1);
  sys.ioctl(vcpuFd, KVM_SET_REGS, regs);
}

/** The CPUID the host supports, so that the long-mode state is valid for the vCPU's model. */
function setSupportedCpuid(sys: Syscalls, vcpuFd: number): void {
  const cpuid = new Uint8Array(8 + CPUID_MAX_ENTRIES * CPUID_ENTRY_BYTES);
  new DataView(cpuid.buffer).setUint32(0, CPUID_MAX_ENTRIES, true);
  const kvm = sys.open('/dev/kvm', O_RDWR);
  try {
    sys.ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid);
  } finally {
    sys.close(kvm);
  }
  sys.ioctl(vcpuFd, KVM_SET_CPUID2, cpuid);
}

/** Asks the kernel to store the GPRs into kvm_run on every exit, where `ucall` reads its args. */
function syncRegsOnExit(sys: Syscalls, vcpuFd: number): void {
  const run = sys.kvmRun(vcpuFd) as { kvm_valid_regs?: number };
  if (run.kvm_valid_regs !== undefined) run.kvm_valid_regs = run.kvm_valid_regs | KVM_SYNC_X86_REGS;
}

/**
 * Loads `program` into the VM (a new memslot) and points the vCPU at it. Host backend only
 * (it uses KVM_SET_SREGS/REGS); throws the kernel's SyscallError where a step fails.
 */
export function loadGuestProgram(sys: Syscalls, vmFd: number, vcpuFd: number, program: GuestProgram,
  options: GuestLoaderOptions = {}): LoadedGuest {
  const slot = options.slot ?? DEFAULT_SLOT;
  const gpa = options.gpa ?? DEFAULT_GPA;
  const size_bytes = options.size_bytes ?? DEFAULT_SIZE_BYTES;
  const image = buildImage(program, gpa, size_bytes); // before any kernel state changes
  const hva = sys.mmap(0, size_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  try {
    sys.ioctl(vmFd, KVM_SET_USER_MEMORY_REGION,
      { slot, flags: 0, guest_phys_addr: gpa, memory_size: size_bytes, userspace_addr: hva });
  } catch (err) {
    sys.munmap(hva, size_bytes);
    throw err;
  }
  const start = (code: Uint8Array): void => {
    sys.store(hva, code);
    enterLongMode(sys, vcpuFd, gpa);
    resetRegs(sys, vcpuFd, gpa, size_bytes);
    syncRegsOnExit(sys, vcpuFd);
  };
  setSupportedCpuid(sys, vcpuFd);
  start(image);
  return {
    slot, gpa, size_bytes, hva,
    reload(next: GuestProgram): void {
      const nextImage = buildImage(next, gpa, size_bytes);
      sys.store(hva, new Uint8Array(size_bytes - STACK_BYTES)); // no stale tables or code
      start(nextImage);
    },
    unload(): void {
      sys.ioctl(vmFd, KVM_SET_USER_MEMORY_REGION, { slot, flags: 0, guest_phys_addr: gpa, memory_size: 0, userspace_addr: hva });
      sys.munmap(hva, size_bytes);
    },
  };
}
