/**
 * The model kernel: one process on one host, behind the Syscalls interface. This file is the
 * system-call layer only: it owns the fd table, routes each call to the file it names, and runs
 * the generic checks; the semantics live in mm/, gmem/ and kvm/.
 */
import { assert } from '../lib/assert.js';
import { S64_MAX, toU64 } from '../lib/u64.js';
import { AnonMemory } from '../mm/anon.js';
import { PhysMem } from '../mm/memmap.js';
import { Mm } from '../mm/mm.js';
import type { VmOps } from '../mm/mapping.js';
import { GmemFile } from '../gmem/file.js';
import { checkCreate } from '../gmem/create.js';
import { type GmemContext, GmemStats } from '../gmem/context.js';
import { gmemIoctl } from '../gmem/ioctl.js';
import { splitBlock } from '../gmem/restructure.js';
import { checkPolicy, type Policy } from '../kvm/policy.js';
import type { HugeSize } from '../mm/hugetlb.js';
import { LruBatch } from '../mm/lru.js';
import type { Pfn } from '../lib/types.js';
import type { ModelMetrics } from './metrics.js';
import { type ImportMode, IommuDomain } from '../iommu/domain.js';
import { GmemInode, type GmemUapi } from '../gmem/inode.js';
import { gmemSupportedFlags } from '../kvm/caps.js';
import { type Arch, type KernelConfig, vmTypeOf } from '../kvm/config.js';
import { KvmDevFile, VcpuFile, VmFile } from '../kvm/files.js';
import type { GuestCode } from '../kvm/guest.js';
import { gmemFileIoctl, type IoctlContext, kvmDevIoctl, vcpuIoctl, vmIoctl } from '../kvm/ioctl.js';
import { Vcpu } from '../kvm/vcpu.js';
import { Kvm } from '../kvm/vm.js';
import { KFile } from '../vfs/file.js';
import { EACCES, EINVAL, ENODEV, ENOENT, ENOMEM, ENOTTY, ENXIO, EOPNOTSUPP, EOVERFLOW, EPERM, ESPIPE } from '../uapi/errno.js';
import { SyscallError } from '../uapi/errors.js';
import {
  MADV_COLLAPSE, MADV_DONTNEED, MADV_HUGEPAGE, MADV_NORMAL, MADV_PAGEOUT, MADV_REMOVE, MAP_ANONYMOUS, MAP_SHARED_VALIDATE,
  MAP_TYPE, PROT_EXEC, SEEK_HOLE,
} from '../uapi/linux.js';
import type { IoctlArg, KvmCreateGuestMemfd, KvmRun, Stat, Syscalls, U64 } from '../uapi/syscalls.js';
import { FdTable } from './fdtable.js';
import { vfsFallocateChecks } from './vfs-checks.js';

export interface ModelKernelOptions {
  uapi?: GmemUapi;
  arch?: Arch;
  /** Host physical memory; default 64 GiB. */
  memoryBytes?: number;
  /** HugeTLB pool sizes, e.g. { '2M': 512, '1G': 16 }. */
  hugepages?: Partial<Record<HugeSize, number>>;
  /** Design knobs (src/kvm/policy.ts); each defaults to what the uapi does. */
  policy?: Partial<Record<string, string>>;
}

const DEFAULT_MEMORY_BYTES = 64 * 2 ** 30;
/**
 * LEGACY_MAP_MASK (include/linux/mman.h, x86 values): SHARED, PRIVATE, FIXED, ANONYMOUS, GROWSDOWN,
 * DENYWRITE, EXECUTABLE, LOCKED, NORESERVE, POPULATE, NONBLOCK, STACK, HUGETLB, UNINITIALIZED.
 */
const LEGACY_MAP_MASK = 0x01 | 0x02 | 0x10 | 0x20 | 0x100 | 0x800 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 |
  0x20000 | 0x40000 | 0x4000000;

