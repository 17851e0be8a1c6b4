/**
 * The CoCo VM types of the in-place model (src/kvm/arch.ts): the guest chooses private vs shared
 * (a mismatch exits to user space as an implicit conversion), private mappings are at most 2M
 * (and TDX never promotes), and conversions do what the firmware does to contents.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { modelKernel } from '../lib/harness.js';
import {
  GUEST_MEMFD_FLAG_HUGETLB, GUEST_MEMFD_FLAG_MMAP, KVM_CAP_VM_TYPES, KVM_CHECK_EXTENSION, KVM_CREATE_GUEST_MEMFD,
  KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_EXIT_HLT, KVM_EXIT_IO, KVM_EXIT_MEMORY_FAULT, KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_EXIT_FLAG_PRIVATE, KVM_PRE_FAULT_MEMORY, KVM_RUN, KVM_SET_MEMORY_ATTRIBUTES2, KVM_SET_USER_MEMORY_REGION2, KVM_X86_SNP_VM,
  KVM_X86_TDX_VM,
} from '../../src/uapi/kvm.js';
import { MAP_SHARED, O_RDWR, PROT_READ, PROT_WRITE } from '../../src/uapi/linux.js';
import { expectErrno } from '../lib/harness.js';
import type { GuestCode } from '../../src/kvm/guest.js';

const G = 2 ** 30;
const GPA = 2 ** 32;

function setup(type: number, split: 'eager' | 'lazy' = 'eager') {
  const k = modelKernel({ uapi: 'in-place', hugepages: { '1G': 1 }, memoryBytes: 4 * G, policy: { split } });
  const kvm = k.open('/dev/kvm', O_RDWR);
  const vm = k.ioctl(kvm, KVM_CREATE_VM, type);
  const gmem = k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: G, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_HUGETLB, page_order: 18 });
  const hva = k.mmap(0, G, PROT_READ | PROT_WRITE, MAP_SHARED, gmem, 0);
  k.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, { slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GPA, memory_size: G,
    userspace_addr: hva, guest_memfd_offset: 0, guest_memfd: gmem });
  const vcpu = k.ioctl(vm, KVM_CREATE_VCPU, 0);
  const run = (code: GuestCode) => {
    k.setGuestCode(vcpu, code);
    k.ioctl(vcpu, KVM_RUN);
    return k.kvmRun(vcpu);
  };
  const convert = (offset: number, size: number, to_private: boolean) =>
    k.ioctl(gmem, KVM_SET_MEMORY_ATTRIBUTES2, { offset, size, attributes: to_private ? 8 : 0, flags: 0 });
  return { k, kvm, vm, gmem, hva, vcpu, run, convert };
}

test('in-place: KVM_CAP_VM_TYPES adds SNP and TDX; v6.18 does not', () => {
  const k = modelKernel({ uapi: 'in-place' });
  assert.equal(k.ioctl(k.open('/dev/kvm', O_RDWR), KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES), 0b110011);
  const old = modelKernel({ uapi: 'v6.18' });
  expectErrno('EINVAL', () => old.ioctl(old.open('/dev/kvm', O_RDWR), KVM_CREATE_VM, KVM_X86_SNP_VM), 'SNP on v6.18');
});

for (const [name, type] of [['SNP', KVM_X86_SNP_VM], ['TDX', KVM_X86_TDX_VM]] as const) {
  test(`${name}: private by default, mapped at most 2M from a 1G folio; a shared access to a private page exits`, () => {
    const { k, run, convert, vcpu } = setup(type);
    const r1 = run(function* (g) {
      yield g.write(GPA, new Uint8Array([0x11]));
      yield g.ucall(1);
    });
    assert.equal(r1.exit_reason, KVM_EXIT_IO);
    assert.deepEqual(k.metrics().stage2_pages, { '4k': 0, '2m': 512, '1g': 0 });
    // The guest reads the same page as shared (C-bit clear / shared bit set): an implicit conversion.
    k.setGuestCode(vcpu, function* (g) {
      yield g.read(GPA, 1, { private: false });
    });
    expectErrno('EFAULT', () => k.ioctl(vcpu, KVM_RUN), 'shared access to a private page');
    const kr = k.kvmRun(vcpu);
    assert.equal(kr.exit_reason, KVM_EXIT_MEMORY_FAULT);
    assert.deepEqual({ ...kr.memory_fault }, { flags: 0, gpa: GPA, size: 4096 });
    convert(0, 4096, false); // the VMM answers the exit
    k.ioctl(vcpu, KVM_RUN);
    assert.equal(k.kvmRun(vcpu).exit_reason, KVM_EXIT_HLT);
    // The private access of a shared page exits with the PRIVATE flag.
    k.setGuestCode(vcpu, function* (g) {
      yield g.read(GPA, 1);
    });
    expectErrno('EFAULT', () => k.ioctl(vcpu, KVM_RUN), 'private access to a shared page');
    assert.equal(k.kvmRun(vcpu).memory_fault.flags, KVM_MEMORY_EXIT_FLAG_PRIVATE);
  });
}

test('SNP re-keys converted pages (ciphertext), TDX clears them', () => {
  for (const [type, expectZero] of [[KVM_X86_SNP_VM, false], [KVM_X86_TDX_VM, true]] as const) {
    const { k, run, convert, hva } = setup(type);
    convert(0, 4096, false);
    k.store(hva, new Uint8Array([0x42, 0x42]));
    convert(0, 4096, true);
    const seen = run(function* (g) {
      const b = (yield g.read(GPA, 2)) as Uint8Array;
      yield g.ucall(b[0] as number, b[1] as number);
    }).ucall;
    if (expectZero) assert.deepEqual(seen, [0, 0]);
    else assert.ok(seen !== null && seen[0] !== 0x42 && seen[1] !== 0x42, `SNP: the guest must not read the host's plaintext (${String(seen)})`);
  }
});

test('TDX never promotes: a 2M range mapped private at 4K stays at 4K', () => {
  const { k, run, convert } = setup(KVM_X86_TDX_VM);
  convert(4096, 4096, false); // a shared page inside the first 2M: private faults there map at 4K
  run(function* (g) {
    yield g.write(GPA, new Uint8Array([1]));
    yield g.ucall(0);
  });
  assert.equal(k.metrics().stage2_pages['4k'], 1);
  convert(4096, 4096, true); // uniform again
  run(function* (g) {
    yield g.write(GPA + 8192, new Uint8Array([1]));
    yield g.ucall(0);
  });
  assert.equal(k.metrics().stage2_pages['2m'], 0, 'TDX: no 2M leaf in a range that was mapped at 4K');
});

test('a 4K conversion inside private 2M leaves of a 1G folio: TDX demotes, SNP zaps; eager splits cost the whole block', () => {
  // Lazy: the folio stays whole; only the 2M leaf crossing the converted page is affected (TDX
  // demotes it into 512 4K leaves and zaps one; SNP zaps it whole). Eager: the 1G folio is split
  // to 4K, so no leaf may stay larger than 4K anywhere in the block (TDX demotes all four 2M leaves,
  // SNP zaps them).
  const cases = [
    [KVM_X86_TDX_VM, 'lazy', { '4k': 511, '2m': 1536, '1g': 0 }],
    [KVM_X86_SNP_VM, 'lazy', { '4k': 0, '2m': 1536, '1g': 0 }],
    [KVM_X86_TDX_VM, 'eager', { '4k': 2047, '2m': 0, '1g': 0 }],
    [KVM_X86_SNP_VM, 'eager', { '4k': 0, '2m': 0, '1g': 0 }],
  ] as const;
  for (const [type, split, expect] of cases) {
    const { k, vcpu, convert } = setup(type, split);
    k.ioctl(vcpu, KVM_PRE_FAULT_MEMORY, { gpa: GPA, size: 8 * 2 ** 20, flags: 0 });
    assert.deepEqual(k.metrics().stage2_pages, { '4k': 0, '2m': 2048, '1g': 0 });
    convert(6 * 2 ** 20, 4096, false);
    assert.deepEqual(k.metrics().stage2_pages, expect, `${type === KVM_X86_TDX_VM ? 'TDX' : 'SNP'} ${split}`);
  }
});
