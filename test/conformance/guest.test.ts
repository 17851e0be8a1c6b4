/**
 * Guest accesses through the different slot kinds: upstream-linux.md §5 rows 69–73. The guest is a
 * GuestProgram, so every row runs on both backends (the model as generator code, the host as real
 * x86-64 code through the guest loader). Rows 70 and 73 are the declared host deviation
 * HOST_PVM_GMEM_NULL_UADDR_MMIO: the host case asserts the KVM_EXIT_MMIO it produces, the model
 * asserts upstream (TDP) behaviour.
 */
import assert from 'node:assert/strict';
import {
  GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_EXIT_HLT, KVM_EXIT_IO, KVM_EXIT_MEMORY_FAULT, KVM_EXIT_MMIO,
  KVM_MEM_GUEST_MEMFD, KVM_RUN,
} from '../../src/uapi/kvm.js';
import { FALLOC_FL_KEEP_SIZE, MAP_SHARED, PROT_READ, PROT_WRITE } from '../../src/uapi/linux.js';
import { GUEST_UCALL_READ, type GuestProgram } from '../../src/host/guest-program.js';
import { expectErrno } from '../lib/harness.js';
import { assertFilled, expectSignalIn, filled, forBackends, kcase, PAGE, type Session } from './common.js';
import { deviates, HOST_PVM_GMEM_NULL_UADDR_MMIO } from './deviations.js';

const GPA = 0x400000; // 4 MiB, as §5 rows 69–73
const RW = PROT_READ | PROT_WRITE;

/**
 * The guest of rows 69–73: check that the page holds `expected` in every byte (a failing check
 * ucalls GUEST_UCALL_CHECK_FAILED and halts), report its first byte, write 0xff over it, halt.
 */
function readReportWrite(expected: number): GuestProgram {
  return [
    { op: 'check', gpa: GPA, len: PAGE, byte: expected },
    { op: 'read', gpa: GPA },
    { op: 'fill', gpa: GPA, len: PAGE, byte: 0xff },
  ];
}

/** Run to the ucall: the guest read a page of `expected` bytes. */
function expectReport(s: Session, vcpu: number, expected: number): void {
  const run = s.run(vcpu);
  assert.equal(run.exit_reason, KVM_EXIT_IO, 'first exit: the ucall');
  assert.deepEqual(run.ucall, [GUEST_UCALL_READ, GPA, expected],
    `the guest read a uniform page of 0x${expected.toString(16)} (ucall ${JSON.stringify(run.ucall)})`);
}

/** Run to the ucall and on to HLT (the guest wrote 0xff over the page). */
function runReadReportWrite(s: Session, vcpu: number, expected: number): void {
  expectReport(s, vcpu, expected);
  assert.equal(s.run(vcpu).exit_reason, KVM_EXIT_HLT, 'second exit: HLT');
}

/** A default VM, one vCPU running readReportWrite(expected), and (optionally) a gmem. */
function setup(s: Session, gmemFlags: number | null, expected: number): { vm: number; vcpu: number; fd: number } {
  const vm = s.vm(0);
  const vcpu = s.vcpu(vm);
  s.program(vcpu, readReportWrite(expected));
  const fd = gmemFlags === null ? -1 : s.gmem(vm, PAGE, gmemFlags);
  return { vm, vcpu, fd };
}

/**
 * Declared deviation: the host exits with KVM_EXIT_MMIO at GPA instead of serving the access (the
 * guest's first access, a one-byte read by the check).
 */
function assertHostMmio(s: Session, vcpu: number): void {
  const run = s.run(vcpu);
  const name = HOST_PVM_GMEM_NULL_UADDR_MMIO.name;
  assert.equal(run.exit_reason, KVM_EXIT_MMIO, `${name}: KVM_EXIT_MMIO`);
  assert.equal(run.mmio.phys_addr, GPA, `${name}: at the slot's gpa`);
  assert.equal(run.mmio.is_write, 0, `${name}: the guest's first access, a read`);
  assert.equal(run.mmio.len, 1, `${name}: of one byte`);
}