/** Read-only view of the model's insides, for the invariant checker, metrics and the simulator. */
export interface ModelState {
  readonly cfg: KernelConfig;
  readonly iommus: ReadonlyMap<number, IommuDomain>;
  readonly lru: LruBatch | null;
  readonly transient_refs: ReadonlyMap<number, Pfn>;
  readonly phys: PhysMem;
  readonly mm: Mm;
  readonly fds: FdTable;
  readonly vms: ReadonlySet<Kvm>;
  readonly inodes: ReadonlySet<GmemInode>;
  readonly vcpus: ReadonlyMap<number, Vcpu>;
}

export class ModelKernel implements Syscalls, IoctlContext, GmemContext {
  readonly backend = 'model' as const;
  readonly cfg: KernelConfig;
  readonly phys: PhysMem;
  readonly mm: Mm;
  readonly policy: Policy;
  readonly stats = new GmemStats();
  /** The LRU add batch (null when the policy keeps guest_memfd folios off the LRU). */
  readonly lru: LruBatch | null;
  /** IOMMU domains importing guest_memfd files (model API, see iommuCreateDomain). */
  readonly iommus = new Map<number, IommuDomain>();
  private next_iommu = 1;
  /** Transient references held through holdTransientRef: handle → pfn. */
  readonly transient_refs = new Map<number, Pfn>();
  private next_transient = 1;
  readonly fds = new FdTable();
  readonly vms = new Set<Kvm>();
  readonly inodes = new Set<GmemInode>();
  /** vCPU by fd-independent identity: every vCPU ever created and not destroyed. */
  readonly vcpus = new Map<number, Vcpu>();
  private next_ino = 1000;
  private next_mapping_id = 1;
  private next_vm_id = 1;
  private next_vcpu_key = 1;

  constructor(opts: ModelKernelOptions = {}) {
    const uapi = opts.uapi ?? 'in-place';
    if (!['v6.18', 'in-place', 'rfc-1g'].includes(uapi)) throw new TypeError(`createModelKernel: unknown uapi '${String(uapi)}'`);
    const arch = opts.arch ?? 'x86_64';
    if (arch !== 'x86_64' && arch !== 'arm64') throw new TypeError(`createModelKernel: unknown arch '${String(arch)}'`);
    const memory_bytes = opts.memoryBytes ?? DEFAULT_MEMORY_BYTES;
    if (!Number.isSafeInteger(memory_bytes) || memory_bytes <= 0 || memory_bytes % 4096 !== 0) {
      throw new TypeError('createModelKernel: memoryBytes must be a positive multiple of 4096');
    }
    for (const key of Object.keys(opts.hugepages ?? {})) {
      if (key !== '2M' && key !== '1G') throw new TypeError(`createModelKernel: unknown hugepage size '${key}' (2M or 1G)`);
    }
    this.cfg = { uapi, arch };
    this.policy = checkPolicy(uapi, opts.policy ?? {});
    this.phys = new PhysMem(memory_bytes, opts.hugepages ?? {});
    this.mm = new Mm(this.phys);
    this.lru = this.policy.lru === 'off-lru' ? null : new LruBatch(this.phys);
  }

  get state(): ModelState {
    return this;
  }

  // ---- IoctlContext ----------------------------------------------------------------------------

  createVm(type: number): number {
    const vm_type = vmTypeOf(this.cfg, type);
    if (vm_type === null) throw new SyscallError(EINVAL, 'ioctl(KVM_CREATE_VM)', `VM type 0x${type.toString(16)}`);
    const vm = new Kvm(this.next_vm_id++, vm_type, this.cfg, this.phys, this.mm, (v) => this.forgetVm(v));
    this.vms.add(vm);
    const f = new VmFile(vm);
    try {
      return this.fds.install(f, 'ioctl(KVM_CREATE_VM)');
    } catch (e) {
      f.fput();
      throw e;
    }
  }

  private forgetVm(vm: Kvm): void {
    this.vms.delete(vm);
    for (const [key, vcpu] of this.vcpus) if (vcpu.vm === vm) this.vcpus.delete(key);
  }

  createVcpu(vm: Kvm, id: number): number {
    const vcpu = new Vcpu(id, vm);
    vm.kvmGet();
    const f = new VcpuFile(vcpu);
    let fd: number;
    try {
      fd = this.fds.install(f, 'ioctl(KVM_CREATE_VCPU)');
    } catch (e) {
      f.fput();
      throw e;
    }
    vm.vcpu_ids.add(id);
    this.vcpus.set(this.next_vcpu_key++, vcpu);
    return fd;
  }

