/**
 * Guest code on the host: GuestPrograms compiled to x86-64 and run in a real vCPU, reproducing
 * §5 rows 69–73, and the live kvm_run object (writes reach the kernel, the kernel's writes are
 * seen). Row 70 is the known deviation of the kvm_pvm host: a GMEM_ONLY slot with
 * userspace_addr 0 exits to MMIO instead of using the guest_memfd.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { loadGuestProgram } from '../../src/host/guest-loader.js';
import {
  GUEST_UCALL_CHECK_FAILED, GUEST_UCALL_READ, runGuest, type GuestProgram,
} from '../../src/host/guest-program.js';
import type { HostKvmRun } from '../../src/host/kvm-run.js';
import { EINTR, EINVAL } from '../../src/uapi/errno.js';
import {
  GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_EXIT_HLT, KVM_EXIT_IO, KVM_EXIT_MMIO,
  KVM_GET_VCPU_MMAP_SIZE, KVM_MEM_GUEST_MEMFD, KVM_RUN, UCALL_PIO_PORT,
} from '../../src/uapi/kvm.js';
import { FALLOC_FL_KEEP_SIZE, MAP_SHARED, PROT_READ, PROT_WRITE } from '../../src/uapi/linux.js';
import { assertFilled, errnoOf, filled, hostTest, PAGE, type Fixture } from './host-fixture.js';

const GPA = 0x400000;
const SLOT_BYTES = 2 ** 20;
const IS_PVM_HOST = existsSync('/sys/module/kvm_pvm');
const RW = PROT_READ | PROT_WRITE;

/** A VM, a vCPU, and the program loaded into the vCPU (the loader's slot is at 3 GiB). */
function guest(f: Fixture, program: GuestProgram): { vm: number; vcpu: number; run: HostKvmRun } {
  const vm = f.vm();
  const vcpu = f.vcpu(vm);
  const loaded = loadGuestProgram(f.k, vm, vcpu, program);
  f.adopt(loaded.hva, loaded.size_bytes);
  return { vm, vcpu, run: f.k.kvmRun(vcpu) as HostKvmRun };
}

/** Binds a test slot at GPA. */
function slot(f: Fixture, vm: number, r: { flags?: number; userspace_addr: number; guest_memfd?: number }): void {
  f.region(vm, { slot: 1, guest_phys_addr: GPA, memory_size: SLOT_BYTES, ...r });
}

const READ_AND_WRITE: GuestProgram = [
  { op: 'read', gpa: GPA },
  { op: 'fill', gpa: GPA, len: PAGE, byte: 0xff },
  { op: 'check', gpa: GPA, len: PAGE, byte: 0xff },
];

hostTest('§5 row 69: a 64-bit guest reads 0x42 from a plain anonymous slot and writes 0xff the host sees', (f) => {
  const { vm, vcpu } = guest(f, READ_AND_WRITE);
  const anon = f.anon(SLOT_BYTES);
  f.k.store(anon, filled(1, 0x42));
  slot(f, vm, { userspace_addr: anon });
  const result = runGuest(f.k, vcpu);
  assert.deepEqual(result, { ucalls: [[GUEST_UCALL_READ, GPA, 0x42]], exit_reason: KVM_EXIT_HLT });
  assertFilled(f.k.load(anon, PAGE), 0xff, 'the guest\'s writes');
});

hostTest('§5 row 70: GMEM_ONLY slot with userspace_addr 0: KVM_EXIT_MMIO at the GPA on kvm_pvm (deviation); mmio.data feeds the load', (f, t) => {
  for (const flags of [GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP]) {
    const { vm, vcpu, run } = guest(f, [{ op: 'read', gpa: GPA }]);
    const gmem = f.gmem(vm, SLOT_BYTES, flags);
    f.k.fallocate(gmem, FALLOC_FL_KEEP_SIZE, 0, SLOT_BYTES);
    slot(f, vm, { flags: KVM_MEM_GUEST_MEMFD, userspace_addr: 0, guest_memfd: gmem });
    f.k.ioctl(vcpu, KVM_RUN);
    if (!IS_PVM_HOST) {
      t.diagnostic(`upstream KVM: exit ${run.exit_reason} (the guest should read the gmem)`);
      assert.notEqual(run.exit_reason, KVM_EXIT_MMIO);
      continue;
    }
    assert.equal(run.exit_reason, KVM_EXIT_MMIO, `gmem flags ${flags}`);
    assert.deepEqual({ gpa: run.mmio.phys_addr, len: run.mmio.len, is_write: run.mmio.is_write }, { gpa: GPA, len: 1, is_write: 0 });
    run.mmio.data[0] = 0x5a;
    assert.deepEqual(runGuest(f.k, vcpu), { ucalls: [[GUEST_UCALL_READ, GPA, 0x5a]], exit_reason: KVM_EXIT_HLT });
  }
});

