/**
 * Memslot binding (KVM_SET_USER_MEMORY_REGION2 with guest_memfd): upstream-linux.md §5 rows
 * 42–62 and 68 and the memslot lines of §5b (2E). Forked children (rows 66–67) and memfd (part of
 * row 44) are not expressible through Syscalls.
 */
import assert from 'node:assert/strict';
import {
  GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_CAP_NR_MEMSLOTS, KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_SET_USER_MEMORY_REGION, KVM_SET_USER_MEMORY_REGION2,
} from '../../src/uapi/kvm.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../../src/uapi/linux.js';
import type { KvmUserspaceMemoryRegion2, U64 } from '../../src/uapi/syscalls.js';
import { expectErrno } from '../lib/harness.js';
import { forBackends, kcase, PAGE, region, type Session, SZ_2M } from './common.js';

const GMEM = KVM_MEM_GUEST_MEMFD;
const X = 0xc0000000;
const SZ_4M = 2 * SZ_2M;

type R = Partial<KvmUserspaceMemoryRegion2> & { slot: number; guest_phys_addr: U64; memory_size: U64 };

function set2(s: Session, vm: number, r: R): void {
  s.k.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, region(r));
}

function fails2(s: Session, vm: number, code: string, r: R, what: string): void {
  s.failsCleanly(code, () => s.k.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, region(r)), what);
}

/** A VM with one 4-page gmem (flags 0). */
function vmWithGmem(s: Session, size = 4 * PAGE, flags = 0): { vm: number; fd: number } {
  const vm = s.vm(0);
  return { vm, fd: s.gmem(vm, size, flags) };
}

/** Row 52's layout: gmem of 5×2 MiB; slot A (10) at X, 4 MiB, offset 0; slot B (11) at 2X, 4 MiB, offset 4 MiB. */
function twoSlots(s: Session): { vm: number; fd: number } {
  const { vm, fd } = vmWithGmem(s, 5 * SZ_2M);
  set2(s, vm, { slot: 10, flags: GMEM, guest_phys_addr: X, memory_size: SZ_4M, guest_memfd: fd, guest_memfd_offset: 0 });
  set2(s, vm, { slot: 11, flags: GMEM, guest_phys_addr: 2 * X, memory_size: SZ_4M, guest_memfd: fd, guest_memfd_offset: SZ_4M });
  return { vm, fd };
}

