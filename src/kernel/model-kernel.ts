/**
 * The model kernel: one process on one host, behind the Syscalls interface. This file is the
 * system-call layer only: it owns the fd table, routes each call to the file it names, and runs
 * the generic checks; the semantics live in mm/, gmem/ and kvm/.
 */
import { assert } from '../lib/assert.js';
import { toU64 } from '../lib/u64.js';
import { AnonMemory } from '../mm/anon.js';
import { PhysMem } from '../mm/memmap.js';
import { Mm } from '../mm/mm.js';
import type { VmOps } from '../mm/mapping.js';
import { GmemFile } from '../gmem/file.js';
import { checkCreate } from '../gmem/create.js';
import { GmemInode, type GmemUapi } from '../gmem/inode.js';
import { gmemSupportedFlags } from '../kvm/caps.js';
import { type Arch, type KernelConfig, supportedVmTypes } from '../kvm/config.js';
import { KvmDevFile, VcpuFile, VmFile } from '../kvm/files.js';
import type { GuestCode } from '../kvm/guest.js';
import { gmemFileIoctl, type IoctlContext, kvmDevIoctl, vcpuIoctl, vmIoctl } from '../kvm/ioctl.js';
import { Vcpu } from '../kvm/vcpu.js';
import { Kvm } from '../kvm/vm.js';
import { KFile } from '../vfs/file.js';
import { EACCES, EINVAL, ENODEV, ENOENT, ENOMEM, ENOTTY, EPERM, ESPIPE } from '../uapi/errno.js';
import { SyscallError } from '../uapi/errors.js';
import {
  MADV_COLLAPSE, MADV_DONTNEED, MADV_HUGEPAGE, MADV_NORMAL, MADV_PAGEOUT, MADV_REMOVE, MAP_ANONYMOUS, PROT_EXEC,
  PROT_WRITE, SEEK_HOLE,
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
  hugepages?: { '2M'?: number; '1G'?: number };
  /** Design knobs; each defaults to what the uapi does. */
  policy?: Record<string, string>;
}

const DEFAULT_MEMORY_BYTES = 64 * 2 ** 30;

/** Read-only view of the model's insides, for the invariant checker, metrics and the simulator. */
export interface ModelState {
  readonly cfg: KernelConfig;
  readonly phys: PhysMem;
  readonly mm: Mm;
  readonly fds: FdTable;
  readonly vms: ReadonlySet<Kvm>;
  readonly inodes: ReadonlySet<GmemInode>;
  readonly vcpus: ReadonlyMap<number, Vcpu>;
}

export class ModelKernel implements Syscalls, IoctlContext {
  readonly backend = 'model' as const;
  readonly cfg: KernelConfig;
  readonly phys: PhysMem;
  readonly mm: Mm;
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
    this.cfg = { uapi, arch };
    this.phys = new PhysMem(memory_bytes);
    this.mm = new Mm(this.phys);
  }

  get state(): ModelState {
    return this;
  }

  // ---- IoctlContext ----------------------------------------------------------------------------

  createVm(type: number): number {
    if (!supportedVmTypes(this.cfg).includes(type)) throw new SyscallError(EINVAL, 'ioctl(KVM_CREATE_VM)', `VM type ${type}`);
    const vm = new Kvm(this.next_vm_id++, type, this.cfg, this.phys, this.mm, (v) => this.forgetVm(v));
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
    const init = checkCreate(this.cfg.uapi, size, flags, gmemSupportedFlags(this.cfg, vm));
    const inode = new GmemInode({ ...init, ino: this.next_ino++, mapping_id: this.next_mapping_id++ });
    const file = new GmemFile(inode, vm, this.phys, this.mm, (i) => this.inodes.delete(i));
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

  gmemIoctl(_file: GmemFile, request: number, _arg: IoctlArg | undefined): number {
    throw new SyscallError(ENOTTY, `ioctl(0x${request.toString(16)})`, 'not a guest_memfd ioctl');
  }

  // ---- Syscalls --------------------------------------------------------------------------------

  open(path: string, _flags: number): number {
    if (path !== '/dev/kvm') throw new SyscallError(ENOENT, 'open', path);
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
    if (!Number.isInteger(length) || length <= 0) throw new SyscallError(EINVAL, name, 'length');
    if (!Number.isInteger(addr) || addr < 0 || !Number.isInteger(prot) || !Number.isInteger(flags)) {
      throw new SyscallError(EINVAL, name);
    }
    const type = Mm.mapType(flags);
    if ((flags & MAP_ANONYMOUS) !== 0) {
      if (type === null) throw new SyscallError(EINVAL, name, 'map type');
      const anon = new AnonMemory(this.phys, this.next_mapping_id++);
      return this.mm.mmapRegion(addr, length, prot, flags, anon, 0, type === 'shared', true);
    }
    const f = this.fds.fget(fd, name);
    if (type === null) throw new SyscallError(EINVAL, name, 'map type');
    if (f instanceof GmemFile) {
      // guest_memfd's mount is noexec: PROT_EXEC is EPERM before the file's own checks.
      if ((prot & PROT_EXEC) !== 0) throw new SyscallError(EPERM, name, 'noexec');
      f.mmapCheck(type === 'shared');
      const ops: VmOps = f;
      return this.mm.mmapRegion(addr, length, prot, flags, ops, offset / 4096, type === 'shared', false);
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
      return { st_size: inode.size_bytes, st_blksize: 4096, st_blocks: inode.i_blocks, st_ino: inode.ino, st_mode: 0o100600, st_nlink: 1 };
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
        if (!v.shared || (v.prot & PROT_WRITE) === 0) throw new SyscallError(EACCES, name);
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
    throw new SyscallError(ENOENT, 'readFile', path);
  }
}

export function createModelKernel(options?: ModelKernelOptions): ModelKernel {
  return new ModelKernel(options);
}