  createGuestMemfd(vm: Kvm, args: KvmCreateGuestMemfd): number {
    const name = 'ioctl(KVM_CREATE_GUEST_MEMFD)';
    const size = toU64(args.size, name);
    const flags = toU64(args.flags, name);
    const page_order = Number(toU64(args.page_order, name) & 0xffn);
    const init = checkCreate(this.cfg.uapi, size, flags, gmemSupportedFlags(this.cfg, vm),
      this.cfg.uapi === 'in-place' ? page_order : 0, this.policy.default_state === 'shared');
    let subpool = null;
    if (init.huge_order > 0) {
      // The subpool reserves the whole file now; a pool that cannot is ENOMEM, nothing changed.
      subpool = this.phys.hugetlb?.createSubpool(init.huge_order, init.nr_pages / 2 ** init.huge_order) ?? null;
      if (subpool === null) throw new SyscallError(ENOMEM, name, 'HugeTLB pool cannot reserve the file');
    }
    const inode = new GmemInode({ ...init, ino: this.next_ino++, mapping_id: this.next_mapping_id++ });
    inode.subpool = subpool;
    inode.policy = this.policy;
    const lru = this.lru;
    if (lru !== null) inode.lru_add = (head) => lru.add(head);
    const file = new GmemFile(inode, vm, this, (i) => this.inodes.delete(i));
    this.inodes.add(inode);
    try {
      return this.fds.install(file, name);
    } catch (e) {
      file.fput();
      throw e;
    }
  }

  fileOf(fd: number): KFile | undefined {
    return this.fds.get(fd);
  }

  gmemIoctl(file: GmemFile, request: number, arg: IoctlArg | undefined): number {
    return gmemIoctl(file, this, request, arg);
  }

  // ---- Syscalls --------------------------------------------------------------------------------

  open(path: string, _flags: number): number {
    const proc_fd = /^\/proc\/self\/fd\/(\d+)$/.exec(path);
    if (proc_fd !== null) {
      // Re-opening through procfs opens the fd's inode anew. VM, vCPU and guest_memfd files are
      // anonymous inodes, whose i_fop is no_open_fops: ENXIO. /dev/kvm opens as /dev/kvm.
      const f = this.fds.get(Number(proc_fd[1]));
      if (f === undefined) throw new SyscallError(ENOENT, 'open', path);
      if (!(f instanceof KvmDevFile)) throw new SyscallError(ENXIO, 'open', `${path}: anonymous inode`);
    } else if (path !== '/dev/kvm') {
      throw new SyscallError(ENOENT, 'open', path);
    }
    return this.fds.install(new KvmDevFile(), 'open');
  }

  close(fd: number): void {
    this.fds.remove(fd, 'close').fput();
  }

  dup(fd: number): number {
    const f = this.fds.fget(fd, 'dup');
    f.fget();
    try {
      return this.fds.install(f, 'dup');
    } catch (e) {
      f.fput();
      throw e;
    }
  }

  ioctl(fd: number, request: number, arg?: IoctlArg): number {
    const f = this.fds.fget(fd, 'ioctl');
    if (!Number.isInteger(request)) throw new SyscallError(ENOTTY, 'ioctl', 'request');
    const req = request >>> 0;
    if (f instanceof KvmDevFile) return kvmDevIoctl(this, req, arg);
    if (f instanceof VmFile) return vmIoctl(this, f, req, arg);
    if (f instanceof VcpuFile) return vcpuIoctl(this, f, req, arg);
    if (f instanceof GmemFile) return gmemFileIoctl(this, f, req, arg);
    throw new SyscallError(ENOTTY, 'ioctl');
  }

  fallocate(fd: number, mode: number, offset: U64, len: U64): void {
    const f = this.fds.fget(fd, 'fallocate');
    const off = BigInt.asIntN(64, toU64(offset, 'fallocate'));
    const length = BigInt.asIntN(64, toU64(len, 'fallocate'));
    vfsFallocateChecks(f, mode, off, length);
    assert(f instanceof GmemFile, 'only guest_memfd files are regular in the model');
    f.fallocate(mode, off, length);
  }

