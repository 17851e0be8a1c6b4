/**
 * R51's guest_memfd_hugetlb_reporting_test.c (in-place-conversion-and-hugetlb.md §6.3 and §4.1
 * "Stats lifecycle"), for 2M and 1G: the hstate counters in /sys/kernel/mm/hugepages/hugepages-<size>/
 * read with readFile at each step of a guest_memfd of one huge page:
 *   create VM → no change; create guest_memfd → resv +1; fallocate → free −1, resv back;
 *   PUNCH_HOLE → free back, resv +1 (reserved, not faulted); close → every counter at baseline.
 * nr_hugepages, nr_overcommit_hugepages and surplus_hugepages never change. The selftest's
 * reference run with memfd_create(MFD_HUGETLB) and its hugetlb cgroup v1 counters are not
 * expressible through Syscalls (no memfd_create, no cgroup files in the model); the selftest's
 * 300 ms wait after close is not needed (the model frees synchronously).
 *
 * Run for uapi 'rfc-1g' (flags SUPPORT_SHARED | HUGETLB | GUESTMEM_HUGETLB_FLAG_2MB/1GB) and for
 * uapi 'in-place' with the HugeTLB work-in-progress creation (GUEST_MEMFD_FLAG_HUGETLB + page_order
 * 9/18, private by default). Plus pool exhaustion: a guest_memfd the pool cannot reserve is ENOMEM
 * and changes nothing.
 */
import assert from 'node:assert/strict';
import {
  GUEST_MEMFD_FLAG_HUGETLB, GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_SUPPORT_SHARED, KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_CREATE_GUEST_MEMFD, KVM_X86_SW_PROTECTED_VM,
} from '../../src/uapi/kvm.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../../src/uapi/linux.js';
import type { ModelKernelOptions } from '../../src/kernel/model-kernel.js';
import type { Backend } from '../lib/harness.js';
import { forBackends, kcase, type Session, Skip } from './common.js';
import { GIB, needInPlace, needRfc1g, SIZES, type UnitSize, withModel } from './conversion-common.js';

const FILES = ['nr_hugepages', 'free_hugepages', 'resv_hugepages', 'surplus_hugepages', 'nr_overcommit_hugepages'] as const;
type Stats = Record<(typeof FILES)[number], number>;

function stats(s: Session, size: UnitSize): Stats {
  const out = {} as Stats;
  for (const f of FILES) out[f] = Number(s.k.readFile(`${size.sysfs}/${f}`).trim());
  return out;
}

function delta(base: Stats, d: Partial<Stats>): Stats {
  const out = { ...base };
  for (const [k, v] of Object.entries(d)) out[k as keyof Stats] += v;
  return out;
}

type Gen = 'rfc-1g' | 'in-place';

/** The creation struct of one HugeTLB guest_memfd of `n` huge pages in each generation. */
function createArgs(gen: Gen, size: UnitSize, n: number): { size: number; flags: bigint | number; page_order?: number } {
  if (gen === 'rfc-1g') return { size: n * size.bytes, flags: BigInt(GUEST_MEMFD_FLAG_SUPPORT_SHARED) | size.r51Flags };
  return { size: n * size.bytes, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_HUGETLB, page_order: size.name === '2M' ? 9 : 18 };
}

function need(s: Session, gen: Gen): void {
  if (gen === 'rfc-1g') {
    needRfc1g(s, true);
    return;
  }
  needInPlace(s);
  const flags = s.cap(KVM_CAP_GUEST_MEMFD_FLAGS);
  if ((flags & GUEST_MEMFD_FLAG_HUGETLB) === 0) throw new Skip(`needs GUEST_MEMFD_FLAG_HUGETLB in KVM_CAP_GUEST_MEMFD_FLAGS: it answers 0x${flags.toString(16)}`);
}

function modelOpts(gen: Gen, size: UnitSize, pool: number): ModelKernelOptions {
  return size.name === '2M'
    ? { uapi: gen, hugepages: { '2M': pool }, memoryBytes: GIB }
    : { uapi: gen, hugepages: { '1G': pool }, memoryBytes: (pool + 2) * GIB };
}

function defineReporting(b: Backend, gen: Gen, size: UnitSize): void {
  kcase(withModel(b, modelOpts(gen, size, 4)), `[${gen}] ${size.name}: create VM (no change); create guest_memfd of 1 huge page (resv +1); fallocate (free −1, resv back); PUNCH_HOLE (free back, resv +1); close (baseline)`, (s) => {
    need(s, gen);
    const base = stats(s, size);
    assert.ok(base.free_hugepages - base.resv_hugepages >= 1, `the ${size.name} pool has a free unreserved page`);
    const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
    assert.deepEqual(stats(s, size), base, 'create VM: no change');
    const fd = s.own(s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, createArgs(gen, size, 1)));
    assert.deepEqual(stats(s, size), delta(base, { resv_hugepages: 1 }), 'create guest_memfd: the whole file is reserved');
    s.k.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, size.bytes);
    assert.deepEqual(stats(s, size), delta(base, { free_hugepages: -1 }), 'fallocate: a page taken, its reservation consumed');
    assert.equal(s.k.fstat(fd).st_blocks, size.bytes / 512, 'st_blocks counts the huge page');
    s.k.fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, size.bytes);
    assert.deepEqual(stats(s, size), delta(base, { resv_hugepages: 1 }), 'PUNCH_HOLE: back to reserved, not faulted');
    assert.equal(s.k.fstat(fd).st_blocks, 0);
    s.k.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, size.bytes);
    assert.deepEqual(stats(s, size), delta(base, { free_hugepages: -1 }), 're-fallocate');
    s.close(vm);
    assert.deepEqual(stats(s, size), delta(base, { free_hugepages: -1 }), 'closing the VM fd: the guest_memfd keeps the VM and the page');
    s.close(fd);
    assert.deepEqual(stats(s, size), base, 'close: every counter at baseline');
  });

  kcase(withModel(b, modelOpts(gen, size, 2)), `[${gen}] ${size.name}: pool exhaustion — a guest_memfd the pool cannot reserve → ENOMEM, nothing changes (counters, fds, model state)`, (s) => {
    need(s, gen);
    const vm = s.vm(KVM_X86_SW_PROTECTED_VM);
    const base = stats(s, size);
    const avail = base.free_hugepages - base.resv_hugepages;
    s.failsCleanly('ENOMEM', () => s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, createArgs(gen, size, avail + 1)), `${avail + 1} huge pages from a pool with ${avail} unreserved`);
    assert.deepEqual(stats(s, size), base);
    const fd = s.own(s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, createArgs(gen, size, avail)));
    assert.deepEqual(stats(s, size), delta(base, { resv_hugepages: avail }));
    s.failsCleanly('ENOMEM', () => s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, createArgs(gen, size, 1)), 'one more page while the pool is fully reserved');
    // The reserved file can always be populated: its pages are guaranteed.
    s.k.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, avail * size.bytes);
    assert.deepEqual(stats(s, size), delta(base, { free_hugepages: -avail }));
    s.close(fd);
    assert.deepEqual(stats(s, size), base, 'close: baseline');
    s.close(s.own(s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, createArgs(gen, size, avail))));
  });
}

forBackends('guest_memfd_hugetlb_reporting_test.c (§6.3)', (b) => {
  for (const gen of ['rfc-1g', 'in-place'] as const) {
    for (const size of SIZES) if (size.hugetlb) defineReporting(b, gen, size);
  }
});
