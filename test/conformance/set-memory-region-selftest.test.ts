/**
 * tools/testing/selftests/kvm/set_memory_region_test.c, its guest_memfd parts: upstream-linux.md
 * §4.4. MEM_REGION_GPA 0xc0000000, MEM_REGION_SIZE 2 MiB, MEM_REGION_SLOT 10. 6.18 answers EINVAL
 * where the newer selftest expects EEXIST for a guest_memfd-only overlap: 6.18's EINVAL is asserted.
 */
import {
  KVM_CAP_MEMORY_ATTRIBUTES, KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_SET_USER_MEMORY_REGION, KVM_SET_USER_MEMORY_REGION2, KVM_X86_SW_PROTECTED_VM,
} from '../../src/uapi/kvm.js';
import type { KvmUserspaceMemoryRegion2, U64 } from '../../src/uapi/syscalls.js';
import { expectErrno } from '../lib/harness.js';
import { forBackends, kcase, region, type Session, SZ_2M } from './common.js';

const MEM_REGION_GPA = 0xc0000000;
const MEM_REGION_SIZE = SZ_2M;
const MEM_REGION_SLOT = 10;
const GMEM = KVM_MEM_GUEST_MEMFD;

type R = Partial<KvmUserspaceMemoryRegion2> & { slot: number; guest_phys_addr: U64; memory_size: U64 };

function set2(s: Session, vm: number, r: R): void {
  s.k.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, region(r));
}

/** test_invalid_guest_memfd: binding (fd, offset) into MEM_REGION_SLOT fails with EINVAL. */
function invalidGuestMemfd(s: Session, vm: number, fd: number, offset: number, msg: string): void {
  s.failsCleanly('EINVAL', () => s.k.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, region({
    slot: MEM_REGION_SLOT, flags: GMEM, guest_phys_addr: MEM_REGION_GPA, memory_size: MEM_REGION_SIZE, userspace_addr: 0,
    guest_memfd: fd, guest_memfd_offset: offset,
  })), msg);
}