  mmap(addr: number, length: number, prot: number, flags: number, fd: number, offset: number): number {
    const name = 'mmap';
    if (!Number.isInteger(offset) || offset % 4096 !== 0) throw new SyscallError(EINVAL, name, 'offset not page aligned');
    if (!Number.isInteger(length)) throw new SyscallError(EINVAL, name, 'length');
    if (!Number.isInteger(addr) || addr < 0 || !Number.isInteger(prot) || !Number.isInteger(flags)) {
      throw new SyscallError(EINVAL, name);
    }
    // do_mmap, after the fd lookup: len 0 → EINVAL; a negative size_t page-aligns past TASK_SIZE → ENOMEM.
    const checkLength = (): void => {
      if (length === 0) throw new SyscallError(EINVAL, name, 'length');
      if (length < 0) throw new SyscallError(ENOMEM, name, 'length');
    };
    const type = Mm.mapType(flags);
    if ((flags & MAP_ANONYMOUS) !== 0) {
      checkLength();
      // Anonymous mappings know only MAP_SHARED and MAP_PRIVATE.
      if (type === null || (flags & MAP_TYPE) === MAP_SHARED_VALIDATE) throw new SyscallError(EINVAL, name, 'map type');
      const anon = new AnonMemory(this.phys, this.next_mapping_id++, this.mm);
      return this.mm.mmapRegion(addr, length, prot, flags, anon, 0, type === 'shared', true);
    }
    const f = this.fds.fget(fd, name);
    checkLength();
    // The offset is an unsigned long: a negative one is a page offset near 2^52.
    const pgoff = offset < 0 ? 2 ** 52 + offset / 4096 : offset / 4096;
    // file_mmap_ok: a regular file's mapping must end below MAX_LFS_FILESIZE (before the map type).
    if (f.is_regular && BigInt(pgoff) > (S64_MAX - BigInt(Math.ceil(length / 4096) * 4096)) >> 12n) {
      throw new SyscallError(EOVERFLOW, name, 'offset beyond the maximum file size');
    }
    if (type === null) throw new SyscallError(EINVAL, name, 'map type');
    // MAP_SHARED_VALIDATE refuses flags outside LEGACY_MAP_MASK (MAP_SYNC: no model file supports it).
    if ((flags & MAP_TYPE) === MAP_SHARED_VALIDATE && (flags & ~LEGACY_MAP_MASK) !== 0) {
      throw new SyscallError(EOPNOTSUPP, name, 'flags outside LEGACY_MAP_MASK');
    }
    if (f instanceof GmemFile) {
      // guest_memfd's mount is noexec: PROT_EXEC is EPERM before the file's own checks.
      if ((prot & PROT_EXEC) !== 0) throw new SyscallError(EPERM, name, 'noexec');
      f.mmapCheck(type === 'shared', length);
      const ops: VmOps = f;
      return this.mm.mmapRegion(addr, length, prot, flags, ops, pgoff, type === 'shared', false, f.mmapAlign());
    }
    throw new SyscallError(ENODEV, name, `${f.kind} files cannot be mapped in the model`);
  }

  munmap(addr: number, length: number): void {
    this.mm.munmap(addr, length);
  }

  read(fd: number, _buf: Uint8Array): number {
    this.fds.fget(fd, 'read');
    throw new SyscallError(EINVAL, 'read');
  }

  write(fd: number, _buf: Uint8Array): number {
    this.fds.fget(fd, 'write');
    throw new SyscallError(EINVAL, 'write');
  }

  pread(fd: number, _buf: Uint8Array, offset: number): number {
    if (offset < 0) throw new SyscallError(EINVAL, 'pread');
    const f = this.fds.fget(fd, 'pread');
    if (f instanceof KvmDevFile) throw new SyscallError(EINVAL, 'pread');
    throw new SyscallError(ESPIPE, 'pread');
  }

