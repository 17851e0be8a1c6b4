/**
 * mmap of a guest_memfd and host access through mappings (§5 rows 28–39, 41, §5b), and the
 * signal guard: a real SIGBUS or SIGSEGV during load/store becomes a SignalError carrying the
 * faulting address, and never kills the process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { EACCES, EINVAL, ENODEV, EPERM } from '../../src/uapi/errno.js';
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP } from '../../src/uapi/kvm.js';
import {
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MADV_COLLAPSE, MADV_DONTNEED, MADV_HUGEPAGE, MADV_PAGEOUT,
  MADV_REMOVE, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE,
} from '../../src/uapi/linux.js';
import { assertFilled, errnoOf, filled, hostTest, PAGE, signalOf, sys, unavailable, type Fixture } from './host-fixture.js';

const RW = PROT_READ | PROT_WRITE;
const SHARED_FLAGS = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
const KEEP = FALLOC_FL_KEEP_SIZE;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;

/** A 4-page MMAP|INIT_SHARED gmem mapped RW over `map_pages` pages. */
function sharedGmem(f: Fixture, map_pages = 4): { fd: number; mem: number } {
  const fd = f.gmem(f.vm(), 4 * PAGE, SHARED_FLAGS);
  return { fd, mem: f.mmap(map_pages * PAGE, RW, MAP_SHARED, fd) };
}

hostTest('§5 rows 28, 30–32, §5b: mmap refusals (ENODEV, EINVAL, EPERM) in the kernel\'s order', (f) => {
  const vm = f.vm();
  const plain = f.gmem(vm, 4 * PAGE);
  const mmapOnly = f.gmem(vm, 4 * PAGE, GUEST_MEMFD_FLAG_MMAP);
  const sharedOnly = f.gmem(vm, 4 * PAGE, GUEST_MEMFD_FLAG_INIT_SHARED);
  const both = f.gmem(vm, 4 * PAGE, SHARED_FLAGS);
  const map = (fd: number, prot: number, flags: number, offset = 0, len = 4 * PAGE): number =>
    errnoOf(() => f.mmap(len, prot, flags, fd, offset));
  assert.equal(map(plain, RW, MAP_SHARED), ENODEV, 'row 28 shared');
  assert.equal(map(plain, PROT_READ, MAP_PRIVATE), ENODEV, 'row 28 private');
  assert.equal(map(mmapOnly, RW, MAP_PRIVATE), EINVAL, 'row 30');
  assert.equal(map(sharedOnly, RW, MAP_SHARED), ENODEV, 'row 31');
  assert.equal(map(both, RW, MAP_PRIVATE), EINVAL, 'row 32 private RW');
  assert.equal(map(both, PROT_READ, MAP_PRIVATE), EINVAL, 'row 32 private R');
  assert.equal(map(both, PROT_READ | PROT_EXEC, MAP_SHARED), EPERM, 'row 32 R|X');
  assert.equal(map(both, RW, MAP_SHARED, 1), EINVAL, 'row 32 offset 1');
  assert.equal(map(plain, PROT_READ | PROT_EXEC, MAP_SHARED), EPERM, '§5b EPERM before ENODEV');
  assert.equal(map(both, PROT_READ | PROT_EXEC, MAP_PRIVATE), EPERM, '§5b EPERM before EINVAL');
  assert.equal(map(plain, RW, MAP_SHARED, 1), EINVAL, '§5b unaligned offset before ENODEV');
  assert.equal(map(plain, RW, MAP_SHARED, 0, 0), EINVAL, '§5b zero length before ENODEV');
});

