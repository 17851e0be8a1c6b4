/**
 * tools/testing/selftests/kvm/guest_memfd_test.c, upstream-linux.md §4.1 tests 1–16, run as the
 * selftest runs them: test_guest_memfd(type) for each VM type of KVM_CAP_VM_TYPES, and inside it
 * __test_guest_memfd for flags 0, MMAP (if the VM's KVM_CAP_GUEST_MEMFD_FLAGS has it) and
 * MMAP|INIT_SHARED (if it has INIT_SHARED); every gmem_test on a fresh 4-page gmem. Where the
 * selftest only checks "fails", the 6.18 errno is asserted. Tests 10 (mbind) and 11 (NUMA
 * allocation) are not expressible through Syscalls.
 */
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS, KVM_CAP_VM_TYPES,
  KVM_CHECK_EXTENSION, KVM_CREATE_GUEST_MEMFD, KVM_CREATE_VM, KVM_EXIT_HLT, KVM_EXIT_IO, KVM_EXIT_MMIO, KVM_MEM_GUEST_MEMFD,
} from '../../src/uapi/kvm.js';
import {
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MADV_COLLAPSE, MADV_DONTNEED, MADV_HUGEPAGE, MAP_ANONYMOUS, MAP_FIXED,
  MAP_PRIVATE, MAP_SHARED, O_RDWR, PROT_NONE, PROT_READ, PROT_WRITE,
} from '../../src/uapi/linux.js';
import { GUEST_UCALL_CHECK_FAILED } from '../../src/host/guest-program.js';
import type { Backend } from '../lib/harness.js';
import { expectErrno } from '../lib/harness.js';
import {
  assertFilled, expectSignalIn, filled, forBackends, kcase, PAGE, type Session, SZ_2M, SZ_4G, UCALL_DONE,
  VM_TYPE_NAMES,
} from './common.js';
import { deviates, HOST_PVM_GMEM_NULL_UADDR_MMIO } from './deviations.js';

const RW = PROT_READ | PROT_WRITE;
const KEEP = FALLOC_FL_KEEP_SIZE;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
/** The x86 THP PMD size (get_trans_hugepagesz()). */
const PMD_SIZE = SZ_2M;
/** The VM types the model creates: always listed (skipped where KVM_CAP_VM_TYPES lacks them). */
const TYPES = [0, 1];

/** TYPES plus every other type the backend's KVM_CAP_VM_TYPES has, as the selftest's main() loops. */
function typesOf(vmTypes: number): number[] {
  const all = new Set(TYPES);
  for (let t = 0; t < 31; t++) if ((vmTypes & (1 << t)) !== 0) all.add(t);
  return [...all].sort((a, b) => a - b);
}

interface Profile {
  vmTypes: number;
  /** KVM_CAP_GUEST_MEMFD_FLAGS on a VM of each supported type. */
  flags: Map<number, number>;
}

/** What the backend answers, queried once when the cases are defined. */
function profile(b: Backend): Profile {
  const k = b.make({ uapi: 'v6.18' });
  const kvm = k.open('/dev/kvm', O_RDWR);
  const flags = new Map<number, number>();
  let vmTypes = 0;
  try {
    vmTypes = k.ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES);
    for (const type of typesOf(vmTypes)) {
      if ((vmTypes & (1 << type)) === 0) continue;
      const vm = k.ioctl(kvm, KVM_CREATE_VM, type);
      try {
        flags.set(type, k.ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS));
      } finally {
        k.close(vm);
      }
    }
  } finally {
    k.close(kvm);
  }
  return { vmTypes, flags };
}

function flagName(f: number): string {
  if (f === 0) return '0';
  return [f & GUEST_MEMFD_FLAG_MMAP ? 'MMAP' : '', f & GUEST_MEMFD_FLAG_INIT_SHARED ? 'INIT_SHARED' : ''].filter(Boolean).join('|');
}

/** gmem_test(X, vm, flags): a fresh gmem of `size` (4 pages) with those flags. */
function gmemTest(s: Session, type: number, flags: number, size = 4 * PAGE): { vm: number; fd: number; size: number } {
  const vm = s.vm(type);
  return { vm, fd: s.gmem(vm, size, flags), size };
}