hostTest('§5 row 71: the GMEM_ONLY slot with userspace_addr = the gmem\'s own mmap: the guest reads 0x66, the host sees 0xff', (f) => {
  const { vm, vcpu } = guest(f, READ_AND_WRITE);
  const gmem = f.gmem(vm, SLOT_BYTES, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
  const mem = f.mmap(SLOT_BYTES, RW, MAP_SHARED, gmem);
  f.k.store(mem, filled(1, 0x66));
  slot(f, vm, { flags: KVM_MEM_GUEST_MEMFD, userspace_addr: mem, guest_memfd: gmem });
  assert.deepEqual(runGuest(f.k, vcpu), { ucalls: [[GUEST_UCALL_READ, GPA, 0x66]], exit_reason: KVM_EXIT_HLT });
  assertFilled(f.k.load(mem, PAGE), 0xff, 'the guest\'s writes through the gmem');
});

hostTest('§5 row 72: gmem flags 0 with userspace_addr = anon: the guest uses the anonymous memory; closing the gmem changes nothing', (f) => {
  const { vm, vcpu } = guest(f, READ_AND_WRITE);
  const gmem = f.gmem(vm, SLOT_BYTES);
  const anon = f.anon(SLOT_BYTES);
  f.k.store(anon, filled(1, 0x33));
  slot(f, vm, { flags: KVM_MEM_GUEST_MEMFD, userspace_addr: anon, guest_memfd: gmem });
  f.close(gmem);
  assert.deepEqual(runGuest(f.k, vcpu), { ucalls: [[GUEST_UCALL_READ, GPA, 0x33]], exit_reason: KVM_EXIT_HLT });
  assertFilled(f.k.load(anon, PAGE), 0xff, 'the guest\'s writes in the anonymous memory');
});

hostTest('§5 row 73: gmem flags 0 with userspace_addr 0: KVM_EXIT_MMIO (the shared path has no hva)', (f) => {
  const { vm, vcpu, run } = guest(f, [{ op: 'fill', gpa: GPA + 8, len: 1, byte: 0xc3 }]);
  const gmem = f.gmem(vm, SLOT_BYTES);
  slot(f, vm, { flags: KVM_MEM_GUEST_MEMFD, userspace_addr: 0, guest_memfd: gmem });
  f.k.ioctl(vcpu, KVM_RUN);
  assert.equal(run.exit_reason, KVM_EXIT_MMIO);
  assert.deepEqual({ gpa: run.mmio.phys_addr, len: run.mmio.len, is_write: run.mmio.is_write, data: run.mmio.data[0] },
    { gpa: GPA + 8, len: 1, is_write: 1, data: 0xc3 });
  assert.equal(runGuest(f.k, vcpu).exit_reason, KVM_EXIT_HLT);
});

hostTest('guest program: ucall with 8 u64 args; a failing check reports [FAIL, gpa, got, expected] and halts for good', (f) => {
  const big = 2 ** 40 + 3;
  const { vm, vcpu, run } = guest(f, [
    { op: 'ucall', args: [1, 2, 3, 4, 5, 6, 7, big] },
    { op: 'fill', gpa: GPA, len: 100, byte: 0x11 },
    { op: 'fill', gpa: GPA + 60, len: 1, byte: 0x12 },
    { op: 'check', gpa: GPA, len: 100, byte: 0x11 },
    { op: 'ucall', args: [99] }, // never reached
  ]);
  slot(f, vm, { userspace_addr: f.anon(SLOT_BYTES) });
  f.k.ioctl(vcpu, KVM_RUN);
  assert.equal(run.exit_reason, KVM_EXIT_IO);
  assert.deepEqual({ port: run.io.port, size: run.io.size, count: run.io.count }, { port: UCALL_PIO_PORT, size: 4, count: 1 });
  assert.deepEqual(run.ucall, [1, 2, 3, 4, 5, 6, 7, big]);
  assert.deepEqual(runGuest(f.k, vcpu), { ucalls: [[GUEST_UCALL_CHECK_FAILED, GPA + 60, 0x12, 0x11]], exit_reason: KVM_EXIT_HLT });
  assert.equal(runGuest(f.k, vcpu).exit_reason, KVM_EXIT_HLT, 'halted for good');
});

hostTest('kvmRun: one live object per vCPU; immediate_exit reaches KVM_RUN: EINTR, exit_reason left as it was', (f) => {
  const { vm, vcpu, run } = guest(f, [{ op: 'ucall', args: [5] }]);
  slot(f, vm, { userspace_addr: f.anon(SLOT_BYTES) });
  assert.equal(f.k.kvmRun(vcpu), run);
  run.immediate_exit = 1;
  run.exit_reason = 0xdead;
  assert.equal(errnoOf(() => f.k.ioctl(vcpu, KVM_RUN)), EINTR);
  assert.equal(run.exit_reason, 0xdead, 'the kernel does not write exit_reason for immediate_exit');
  run.immediate_exit = 0;
  assert.deepEqual(runGuest(f.k, vcpu), { ucalls: [[5]], exit_reason: KVM_EXIT_HLT });
});

hostTest('kvmRun: fields are the mapped page: hypercall.ret written here is in the kernel\'s page, and back', (f) => {
  const vm = f.vm();
  const vcpu = f.vcpu(vm);
  const run = f.k.kvmRun(vcpu);
  const size = f.k.ioctl(f.kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  const page = f.mmap(size, RW, MAP_SHARED, vcpu);
  const u64At = (offset: number): bigint => new DataView(f.k.load(page + offset, 8).buffer).getBigUint64(0, true);
  run.hypercall.ret = 0x1234_5678_9a;
  assert.equal(u64At(88), 0x1234_5678_9an, 'hypercall.ret at offset 88');
  run.memory_fault.gpa = 2 ** 40;
  assert.equal(u64At(40), 2n ** 40n, 'memory_fault.gpa at offset 40');
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setUint32(0, 39, true);
  f.k.store(page + 8, bytes.subarray(0, 4));
  assert.equal(run.exit_reason, 39, 'exit_reason written through another mapping');
});

hostTest('loader: reload runs a new program (new 1 GiB regions mapped) on the same vCPU; unload deletes the slot', (f) => {
  const vm = f.vm();
  const vcpu = f.vcpu(vm);
  const loaded = loadGuestProgram(f.k, vm, vcpu, [{ op: 'ucall', args: [1] }]);
  try {
    assert.deepEqual(runGuest(f.k, vcpu), { ucalls: [[1]], exit_reason: KVM_EXIT_HLT });
    const far = 5 * 2 ** 30 + 7; // above 4 GiB, in no memslot: MMIO
    loaded.reload([{ op: 'ucall', args: [2] }, { op: 'read', gpa: far }]);
    assert.deepEqual(runGuest(f.k, vcpu), { ucalls: [[2]], exit_reason: KVM_EXIT_MMIO });
    assert.equal(f.k.kvmRun(vcpu).mmio.phys_addr, far);
  } finally {
    loaded.unload();
  }
  assert.equal(errnoOf(() => f.region(vm, { slot: loaded.slot, memory_size: 0 })), EINVAL, 'the loader slot is gone');
});

hostTest('setGuestProgram (extension): two vCPUs of one VM, each with its own program and loader slot; a second program replaces the first', (f) => {
  const k = f.k as typeof f.k & { setGuestProgram?: (vcpu: number, program: GuestProgram) => void };
  assert.equal(typeof k.setGuestProgram, 'function');
  const vm = f.vm();
  const a = f.vcpu(vm, 0);
  const b = f.vcpu(vm, 1);
  const anon = f.anon(SLOT_BYTES);
  slot(f, vm, { userspace_addr: anon });
  k.setGuestProgram?.(a, [{ op: 'fill', gpa: GPA, len: 1, byte: 0xa1 }, { op: 'ucall', args: [0xa] }]);
  k.setGuestProgram?.(b, [{ op: 'read', gpa: GPA }]);
  assert.deepEqual(runGuest(k, a), { ucalls: [[0xa]], exit_reason: KVM_EXIT_HLT });
  assert.deepEqual(runGuest(k, b), { ucalls: [[GUEST_UCALL_READ, GPA, 0xa1]], exit_reason: KVM_EXIT_HLT });
  k.setGuestProgram?.(a, [{ op: 'ucall', args: [0xb] }]);
  assert.deepEqual(runGuest(k, a), { ucalls: [[0xb]], exit_reason: KVM_EXIT_HLT });
  assert.notEqual(errnoOf(() => k.setGuestProgram?.(f.kvm, [])), 0, '/dev/kvm is not a vCPU');
});
