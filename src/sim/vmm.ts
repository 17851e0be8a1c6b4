/**
 * The VMM: sets the VM up the way QEMU does for a confidential guest with guest_memfd (the VM
 * type the arch backend chose from KVM_CAP_VM_TYPES), then runs the vCPUs and answers their exits
 * (ecosystem.md E.1):
 * - KVM_EXIT_HYPERCALL (explicit requests: KVM_HC_MAP_GPA_RANGE on x86, pKVM's MEM_SHARE /
 *   MEM_UNSHARE of one granule on arm64; the answer goes back in run.hypercall.ret) and KVM_EXIT_MEMORY_FAULT
 *   (implicit ones: on SNP/TDX the guest accessed a page as the other kind; KVM_RUN fails with
 *   EFAULT, the VMM converts the page and re-enters, and the access is retried) →
 *   kvm_convert_memory():
 *   device mappings removed before →private and added after →shared, the conversion ioctl, a
 *   retry after EAGAIN once the known long-term references (IOMMU pins, host backends' pins) are
 *   dropped, and for v6.18 the discard of the side that is no longer used;
 * - ucalls (doorbells): the accept sweep (KVM_PRE_FAULT_MEMORY over the accepted range, the
 *   stage-2 fault path at mapping granularity), virtio kicks (host user space touches the
 *   buffer through its mapping), device DMA, balloon punches, host pins.
 * vCPUs run round-robin, one exit at a time: the order of everything is fixed by the seed.
 */
import type { ModelKernel } from '../kernel/model-kernel.js';
import type { Policy } from '../kvm/policy.js';
import type { GuestCode } from '../kvm/guest.js';
import { RangeMap } from '../lib/rangemap.js';
import { EAGAIN, EFAULT, EINTR, EINVAL, EPERM } from '../uapi/errno.js';
import { SignalError, SyscallError } from '../uapi/errors.js';
import {
  GUEST_MEMFD_FLAG_HUGETLB, GUEST_MEMFD_FLAG_INIT_PRIVATE, GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_SUPPORT_SHARED,
  GUESTMEM_HUGETLB_FLAG_1GB, GUESTMEM_HUGETLB_FLAG_2MB, KVM_CAP_EXIT_HYPERCALL, KVM_CREATE_GUEST_MEMFD,
  KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_ENABLE_CAP, KVM_EXIT_HLT, KVM_EXIT_HYPERCALL, KVM_EXIT_IO, KVM_EXIT_MEMORY_FAULT,
  KVM_EXIT_MMIO, KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_MEMORY_EXIT_FLAG_PRIVATE, KVM_PRE_FAULT_MEMORY, KVM_RUN, KVM_SET_MEMORY_ATTRIBUTES, KVM_SET_USER_MEMORY_REGION2,
} from '../uapi/kvm.js';
import {
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MADV_DONTNEED, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, O_RDWR, PROT_READ,
  PROT_WRITE,
} from '../uapi/linux.js';
import type { KvmPreFaultMemory } from '../uapi/syscalls.js';
import { PkvmBackend } from './arch/pkvm.js';
import type { ArchBackend } from './arch/types.js';
import type { VmTypeChoice } from './arch/index.js';
import { bytesTag, type ContentTags, tagBytes } from './contents.js';
import { convertIoctl, type ConvertTarget } from './convert.js';
import type { SimCounters } from './counters.js';
import { IommuDevice } from './iommu.js';
import {
  IO_HOST_READS, UC_ACCEPT, UC_BOOT_DONE, UC_DMA, UC_EVENT, UC_HOST_IO, UC_HOST_PIN, UC_HOST_UNPIN, UC_PUNCH,
} from './protocol.js';
import { type Level, levelPages } from '../lib/types.js';
import { SPTE_PRIVATE } from '../kvm/stage2.js';
import type { Scenario } from './scenario.js';
import { BACKING_BYTES } from './schema.js';

const PAGE = 4096;
/**
 * Retries of one conversion after an EAGAIN that no known reference explains (a transient
 * reference, e.g. a KVM fault in flight) before the VMM gives up and fails the request.
 */
export const MAX_EAGAIN_RETRIES = 3;