  pwrite(fd: number, _buf: Uint8Array, offset: number): number {
    if (offset < 0) throw new SyscallError(EINVAL, 'pwrite');
    const f = this.fds.fget(fd, 'pwrite');
    if (f instanceof KvmDevFile) throw new SyscallError(EINVAL, 'pwrite');
    throw new SyscallError(ESPIPE, 'pwrite');
  }

  lseek(fd: number, _offset: number, whence: number): number {
    const f = this.fds.fget(fd, 'lseek');
    if (!Number.isInteger(whence) || whence < 0 || whence > SEEK_HOLE) throw new SyscallError(EINVAL, 'lseek', 'whence');
    if (f instanceof GmemFile) throw new SyscallError(ESPIPE, 'lseek');
    return 0; // noop_llseek
  }

  fstat(fd: number): Stat {
    const f = this.fds.fget(fd, 'fstat');
    if (f instanceof GmemFile) {
      const inode = f.inode;
      return { st_size: inode.size_bytes, st_blksize: inode.blksize, st_blocks: inode.i_blocks, st_ino: inode.ino, st_mode: 0o100600, st_nlink: 1 };
    }
    if (f instanceof KvmDevFile) return { st_size: 0, st_blksize: 4096, st_blocks: 0, st_ino: 2, st_mode: 0o20660, st_nlink: 1 };
    // Every anon-inode file (VM, vCPU) shares the one anonymous inode.
    return { st_size: 0, st_blksize: 4096, st_blocks: 0, st_ino: 1, st_mode: 0o600, st_nlink: 1 };
  }

  ftruncate(fd: number, _length: number): void {
    this.fds.fget(fd, 'ftruncate');
    throw new SyscallError(EINVAL, 'ftruncate');
  }

  fsync(fd: number): void {
    this.fds.fget(fd, 'fsync');
    throw new SyscallError(EINVAL, 'fsync');
  }

  madvise(addr: number, length: number, advice: number): void {
    const name = 'madvise';
    if (!Number.isInteger(addr) || addr % 4096 !== 0 || !Number.isInteger(length) || length < 0) {
      throw new SyscallError(EINVAL, name);
    }
    if (![MADV_NORMAL, MADV_DONTNEED, MADV_REMOVE, MADV_HUGEPAGE, MADV_PAGEOUT, MADV_COLLAPSE].includes(advice)) {
      throw new SyscallError(EINVAL, name, 'advice');
    }
    if (length === 0) return;
    const end = addr + Math.ceil(length / 4096) * 4096;
    const vmas = this.mm.vmaList.filter((v) => v.start < end && v.end > addr);
    let unmapped_gap = vmas.length === 0 || (vmas[0] as { start: number }).start > addr;
    for (let i = 1; i < vmas.length; i++) if ((vmas[i] as { start: number }).start !== (vmas[i - 1] as { end: number }).end) unmapped_gap = true;
    if (vmas.length > 0 && (vmas[vmas.length - 1] as { end: number }).end < end) unmapped_gap = true;
    for (const v of vmas) {
      const lo = Math.max(addr, v.start);
      const hi = Math.min(end, v.end);
      const i0 = v.indexOf(lo);
      const i1 = v.indexOf(hi - 1) + 1;
      if (advice === MADV_DONTNEED) {
        this.mm.zapVmaIndices(v, i0, i1);
      } else if (advice === MADV_REMOVE) {
        // madvise_remove needs a shared mapping that may be written (VM_MAYWRITE: every model file is
        // opened O_RDWR), not PROT_WRITE. A private mapping in the model is anonymous: no vm_file, EINVAL.
        if (!v.shared) throw new SyscallError(v.ops instanceof GmemFile ? EACCES : EINVAL, name);
        v.ops.removeRange(i0, i1);
      } else if (advice === MADV_COLLAPSE && v.ops.noCollapse) {
        throw new SyscallError(EINVAL, name, 'guest_memfd cannot be collapsed');
      }
    }
    if (unmapped_gap) throw new SyscallError(ENOMEM, name, 'range not fully mapped');
  }

  mprotect(addr: number, length: number, prot: number): void {
    this.mm.mprotect(addr, length, prot);
  }

