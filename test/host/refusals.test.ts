/**
 * What the host backend refuses (only what would corrupt the Node process: fds and mappings it
 * did not create) and how it marshals arguments no kernel sees as such (raw struct buffers,
 * integer pointers, unknown requests, non-integer numbers).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { HostRefusedError } from '../../src/host/host-kernel.js';
import { EBADF, EEXIST, EINVAL, ENOTTY, EPERM } from '../../src/uapi/errno.js';
import { IOWR } from '../../src/uapi/ioctl.js';
import {
  KVM_CREATE_GUEST_MEMFD, KVM_GET_REGS, KVMIO, KVM_PRE_FAULT_MEMORY,
} from '../../src/uapi/kvm.js';
import {
  FALLOC_FL_KEEP_SIZE, MADV_DONTNEED, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, PROT_READ, PROT_WRITE,
} from '../../src/uapi/linux.js';
import { errnoOf, hostTest, PAGE } from './host-fixture.js';

const RW = PROT_READ | PROT_WRITE;
const KVM_REGS_BYTES = 144;

/** A mapping of the Node process that the backend did not make: the first one in /proc/self/maps. */
function foreignMapping(): number {
  const first = readFileSync('/proc/self/maps', 'utf8').split('\n')[0] ?? '';
  return parseInt(first.slice(0, first.indexOf('-')), 16);
}

function refused(fn: () => unknown): boolean {
  try {
    fn();
    return false;
  } catch (err) {
    if (!(err instanceof HostRefusedError)) throw err;
    assert.equal(err.errno, EPERM);
    assert.equal(err.refused, true);
    return true;
  }
}

hostTest('close: fds the backend did not open are refused (stdio stays open); a closed number is the kernel\'s EBADF', (f) => {
  for (const fd of [0, 1, 2]) assert.ok(refused(() => f.k.close(fd)), `fd ${fd}`);
  assert.equal(errnoOf(() => f.k.fstat(1)), 0, 'stdout still open');
  assert.equal(errnoOf(() => f.k.close(100_000)), EBADF);
});

hostTest('munmap, madvise, mprotect, MAP_FIXED and store on Node\'s own mappings are refused; loads are allowed', (f) => {
  const node = foreignMapping();
  const before = f.k.load(node, 16);
  assert.ok(refused(() => f.k.munmap(node, PAGE)), 'munmap');
  assert.ok(refused(() => f.k.madvise?.(node, PAGE, MADV_DONTNEED)), 'madvise');
  assert.ok(refused(() => f.k.mprotect?.(node, PAGE, PROT_READ)), 'mprotect');
  assert.ok(refused(() => f.k.mmap(node, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)), 'MAP_FIXED');
  assert.ok(refused(() => f.k.store(node, new Uint8Array(1))), 'store');
  assert.deepEqual(f.k.load(node, 16), before, 'still mapped and unchanged');
  assert.equal(errnoOf(() => f.k.mmap(node, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)), EEXIST,
    'MAP_FIXED_NOREPLACE cannot replace, so the kernel answers');
  assert.equal(errnoOf(() => f.k.munmap(node + 1, PAGE)), EINVAL, 'an unaligned munmap is the kernel\'s EINVAL');
  // mprotect and madvise change every mapping up to the first hole: a range running from the
  // backend's own mapping over Node's is refused, not handed to the kernel.
  const own = f.mmap(PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1);
  assert.ok(refused(() => f.k.mprotect?.(own, 2 ** 46, PROT_READ)), 'mprotect over the rest of the address space');
  assert.ok(refused(() => f.k.madvise?.(own, 2 ** 46, MADV_DONTNEED)), 'madvise over the rest of the address space');
  assert.equal(errnoOf(() => f.k.munmap(own, 2 ** 47)), EINVAL, 'munmap past TASK_SIZE is the kernel\'s EINVAL');
});

