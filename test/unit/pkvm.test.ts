/**
 * arm64 pKVM protected VMs in the model: guest_memfd shareability decides private vs shared, the
 * guest's MEM_SHARE / MEM_UNSHARE hypercalls exit to user space, the VMM converts the page, and
 * contents are preserved both ways; stage-2 blocks are at most 2M.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expectErrno, expectSignal, modelKernel } from '../lib/harness.js';
import {
  ARM_SMCCC_KVM_FUNC_HYP_MEMINFO, ARM_SMCCC_KVM_FUNC_MEM_SHARE, ARM_SMCCC_KVM_FUNC_MEM_UNSHARE, GUEST_MEMFD_FLAG_HUGETLB,
  GUEST_MEMFD_FLAG_MMAP, KVM_CAP_EXIT_HYPERCALL, KVM_CAP_VM_TYPES, KVM_CHECK_EXTENSION, KVM_CREATE_GUEST_MEMFD,
  KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_ENABLE_CAP, KVM_EXIT_HLT, KVM_EXIT_HYPERCALL, KVM_EXIT_IO, KVM_MEM_GUEST_MEMFD,
  KVM_RUN, KVM_SET_MEMORY_ATTRIBUTES2, KVM_SET_USER_MEMORY_REGION2, KVM_VM_TYPE_ARM_PROTECTED, KVM_X86_SW_PROTECTED_VM,
} from '../../src/uapi/kvm.js';
import { MAP_SHARED, O_RDWR, PROT_READ, PROT_WRITE } from '../../src/uapi/linux.js';

const IPA = 0x8000_0000;
const M2 = 2 ** 21;

test('arm64: KVM_CREATE_VM takes the protected flag (and an IPA size), not x86 types; no KVM_CAP_VM_TYPES', () => {
  const k = modelKernel({ uapi: 'in-place', arch: 'arm64' });
  const kvm = k.open('/dev/kvm', O_RDWR);
  assert.equal(k.ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES), 0);
  assert.equal(k.ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_EXIT_HYPERCALL), (1 << 3) | (1 << 4));
  k.ioctl(kvm, KVM_CREATE_VM, KVM_VM_TYPE_ARM_PROTECTED + 40); // (a JS | would make it negative: EINVAL, as a sign-extended unsigned long would)
  expectErrno('EINVAL', () => k.ioctl(kvm, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM), 'an x86 type');
  expectErrno('EINVAL', () => k.ioctl(kvm, KVM_CREATE_VM, 20), 'an IPA size below 32');
});

test('pKVM: MEM_SHARE exits, the VMM converts, the host sees the guest\'s data; MEM_UNSHARE takes it back', () => {
  const k = modelKernel({ uapi: 'in-place', arch: 'arm64', hugepages: { '2M': 2 }, memoryBytes: 64 * 2 ** 20 });
  const vm = k.ioctl(k.open('/dev/kvm', O_RDWR), KVM_CREATE_VM, KVM_VM_TYPE_ARM_PROTECTED);
  k.ioctl(vm, KVM_ENABLE_CAP, { cap: KVM_CAP_EXIT_HYPERCALL, args: [(1 << ARM_SMCCC_KVM_FUNC_MEM_SHARE) | (1 << ARM_SMCCC_KVM_FUNC_MEM_UNSHARE)] });
  const gmem = k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: 2 * M2, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_HUGETLB, page_order: 9 });
  const hva = k.mmap(0, 2 * M2, PROT_READ | PROT_WRITE, MAP_SHARED, gmem, 0);
  k.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, { slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: IPA, memory_size: 2 * M2,
    userspace_addr: hva, guest_memfd_offset: 0, guest_memfd: gmem });
  const vcpu = k.ioctl(vm, KVM_CREATE_VCPU, 0);
  k.setGuestCode(vcpu, function* (g) {
    const granule = (yield g.hypercall(ARM_SMCCC_KVM_FUNC_HYP_MEMINFO)) as number;
    yield g.write(IPA + 4096, new Uint8Array([0x5a]));
    const r1 = (yield g.hypercall(ARM_SMCCC_KVM_FUNC_MEM_SHARE, IPA + 4096)) as number;
    yield g.ucall(granule, r1);
    const r2 = (yield g.hypercall(ARM_SMCCC_KVM_FUNC_MEM_UNSHARE, IPA + 4096)) as number;
    yield g.ucall(r2);
  });
  const run = k.kvmRun(vcpu);
  k.ioctl(vcpu, KVM_RUN);
  assert.equal(run.exit_reason, KVM_EXIT_HYPERCALL);
  assert.deepEqual([run.hypercall.nr, run.hypercall.args[0]], [ARM_SMCCC_KVM_FUNC_MEM_SHARE, IPA + 4096]);
  assert.deepEqual(k.metrics().stage2_pages, { '4k': 0, '2m': 512, '1g': 0 }, 'private, mapped at most 2M');
  expectSignal('SIGBUS', () => k.load(hva + 4096, 1), 'still private');
  k.ioctl(gmem, KVM_SET_MEMORY_ATTRIBUTES2, { offset: 4096, size: 4096, attributes: 0, flags: 0 }); // the VMM shares it
  run.hypercall.ret = 0;
  assert.equal(k.load(hva + 4096, 1)[0], 0x5a, 'contents preserved: the host reads what the guest wrote');
  k.ioctl(vcpu, KVM_RUN);
  assert.equal(run.exit_reason, KVM_EXIT_IO);
  assert.deepEqual(run.ucall, [4096, 0]);
  k.ioctl(vcpu, KVM_RUN);
  assert.equal(run.exit_reason, KVM_EXIT_HYPERCALL);
  assert.equal(run.hypercall.nr, ARM_SMCCC_KVM_FUNC_MEM_UNSHARE);
  k.ioctl(gmem, KVM_SET_MEMORY_ATTRIBUTES2, { offset: 4096, size: 4096, attributes: 8, flags: 0 });
  k.ioctl(vcpu, KVM_RUN);
  assert.deepEqual(run.ucall, [0]);
  expectSignal('SIGBUS', () => k.load(hva + 4096, 1), 'private again');
  k.ioctl(vcpu, KVM_RUN);
  assert.equal(run.exit_reason, KVM_EXIT_HLT);
});

test('pKVM: a shared block maps at most 2M too (stage-2 blocks are PMD-sized at most)', () => {
  const G = 2 ** 30;
  const k = modelKernel({ uapi: 'in-place', arch: 'arm64', hugepages: { '1G': 1 }, memoryBytes: 4 * G, policy: { split: 'lazy' } });
  const vm = k.ioctl(k.open('/dev/kvm', O_RDWR), KVM_CREATE_VM, KVM_VM_TYPE_ARM_PROTECTED);
  const gmem = k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: G, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_HUGETLB, page_order: 18 });
  k.ioctl(gmem, KVM_SET_MEMORY_ATTRIBUTES2, { offset: 0, size: G, attributes: 0, flags: 0 });
  k.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, { slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 0, memory_size: G,
    userspace_addr: 0, guest_memfd_offset: 0, guest_memfd: gmem });
  const vcpu = k.ioctl(vm, KVM_CREATE_VCPU, 0);
  k.setGuestCode(vcpu, function* (g) {
    yield g.write(0x1000, new Uint8Array([1]));
  });
  k.ioctl(vcpu, KVM_RUN);
  assert.deepEqual(k.metrics().stage2_pages, { '4k': 0, '2m': 512, '1g': 0 });
});