/** Host user space's long-term pins of guest buffers (vhost-user / DPDK backends). */
interface HostPin { g0: number; g1: number; id: number }

export interface VmmHooks {
  /** The guest finished booting (UC_BOOT_DONE): no event has run yet. */
  onBooted(): void;
  /** A workload event finished (UC_EVENT). */
  onEvent(): void;
}

export class Vmm implements ConvertTarget {
  readonly uapi: Scenario['uapi'];
  readonly guest_pages: number;
  kvmFd = -1;
  vmFd = -1;
  gmemFd = -1;
  readonly vcpuFds: number[] = [];
  private hvaBase = 0;
  /** QEMU's RamBlockAttributes: the VMM's own record of which gfns are shared. */
  readonly shared: RangeMap<boolean>;
  /** The assigned device on the model's IOMMU domain (src/sim/iommu.ts), created in setup(). */
  iommu: IommuDevice | null = null;
  private readonly hostPins: HostPin[] = [];
  private readonly halted: boolean[] = [];
  private booted = false;
  /** Problems the VMM noticed about the model (e.g. HugeTLB backing not honoured). */
  readonly notes: string[] = [];
  /**
   * On the model's TDX VM: the gfns the guest accepted and has not given back since (→shared,
   * punch). TDX keeps every one of them mapped in the S-EPT; `acceptedUnmapped` measures what
   * the model left unmapped (its conversions zap whole huge-folio ranges).
   */
  private readonly accepted: RangeMap<boolean> | null;

  constructor(
    readonly k: ModelKernel,
    readonly sc: Scenario,
    readonly arch: ArchBackend,
    readonly counters: SimCounters,
    readonly tags: ContentTags,
    private readonly hooks: VmmHooks,
    /** The run's resolved policy (the VMM adapts to default_state as QEMU would). */
    private readonly policy: Policy,
    /** The KVM VM type to create (the arch's own, or the SW_PROTECTED vehicle). */
    readonly vmType: VmTypeChoice,
  ) {
    this.uapi = sc.uapi;
    this.guest_pages = sc.guest / PAGE;
    this.shared = new RangeMap<boolean>(this.guest_pages, false);
    this.accepted = arch.name === 'tdx' && arch.native ? new RangeMap<boolean>(this.guest_pages, false) : null;
  }

  readonly gmemOffsetOf = (gpa: number): number => gpa;

  hvaOf(gpa: number): number {
    return this.hvaBase + gpa;
  }

  // ---- setup ------------------------------------------------------------------------------------