  load(addr: number, length: number): Uint8Array {
    return this.mm.load(addr, length);
  }

  store(addr: number, data: Uint8Array): void {
    this.mm.store(addr, data);
  }

  pin(addr: number, length: number): number {
    return this.mm.pin(addr, length);
  }

  unpin(pinId: number): void {
    this.mm.unpin(pinId);
  }

  private vcpuOf(fd: number, name: string): Vcpu {
    const f = this.fds.fget(fd, name);
    if (!(f instanceof VcpuFile)) throw new SyscallError(EINVAL, name, 'not a vCPU fd');
    return f.vcpu;
  }

  kvmRun(vcpuFd: number): KvmRun {
    return this.vcpuOf(vcpuFd, 'kvmRun').run;
  }

  setGuestCode(vcpuFd: number, code: GuestCode): void {
    if (typeof code !== 'function') throw new TypeError('setGuestCode: guest code must be a generator function');
    this.vcpuOf(vcpuFd, 'setGuestCode').setGuestCode(code);
  }

  readFile(path: string): string {
    const v = this.phys.hugetlb?.sysfs(path) ?? null;
    if (v === null) throw new SyscallError(ENOENT, 'readFile', path);
    return v;
  }

  private iommuPages(): { '4k': number; '2m': number; '1g': number } {
    const out = { '4k': 0, '2m': 0, '1g': 0 };
    for (const d of this.iommus.values()) {
      const m = d.iopt.mapped_pages;
      out['4k'] += m['4k'];
      out['2m'] += m['2m'];
      out['1g'] += m['1g'];
    }
    return out;
  }

  /** Bytes of JS heap the model's own structures hold (an estimate from their sizes). */
  private modelBytes(): number {
    let n = this.phys.memmap_bytes + this.phys.contents.heap_bytes + (this.phys.hugetlb?.heap_bytes ?? 0) + this.mm.heap_bytes;
    for (const inode of this.inodes) n += inode.pages.heap_bytes + 64 * ((inode.shareability?.nr_ranges ?? 0) + 1);
    for (const vm of this.vms) n += vm.stage2.heap_bytes + 64 * vm.attributes.nr_ranges;
    return n;
  }