forBackends('guest_memfd_test.c (§4.1)', (b) => {
  const prof = profile(b);

  kcase(b, 'main: TEST_REQUIRE(KVM_CAP_GUEST_MEMFD)', (s) => {
    assert.equal(s.cap(KVM_CAP_GUEST_MEMFD), 1);
  });

  for (const type of typesOf(prof.vmTypes)) {
    const tname = VM_TYPE_NAMES[type] ?? String(type);
    if ((prof.vmTypes & (1 << type)) === 0) {
      kcase(b, `test_guest_memfd(${tname}): #1–#15`, (s) => s.needVmType(type));
      continue;
    }
    const vmFlags = prof.flags.get(type) ?? 0;
    describe(`test_guest_memfd(${tname})`, () => {
      kcase(b, '#1 test_guest_memfd_flags: each bit 0..63 → fd if in the VM\'s KVM_CAP_GUEST_MEMFD_FLAGS, else EINVAL', (s) => {
        const vm = s.vm(type);
        const valid = BigInt(s.cap(KVM_CAP_GUEST_MEMFD_FLAGS, vm));
        assert.equal(Number(valid), vmFlags);
        for (let bit = 0n; bit < 64n; bit++) {
          const flag = 1n << bit;
          if ((flag & valid) !== 0n) s.close(s.gmem(vm, PAGE, flag));
          else expectErrno('EINVAL', () => s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: PAGE, flags: flag }), `flag 1<<${bit}`);
        }
      });

      const runs = [0];
      if ((vmFlags & GUEST_MEMFD_FLAG_MMAP) !== 0) runs.push(GUEST_MEMFD_FLAG_MMAP);
      if ((vmFlags & GUEST_MEMFD_FLAG_INIT_SHARED) !== 0) runs.push(GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
      for (const flags of runs) {
        describe(`__test_guest_memfd(flags = ${flagName(flags)})`, () => {
          defineGmemTests(b, type, flags);
        });
      }
    });
  }

  kcase(b, `#16 test_guest_memfd_guest: the guest reads 0xaa and writes 0xff through a GMEM_ONLY slot with userspace_addr NULL [host: deviation ${HOST_PVM_GMEM_NULL_UADDR_MMIO.name}]`, (s, t) => {
    s.needCap(KVM_CAP_GUEST_MEMFD_FLAGS); // the selftest returns early without it
    const vm = s.vm(0);
    const vcpu = s.vcpu(vm);
    const vmFlags = s.cap(KVM_CAP_GUEST_MEMFD_FLAGS, vm);
    assert.ok(vmFlags & GUEST_MEMFD_FLAG_MMAP, 'the default VM type supports MMAP');
    assert.ok(vmFlags & GUEST_MEMFD_FLAG_INIT_SHARED, 'the default VM type supports INIT_SHARED');
    const size = PAGE;
    const fd = s.gmem(vm, size, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
    s.setRegion(vm, { slot: 1, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: SZ_4G, memory_size: size, userspace_addr: 0, guest_memfd: fd, guest_memfd_offset: 0 });
    let mem = s.mmap(size, RW, MAP_SHARED, fd);
    s.k.store(mem, filled(size, 0xaa));
    s.munmap(mem, size);
    // The selftest's guest_code: GUEST_ASSERT every byte is 0xaa, write 0xff, GUEST_DONE.
    s.program(vcpu, [
      { op: 'check', gpa: SZ_4G, len: size, byte: 0xaa },
      { op: 'fill', gpa: SZ_4G, len: size, byte: 0xff },
      { op: 'ucall', args: [UCALL_DONE] },
    ]);
    if (deviates(b, HOST_PVM_GMEM_NULL_UADDR_MMIO)) {
      t.diagnostic(`deviation ${HOST_PVM_GMEM_NULL_UADDR_MMIO.name}: ${HOST_PVM_GMEM_NULL_UADDR_MMIO.observed}`);
      const run = s.run(vcpu);
      assert.equal(run.exit_reason, KVM_EXIT_MMIO, `${HOST_PVM_GMEM_NULL_UADDR_MMIO.name}: KVM_EXIT_MMIO`);
      assert.equal(run.mmio.phys_addr, SZ_4G, `${HOST_PVM_GMEM_NULL_UADDR_MMIO.name}: at the slot's gpa`);
      assert.equal(run.mmio.is_write, 0, `${HOST_PVM_GMEM_NULL_UADDR_MMIO.name}: the guest's first access, a read`);
      assert.equal(run.mmio.len, 1, `${HOST_PVM_GMEM_NULL_UADDR_MMIO.name}: of one byte`);
      return;
    }
    const run = s.run(vcpu);
    assert.equal(run.exit_reason, KVM_EXIT_IO);
    assert.deepEqual(run.ucall, [UCALL_DONE], `guest: ${JSON.stringify(run.ucall)} (GUEST_UCALL_CHECK_FAILED = 0x${GUEST_UCALL_CHECK_FAILED.toString(16)}: gpa, got, expected)`);
    assert.equal(s.run(vcpu).exit_reason, KVM_EXIT_HLT, 'the guest halts after UCALL_DONE');
    mem = s.mmap(size, RW, MAP_SHARED, fd);
    assertFilled(s.k.load(mem, size), 0xff, 'the host view after the guest wrote');
  });
});

