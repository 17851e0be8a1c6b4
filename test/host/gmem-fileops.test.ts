/**
 * shared/spec/upstream-linux.md §5 rows 1–27 (capabilities, KVM_CREATE_GUEST_MEMFD, file
 * operations, fallocate) and §5b orderings, reproduced through the host backend: the errno is
 * exactly the kernel's. Capability values are facts of the kvm_pvm development host and are
 * checked only there.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import {
  EBADF, EFBIG, EINVAL, ENOTTY, ENXIO, EOPNOTSUPP, ESPIPE,
} from '../../src/uapi/errno.js';
import {
  KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_CAP_MEMORY_ATTRIBUTES, KVM_CAP_MEMORY_FAULT_INFO, KVM_CAP_PRE_FAULT_MEMORY, KVM_CAP_USER_MEMORY2,
  KVM_CAP_VM_TYPES, KVM_CHECK_EXTENSION, KVM_CREATE_GUEST_MEMFD, KVM_CREATE_VM,
} from '../../src/uapi/kvm.js';
import {
  FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_ZERO_RANGE, O_RDWR, SEEK_DATA, SEEK_END, SEEK_SET,
} from '../../src/uapi/linux.js';
import { errnoOf, hostTest, PAGE } from './host-fixture.js';

const KEEP = FALLOC_FL_KEEP_SIZE;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
const FIONREAD = 0x541b;
const IS_PVM_HOST = existsSync('/sys/module/kvm_pvm');

hostTest('§5 rows 1–2: capabilities on /dev/kvm and on a default VM (kvm_pvm host values)', (f, t) => {
  if (!IS_PVM_HOST) {
    t.skip('the values are facts of the kvm_pvm development host');
    return;
  }
  const vm = f.vm();
  const expected: Array<[number, number]> = [
    [KVM_CAP_USER_MEMORY2, 1], [KVM_CAP_MEMORY_FAULT_INFO, 1], [KVM_CAP_MEMORY_ATTRIBUTES, 0],
    [KVM_CAP_GUEST_MEMFD, 1], [KVM_CAP_VM_TYPES, 1], [KVM_CAP_PRE_FAULT_MEMORY, 0], [KVM_CAP_GUEST_MEMFD_FLAGS, 3],
  ];
  for (const fd of [f.kvm, vm]) {
    for (const [cap, value] of expected) assert.equal(f.k.ioctl(fd, KVM_CHECK_EXTENSION, cap), value, `cap ${cap}`);
  }
});

hostTest('§5 row 3: KVM_CREATE_VM with types 1…7 → EINVAL where KVM_CAP_VM_TYPES lacks them', (f) => {
  const types = f.k.ioctl(f.kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES);
  for (let type = 1; type <= 7; type++) {
    if ((types & (1 << type)) !== 0) continue;
    assert.equal(errnoOf(() => f.k.ioctl(f.kvm, KVM_CREATE_VM, type)), EINVAL, `type ${type}`);
  }
});

hostTest('§5 rows 4–5, 9: create on /dev/kvm or a vCPU; bad sizes; bad flags → EINVAL', (f) => {
  const vm = f.vm();
  const vcpu = f.vcpu(vm);
  assert.equal(errnoOf(() => f.k.ioctl(f.kvm, KVM_CREATE_GUEST_MEMFD, { size: PAGE, flags: 0 })), EINVAL);
  assert.equal(errnoOf(() => f.k.ioctl(vcpu, KVM_CREATE_GUEST_MEMFD, { size: PAGE, flags: 0 })), EINVAL);
  for (const size of [0, 1, 4095, 4097, 0xfffffffffffff000n, 1n << 63n]) {
    assert.equal(errnoOf(() => f.gmem(vm, size)), EINVAL, `size ${size}`);
  }
  for (let bit = 2n; bit < 64n; bit++) {
    assert.equal(errnoOf(() => f.gmem(vm, PAGE, 1n << bit)), EINVAL, `flags 1<<${bit}`);
  }
  assert.equal(errnoOf(() => f.gmem(vm, PAGE, 5)), EINVAL);
  assert.equal(errnoOf(() => f.gmem(vm, 0, 8)), EINVAL);
});

hostTest('§5 rows 6–8, 10: sizes up to 2^63−4096 (bigint, exact), 1 TiB, flags 1/2/3, reserved not checked', (f) => {
  const vm = f.vm();
  const huge = f.gmem(vm, 0x7ffffffffffff000n);
  f.k.fallocate(huge, KEEP, 0x7fffffffffffe000n, PAGE);
  f.k.fallocate(huge, PUNCH, 0, 0x7ffffffffffff000n);
  assert.equal(f.k.fstat(huge).st_size, 2 ** 63 - 4096);
  f.gmem(vm, 2 ** 40);
  for (const flags of [1, 2, 3]) f.gmem(vm, PAGE, flags);
  f.fd(f.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: PAGE, flags: 0, reserved: [0xdead, 0, 0, 0, 0, 1] }));
});

hostTest('§5 row 11: fstat of a 4-page gmem: size, blksize, blocks 0 even after fallocate, mode 0100600, nlink 1, distinct ino', (f) => {
  const vm = f.vm();
  const a = f.gmem(vm, 4 * PAGE);
  const b = f.gmem(vm, 4 * PAGE);
  f.k.fallocate(a, KEEP, 0, 4 * PAGE);
  const st = f.k.fstat(a);
  assert.deepEqual(
    { size: st.st_size, blksize: st.st_blksize, blocks: st.st_blocks, mode: st.st_mode, nlink: st.st_nlink },
    { size: 16384, blksize: 4096, blocks: 0, mode: 0o100600, nlink: 1 },
  );
  assert.notEqual(f.k.fstat(b).st_ino, st.st_ino);
});

hostTest('§5 rows 13–17, 20, §5b: file operations on a gmem fd', (f) => {
  const k = f.k;
  const vm = f.vm();
  const fd = f.gmem(vm, 4 * PAGE);
  const buf = new Uint8Array(16);
  assert.equal(errnoOf(() => k.read(fd, buf)), EINVAL, 'read');
  assert.equal(errnoOf(() => k.write(fd, buf)), EINVAL, 'write');
  assert.equal(errnoOf(() => k.pread(fd, buf, 0)), ESPIPE, 'pread');
  assert.equal(errnoOf(() => k.pwrite(fd, buf, 0)), ESPIPE, 'pwrite');
  for (const whence of [SEEK_SET, SEEK_END, SEEK_DATA]) assert.equal(errnoOf(() => k.lseek(fd, 0, whence)), ESPIPE);
  for (const size of [8 * PAGE, 4 * PAGE, 0]) assert.equal(errnoOf(() => k.ftruncate?.(fd, size)), EINVAL, `ftruncate ${size}`);
  assert.equal(errnoOf(() => k.fsync?.(fd)), EINVAL, 'fsync');
  assert.equal(errnoOf(() => k.ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD)), ENOTTY);
  assert.equal(errnoOf(() => k.ioctl(fd, FIONREAD, 0)), ENOTTY);
  assert.equal(errnoOf(() => k.open(`/proc/self/fd/${fd}`, O_RDWR)), ENXIO, 're-open via /proc');
  // §5b: the generic argument checks come before ESPIPE.
  assert.equal(errnoOf(() => k.pread(fd, buf, -1)), EINVAL, 'pread at a negative offset');
  assert.equal(errnoOf(() => k.lseek(fd, 0, 5)), EINVAL, 'lseek whence 5');
});

hostTest('§5 rows 21–22: fallocate modes → EOPNOTSUPP ×7; KEEP twice → 0, 0', (f) => {
  const vm = f.vm();
  const fd = f.gmem(vm, 4 * PAGE);
  const modes = [0, FALLOC_FL_PUNCH_HOLE, KEEP | FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE, FALLOC_FL_COLLAPSE_RANGE,
    FALLOC_FL_INSERT_RANGE, KEEP | FALLOC_FL_UNSHARE_RANGE];
  for (const mode of modes) assert.equal(errnoOf(() => f.k.fallocate(fd, mode, 0, PAGE)), EOPNOTSUPP, `mode ${mode}`);
  f.k.fallocate(fd, KEEP, 0, 4 * PAGE);
  f.k.fallocate(fd, KEEP, 0, 4 * PAGE);
});

hostTest('§5 rows 23–27: fallocate alignment, bounds, EFBIG, punch past EOF', (f) => {
  const p = PAGE;
  const vm = f.vm();
  const fd = f.gmem(vm, 4 * p);
  const keep: Array<[number, number]> = [[1, p], [0, p - 1], [4 * p, p], [3 * p, 2 * p], [5 * p, p], [0, 0], [-4096, p]];
  for (const [off, len] of keep) assert.equal(errnoOf(() => f.k.fallocate(fd, KEEP, off, len)), EINVAL, `KEEP(${off}, ${len})`);
  assert.equal(errnoOf(() => f.k.fallocate(fd, KEEP, 0x7ffffffffffff000n, 0x2000)), EFBIG);
  assert.equal(errnoOf(() => f.k.fallocate(fd, PUNCH, p - 1, p)), EINVAL);
  assert.equal(errnoOf(() => f.k.fallocate(fd, PUNCH, p, p - 1)), EINVAL);
  for (const [off, len] of [[4 * p, p], [5 * p, p], [3 * p, 100 * p], [p, p]] as const) f.k.fallocate(fd, PUNCH, off, len);
  f.k.fallocate(fd, KEEP, p, p);
  assert.equal(f.k.fstat(fd).st_size, 4 * p);
  // §5b: mode 0 past the maximum file size is EFBIG before the gmem EOPNOTSUPP; 2^62 + 2^62 is EFBIG.
  assert.equal(errnoOf(() => f.k.fallocate(fd, 0, 0x7ffffffffffff000n, 0x2000)), EFBIG);
  assert.equal(errnoOf(() => f.k.fallocate(fd, KEEP, 2 ** 62, 2 ** 62)), EFBIG);
  assert.equal(errnoOf(() => f.k.fallocate(fd, KEEP | FALLOC_FL_ZERO_RANGE, 1, p)), EOPNOTSUPP);
});

hostTest('§5 row 68: dup(gmem), close the original; fallocate through the dup; a closed fd is EBADF', (f) => {
  const vm = f.vm();
  const fd = f.gmem(vm, 4 * PAGE);
  const copy = f.fd(f.k.dup?.(fd) ?? -1);
  f.close(fd);
  f.k.fallocate(copy, KEEP, 0, PAGE);
  assert.equal(errnoOf(() => f.k.fallocate(fd, KEEP, 0, PAGE)), EBADF);
});
