/**
 * mmap of a guest_memfd and host access through the mapping: upstream-linux.md §5 rows 28–41 and
 * the mmap check orderings of §5b (2D). mlock, msync, fork, write(pipe) and O_DIRECT are not
 * expressible through Syscalls (docs/conformance-matrix.md).
 */
import assert from 'node:assert/strict';
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP } from '../../src/uapi/kvm.js';
import {
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MADV_COLLAPSE, MADV_DONTNEED, MADV_HUGEPAGE, MADV_PAGEOUT, MADV_REMOVE,
  MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, MAP_SHARED_VALIDATE, PROT_EXEC, PROT_READ, PROT_WRITE,
} from '../../src/uapi/linux.js';
import { expectErrno } from '../lib/harness.js';
import { assertFilled, expectSignalIn, filled, forBackends, kcase, PAGE, type Session } from './common.js';

const p = PAGE;
const RW = PROT_READ | PROT_WRITE;
const MMAP = GUEST_MEMFD_FLAG_MMAP;
const SHARED_MMAP = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
/** MAP_SYNC (not in LEGACY_MAP_MASK) and PROT_SEM (x86 arch_validate_prot accepts it). */
const MAP_SYNC = 0x80000;
const PROT_SEM = 0x8;

function gmem(s: Session, flags: number, size = 4 * p): number {
  return s.gmem(s.vm(0), size, flags);
}