function defineGmemTests(b: Backend, type: number, flags: number): void {
  const mmap = (flags & GUEST_MEMFD_FLAG_MMAP) !== 0;
  const shared = (flags & GUEST_MEMFD_FLAG_INIT_SHARED) !== 0;

  kcase(b, '#2 test_create_guest_memfd_multiple: 1- and 2-page gmems, st_size 4096 and 8192, distinct st_ino', (s) => {
    const vm = s.vm(type);
    const fd1 = s.gmem(vm, PAGE, 0);
    assert.equal(s.k.fstat(fd1).st_size, PAGE);
    const fd2 = s.gmem(vm, 2 * PAGE, 0);
    assert.equal(s.k.fstat(fd2).st_size, 2 * PAGE);
    const st1 = s.k.fstat(fd1);
    assert.equal(st1.st_size, PAGE, 'the first is unchanged');
    assert.notEqual(st1.st_ino, s.k.fstat(fd2).st_ino);
  });

  kcase(b, '#3 test_create_guest_memfd_invalid_sizes: sizes 1…4095 → EINVAL each', (s) => {
    const vm = s.vm(type);
    for (let size = 1; size < PAGE; size++) {
      expectErrno('EINVAL', () => s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size, flags }), `size ${size}`);
    }
  });

  kcase(b, '#4 test_file_read_write: read, write → EINVAL; pread, pwrite → ESPIPE', (s) => {
    const { fd } = gmemTest(s, type, flags);
    expectErrno('EINVAL', () => s.k.read(fd, new Uint8Array(64)), 'read');
    expectErrno('EINVAL', () => s.k.write(fd, new Uint8Array(64)), 'write');
    expectErrno('ESPIPE', () => s.k.pread(fd, new Uint8Array(64), 0), 'pread');
    expectErrno('ESPIPE', () => s.k.pwrite(fd, new Uint8Array(64), 0), 'pwrite');
  });

  if (mmap) {
    if (shared) {
      kcase(b, '#7 test_mmap_supported: memset 0xaa, punch page 0 → zeros there, 0xaa elsewhere; rewrite', (s) => {
        const { fd, size } = gmemTest(s, type, flags);
        const mem = s.mmap(size, RW, MAP_SHARED, fd);
        s.k.store(mem, filled(size, 0xaa));
        assertFilled(s.k.load(mem, size), 0xaa, 'after memset');
        s.k.fallocate(fd, PUNCH, 0, PAGE);
        assertFilled(s.k.load(mem, PAGE), 0x00, 'page 0 after punch');
        assertFilled(s.k.load(mem + PAGE, size - PAGE), 0xaa, 'pages 1–3 after punch');
        s.k.store(mem, filled(PAGE, 0xaa));
        assertFilled(s.k.load(mem, size), 0xaa, 'after rewriting page 0');
        s.munmap(mem, size);
      });

      kcase(b, '#8 test_fault_overflow: a 4·S mapping of an S file: memset → SIGBUS at S; load at S → SIGBUS; [0, S) is 0xaa', (s) => {
        const { fd, size } = gmemTest(s, type, flags);
        const mem = s.mmap(4 * size, RW, MAP_SHARED, fd);
        expectSignalIn('SIGBUS', () => s.k.store(mem, filled(4 * size, 0xaa)), mem + size, mem + size + PAGE, 'memset');
        expectSignalIn('SIGBUS', () => s.k.load(mem + size, 1), mem + size, mem + size + 1, 'load at S');
        assertFilled(s.k.load(mem, size), 0xaa, 'the accessible part');
      });

      kcase(b, '#12 test_collapse: PMD-aligned MAP_FIXED mapping; MADV_HUGEPAGE ok; MADV_COLLAPSE → EINVAL; MADV_DONTNEED ok; refault ok', (s) => {
        const madvise = s.needExt('madvise');
        const { fd } = gmemTest(s, type, flags, PMD_SIZE);
        const reserved = s.mmap(2 * PMD_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
        const aligned = Math.ceil(reserved / PMD_SIZE) * PMD_SIZE;
        // Inside the reservation: released with it (not tracked on its own).
        const mem = s.k.mmap(aligned, PMD_SIZE, RW, MAP_FIXED | MAP_SHARED, fd, 0);
        assert.equal(mem, aligned);
        assert.equal(mem % PMD_SIZE, 0, 'the mapping is PMD-aligned');
        for (let i = 0; i < PMD_SIZE; i += PAGE) s.k.load(mem + i, 1);
        madvise(mem, PMD_SIZE, MADV_HUGEPAGE);
        expectErrno('EINVAL', () => madvise(mem, PMD_SIZE, MADV_COLLAPSE), 'MADV_COLLAPSE');
        madvise(mem, PMD_SIZE, MADV_DONTNEED);
        assert.equal(s.k.load(mem, 1)[0], 0);
        s.munmap(reserved, 2 * PMD_SIZE);
      });
    } else {
      kcase(b, '#9 test_fault_private: an MMAP-only (private) gmem: memset → SIGBUS at once; load mem[0] → SIGBUS', (s) => {
        const { fd, size } = gmemTest(s, type, flags);
        const mem = s.mmap(size, RW, MAP_SHARED, fd);
        expectSignalIn('SIGBUS', () => s.k.store(mem, filled(size, 0xaa)), mem, mem + PAGE, 'memset');
        expectSignalIn('SIGBUS', () => s.k.load(mem, 1), mem, mem + 1, 'load mem[0]');
      });
    }

    kcase(b, '#6 test_mmap_cow: mmap(MAP_PRIVATE, RW) → EINVAL', (s) => {
      const { fd, size } = gmemTest(s, type, flags);
      expectErrno('EINVAL', () => s.k.mmap(0, size, RW, MAP_PRIVATE, fd, 0), 'MAP_PRIVATE');
    });
  } else {
    kcase(b, '#5 test_mmap_not_supported: mmap of one page and of 4 pages → ENODEV', (s) => {
      const { fd, size } = gmemTest(s, type, flags);
      expectErrno('ENODEV', () => s.k.mmap(0, PAGE, RW, MAP_SHARED, fd, 0), '1 page');
      expectErrno('ENODEV', () => s.k.mmap(0, size, RW, MAP_SHARED, fd, 0), '4 pages');
    });
  }

  kcase(b, '#13 test_file_size: st_size 16384, st_blksize 4096', (s) => {
    const { fd, size } = gmemTest(s, type, flags);
    const st = s.k.fstat(fd);
    assert.equal(st.st_size, size);
    assert.equal(st.st_blksize, PAGE);
  });

  kcase(b, '#14 test_fallocate: the ordered sequence of nine calls (failures are EINVAL on 6.18)', (s) => {
    const { fd, size: S } = gmemTest(s, type, flags);
    s.k.fallocate(fd, KEEP, 0, S);
    expectErrno('EINVAL', () => s.k.fallocate(fd, PUNCH, PAGE - 1, PAGE), '2. PUNCH(4095, 4096)');
    expectErrno('EINVAL', () => s.k.fallocate(fd, KEEP, S, PAGE), '3. KEEP(S, 4096)');
    expectErrno('EINVAL', () => s.k.fallocate(fd, KEEP, S + PAGE, PAGE), '4. KEEP(S + 4096, 4096)');
    s.k.fallocate(fd, PUNCH, S, PAGE);
    s.k.fallocate(fd, PUNCH, S + PAGE, PAGE);
    expectErrno('EINVAL', () => s.k.fallocate(fd, PUNCH, PAGE, PAGE - 1), '7. PUNCH(4096, 4095)');
    s.k.fallocate(fd, PUNCH, PAGE, PAGE);
    s.k.fallocate(fd, KEEP, PAGE, PAGE);
  });

  kcase(b, '#15 test_invalid_punch_hole: PUNCH|KEEP at ten unaligned (offset, len) → EINVAL each', (s) => {
    const { fd } = gmemTest(s, type, flags);
    const cases: Array<[number, number]> = [
      [0, 1], [0, PAGE - 1], [0, PAGE + 1], [1, 1], [1, PAGE - 1], [1, PAGE], [1, PAGE + 1], [PAGE, 1], [PAGE, PAGE - 1],
      [PAGE, PAGE + 1],
    ];
    for (const [off, len] of cases) expectErrno('EINVAL', () => s.k.fallocate(fd, PUNCH, off, len), `PUNCH(${off}, ${len})`);
  });
}

