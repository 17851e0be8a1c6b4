/**
 * pin()/unpin(): a real long-term GUP pin (FOLL_LONGTERM | FOLL_WRITE) through io_uring buffer
 * registration. Measured on the kvm_pvm 6.18 host: anonymous memory pins; a guest_memfd
 * MMAP|INIT_SHARED mapping pins too (6.18 does not refuse long-term pins of gmem pages); a
 * private (MMAP-only) gmem mapping fails EFAULT, because faulting it in is SIGBUS.
 */
import assert from 'node:assert/strict';
import { EFAULT, EINVAL } from '../../src/uapi/errno.js';
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP } from '../../src/uapi/kvm.js';
import { MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE } from '../../src/uapi/linux.js';
import { assertFilled, errnoOf, filled, hostTest, PAGE, type Fixture } from './host-fixture.js';

const RW = PROT_READ | PROT_WRITE;

/** VmPin of /proc/self/status (kB): io_uring accounts its long-term pins there. */
function pinnedKb(f: Fixture): number {
  return Number(/^VmPin:\s+(\d+)/m.exec(f.k.readFile('/proc/self/status'))?.[1] ?? NaN);
}

hostTest('pin: private and shared anonymous memory pin and unpin; pinned pages keep their data', (f) => {
  const priv = f.mmap(16 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1);
  const shared = f.anon(16 * PAGE);
  f.k.store(priv, filled(16 * PAGE, 0x21));
  const before_kb = pinnedKb(f);
  const a = f.k.pin(priv, 16 * PAGE);
  const b = f.k.pin(shared, 16 * PAGE);
  assert.notEqual(a, b);
  assert.equal(pinnedKb(f) - before_kb, 2 * 16 * 4, 'VmPin counts both pins');
  assertFilled(f.k.load(priv, 16 * PAGE), 0x21, 'pinned private memory');
  f.k.unpin(a);
  f.k.unpin(b);
  assert.equal(pinnedKb(f), before_kb, 'unpin releases the pages at once');
  assert.equal(errnoOf(() => f.k.unpin(a)), EINVAL, 'a pin id is used once');
});

hostTest('pin: a guest_memfd MMAP|INIT_SHARED mapping pins on this host; MMAP-only (private) is EFAULT', (f) => {
  const vm = f.vm();
  const shared = f.gmem(vm, 16 * PAGE, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
  const sharedMem = f.mmap(16 * PAGE, RW, MAP_SHARED, shared);
  const before_kb = pinnedKb(f);
  const id = f.k.pin(sharedMem, 16 * PAGE);
  assert.equal(pinnedKb(f) - before_kb, 16 * 4, 'the gmem pages are long-term pinned');
  f.k.store(sharedMem, filled(PAGE, 0x44));
  assertFilled(f.k.load(sharedMem, PAGE), 0x44, 'pinned gmem');
  f.k.unpin(id);
  const priv = f.gmem(vm, 16 * PAGE, GUEST_MEMFD_FLAG_MMAP);
  const privMem = f.mmap(16 * PAGE, RW, MAP_SHARED, priv);
  assert.equal(errnoOf(() => f.k.pin(privMem, 16 * PAGE)), EFAULT);
});

hostTest('pin: unmapped memory and a read-only mapping are EFAULT (FOLL_WRITE)', (f) => {
  assert.equal(errnoOf(() => f.k.pin(0x1000, PAGE)), EFAULT);
  const ro = f.mmap(PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1);
  assert.equal(errnoOf(() => f.k.pin(ro, PAGE)), EFAULT);
});
