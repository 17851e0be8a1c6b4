/**
 * `gmem demo`: a short program on the model kernel, printing each step: create a VM and a
 * guest_memfd, bind it, fault pages from the host and from guest code, punch a hole.
 */
import { createModelKernel } from '../kernel/model-kernel.js';
import { checkInvariants } from '../checker/invariants.js';
import {
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MAP_SHARED, O_RDWR, PROT_READ, PROT_WRITE,
} from '../uapi/linux.js';
import {
  GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_CREATE_GUEST_MEMFD, KVM_CREATE_VCPU, KVM_CREATE_VM,
  KVM_EXIT_HLT, KVM_EXIT_IO, KVM_MEM_GUEST_MEMFD, KVM_RUN, KVM_SET_USER_MEMORY_REGION2, KVM_X86_DEFAULT_VM,
} from '../uapi/kvm.js';
import { SignalError, SyscallError } from '../uapi/errors.js';

const hex = (n: number): string => `0x${n.toString(16)}`;

export function runDemo(out: (line: string) => void): number {
  const k = createModelKernel({ uapi: 'v6.18' });
  const step = (what: string): void => {
    checkInvariants(k);
    out(what);
  };
  const PAGES = 4;
  const GPA = 0x1_0000_0000;
  const kvm = k.open('/dev/kvm', O_RDWR);
  const vm = k.ioctl(kvm, KVM_CREATE_VM, KVM_X86_DEFAULT_VM);
  step(`KVM_CREATE_VM(DEFAULT)                 → vm fd ${vm}`);
  const gmem = k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: PAGES * 4096, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
  const st = k.fstat(gmem);
  step(`KVM_CREATE_GUEST_MEMFD(16 KiB, MMAP|INIT_SHARED) → fd ${gmem}, st_size ${st.st_size}, st_ino ${st.st_ino}`);
  const hva = k.mmap(0, PAGES * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, gmem, 0);
  step(`mmap(MAP_SHARED)                       → host address ${hex(hva)}`);
  k.store(hva, new Uint8Array(PAGES * 4096).fill(0xaa));
  step(`host store 0xaa over 4 pages           → 4 host faults; folios allocated: ${k.state.phys.nr_buddy_used}`);
  k.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, {
    slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GPA, memory_size: PAGES * 4096,
    userspace_addr: hva, guest_memfd_offset: 0, guest_memfd: gmem,
  });
  step(`KVM_SET_USER_MEMORY_REGION2(slot 1, gpa ${hex(GPA)}, guest_memfd) → bound (GMEM_ONLY)`);
  const vcpu = k.ioctl(vm, KVM_CREATE_VCPU, 0);
  k.setGuestCode(vcpu, function* (g) {
    const seen = (yield g.read(GPA, 1)) as Uint8Array;
    yield g.ucall(seen[0] as number);
    yield g.write(GPA + 4096, new Uint8Array([0xff]));
  });
  k.ioctl(vcpu, KVM_RUN);
  const run = k.kvmRun(vcpu);
  step(`KVM_RUN                                → exit ${run.exit_reason === KVM_EXIT_IO ? 'KVM_EXIT_IO (ucall)' : run.exit_reason}, guest read ${hex(run.ucall?.[0] ?? -1)}`);
  k.ioctl(vcpu, KVM_RUN);
  step(`KVM_RUN                                → exit ${run.exit_reason === KVM_EXIT_HLT ? 'KVM_EXIT_HLT' : run.exit_reason}; guest wrote 0xff to page 1; stage-2 maps ${k.state.vms.values().next().value?.stage2.nr_4k ?? 0} pages at 4K`);
  out(`host load page 1 byte 0                → ${hex(k.load(hva + 4096, 1)[0] as number)} (host and guest share the page)`);
  k.fallocate(gmem, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 4096);
  step(`fallocate(PUNCH_HOLE, page 0)          → 0; host reads ${hex(k.load(hva, 1)[0] as number)} (a fresh zeroed page), page 2 still ${hex(k.load(hva + 8192, 1)[0] as number)}`);
  try {
    k.fallocate(gmem, 0, 0, 4096);
  } catch (e) {
    if (!(e instanceof SyscallError)) throw e;
    out(`fallocate(mode 0)                      → ${e.code} (guest_memfd needs KEEP_SIZE)`);
  }
  try {
    k.load(hva + PAGES * 4096, 1);
  } catch (e) {
    if (!(e instanceof SignalError)) throw e;
    out(`host load past the mapping            → ${e.signal}`);
  }
  k.close(gmem);
  k.munmap(hva, PAGES * 4096);
  step(`close(gmem) + munmap                   → guest_memfd inodes left: ${k.state.inodes.size}, folios in use: ${k.state.phys.nr_buddy_used}`);
  out('every step passed the invariant checker.');
  return 0;
}