  /**
   * Test and simulator hook (not a system call): take a transient reference on the folio behind
   * `offset` of guest_memfd `fd`, as another CPU's in-flight user would (kvm_gmem_get_pfn before
   * the SPTE is installed, a speculative folio_try_get). Conversions and merges see it as unsafe
   * until `releaseTransientRef`. EBADF / EINVAL (not a guest_memfd) / ENOENT (no folio there).
   */
  holdTransientRef(fd: number, offset: number): number {
    const f = this.fds.fget(fd, 'holdTransientRef');
    if (!(f instanceof GmemFile)) throw new SyscallError(EINVAL, 'holdTransientRef', 'not a guest_memfd');
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % 4096 !== 0) throw new SyscallError(EINVAL, 'holdTransientRef');
    const found = f.inode.pages.lookup(offset / 4096);
    if (found === null) throw new SyscallError(ENOENT, 'holdTransientRef', 'no folio at that offset');
    this.phys.get(found.head);
    const id = this.next_transient++;
    this.transient_refs.set(id, found.head);
    return id;
  }

  releaseTransientRef(handle: number): void {
    const p = this.transient_refs.get(handle);
    if (p === undefined) throw new SyscallError(EINVAL, 'releaseTransientRef', `no transient reference ${handle}`);
    this.transient_refs.delete(handle);
    this.phys.put(p);
  }

  // ---- IOMMU importers (model API; iommufd's IOAS_ALLOC / IOAS_MAP_FILE / IOAS_UNMAP in spirit) ----

  /** A new IOMMU domain importing guest_memfd files with the given design ('pin', 'unmap-remap', 'refresh'). */
  iommuCreateDomain(mode: ImportMode): number {
    if (!['pin', 'unmap-remap', 'refresh'].includes(mode)) throw new SyscallError(EINVAL, 'iommuCreateDomain', `mode '${String(mode)}'`);
    const id = this.next_iommu++;
    this.iommus.set(id, new IommuDomain(id, mode, this.phys, (inode, index) => splitBlock(inode, this, index)));
    return id;
  }

  private domain(id: number, name: string): IommuDomain {
    const d = this.iommus.get(id);
    if (d === undefined) throw new SyscallError(EINVAL, name, `no IOMMU domain ${id}`);
    return d;
  }

  /** Map [offset, offset + size) of guest_memfd `fd` at `iova` (all 4K aligned; the pages must be shared). Returns the area index. */
  iommuMapFile(domain: number, fd: number, offset: number, size: number, iova: number): number {
    const name = 'iommuMapFile';
    const d = this.domain(domain, name);
    const f = this.fds.fget(fd, name);
    if (!(f instanceof GmemFile)) throw new SyscallError(EINVAL, name, 'not a guest_memfd');
    for (const v of [offset, size, iova]) {
      if (!Number.isSafeInteger(v) || v < 0 || v % 4096 !== 0) throw new SyscallError(EINVAL, name, 'unaligned');
    }
    f.inode.invalidate_lock.downRead();
    try {
      d.mapFile(f, offset / 4096, (offset + size) / 4096, iova / 4096);
    } finally {
      f.inode.invalidate_lock.upRead();
    }
    return d.areas.length - 1;
  }

  iommuUnmapFile(domain: number, area: number): void {
    this.domain(domain, 'iommuUnmapFile').unmapFile(area);
  }

  iommuDestroyDomain(domain: number): void {
    this.domain(domain, 'iommuDestroyDomain').destroy();
    this.iommus.delete(domain);
  }

  /** Device DMA through a domain: bytes read (or written from `data`) and the pages that faulted. */
  dma(domain: number, iova: number, length: number, data?: Uint8Array): { bytes: Uint8Array; faulted_pages: number } {
    if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(length) || iova < 0 || length < 0) {
      throw new SyscallError(EINVAL, 'dma');
    }
    return this.domain(domain, 'dma').dma(iova, length, data);
  }

  /** lru_add_drain_all, for tests and the simulator (the kernel drains on many paths). */
  lruAddDrainAll(): void {
    this.lru?.drainAll();
  }

  /** What the model counts (src/kernel/metrics.ts): a snapshot. */
  metrics(): ModelMetrics {
    const stage2 = { '4k': 0, '2m': 0, '1g': 0 };
    let zapped = 0;
    let flushes = 0;
    let guest_faults = 0;
    for (const vm of this.vms) {
      const m = vm.stage2.mapped_pages;
      stage2['4k'] += m['4k'];
      stage2['2m'] += m['2m'];
      stage2['1g'] += m['1g'];
      zapped += vm.stage2.nr_zapped_leaves;
      flushes += vm.stage2.nr_tlb_flushes;
      guest_faults += vm.nr_faults;
    }
    const h = this.phys.hugetlb;
    const st = this.stats;
    return {
      stage2_pages: stage2,
      iommu_pages: this.iommuPages(),
      huge_folios: h?.folioCounts() ?? { whole_2m: 0, split_2m: 0, whole_1g: 0, split_1g: 0 },
      order0_folios: this.phys.nr_buddy_used - this.phys.nr_reserved_frames,
      splits: h?.splits ?? 0,
      merges: h?.merges ?? 0,
      vmemmap_pages_allocated: h?.vmemmap_allocated ?? 0,
      vmemmap_pages_freed: h?.vmemmap_freed ?? 0,
      vmemmap_pages_in_use: h?.vmemmap_in_use ?? 0,
      conversions_done: st.conversions_done,
      conversions_eagain: st.conversions_eagain,
      conversions_failed: st.conversions_failed,
      pages_converted: st.pages_converted,
      invalidations: st.invalidations,
      zapped_leaves: zapped,
      tlb_flushes: flushes,
      guest_faults,
      host_faults: st.host_faults,
      sigbus: st.sigbus,
      dma_faults: [...this.iommus.values()].reduce((n, d) => n + d.dma_faults, 0),
      model_bytes: this.modelBytes(),
    };
  }
}

export function createModelKernel(options?: ModelKernelOptions): ModelKernel {
  return new ModelKernel(options);
}