hostTest('MAP_FIXED over the backend\'s own mapping replaces it; munmap of a part keeps the rest usable', (f) => {
  const mem = f.mmap(4 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1);
  f.k.store(mem, new Uint8Array(4 * PAGE).fill(7));
  assert.equal(f.k.mmap(mem + PAGE, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), mem + PAGE);
  assert.deepEqual([...f.k.load(mem + PAGE - 1, 2)], [7, 0]);
  f.k.munmap(mem + 2 * PAGE, PAGE);
  f.k.store(mem + 3 * PAGE, new Uint8Array([9]));
  assert.deepEqual([...f.k.load(mem + 3 * PAGE, 1)], [9]);
});

hostTest('ioctl: a Uint8Array is the raw struct (in and out); too small for the request is refused', (f) => {
  const vcpu = f.vcpu(f.vm());
  const regs = new Uint8Array(KVM_REGS_BYTES);
  assert.equal(f.k.ioctl(vcpu, KVM_GET_REGS, regs), 0);
  const rflags = new DataView(regs.buffer).getBigUint64(17 * 8, true);
  assert.equal(rflags & 2n, 2n, 'rflags bit 1 is always set');
  assert.ok(refused(() => f.k.ioctl(vcpu, KVM_GET_REGS, new Uint8Array(KVM_REGS_BYTES - 1))));
});

hostTest('ioctl: an integer pointer the kernel would write through must be the backend\'s own memory', (f) => {
  const vcpu = f.vcpu(f.vm());
  assert.ok(refused(() => f.k.ioctl(vcpu, KVM_GET_REGS, foreignMapping())), 'into Node\'s memory');
  const FIONREAD = 0x541b; // direction-less, yet writes an int through its argument
  assert.ok(refused(() => f.k.ioctl(f.kvm, FIONREAD, foreignMapping())), 'a legacy ioctl into Node\'s memory');
  const mem = f.mmap(PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1);
  assert.equal(f.k.ioctl(vcpu, KVM_GET_REGS, mem), 0);
  assert.equal(f.k.load(mem + 17 * 8, 1)[0]! & 2, 2, 'the kernel wrote kvm_regs into the mapping');
});

hostTest('ioctl: an unknown request with an object gets a zeroed buffer (the kernel answers); non-integers are EINVAL where the kernel reads the struct', (f) => {
  const vm = f.vm();
  const gmem = f.gmem(vm, PAGE);
  assert.equal(errnoOf(() => f.k.ioctl(gmem, IOWR(KVMIO, 0xee, 24), { anything: 1 })), ENOTTY);
  assert.equal(errnoOf(() => f.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: 4096.5, flags: 0 })), EINVAL);
  assert.equal(errnoOf(() => f.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: PAGE, flags: NaN })), EINVAL);
  assert.equal(errnoOf(() => f.k.ioctl(vm, KVM_PRE_FAULT_MEMORY, { gpa: 0.5, size: PAGE, flags: 0 })), ENOTTY,
    'a VM fd does not handle KVM_PRE_FAULT_MEMORY: ENOTTY comes before any field');
  assert.equal(errnoOf(() => f.k.ioctl(100_000, KVM_CREATE_GUEST_MEMFD, { size: 0.5, flags: 0 })), EBADF);
  assert.equal(errnoOf(() => f.k.fallocate(gmem, FALLOC_FL_KEEP_SIZE, 0.5, PAGE)), EINVAL);
  assert.throws(() => f.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: '4096', flags: 0 }), TypeError);
});

hostTest('u64 marshalling: number and bigint are the same value; negatives are two\'s complement', (f) => {
  const vm = f.vm();
  assert.equal(f.k.fstat(f.gmem(vm, 2 ** 40)).st_size, 2 ** 40);
  assert.equal(f.k.fstat(f.gmem(vm, 2n ** 40n)).st_size, 2 ** 40);
  assert.equal(errnoOf(() => f.gmem(vm, -4096)), EINVAL, '-4096 is 0xfffffffffffff000');
  assert.equal(errnoOf(() => f.gmem(vm, PAGE, -1n)), EINVAL, 'flags -1n is every bit');
});
