/**
 * openHostKernel() itself, and the plain file system calls on an ordinary file: the backend
 * returns exactly what the kernel returns (counts, offsets, sizes, errno).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostKernelUnavailableReason, openHostKernel } from '../../src/host/host-kernel.js';
import { defaultAddonPath } from '../../src/host/native.js';
import { EBADF, ENOENT } from '../../src/uapi/errno.js';
import { O_CREAT, O_RDWR, O_TRUNC, SEEK_END, SEEK_SET } from '../../src/uapi/linux.js';
import { errnoOf, hostTest } from './host-fixture.js';

test('openHostKernel: null with the reason where the addon is missing (never a throw)', () => {
  const missing = openHostKernel({ addonPath: '/nonexistent/gmem_host.node' });
  assert.equal(missing, null);
  assert.match(hostKernelUnavailableReason() ?? '', /\/nonexistent\/gmem_host\.node is missing/);
  openHostKernel(); // the reason is that of the last call
});

hostTest('openHostKernel: the host Syscalls, backend "host", no reason; a missing device is null with the reason', () => {
  const again = openHostKernel();
  assert.ok(again);
  assert.equal(again.backend, 'host');
  assert.equal(hostKernelUnavailableReason(), null);
  assert.equal(openHostKernel({ devicePath: '/nonexistent-kvm' }), null);
  assert.equal(hostKernelUnavailableReason(), 'open /nonexistent-kvm: ENOENT');
  assert.ok(openHostKernel({ addonPath: defaultAddonPath() }));
  assert.equal(hostKernelUnavailableReason(), null);
});

hostTest('open, write, lseek, read, pwrite, pread, fstat, ftruncate, fsync, dup, close on a regular file', (f) => {
  const k = f.k;
  const path = join(tmpdir(), `gmem-host-test-${process.pid}`);
  try {
    const fd = f.fd(k.open(path, O_RDWR | O_CREAT | O_TRUNC));
    assert.equal(k.write(fd, new TextEncoder().encode('hello')), 5);
    assert.equal(k.lseek(fd, 0, SEEK_SET), 0);
    const five = new Uint8Array(5);
    assert.equal(k.read(fd, five), 5);
    assert.equal(new TextDecoder().decode(five), 'hello');
    assert.equal(k.pwrite(fd, new Uint8Array([1, 2, 3]), 10), 3);
    const three = new Uint8Array(3);
    assert.equal(k.pread(fd, three, 10), 3);
    assert.deepEqual([...three], [1, 2, 3]);
    assert.equal(k.lseek(fd, 0, SEEK_END), 13);
    assert.equal(k.fstat(fd).st_size, 13);
    k.ftruncate?.(fd, 4096);
    assert.equal(k.fstat(fd).st_size, 4096);
    k.fsync?.(fd);
    const copy = f.fd(k.dup?.(fd) ?? -1);
    assert.notEqual(copy, fd);
    assert.equal(k.fstat(copy).st_ino, k.fstat(fd).st_ino);
    f.close(copy);
    f.close(fd);
    assert.equal(errnoOf(() => k.close(fd)), EBADF, 'closing it twice');
    assert.equal(errnoOf(() => k.fstat(fd)), EBADF);
  } finally {
    rmSync(path, { force: true });
  }
  assert.equal(errnoOf(() => k.open('/nonexistent/file', O_RDWR)), ENOENT);
});

hostTest('readFile: procfs and sysfs text; a missing file is SyscallError ENOENT', (f) => {
  assert.match(f.k.readFile('/proc/self/status'), /^Name:/m);
  assert.equal(errnoOf(() => f.k.readFile('/sys/kernel/mm/hugepages/hugepages-0kB/free_hugepages')), ENOENT);
});