forBackends('guest accesses (§5 rows 69–73)', (b) => {
  const deviation = deviates(b, HOST_PVM_GMEM_NULL_UADDR_MMIO);

  kcase(b, 'row 69: a guest reads and writes a plain anonymous slot at 4 MiB: IO exit with 0x42, then HLT; the host sees 0xff', (s) => {
    const { vm, vcpu } = setup(s, null, 0x42);
    const anon = s.anon(PAGE);
    s.k.store(anon, filled(PAGE, 0x42));
    s.setRegion(vm, { slot: 1, guest_phys_addr: GPA, memory_size: PAGE, userspace_addr: anon });
    runReadReportWrite(s, vcpu, 0x42);
    assertFilled(s.k.load(anon, PAGE), 0xff, 'the anonymous memory after the guest wrote');
  });

  for (const [variant, flags, fallocate] of [
    ['MMAP|INIT_SHARED', GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED, false],
    ['MMAP only', GUEST_MEMFD_FLAG_MMAP, false],
    ['MMAP only, after fallocate', GUEST_MEMFD_FLAG_MMAP, true],
  ] as const) {
    kcase(b, `row 70: GMEM_ONLY slot with userspace_addr NULL (${variant}): the guest uses the gmem [host: deviation ${HOST_PVM_GMEM_NULL_UADDR_MMIO.name}]`, (s, t) => {
      const shared = (flags & GUEST_MEMFD_FLAG_INIT_SHARED) !== 0;
      const { vm, vcpu, fd } = setup(s, flags, shared ? 0x66 : 0x00);
      const mem = s.mmap(PAGE, RW, MAP_SHARED, fd);
      if (shared) s.k.store(mem, filled(PAGE, 0x66));
      if (fallocate) s.k.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, PAGE);
      s.setRegion(vm, { slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GPA, memory_size: PAGE, userspace_addr: 0, guest_memfd: fd });
      if (deviation) {
        t.diagnostic(`deviation ${HOST_PVM_GMEM_NULL_UADDR_MMIO.name}: ${HOST_PVM_GMEM_NULL_UADDR_MMIO.observed}`);
        assertHostMmio(s, vcpu);
        return;
      }
      // Upstream (TDP): every fault of a GMEM_ONLY slot is served from guest_memfd, shared or not.
      runReadReportWrite(s, vcpu, shared ? 0x66 : 0x00);
      if (shared) assertFilled(s.k.load(mem, PAGE), 0xff, 'the host sees the guest\'s write through its gmem mapping');
      else expectSignalIn('SIGBUS', () => s.k.load(mem, 1), mem, mem + PAGE, 'the host still cannot map the private-by-default page');
    });
  }

  kcase(b, 'row 71: the same slot with userspace_addr = the gmem\'s own mmap (QEMU style): the guest reads 0x66, the host sees 0xff', (s) => {
    const { vm, vcpu, fd } = setup(s, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED, 0x66);
    const mem = s.mmap(PAGE, RW, MAP_SHARED, fd);
    s.k.store(mem, filled(PAGE, 0x66));
    s.setRegion(vm, { slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GPA, memory_size: PAGE, userspace_addr: mem, guest_memfd: fd });
    runReadReportWrite(s, vcpu, 0x66);
    assertFilled(s.k.load(mem, PAGE), 0xff, 'the gmem after the guest wrote');
  });

  kcase(b, 'row 72: gmem flags 0, slot userspace_addr = anon: the guest uses the anon memory; closing the gmem fd has no effect', (s) => {
    const { vm, vcpu, fd } = setup(s, 0, 0x33);
    const anon = s.anon(PAGE);
    s.k.store(anon, filled(PAGE, 0x33));
    s.setRegion(vm, { slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GPA, memory_size: PAGE, userspace_addr: anon, guest_memfd: fd });
    expectReport(s, vcpu, 0x33);
    s.close(fd);
    assert.equal(s.run(vcpu).exit_reason, KVM_EXIT_HLT);
    assertFilled(s.k.load(anon, PAGE), 0xff, 'the anonymous memory after the guest wrote');
  });

  kcase(b, `row 73: gmem flags 0, userspace_addr NULL: the shared fault has no hva (upstream: EFAULT + KVM_EXIT_MEMORY_FAULT flags 0) [host: deviation ${HOST_PVM_GMEM_NULL_UADDR_MMIO.name}]`, (s, t) => {
    const { vm, vcpu, fd } = setup(s, 0, 0x00);
    s.setRegion(vm, { slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GPA, memory_size: PAGE, userspace_addr: 0, guest_memfd: fd });
    if (deviation) {
      t.diagnostic(`deviation ${HOST_PVM_GMEM_NULL_UADDR_MMIO.name}: ${HOST_PVM_GMEM_NULL_UADDR_MMIO.observed}`);
      assertHostMmio(s, vcpu);
      return;
    }
    expectErrno('EFAULT', () => s.k.ioctl(vcpu, KVM_RUN, 0), 'KVM_RUN');
    const run = s.k.kvmRun(vcpu);
    assert.equal(run.exit_reason, KVM_EXIT_MEMORY_FAULT);
    assert.deepEqual({ ...run.memory_fault }, { flags: 0, gpa: GPA, size: PAGE });
  });
});
