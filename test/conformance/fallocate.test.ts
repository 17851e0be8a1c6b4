/**
 * fallocate on a guest_memfd: upstream-linux.md §5 rows 21–27 and the fallocate check orderings
 * of §5b (2C). Every failing call must change nothing: the model's digest is unchanged, and on
 * both backends the data written through a mapping survives the failed calls.
 */
import assert from 'node:assert/strict';
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP } from '../../src/uapi/kvm.js';
import {
  FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_ZERO_RANGE, MAP_SHARED, PROT_READ, PROT_WRITE,
} from '../../src/uapi/linux.js';
import type { U64 } from '../../src/uapi/syscalls.js';
import { assertFilled, filled, forBackends, kcase, PAGE, type Session } from './common.js';

const KEEP = FALLOC_FL_KEEP_SIZE;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
const p = PAGE;

/** A 4-page MMAP|INIT_SHARED gmem whose pages all hold 0xaa, and its mapping. */
function filledGmem(s: Session): { fd: number; mem: number } {
  const fd = s.gmem(s.vm(0), 4 * p, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
  const mem = s.mmap(4 * p, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
  s.k.store(mem, filled(4 * p, 0xaa));
  return { fd, mem };
}

function failing(s: Session, fd: number, code: string, cases: Array<[string, number, U64, U64]>): void {
  for (const [what, mode, off, len] of cases) s.failsCleanly(code, () => s.k.fallocate(fd, mode, off, len), what);
}

forBackends('fallocate (§5 rows 21–27, §5b)', (b) => {
  kcase(b, 'row 21: mode 0, PUNCH without KEEP, KEEP|ZERO_RANGE, ZERO_RANGE, COLLAPSE, INSERT, KEEP|UNSHARE → EOPNOTSUPP ×7', (s) => {
    const { fd, mem } = filledGmem(s);
    failing(s, fd, 'EOPNOTSUPP', [
      ['mode 0', 0, 0, p],
      ['PUNCH_HOLE without KEEP_SIZE', FALLOC_FL_PUNCH_HOLE, 0, p],
      ['KEEP_SIZE|ZERO_RANGE', KEEP | FALLOC_FL_ZERO_RANGE, 0, p],
      ['ZERO_RANGE', FALLOC_FL_ZERO_RANGE, 0, p],
      ['COLLAPSE_RANGE', FALLOC_FL_COLLAPSE_RANGE, 0, p],
      ['INSERT_RANGE', FALLOC_FL_INSERT_RANGE, 0, p],
      ['KEEP_SIZE|UNSHARE_RANGE', KEEP | FALLOC_FL_UNSHARE_RANGE, 0, p],
    ]);
    assertFilled(s.k.load(mem, 4 * p), 0xaa, 'data after the failed calls');
  });

  kcase(b, 'row 22: KEEP(0, 4p) twice → 0, 0 (idempotent)', (s) => {
    const fd = s.gmem(s.vm(0), 4 * p);
    s.k.fallocate(fd, KEEP, 0, 4 * p);
    s.k.fallocate(fd, KEEP, 0, 4 * p);
    assert.equal(s.k.fstat(fd).st_size, 4 * p);
  });

  kcase(b, 'row 23: KEEP(1, p), KEEP(0, p−1), KEEP(4p, p), KEEP(3p, 2p), KEEP(5p, p) → EINVAL ×5', (s) => {
    const { fd, mem } = filledGmem(s);
    failing(s, fd, 'EINVAL', [
      ['KEEP(1, p)', KEEP, 1, p],
      ['KEEP(0, p-1)', KEEP, 0, p - 1],
      ['KEEP(4p, p): starts at i_size', KEEP, 4 * p, p],
      ['KEEP(3p, 2p): straddles i_size', KEEP, 3 * p, 2 * p],
      ['KEEP(5p, p): past i_size', KEEP, 5 * p, p],
    ]);
    assertFilled(s.k.load(mem, 4 * p), 0xaa, 'data after the failed calls');
  });

  kcase(b, 'row 24: KEEP(0, 0), KEEP(−4096, p) → EINVAL', (s) => {
    const fd = s.gmem(s.vm(0), 4 * p);
    failing(s, fd, 'EINVAL', [['KEEP(0, 0)', KEEP, 0, 0], ['KEEP(-4096, p)', KEEP, -4096, p]]);
  });

  kcase(b, 'row 25: KEEP(0x7ffffffffffff000, 0x2000) → EFBIG', (s) => {
    const fd = s.gmem(s.vm(0), 4 * p);
    failing(s, fd, 'EFBIG', [['KEEP(0x7ffffffffffff000, 0x2000)', KEEP, 0x7ffffffffffff000n, 0x2000]]);
  });

  kcase(b, 'row 26: PUNCH(p−1, p), PUNCH(p, p−1) → EINVAL', (s) => {
    const { fd, mem } = filledGmem(s);
    failing(s, fd, 'EINVAL', [['PUNCH(p-1, p)', PUNCH, p - 1, p], ['PUNCH(p, p-1)', PUNCH, p, p - 1]]);
    assertFilled(s.k.load(mem, 4 * p), 0xaa, 'data after the failed punches');
  });

  kcase(b, 'row 27: PUNCH(4p, p), PUNCH(5p, p), PUNCH(3p, 100p), PUNCH(p, p), KEEP(p, p) → 0 ×5; st_size unchanged', (s) => {
    const { fd, mem } = filledGmem(s);
    s.k.fallocate(fd, PUNCH, 4 * p, p);
    s.k.fallocate(fd, PUNCH, 5 * p, p);
    assertFilled(s.k.load(mem, 4 * p), 0xaa, 'punching at or past EOF touches nothing');
    s.k.fallocate(fd, PUNCH, 3 * p, 100 * p);
    assertFilled(s.k.load(mem + 3 * p, p), 0, 'page 3 after PUNCH(3p, 100p)');
    assertFilled(s.k.load(mem, 3 * p), 0xaa, 'pages 0–2 after PUNCH(3p, 100p)');
    s.k.fallocate(fd, PUNCH, p, p);
    s.k.fallocate(fd, KEEP, p, p);
    assertFilled(s.k.load(mem + p, p), 0, 'page 1 after PUNCH then KEEP');
    assert.equal(s.k.fstat(fd).st_size, 4 * p);
  });

  kcase(b, '§5b: mode 0 past the maximum file size → EFBIG (VFS) before the gmem EOPNOTSUPP', (s) => {
    const fd = s.gmem(s.vm(0), 4 * p);
    failing(s, fd, 'EFBIG', [['mode 0 at 0x7ffffffffffff000 len 0x2000', 0, 0x7ffffffffffff000n, 0x2000]]);
  });

  kcase(b, '§5b: KEEP|ZERO_RANGE at an unaligned offset → EOPNOTSUPP (mode checked before alignment)', (s) => {
    const fd = s.gmem(s.vm(0), 4 * p);
    failing(s, fd, 'EOPNOTSUPP', [['KEEP|ZERO_RANGE(1, p)', KEEP | FALLOC_FL_ZERO_RANGE, 1, p]]);
  });

  kcase(b, '§5b: fallocate at offset 2^62, length 2^62 → EFBIG', (s) => {
    const fd = s.gmem(s.vm(0), 4 * p);
    failing(s, fd, 'EFBIG', [['KEEP(2^62, 2^62)', KEEP, 1n << 62n, 1n << 62n], ['PUNCH(2^62, 2^62)', PUNCH, 1n << 62n, 1n << 62n]]);
  });
});