hostTest('§5 row 29: MMAP-only gmem (private): load and store raise SIGBUS at the address, even after fallocate', (f) => {
  const fd = f.gmem(f.vm(), 4 * PAGE, GUEST_MEMFD_FLAG_MMAP);
  const mem = f.mmap(4 * PAGE, RW, MAP_SHARED, fd);
  assert.deepEqual(signalOf(() => f.k.load(mem + 5, 1)), { signal: 'SIGBUS', addr: mem + 5 });
  assert.deepEqual(signalOf(() => f.k.store(mem + PAGE, filled(8, 1))), { signal: 'SIGBUS', addr: mem + PAGE });
  f.k.fallocate(fd, KEEP, 0, 4 * PAGE);
  assert.deepEqual(signalOf(() => f.k.load(mem + 3 * PAGE, PAGE)), { signal: 'SIGBUS', addr: mem + 3 * PAGE });
});

hostTest('§5 rows 33–34: mapping past EOF: ok to map; byte 0 reads 0; SIGBUS exactly at EOF; bytes before it were stored', (f) => {
  const { fd, mem } = sharedGmem(f, 16);
  const beyond = f.mmap(PAGE, RW, MAP_SHARED, fd, 8 * PAGE);
  assert.deepEqual(signalOf(() => f.k.load(beyond, 1)), { signal: 'SIGBUS', addr: beyond }, 'row 33');
  assert.deepEqual([...f.k.load(mem, 1)], [0], 'row 34: never allocated, reads 0');
  f.k.store(mem, filled(4 * PAGE, 0xaa));
  assert.deepEqual(signalOf(() => f.k.load(mem + 4 * PAGE, 1)), { signal: 'SIGBUS', addr: mem + 4 * PAGE });
  // A store across EOF writes the bytes before it, in order, then faults at EOF.
  assert.deepEqual(signalOf(() => f.k.store(mem + 3 * PAGE, filled(2 * PAGE, 0x11))), { signal: 'SIGBUS', addr: mem + 4 * PAGE });
  assertFilled(f.k.load(mem + 3 * PAGE, PAGE), 0x11, 'page 3');
  // A load across EOF faults at the first byte of the first page past it.
  assert.deepEqual(signalOf(() => f.k.load(mem + 4 * PAGE - 10, 20)), { signal: 'SIGBUS', addr: mem + 4 * PAGE });
});

hostTest('§5 rows 35–37: punch while mapped zeroes the page; MADV_REMOVE punches; DONTNEED keeps; COLLAPSE → EINVAL', (f) => {
  const { fd, mem } = sharedGmem(f);
  f.k.store(mem, filled(4 * PAGE, 0xaa));
  f.k.fallocate(fd, PUNCH, 0, PAGE);
  assertFilled(f.k.load(mem, PAGE), 0, 'row 35 page 0');
  assertFilled(f.k.load(mem + PAGE, PAGE), 0xaa, 'row 35 page 1');
  f.k.madvise?.(mem + PAGE, PAGE, MADV_REMOVE);
  assertFilled(f.k.load(mem + PAGE, PAGE), 0, 'row 36 MADV_REMOVE');
  f.k.madvise?.(mem + 2 * PAGE, PAGE, MADV_DONTNEED);
  assertFilled(f.k.load(mem + 2 * PAGE, PAGE), 0xaa, 'row 36 MADV_DONTNEED');
  assert.equal(errnoOf(() => f.k.madvise?.(mem, 4 * PAGE, MADV_HUGEPAGE)), 0);
  assert.equal(errnoOf(() => f.k.madvise?.(mem, 4 * PAGE, MADV_COLLAPSE)), EINVAL);
  assert.equal(errnoOf(() => f.k.madvise?.(mem, 4 * PAGE, MADV_PAGEOUT)), 0);
});

hostTest('§5 rows 38–39: mprotect(R) → 0, then a store is SIGSEGV; mprotect(R|X) → EACCES; data survives munmap + mmap', (f) => {
  const { fd, mem } = sharedGmem(f);
  f.k.store(mem, filled(PAGE, 0x5a));
  f.k.mprotect?.(mem, 4 * PAGE, PROT_READ);
  assert.deepEqual(signalOf(() => f.k.store(mem + 8, filled(1, 1))), { signal: 'SIGSEGV', addr: mem + 8 });
  assert.equal(errnoOf(() => f.k.mprotect?.(mem, 4 * PAGE, PROT_READ | PROT_EXEC)), EACCES);
  f.munmap(mem, 4 * PAGE);
  const again = f.mmap(4 * PAGE, RW, MAP_SHARED, fd);
  assertFilled(f.k.load(again, PAGE), 0x5a, 'row 39');
});