forBackends('memslot binding (§5 rows 42–62, 68, §5b)', (b) => {
  kcase(b, 'row 42: v1 KVM_SET_USER_MEMORY_REGION with flag GUEST_MEMFD → EINVAL', (s) => {
    const { vm, fd } = vmWithGmem(s);
    s.failsCleanly('EINVAL', () => s.k.ioctl(vm, KVM_SET_USER_MEMORY_REGION,
      region({ slot: 0, flags: GMEM, guest_phys_addr: 0, memory_size: 4 * PAGE, guest_memfd: fd })), 'v1 with GUEST_MEMFD');
  });

  kcase(b, 'row 43: guest_memfd = −1, = 9999 (not open) → EBADF', (s) => {
    const { vm } = vmWithGmem(s);
    fails2(s, vm, 'EBADF', { slot: 0, flags: GMEM, guest_phys_addr: 0, memory_size: 4 * PAGE, guest_memfd: -1 }, 'fd -1');
    fails2(s, vm, 'EBADF', { slot: 0, flags: GMEM, guest_phys_addr: 0, memory_size: 4 * PAGE, guest_memfd: 9999 }, 'fd 9999');
  });

  kcase(b, 'row 44: guest_memfd = /dev/kvm fd, VM fd, (vCPU fd), other VM\'s gmem → EINVAL each', (s) => {
    const { vm } = vmWithGmem(s);
    const vcpu = s.vcpu(vm);
    const other = vmWithGmem(s);
    for (const [what, fd] of [['/dev/kvm', s.kvm()], ['VM fd', vm], ['vCPU fd', vcpu], ["other VM's gmem", other.fd]] as const) {
      fails2(s, vm, 'EINVAL', { slot: 0, flags: GMEM, guest_phys_addr: 0, memory_size: 4 * PAGE, guest_memfd: fd }, what);
    }
  });

  kcase(b, 'row 45: guest_memfd_offset 1, 4095, 0xfffffffffffff000, 1<<63 → EINVAL ×4', (s) => {
    const { vm, fd } = vmWithGmem(s);
    for (const off of [1, 4095, 0xfffffffffffff000n, 1n << 63n]) {
      fails2(s, vm, 'EINVAL', { slot: 0, flags: GMEM, guest_phys_addr: 0, memory_size: PAGE, guest_memfd: fd, guest_memfd_offset: off }, `offset ${off}`);
    }
  });

  kcase(b, 'row 46: offset + size > gmem size; size > gmem size → EINVAL', (s) => {
    const { vm, fd } = vmWithGmem(s);
    fails2(s, vm, 'EINVAL', { slot: 0, flags: GMEM, guest_phys_addr: 0, memory_size: 2 * PAGE, guest_memfd: fd, guest_memfd_offset: 3 * PAGE }, 'offset + size');
    fails2(s, vm, 'EINVAL', { slot: 0, flags: GMEM, guest_phys_addr: 0, memory_size: 5 * PAGE, guest_memfd: fd }, 'size');
  });

  kcase(b, 'row 47: flags GUEST_MEMFD|READONLY, GUEST_MEMFD|LOG_DIRTY_PAGES, 1<<3 → EINVAL ×3', (s) => {
    const { vm, fd } = vmWithGmem(s);
    for (const flags of [GMEM | KVM_MEM_READONLY, GMEM | KVM_MEM_LOG_DIRTY_PAGES, 1 << 3]) {
      fails2(s, vm, 'EINVAL', { slot: 0, flags, guest_phys_addr: 0, memory_size: 4 * PAGE, guest_memfd: fd }, `flags 0x${flags.toString(16)}`);
    }
  });

  kcase(b, 'row 48: gmem slot with userspace_addr = anon + 1, = 0xffff800000000000 → EINVAL', (s) => {
    const { vm, fd } = vmWithGmem(s);
    const anon = s.anon(4 * PAGE);
    for (const uaddr of [anon + 1, 0xffff800000000000n]) {
      fails2(s, vm, 'EINVAL', { slot: 0, flags: GMEM, guest_phys_addr: 0, memory_size: 4 * PAGE, userspace_addr: uaddr, guest_memfd: fd }, `uaddr ${uaddr}`);
    }
  });

  kcase(b, 'row 49: gmem slot with pad1 = 7, pad2[0] = 9, pad2[13] = 1 → 0 (pads not checked)', (s) => {
    const { vm, fd } = vmWithGmem(s);
    const pad2: U64[] = new Array<U64>(14).fill(0);
    pad2[0] = 9;
    pad2[13] = 1;
    set2(s, vm, { slot: 0, flags: GMEM, guest_phys_addr: 0, memory_size: 4 * PAGE, guest_memfd: fd, pad1: 7, pad2 });
  });

  kcase(b, 'row 50: gmem (flags 0) slot with userspace_addr = NULL → 0', (s) => {
    const { vm, fd } = vmWithGmem(s);
    set2(s, vm, { slot: 0, flags: GMEM, guest_phys_addr: 0, memory_size: 4 * PAGE, userspace_addr: 0, guest_memfd: fd });
  });

  kcase(b, 'row 51: non-gmem slot with garbage guest_memfd = 12345 and offset = 77 → 0 (ignored)', (s) => {
    const vm = s.vm(0);
    const anon = s.anon(4 * PAGE);
    set2(s, vm, { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 4 * PAGE, userspace_addr: anon, guest_memfd: 12345, guest_memfd_offset: 77 });
  });

  kcase(b, 'row 52: slot A (GPA X, 4M, off 0), slot B (GPA 2X, 4M, off 4M), delete A → 0, 0, 0', (s) => {
    const { vm } = twoSlots(s);
    s.deleteSlot(vm, 10, GMEM);
  });

  kcase(b, 'row 53: re-add A with offset 2M, with offset 6M (gmem overlap with B only) → EINVAL, EINVAL (6.18; next: EEXIST)', (s) => {
    const { vm, fd } = twoSlots(s);
    s.deleteSlot(vm, 10, GMEM);
    for (const off of [SZ_2M, 3 * SZ_2M]) {
      fails2(s, vm, 'EINVAL', { slot: 10, flags: GMEM, guest_phys_addr: X, memory_size: SZ_4M, guest_memfd: fd, guest_memfd_offset: off }, `offset ${off}`);
    }
    set2(s, vm, { slot: 10, flags: GMEM, guest_phys_addr: X, memory_size: SZ_4M, guest_memfd: fd, guest_memfd_offset: 0 });
  });

  kcase(b, 'row 54: re-add A overlapping B\'s GPA front, back, both → EEXIST ×3 (before the gmem bind)', (s) => {
    const { vm, fd } = twoSlots(s);
    s.deleteSlot(vm, 10, GMEM);
    const cases: Array<[string, number, number]> = [
      ['front', 2 * X - SZ_2M, SZ_4M], ['back', 2 * X + SZ_2M, SZ_4M], ['both', 2 * X - SZ_2M, 4 * SZ_2M],
    ];
    for (const [what, gpa, size] of cases) {
      fails2(s, vm, 'EEXIST', { slot: 10, flags: GMEM, guest_phys_addr: gpa, memory_size: size, guest_memfd: fd, guest_memfd_offset: 0 }, what);
    }
  });

  kcase(b, 'row 55: modify gmem slot B: identical re-set, GPA move, add LOG_DIRTY, drop the GUEST_MEMFD flag → EINVAL ×4', (s) => {
    const { vm, fd } = twoSlots(s);
    const B = { slot: 11, flags: GMEM, guest_phys_addr: 2 * X, memory_size: SZ_4M, guest_memfd: fd, guest_memfd_offset: SZ_4M };
    fails2(s, vm, 'EINVAL', B, 'identical re-set');
    fails2(s, vm, 'EINVAL', { ...B, guest_phys_addr: 3 * X }, 'GPA move');
    fails2(s, vm, 'EINVAL', { ...B, flags: GMEM | KVM_MEM_LOG_DIRTY_PAGES }, 'add LOG_DIRTY_PAGES');
    fails2(s, vm, 'EINVAL', { ...B, flags: 0 }, 'drop GUEST_MEMFD');
  });

  kcase(b, 'row 56: adjacent disjoint gmem ranges in new slots → 0; a one-page slot overlapping slot C\'s gmem range → EINVAL', (s) => {
    const { vm, fd } = vmWithGmem(s, 8 * PAGE);
    set2(s, vm, { slot: 1, flags: GMEM, guest_phys_addr: X, memory_size: 2 * PAGE, guest_memfd: fd, guest_memfd_offset: 0 });
    set2(s, vm, { slot: 2, flags: GMEM, guest_phys_addr: 2 * X, memory_size: 2 * PAGE, guest_memfd: fd, guest_memfd_offset: 2 * PAGE });
    set2(s, vm, { slot: 3, flags: GMEM, guest_phys_addr: 3 * X, memory_size: 4 * PAGE, guest_memfd: fd, guest_memfd_offset: 4 * PAGE });
    fails2(s, vm, 'EINVAL', { slot: 4, flags: GMEM, guest_phys_addr: 4 * X, memory_size: PAGE, guest_memfd: fd, guest_memfd_offset: 7 * PAGE }, 'one page inside slot 3');
  });

  kcase(b, 'row 57: non-gmem slot overlapping a gmem slot\'s GPA → EEXIST', (s) => {
    const { vm, fd } = vmWithGmem(s);
    set2(s, vm, { slot: 1, flags: GMEM, guest_phys_addr: X, memory_size: 4 * PAGE, guest_memfd: fd });
    const anon = s.anon(4 * PAGE);
    fails2(s, vm, 'EEXIST', { slot: 2, flags: 0, guest_phys_addr: X + 2 * PAGE, memory_size: 4 * PAGE, userspace_addr: anon }, 'overlap');
  });

  kcase(b, 'row 58: close(gmem) while bound → 0; delete the slot → 0; re-create with the stale fd number → EBADF', (s) => {
    const { vm, fd } = vmWithGmem(s);
    const r = { slot: 1, flags: GMEM, guest_phys_addr: X, memory_size: 4 * PAGE, guest_memfd: fd };
    set2(s, vm, r);
    s.close(fd);
    s.deleteSlot(vm, 1, GMEM);
    fails2(s, vm, 'EBADF', r, 'stale fd');
  });

  kcase(b, 'row 59: delete a non-existent slot → EINVAL', (s) => {
    const vm = s.vm(0);
    s.failsCleanly('EINVAL', () => s.deleteSlot(vm, 7), 'delete slot 7');
  });

  kcase(b, 'row 60: MMAP gmem bound with userspace_addr 0 → 0; a second slot on the same gmem range → EINVAL', (s) => {
    const { vm, fd } = vmWithGmem(s, 4 * PAGE, GUEST_MEMFD_FLAG_MMAP);
    set2(s, vm, { slot: 1, flags: GMEM, guest_phys_addr: X, memory_size: 4 * PAGE, guest_memfd: fd });
    fails2(s, vm, 'EINVAL', { slot: 2, flags: GMEM, guest_phys_addr: 2 * X, memory_size: 4 * PAGE, guest_memfd: fd }, 'same range');
  });

  kcase(b, 'row 61: VM2 binds its gmem, close(VM2), then KEEP, PUNCH, close(gmem) → 0 ×4', (s) => {
    const { vm, fd } = vmWithGmem(s, 4 * PAGE, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
    set2(s, vm, { slot: 1, flags: GMEM, guest_phys_addr: X, memory_size: 4 * PAGE, guest_memfd: fd });
    s.close(vm);
    s.k.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4 * PAGE);
    s.k.fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 4 * PAGE);
    s.close(fd);
  });

  kcase(b, 'row 62: binding an old (closed) VM\'s gmem into a new VM → EINVAL', (s) => {
    const old = vmWithGmem(s);
    s.close(old.vm);
    const vm = s.vm(0);
    fails2(s, vm, 'EINVAL', { slot: 1, flags: GMEM, guest_phys_addr: X, memory_size: 4 * PAGE, guest_memfd: old.fd }, 'old VM\'s gmem');
  });

  kcase(b, 'row 68: dup(gmem), close the original; fallocate via the dup → 0; bind via the dup → 0', (s) => {
    const dup = s.needExt('dup');
    const { vm, fd } = vmWithGmem(s);
    const copy = s.own(dup(fd));
    s.close(fd);
    s.k.fallocate(copy, FALLOC_FL_KEEP_SIZE, 0, 4 * PAGE);
    set2(s, vm, { slot: 1, flags: GMEM, guest_phys_addr: X, memory_size: 4 * PAGE, guest_memfd: copy });
  });

  kcase(b, '§5b: slot id = KVM_CAP_NR_MEMSLOTS (32764) → EINVAL, 32763 works; a slot of 2^31 pages → EINVAL', (s) => {
    const vm = s.vm(0);
    const nr = s.cap(KVM_CAP_NR_MEMSLOTS, vm);
    assert.equal(nr, 32764);
    const anon = s.anon(PAGE);
    fails2(s, vm, 'EINVAL', { slot: nr, guest_phys_addr: X, memory_size: PAGE, userspace_addr: anon }, 'slot id 32764');
    set2(s, vm, { slot: nr - 1, guest_phys_addr: X, memory_size: PAGE, userspace_addr: anon });
    fails2(s, vm, 'EINVAL', { slot: 1, guest_phys_addr: 2 ** 44, memory_size: 2 ** 31 * PAGE, userspace_addr: 0x10000000 }, '2^31 pages');
  });

  kcase(b, '§5b: a plain slot can be re-set, moved, given LOG_DIRTY_PAGES; resizing it or toggling READONLY → EINVAL', (s) => {
    const vm = s.vm(0);
    const anon = s.anon(4 * PAGE);
    const r = { slot: 1, flags: 0, guest_phys_addr: X, memory_size: 4 * PAGE, userspace_addr: anon };
    set2(s, vm, r);
    set2(s, vm, r);
    set2(s, vm, { ...r, guest_phys_addr: 2 * X });
    set2(s, vm, { ...r, guest_phys_addr: 2 * X, flags: KVM_MEM_LOG_DIRTY_PAGES });
    fails2(s, vm, 'EINVAL', { ...r, guest_phys_addr: 2 * X, flags: KVM_MEM_LOG_DIRTY_PAGES, memory_size: 2 * PAGE }, 'resize');
    fails2(s, vm, 'EINVAL', { ...r, guest_phys_addr: 2 * X, flags: KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY }, 'toggle READONLY');
  });

  kcase(b, '§5b: a gmem slot can be deleted with KVM_MEM_GUEST_MEMFD still set in flags', (s) => {
    const { vm, fd } = vmWithGmem(s);
    set2(s, vm, { slot: 1, flags: GMEM, guest_phys_addr: X, memory_size: 4 * PAGE, guest_memfd: fd });
    set2(s, vm, { slot: 1, flags: GMEM, guest_phys_addr: X, memory_size: 0, guest_memfd: fd });
    // The slot is gone: the same range binds again.
    set2(s, vm, { slot: 2, flags: GMEM, guest_phys_addr: X, memory_size: 4 * PAGE, guest_memfd: fd });
    expectErrno('EINVAL', () => s.deleteSlot(vm, 1), 'slot 1 no longer exists');
  });
});