  /** /dev/kvm, the VM, guest_memfd, the host mapping, the memslot, vCPUs; all private at start. */
  setup(guestCode: (vcpu: number) => GuestCode): void {
    const k = this.k;
    const sc = this.sc;
    this.kvmFd = k.open('/dev/kvm', O_RDWR);
    this.vmFd = k.ioctl(this.kvmFd, KVM_CREATE_VM, this.vmType.type);
    // The hypercalls that exit to the VMM: KVM_HC_MAP_GPA_RANGE on x86, MEM_SHARE / MEM_UNSHARE on pKVM.
    k.ioctl(this.vmFd, KVM_ENABLE_CAP, { cap: KVM_CAP_EXIT_HYPERCALL, args: [this.arch.exitHypercallMask] });
    const huge = sc.backing !== '4K';
    const page_order = sc.backing === '2M' ? 9 : sc.backing === '1G' ? 18 : 0;
    switch (sc.uapi) {
      case 'in-place':
        this.gmemFd = k.ioctl(this.vmFd, KVM_CREATE_GUEST_MEMFD, {
          size: sc.guest, flags: GUEST_MEMFD_FLAG_MMAP | (huge ? GUEST_MEMFD_FLAG_HUGETLB : 0), ...(huge ? { page_order } : {}),
        });
        break;
      case 'rfc-1g': {
        let flags = BigInt(GUEST_MEMFD_FLAG_SUPPORT_SHARED | GUEST_MEMFD_FLAG_INIT_PRIVATE);
        if (huge) flags |= BigInt(GUEST_MEMFD_FLAG_HUGETLB) | (sc.backing === '2M' ? GUESTMEM_HUGETLB_FLAG_2MB : GUESTMEM_HUGETLB_FLAG_1GB);
        this.gmemFd = k.ioctl(this.vmFd, KVM_CREATE_GUEST_MEMFD, { size: sc.guest, flags });
        break;
      }
      case 'v6.18':
        this.gmemFd = k.ioctl(this.vmFd, KVM_CREATE_GUEST_MEMFD, { size: sc.guest, flags: 0 });
        break;
    }
    if (huge) {
      const blk = k.fstat(this.gmemFd).st_blksize;
      if (blk !== BACKING_BYTES[sc.backing]) {
        this.notes.push(`the model did not honour HugeTLB ${sc.backing} backing (st_blksize ${blk}): results are for 4K folios`);
      }
    }
    // The shared half: the guest_memfd itself (in place) or separate anonymous memory (6.18).
    this.hvaBase = sc.uapi === 'v6.18'
      ? k.mmap(0, sc.guest, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
      : k.mmap(0, sc.guest, PROT_READ | PROT_WRITE, MAP_SHARED, this.gmemFd, 0);
    k.ioctl(this.vmFd, KVM_SET_USER_MEMORY_REGION2, {
      slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 0, memory_size: sc.guest,
      userspace_addr: this.hvaBase, guest_memfd_offset: 0, guest_memfd: this.gmemFd,
    });
    if (sc.uapi === 'v6.18') {
      // QEMU marks all guest_memfd RAM private at memslot creation for a confidential guest.
      k.ioctl(this.vmFd, KVM_SET_MEMORY_ATTRIBUTES, { address: 0, size: sc.guest, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
    } else if (sc.uapi === 'in-place' && this.policy.default_state === 'shared') {
      // No INIT_PRIVATE flag in this uAPI: a file that starts shared is made private up front.
      const r = convertIoctl(this, 0, sc.guest, true);
      if (!r.ok) throw new Error(`making guest memory private at setup failed: ${r.code}`);
    }
    if (sc.iommu !== 'none') {
      // The device attaches with all guest memory private: it maps what becomes shared (convert()).
      const level = this.arch.maxIommuLevel > backingLevel(sc) ? backingLevel(sc) : this.arch.maxIommuLevel;
      this.iommu = new IommuDevice(k, sc.iommu, this.gmemFd, (gpa) => this.gmemOffsetOf(gpa), this.guest_pages, level, this.counters,
        typeof sc.params.inflight === 'number' ? sc.params.inflight : 32,
        (g0, g1) => [...this.shared.runs(g0, g1)].filter((r) => r.value).map((r) => [r.start, r.end]));
    }
    for (let i = 0; i < sc.vcpus; i++) {
      const fd = k.ioctl(this.vmFd, KVM_CREATE_VCPU, i);
      this.vcpuFds.push(fd);
      this.halted.push(false);
      k.setGuestCode(fd, guestCode(i));
    }
  }

  // ---- conversion (QEMU kvm_convert_memory) -----------------------------------------------------

  /** Convert [gpa, gpa+size); returns 0 or a negative errno (what the hypercall returns to the guest). */
  convert(gpa: number, size: number, toPrivate: boolean): number {
    const c = this.counters;
    c.conversions_requested++;
    if (gpa % PAGE !== 0 || size % PAGE !== 0 || size <= 0 || gpa + size > this.sc.guest) {
      c.conversions_failed++;
      return -EINVAL;
    }
    const g0 = gpa / PAGE;
    const g1 = g0 + size / PAGE;
    if (this.arch instanceof PkvmBackend) {
      const r = this.pkvmPrecheck(g0, g1, toPrivate);
      if (r !== 0) {
        c.conversions_failed++;
        return r;
      }
    }
    const changed = this.changedPages(g0, g1, toPrivate);
    // Devices first on →private: a shared IOPTE must be gone before the page turns private (the
    // model's notifier designs do it inside the conversion; VFIO needs the VMM: src/sim/iommu.ts).
    if (toPrivate && this.iommu !== null && changed > 0) this.iommu.beforePrivate(g0, g1);
    let transient = 0;
    let saw_eagain = false;
    for (;;) {
      const out = convertIoctl(this, gpa, size, toPrivate);
      if (out.ok) break;
      if (out.errno === EAGAIN) {
        c.eagain_returns++;
        saw_eagain = true;
        // Each round that drops a known reference makes progress; only unknown ones are capped.
        if (this.dropKnownRefs(g0, g1, out.error_offset) || transient++ < MAX_EAGAIN_RETRIES) continue;
      }
      if (saw_eagain) c.conversions_eagain++;
      c.conversions_failed++;
      // Put back what the devices lost: the range is still (partly) shared.
      if (toPrivate && this.iommu !== null) this.iommu.afterConvert(g0, g1, true, false);
      return -out.errno;
    }
    if (saw_eagain) c.conversions_eagain++;
    c.conversions_done++;
    if (changed === 0) c.conversions_noop++;
    c.pages_converted += changed;
    if (this.uapi === 'v6.18') this.discardOtherSide(gpa, size, toPrivate);
    this.shared.set(g0, g1, !toPrivate);
    if (!toPrivate) this.accepted?.set(g0, g1, false);
    this.arch.converted(gpa, size, toPrivate);
    // Devices last on →shared: the IOPTE appears only once the page is shared. After →private: the
    // check that no IOPTE is left over the range, and DMA in flight through a window.
    if (this.iommu !== null && (toPrivate || changed > 0)) this.iommu.afterConvert(g0, g1, toPrivate, true);
    return 0;
  }

  private changedPages(g0: number, g1: number, toPrivate: boolean): number {
    let n = 0;
    for (const r of this.shared.runs(g0, g1)) if (r.value === toPrivate) n += r.end - r.start;
    return n;
  }

  /**
   * pKVM: the hypervisor checks page states first (the model does not): OWNED / SHARED_OWNED is the
   * shareability as the VMM recorded it; an unbacked page is donated (faulted in) before a share.
   */
  private pkvmPrecheck(g0: number, g1: number, toPrivate: boolean): number {
    const arch = this.arch as PkvmBackend;
    for (let g = g0; g < g1; g++) {
      const v = arch.check(g, toPrivate, this.shared.get(g));
      if (v === 'refuse') {
        arch.refusedOne();
        return -EPERM;
      }
      if (v === 'donate') {
        // The hypervisor fakes a host stage-2 fault at the IPA; the host faults it in and donates it.
        if (!this.prefault(g * PAGE, PAGE)) return -EFAULT;
        arch.donated(g, g + 1);
      }
    }
    return 0;
  }

  /**
   * EAGAIN: some page had references beyond the page cache's. Drop the long-term ones the VMM
   * knows of, at error_offset when it points at one, else over the whole range, then retry.
   */
  private dropKnownRefs(g0: number, g1: number, error_offset: number | undefined): boolean {
    const at = error_offset !== undefined ? Math.floor(error_offset / PAGE) : -1;
    const inRange = at >= g0 && at < g1;
    const lo = inRange ? at : g0;
    const hi = inRange ? at + 1 : g1;
    let dropped = false;
    for (let i = this.hostPins.length - 1; i >= 0; i--) {
      const p = this.hostPins[i] as HostPin;
      if (p.g0 < hi && p.g1 > lo) {
        this.k.unpin(p.id);
        this.hostPins.splice(i, 1);
        dropped = true;
      }
    }
    if (this.iommu !== null && this.iommu.dropPins(lo, hi)) dropped = true;
    if (!dropped && inRange) {
      // error_offset named a page nobody we know holds: drop whatever we hold in the range.
      return this.dropKnownRefs(g0, g1, undefined);
    }
    if (dropped) this.counters.ref_drops++;
    return dropped;
  }

  /** v6.18: shared and private are different memory; QEMU discards the side no longer in use. */
  private discardOtherSide(gpa: number, size: number, toPrivate: boolean): void {
    if (toPrivate) this.k.madvise(this.hvaOf(gpa), size, MADV_DONTNEED);
    else this.k.fallocate(this.gmemFd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, this.gmemOffsetOf(gpa), size);
  }

  /**
   * TDX on the model's VM type: pages the guest accepted (and kept) against those of them the
   * model's stage-2 maps private. TDX maps all of them; the difference is the model's doing.
   * Null elsewhere. Cost: the stage-2 leaves, once.
   */
  acceptedUnmapped(): { accepted: number; unmapped: number } | null {
    if (this.accepted === null) return null;
    let accepted = 0;
    for (const r of this.accepted.runs(0, this.guest_pages)) if (r.value) accepted += r.end - r.start;
    let mapped = 0;
    for (const vm of this.k.state.vms) {
      for (const leaf of vm.stage2.leaves()) {
        if ((leaf.flags & SPTE_PRIVATE) === 0) continue;
        const end = Math.min(this.guest_pages, leaf.gfn + levelPages(leaf.level));
        for (const r of this.accepted.runs(leaf.gfn, end)) if (r.value) mapped += r.end - r.start;
      }
    }
    return { accepted, unmapped: accepted - mapped };
  }

  // ---- accept sweep, punch, host user space, device ----------------------------------------------

  /** KVM_PRE_FAULT_MEMORY over [gpa, gpa+size) until done; false on an error. */
  prefault(gpa: number, size: number): boolean {
    const vcpu = this.vcpuFds[0] as number;
    const r: KvmPreFaultMemory = { gpa, size, flags: 0 };
    this.counters.prefaults++;
    while (Number(r.size) > 0) {
      try {
        this.k.ioctl(vcpu, KVM_PRE_FAULT_MEMORY, r);
      } catch (e) {
        if (e instanceof SyscallError && (e.errno === EINTR || e.errno === EAGAIN)) continue;
        if (e instanceof SyscallError) {
          this.counters.prefault_errors++;
          return false;
        }
        throw e;
      }
    }
    return true;
  }

  punch(gpa: number, size: number): void {
    this.counters.punches++;
    this.accepted?.set(gpa / PAGE, (gpa + size) / PAGE, false);
    this.k.fallocate(this.gmemFd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, this.gmemOffsetOf(gpa), size);
  }

  /** A virtio kick: the device model reads (checking the guest's tag) or writes the buffer. */
  hostIo(gpa: number, size: number, dir: number): void {
    this.counters.host_io++;
    const hva = this.hvaOf(gpa);
    try {
      if (dir === IO_HOST_READS) {
        const data = this.k.load(hva, size);
        const want = this.tags.expected(gpa / PAGE);
        if (want !== undefined && bytesTag(data) !== want) this.counters.content_lost++;
      } else {
        // The device fills the buffer: every page is faulted in (a read fault suffices, and keeps
        // the model from holding a content buffer per page), the tag written at its start.
        for (let off = PAGE; off < size; off += PAGE) this.k.load(hva + off, 1);
        this.k.store(hva, tagBytes(this.tags.issue(gpa / PAGE)));
      }
    } catch (e) {
      if (e instanceof SignalError) {
        this.counters.host_sigbus++;
        return;
      }
      throw e;
    }
  }

  hostPin(gpa: number, size: number): void {
    for (let off = 0; off < size; off += 2 ** 30) {
      const len = Math.min(2 ** 30, size - off);
      try {
        const id = this.k.pin(this.hvaOf(gpa + off), len);
        this.hostPins.push({ g0: (gpa + off) / PAGE, g1: (gpa + off + len) / PAGE, id });
        this.counters.host_pins++;
      } catch (e) {
        if (e instanceof SyscallError) {
          this.counters.host_sigbus++;
          continue;
        }
        throw e;
      }
    }
  }

  hostUnpin(gpa: number, size: number): void {
    const g0 = gpa / PAGE;
    const g1 = g0 + size / PAGE;
    for (let i = this.hostPins.length - 1; i >= 0; i--) {
      const p = this.hostPins[i] as HostPin;
      if (p.g0 < g1 && p.g1 > g0) {
        this.k.unpin(p.id);
        this.hostPins.splice(i, 1);
      }
    }
  }

  // ---- the run loop ---------------------------------------------------------------------------------

  /** Run vCPU 0 until the guest says it booted, then all vCPUs round-robin until every one halts. */
  run(): void {
    while (!this.booted) {
      if (this.halted[0] === true) throw new Error('guest halted during boot');
      this.runOnce(0);
    }
    let live = this.halted.filter((h) => !h).length;
    while (live > 0) {
      for (let i = 0; i < this.vcpuFds.length; i++) {
        if (this.halted[i] === true) continue;
        this.runOnce(i);
        if (this.halted[i] === true) live--;
      }
    }
  }

  private runOnce(i: number): void {
    const k = this.k;
    const fd = this.vcpuFds[i] as number;
    const run = k.kvmRun(fd);
    this.counters.kvm_runs++;
    try {
      k.ioctl(fd, KVM_RUN, 0);
    } catch (e) {
      if (e instanceof SyscallError && e.errno === EFAULT && run.exit_reason === KVM_EXIT_MEMORY_FAULT) {
        // Implicit conversion (QEMU kvm_cpu_exec: -EFAULT with KVM_EXIT_MEMORY_FAULT → kvm_convert_memory):
        // make the range what the guest accessed it as, then re-enter; KVM retries the access.
        const mf = run.memory_fault;
        const toPrivate = (mf.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE) !== 0;
        if (this.shared.get(mf.gpa / PAGE) !== toPrivate) {
          throw new Error(`KVM_EXIT_MEMORY_FAULT at 0x${mf.gpa.toString(16)} (${e.code}) that no conversion can fix`);
        }
        this.counters.implicit_conversions++;
        if (toPrivate) this.counters.implicit_to_private++;
        const r = this.convert(mf.gpa, mf.size, toPrivate);
        if (r !== 0) throw new Error(`implicit conversion at 0x${mf.gpa.toString(16)} failed: errno ${-r}`);
        return;
      }
      if (e instanceof SyscallError && e.errno === EINTR) return;
      throw e;
    }
    switch (run.exit_reason) {
      case KVM_EXIT_HLT:
        this.halted[i] = true;
        return;
      case KVM_EXIT_HYPERCALL: {
        this.counters.hypercall_exits++;
        const hc = run.hypercall;
        // KVM_HC_MAP_GPA_RANGE (x86) or pKVM's MEM_SHARE / MEM_UNSHARE of one granule at args[0].
        const req = this.arch.hypercallRequest(hc.nr, hc.args);
        if (req === null) {
          hc.ret = -1000; // -KVM_ENOSYS
          return;
        }
        hc.ret = this.convert(req.gpa, req.size, req.toPrivate);
        return;
      }
      case KVM_EXIT_IO:
        this.counters.ucall_exits++;
        this.ucall(run.ucall ?? []);
        return;
      case KVM_EXIT_MMIO:
        throw new Error(`guest touched 0x${run.mmio.phys_addr.toString(16)}, outside guest memory (KVM_EXIT_MMIO)`);
      default:
        throw new Error(`unexpected exit reason ${run.exit_reason}`);
    }
  }

  private ucall(args: readonly number[]): void {
    const [code, a = 0, b = 0, c = 0] = args;
    switch (code) {
      case UC_BOOT_DONE:
        this.booted = true;
        this.hooks.onBooted();
        return;
      case UC_EVENT:
        this.counters.events++;
        this.hooks.onEvent();
        return;
      case UC_ACCEPT:
        if (this.prefault(a, b)) {
          this.arch.accepted(a, b, c as Level);
          this.accepted?.set(a / PAGE, (a + b) / PAGE, true);
        }
        return;
      case UC_HOST_IO:
        this.hostIo(a, b, c);
        return;
      case UC_DMA:
        if (this.iommu !== null) this.iommu.dma(a, b);
        return;
      case UC_HOST_PIN:
        this.hostPin(a, b);
        return;
      case UC_HOST_UNPIN:
        this.hostUnpin(a, b);
        return;
      case UC_PUNCH:
        this.punch(a, b);
        return;
      default:
        throw new Error(`unknown ucall ${String(code)}`);
    }
  }
}

function backingLevel(sc: Scenario): Level {
  return sc.backing === '1G' ? 3 : sc.backing === '2M' ? 2 : 1;
}