hostTest('§5 row 41: close(VM), then PUNCH, KEEP and stores work; the mapping survives close(gmem)', (f) => {
  const vm = f.vm();
  const fd = f.gmem(vm, 4 * PAGE, SHARED_FLAGS);
  const mem = f.mmap(4 * PAGE, RW, MAP_SHARED, fd);
  f.close(vm);
  f.k.fallocate(fd, PUNCH, 0, PAGE);
  f.k.fallocate(fd, KEEP, 0, PAGE);
  f.close(fd);
  f.k.store(mem, filled(PAGE, 0x77));
  assertFilled(f.k.load(mem, PAGE), 0x77, 'after close(gmem)');
});

hostTest('SIGSEGV: load/store of unmapped memory report the exact address; length 0 touches nothing', (f) => {
  // Below mmap_min_addr nothing is ever mapped, so the addresses stay unmapped whatever Node does.
  const unmapped = 0x1000;
  assert.deepEqual(signalOf(() => f.k.load(unmapped + 123, 4)), { signal: 'SIGSEGV', addr: unmapped + 123 });
  assert.deepEqual(signalOf(() => f.k.store(unmapped + PAGE, filled(4, 9))), { signal: 'SIGSEGV', addr: unmapped + PAGE });
  assert.equal(f.k.load(unmapped, 0).byteLength, 0);
  assert.equal(signalOf(() => f.k.store(unmapped, new Uint8Array(0))), null);
  // A load that starts in a mapping and runs off its end faults at the first unmapped byte.
  const mem = f.mmap(3 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
  f.k.mprotect?.(mem, PAGE, RW);
  assert.deepEqual(signalOf(() => f.k.load(mem + PAGE - 2, 4)), { signal: 'SIGSEGV', addr: mem + PAGE });
});

hostTest('the guard survives a thousand faults: the process and the heap are intact afterwards', (f) => {
  const fd = f.gmem(f.vm(), PAGE, GUEST_MEMFD_FLAG_MMAP);
  const privateMem = f.mmap(PAGE, RW, MAP_SHARED, fd);
  for (let i = 0; i < 1000; i++) {
    assert.equal(signalOf(() => f.k.load(privateMem + (i % PAGE), 1))?.signal, 'SIGBUS');
    assert.equal(signalOf(() => f.k.load(0x2000 + i, 1))?.signal, 'SIGSEGV');
  }
  const anon = f.mmap(PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1);
  f.k.store(anon, filled(PAGE, 0x3c));
  assertFilled(f.k.load(anon, PAGE), 0x3c, 'anonymous memory after the faults');
  assert.deepEqual(JSON.parse(JSON.stringify({ ok: [1, 2, 3] })), { ok: [1, 2, 3] });
});

test('signals the guard does not own still reach their previous handler: kill(SIGSEGV/SIGBUS) terminates a child', (t) => {
  if (!sys) {
    t.skip(unavailable ?? 'host backend unavailable');
    return;
  }
  const hostKernelUrl = new URL('../../src/host/host-kernel.js', import.meta.url).href;
  for (const signal of ['SIGSEGV', 'SIGBUS'] as const) {
    const script = `import { openHostKernel } from ${JSON.stringify(hostKernelUrl)};
      const k = openHostKernel();
      try { k.load(0x1000, 1); } catch { /* guarded: SIGSEGV caught */ }
      process.kill(process.pid, '${signal}');
      setTimeout(() => process.exit(0), 1000);`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(child.signal, signal, `child stderr: ${child.stderr}`);
  }
});