forBackends('mmap and host access (§5 rows 28–41, §5b)', (b) => {
  kcase(b, 'row 28: gmem flags 0: mmap SHARED RW, mmap PRIVATE R → ENODEV ×2', (s) => {
    const fd = gmem(s, 0);
    s.failsCleanly('ENODEV', () => s.k.mmap(0, 4 * p, RW, MAP_SHARED, fd, 0), 'SHARED RW');
    s.failsCleanly('ENODEV', () => s.k.mmap(0, 4 * p, PROT_READ, MAP_PRIVATE, fd, 0), 'PRIVATE R');
  });

  kcase(b, 'row 29: gmem MMAP only: mmap SHARED ok; read → SIGBUS; write → SIGBUS; still SIGBUS after KEEP(0, 4p)', (s) => {
    const fd = gmem(s, MMAP);
    const mem = s.mmap(4 * p, RW, MAP_SHARED, fd);
    expectSignalIn('SIGBUS', () => s.k.load(mem, 1), mem, mem + p, 'read');
    expectSignalIn('SIGBUS', () => s.k.store(mem + p, filled(1, 1)), mem + p, mem + 2 * p, 'write');
    s.k.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4 * p);
    expectSignalIn('SIGBUS', () => s.k.load(mem + 2 * p, 1), mem + 2 * p, mem + 3 * p, 'read after fallocate');
    expectSignalIn('SIGBUS', () => s.k.store(mem + 3 * p, filled(1, 1)), mem + 3 * p, mem + 4 * p, 'write after fallocate');
  });

  kcase(b, 'row 30: gmem MMAP only: mmap PRIVATE → EINVAL', (s) => {
    const fd = gmem(s, MMAP);
    s.failsCleanly('EINVAL', () => s.k.mmap(0, 4 * p, RW, MAP_PRIVATE, fd, 0), 'PRIVATE RW');
  });

  kcase(b, 'row 31: gmem INIT_SHARED only (no MMAP): mmap SHARED → ENODEV', (s) => {
    const fd = gmem(s, GUEST_MEMFD_FLAG_INIT_SHARED);
    s.failsCleanly('ENODEV', () => s.k.mmap(0, 4 * p, RW, MAP_SHARED, fd, 0), 'SHARED RW');
  });

  kcase(b, 'row 32: MMAP|INIT_SHARED: mmap PRIVATE RW → EINVAL; PRIVATE R → EINVAL; SHARED R|X → EPERM; offset 1 → EINVAL', (s) => {
    const fd = gmem(s, SHARED_MMAP);
    s.failsCleanly('EINVAL', () => s.k.mmap(0, 4 * p, RW, MAP_PRIVATE, fd, 0), 'PRIVATE RW');
    s.failsCleanly('EINVAL', () => s.k.mmap(0, 4 * p, PROT_READ, MAP_PRIVATE, fd, 0), 'PRIVATE R');
    s.failsCleanly('EPERM', () => s.k.mmap(0, 4 * p, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0), 'SHARED R|X');
    s.failsCleanly('EINVAL', () => s.k.mmap(0, 4 * p, RW, MAP_SHARED, fd, 1), 'offset 1');
  });

  kcase(b, '§5b: PROT_EXEC → EPERM before ENODEV (no MMAP) and before EINVAL (MAP_PRIVATE); unaligned offset or length 0 → EINVAL even without MMAP', (s) => {
    const plain = gmem(s, 0);
    const mappable = gmem(s, SHARED_MMAP);
    s.failsCleanly('EPERM', () => s.k.mmap(0, 4 * p, PROT_READ | PROT_EXEC, MAP_SHARED, plain, 0), 'R|X SHARED, no MMAP');
    s.failsCleanly('EPERM', () => s.k.mmap(0, 4 * p, PROT_READ | PROT_EXEC, MAP_PRIVATE, mappable, 0), 'R|X PRIVATE');
    s.failsCleanly('EINVAL', () => s.k.mmap(0, 4 * p, RW, MAP_SHARED, plain, 1), 'offset 1, no MMAP');
    s.failsCleanly('EINVAL', () => s.k.mmap(0, 0, RW, MAP_SHARED, plain, 0), 'length 0, no MMAP');
  });

  kcase(b, 'row 33: MMAP|INIT_SHARED: mmap SHARED at offset 8p (past EOF) → ok; access → SIGBUS', (s) => {
    const fd = gmem(s, SHARED_MMAP);
    const mem = s.mmap(p, RW, MAP_SHARED, fd, 8 * p);
    expectSignalIn('SIGBUS', () => s.k.load(mem, 1), mem, mem + p, 'read past EOF');
    expectSignalIn('SIGBUS', () => s.k.store(mem, filled(1, 1)), mem, mem + p, 'write past EOF');
  });

  kcase(b, 'row 34: mmap 16p over a 4p file; byte 0 reads 0x00 without allocation; memset 4p ok; access at 4p → SIGBUS', (s) => {
    const fd = gmem(s, SHARED_MMAP);
    const mem = s.mmap(16 * p, RW, MAP_SHARED, fd);
    assert.equal(s.k.load(mem, 1)[0], 0);
    s.k.store(mem, filled(4 * p, 0xaa));
    assertFilled(s.k.load(mem, 4 * p), 0xaa, 'the 4 pages of the file');
    expectSignalIn('SIGBUS', () => s.k.load(mem + 4 * p, 1), mem + 4 * p, mem + 5 * p, 'read at 4p');
    expectSignalIn('SIGBUS', () => s.k.store(mem + 15 * p, filled(1, 1)), mem + 15 * p, mem + 16 * p, 'write at 15p');
  });

  kcase(b, 'row 35: PUNCH page 0 while host-mapped → 0; c[0] = c[4095] = 0x00; page 1 still 0xaa', (s) => {
    const fd = gmem(s, SHARED_MMAP);
    const mem = s.mmap(4 * p, RW, MAP_SHARED, fd);
    s.k.store(mem, filled(4 * p, 0xaa));
    s.k.fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, p);
    assert.equal(s.k.load(mem, 1)[0], 0);
    assert.equal(s.k.load(mem + 4095, 1)[0], 0);
    assertFilled(s.k.load(mem, p), 0, 'page 0');
    assertFilled(s.k.load(mem + p, p), 0xaa, 'page 1');
  });

  kcase(b, 'row 36: MADV_REMOVE page 1 → 0, reads 0x00; MADV_DONTNEED page 2 → 0, keeps 0xaa', (s) => {
    const madvise = s.needExt('madvise');
    const fd = gmem(s, SHARED_MMAP);
    const mem = s.mmap(4 * p, RW, MAP_SHARED, fd);
    s.k.store(mem, filled(4 * p, 0xaa));
    madvise(mem + p, p, MADV_REMOVE);
    madvise(mem + 2 * p, p, MADV_DONTNEED);
    assertFilled(s.k.load(mem + p, p), 0, 'page 1 after MADV_REMOVE');
    assertFilled(s.k.load(mem + 2 * p, p), 0xaa, 'page 2 after MADV_DONTNEED');
    assertFilled(s.k.load(mem, p), 0xaa, 'page 0');
  });

  kcase(b, 'row 37: MADV_HUGEPAGE → 0; MADV_COLLAPSE → EINVAL; MADV_PAGEOUT → 0', (s) => {
    const madvise = s.needExt('madvise');
    const fd = gmem(s, SHARED_MMAP);
    const mem = s.mmap(4 * p, RW, MAP_SHARED, fd);
    s.k.store(mem, filled(4 * p, 0xaa));
    madvise(mem, 4 * p, MADV_HUGEPAGE);
    expectErrno('EINVAL', () => madvise(mem, 4 * p, MADV_COLLAPSE), 'MADV_COLLAPSE');
    madvise(mem, 4 * p, MADV_PAGEOUT);
    assertFilled(s.k.load(mem, 4 * p), 0xaa, 'data after MADV_PAGEOUT (unevictable)');
  });

  kcase(b, 'row 38: mprotect(R) → 0; mprotect(R|X) → EACCES', (s) => {
    const mprotect = s.needExt('mprotect');
    const fd = gmem(s, SHARED_MMAP);
    const mem = s.mmap(4 * p, RW, MAP_SHARED, fd);
    s.k.store(mem, filled(p, 0x5a));
    mprotect(mem, 4 * p, PROT_READ);
    assertFilled(s.k.load(mem, p), 0x5a, 'read after mprotect(R)');
    expectSignalIn('SIGSEGV', () => s.k.store(mem, filled(1, 1)), mem, mem + p, 'write after mprotect(R)');
    expectErrno('EACCES', () => mprotect(mem, 4 * p, PROT_READ | PROT_EXEC), 'mprotect(R|X)');
  });

  kcase(b, 'row 39: munmap then re-mmap: the data persisted', (s) => {
    const fd = gmem(s, SHARED_MMAP);
    const mem = s.mmap(4 * p, RW, MAP_SHARED, fd);
    s.k.store(mem, filled(4 * p, 0x3c));
    s.munmap(mem, 4 * p);
    const again = s.mmap(4 * p, RW, MAP_SHARED, fd);
    assertFilled(s.k.load(again, 4 * p), 0x3c, 'after re-mmap');
    const second = s.mmap(4 * p, RW, MAP_SHARED, fd);
    s.k.store(second + p, filled(1, 0x77));
    assert.equal(s.k.load(again + p, 1)[0], 0x77, 'two shared mappings see the same page');
  });

  kcase(b, '2D (do_mmap order): offset 1 on a closed fd → EINVAL (before fget); length 0 on a closed fd → EBADF (fget first); length 0 → EINVAL; length −1 → ENOMEM', (s) => {
    const fd = gmem(s, SHARED_MMAP);
    const closed = s.gmem(s.vm(0), p);
    s.close(closed);
    s.failsCleanly('EINVAL', () => s.k.mmap(0, p, RW, MAP_SHARED, closed, 1), 'offset 1, closed fd');
    s.failsCleanly('EBADF', () => s.k.mmap(0, 0, RW, MAP_SHARED, closed, 0), 'length 0, closed fd');
    s.failsCleanly('EINVAL', () => s.k.mmap(0, 0, RW, MAP_SHARED, fd, 0), 'length 0');
    s.failsCleanly('ENOMEM', () => s.k.mmap(0, -1, RW, MAP_SHARED, fd, 0), 'length -1 (PAGE_ALIGN wraps to 0)');
  });

  kcase(b, '2D (do_mmap flags): MAP_SHARED_VALIDATE ok; with MAP_SYNC → EOPNOTSUPP, before ENODEV (no MMAP) and EPERM (PROT_EXEC); MAP_SHARED|MAP_SYNC ok (legacy flags ignored); anonymous MAP_SHARED_VALIDATE → EINVAL', (s) => {
    const fd = gmem(s, SHARED_MMAP);
    const plain = gmem(s, 0);
    const mem = s.mmap(p, RW, MAP_SHARED_VALIDATE, fd);
    s.k.store(mem, filled(p, 0x21));
    s.failsCleanly('EOPNOTSUPP', () => s.k.mmap(0, p, RW, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0), 'SHARED_VALIDATE|MAP_SYNC');
    s.failsCleanly('EOPNOTSUPP', () => s.k.mmap(0, p, RW, MAP_SHARED_VALIDATE | MAP_SYNC, plain, 0), 'SHARED_VALIDATE|MAP_SYNC, no MMAP');
    s.failsCleanly('EOPNOTSUPP', () => s.k.mmap(0, p, RW | PROT_EXEC, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0), 'SHARED_VALIDATE|MAP_SYNC, PROT_EXEC');
    const legacy = s.mmap(p, RW, MAP_SHARED | MAP_SYNC, fd);
    assertFilled(s.k.load(legacy, p), 0x21, 'MAP_SHARED|MAP_SYNC maps the same page');
    s.failsCleanly('EINVAL', () => s.k.mmap(0, p, RW, MAP_SHARED_VALIDATE | MAP_ANONYMOUS, -1, 0), 'anonymous SHARED_VALIDATE');
  });

  kcase(b, '2D (mprotect, MADV_REMOVE): PROT_READ|PROT_SEM → 0, prot 0x10 → EINVAL; MADV_REMOVE needs VM_MAYWRITE, not PROT_WRITE: works on a PROT_READ mapping and after mprotect(R)', (s) => {
    const mprotect = s.needExt('mprotect');
    const madvise = s.needExt('madvise');
    const fd = gmem(s, SHARED_MMAP);
    const mem = s.mmap(4 * p, RW, MAP_SHARED, fd);
    s.k.store(mem, filled(4 * p, 0xaa));
    mprotect(mem, p, PROT_READ | PROT_SEM);
    assertFilled(s.k.load(mem, p), 0xaa, 'readable after PROT_READ|PROT_SEM');
    expectErrno('EINVAL', () => mprotect(mem, p, 0x10), 'prot 0x10');
    mprotect(mem + p, p, PROT_READ);
    madvise(mem + p, p, MADV_REMOVE);
    assertFilled(s.k.load(mem + p, p), 0, 'page 1 after MADV_REMOVE through a read-only view');
    const ro = s.mmap(4 * p, PROT_READ, MAP_SHARED, fd);
    madvise(ro + 2 * p, p, MADV_REMOVE);
    assertFilled(s.k.load(mem + 2 * p, p), 0, 'page 2 after MADV_REMOVE through a PROT_READ mapping');
    assertFilled(s.k.load(mem + 3 * p, p), 0xaa, 'page 3 untouched');
  });

  kcase(b, 'row 41: close(VM fd), then PUNCH, KEEP, write via the mapping → 0, 0, ok; the mapping survives close(gmem fd)', (s) => {
    const vm = s.vm(0);
    const fd = s.gmem(vm, 4 * p, SHARED_MMAP);
    const mem = s.mmap(4 * p, RW, MAP_SHARED, fd);
    s.k.store(mem, filled(4 * p, 0xaa));
    s.close(vm);
    s.k.fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, p);
    s.k.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4 * p);
    s.k.store(mem, filled(p, 0x11));
    s.close(fd);
    assertFilled(s.k.load(mem, p), 0x11, 'page 0 after close(gmem fd)');
    assertFilled(s.k.load(mem + p, 3 * p), 0xaa, 'pages 1–3 after close(gmem fd)');
    s.k.store(mem + 3 * p, filled(p, 0x22));
    assertFilled(s.k.load(mem + 3 * p, p), 0x22, 'write after close(gmem fd)');
  });
});