forBackends('set_memory_region_test.c guest_memfd parts (§4.4)', (b) => {
  kcase(b, 'test_invalid_memory_region_flags: unsupported or v2-only bits → EINVAL on v1 and v2; LOG_DIRTY|GUEST_MEMFD, READONLY|GUEST_MEMFD → EINVAL', (s) => {
    let supported = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY;
    const v2Only = KVM_MEM_GUEST_MEMFD;
    const vm = (s.vmTypes() & (1 << KVM_X86_SW_PROTECTED_VM)) !== 0 ? s.vm(KVM_X86_SW_PROTECTED_VM) : s.vm(0);
    if ((s.cap(KVM_CAP_MEMORY_ATTRIBUTES) & KVM_MEMORY_ATTRIBUTE_PRIVATE) !== 0) supported |= KVM_MEM_GUEST_MEMFD;
    // The selftest passes guest_memfd 0 (stdin); an open non-gmem fd keeps the answer independent of the runner's stdin.
    const notGmem = s.kvm();
    for (let i = 0; i < 32; i++) {
      const bit = (1 << i) >>> 0;
      if ((supported & bit) !== 0 && (v2Only & bit) === 0) continue;
      s.failsCleanly('EINVAL', () => s.k.ioctl(vm, KVM_SET_USER_MEMORY_REGION,
        region({ slot: 0, flags: bit, guest_phys_addr: 0, memory_size: MEM_REGION_SIZE })), `v1 flag 1<<${i}`);
      if ((supported & bit) !== 0) continue;
      s.failsCleanly('EINVAL', () => s.k.ioctl(vm, KVM_SET_USER_MEMORY_REGION2,
        region({ slot: 0, flags: bit, guest_phys_addr: 0, memory_size: MEM_REGION_SIZE, guest_memfd: notGmem })), `v2 flag 1<<${i}`);
    }
    if ((supported & KVM_MEM_GUEST_MEMFD) !== 0) {
      const fd = s.gmem(vm, MEM_REGION_SIZE, 0);
      for (const flags of [KVM_MEM_LOG_DIRTY_PAGES | GMEM, KVM_MEM_READONLY | GMEM]) {
        s.failsCleanly('EINVAL', () => s.k.ioctl(vm, KVM_SET_USER_MEMORY_REGION2,
          region({ slot: 0, flags, guest_phys_addr: 0, memory_size: MEM_REGION_SIZE, guest_memfd: fd })), `flags 0x${flags.toString(16)}`);
      }
      s.close(fd);
    }
  });

  kcase(b, 'test_add_private_memory_region: /dev/kvm fd, VM fd, (vCPU fd), other VM\'s gmem → EINVAL; vm2 binds its own; offsets 1…4095 → EINVAL; offset 0 ok', (s) => {
    s.needVmType(KVM_X86_SW_PROTECTED_VM);
    const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
    invalidGuestMemfd(s, vm, s.kvm(), 0, 'KVM fd should fail');
    invalidGuestMemfd(s, vm, vm, 0, "VM's fd should fail");
    // kvm_memfd_alloc (a regular memfd) is not expressible through Syscalls; a vCPU fd stands for "not a guest_memfd".
    invalidGuestMemfd(s, vm, s.vcpu(vm), 0, 'vCPU fd should fail');
    const vm2 = s.vm(KVM_X86_SW_PROTECTED_VM);
    let fd = s.gmem(vm2, MEM_REGION_SIZE, 0);
    invalidGuestMemfd(s, vm, fd, 0, "Other VM's guest_memfd() should fail");
    set2(s, vm2, { slot: MEM_REGION_SLOT, flags: GMEM, guest_phys_addr: MEM_REGION_GPA, memory_size: MEM_REGION_SIZE, guest_memfd: fd });
    s.close(fd);
    s.close(vm2);
    fd = s.gmem(vm, MEM_REGION_SIZE, 0);
    for (let i = 1; i < 4096; i++) {
      expectErrno('EINVAL', () => s.k.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, region({
        slot: MEM_REGION_SLOT, flags: GMEM, guest_phys_addr: MEM_REGION_GPA, memory_size: MEM_REGION_SIZE, guest_memfd: fd,
        guest_memfd_offset: i,
      })), `Unaligned offset ${i} should fail`);
    }
    set2(s, vm, { slot: MEM_REGION_SLOT, flags: GMEM, guest_phys_addr: MEM_REGION_GPA, memory_size: MEM_REGION_SIZE, guest_memfd: fd, guest_memfd_offset: 0 });
  });

  kcase(b, 'test_add_overlapping_private_memory_regions: gmem-only overlap (offset 2M, 6M) → EINVAL on 6.18; GPA overlap (B−2M, B+2M) → EEXIST', (s) => {
    s.needVmType(KVM_X86_SW_PROTECTED_VM);
    const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
    const fd = s.gmem(vm, MEM_REGION_SIZE * 5, 0);
    const A = { slot: MEM_REGION_SLOT, flags: GMEM, guest_phys_addr: MEM_REGION_GPA, memory_size: MEM_REGION_SIZE * 2, guest_memfd: fd };
    const B = MEM_REGION_GPA * 2;
    set2(s, vm, { ...A, guest_memfd_offset: 0 });
    set2(s, vm, { slot: MEM_REGION_SLOT + 1, flags: GMEM, guest_phys_addr: B, memory_size: MEM_REGION_SIZE * 2, guest_memfd: fd, guest_memfd_offset: MEM_REGION_SIZE * 2 });
    set2(s, vm, { slot: MEM_REGION_SLOT, flags: GMEM, guest_phys_addr: MEM_REGION_GPA, memory_size: 0, guest_memfd: -1 });
    for (const off of [MEM_REGION_SIZE, MEM_REGION_SIZE * 3]) {
      s.failsCleanly('EINVAL', () => set2(s, vm, { ...A, guest_memfd_offset: off }), `gmem overlap at offset ${off} (6.18: EINVAL; next: EEXIST)`);
    }
    for (const gpa of [B - MEM_REGION_SIZE, B + MEM_REGION_SIZE]) {
      s.failsCleanly('EEXIST', () => set2(s, vm, { ...A, guest_phys_addr: gpa, guest_memfd_offset: 0 }), `GPA overlap at 0x${gpa.toString(16)}`);
    }
  });
});
