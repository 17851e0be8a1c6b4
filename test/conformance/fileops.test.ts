/**
 * File operations on a guest_memfd fd: upstream-linux.md §5 rows 13–20 and the pread/lseek
 * check orderings of §5b (2B). readv/writev, fchmod, fdatasync, sendfile, splice,
 * copy_file_range, posix_fadvise, readahead, F_GETFL/F_GETFD, readlink and fstatfs are not
 * expressible through Syscalls (docs/conformance-matrix.md).
 */
import assert from 'node:assert/strict';
import { KVM_CAP_GUEST_MEMFD, KVM_CHECK_EXTENSION, KVM_SET_MEMORY_ATTRIBUTES2 } from '../../src/uapi/kvm.js';
import { O_RDWR, SEEK_DATA, SEEK_END, SEEK_SET } from '../../src/uapi/linux.js';
import { expectErrno } from '../lib/harness.js';
import { forBackends, kcase, PAGE, type Session } from './common.js';

/** FIONREAD (asm-generic/ioctls.h). */
const FIONREAD = 0x541b;

function gmem4(s: Session): number {
  return s.gmem(s.vm(0), 4 * PAGE);
}

forBackends('guest_memfd file operations (§5 rows 13–20, §5b)', (b) => {
  kcase(b, 'row 13: read, write → EINVAL', (s) => {
    const fd = gmem4(s);
    expectErrno('EINVAL', () => s.k.read(fd, new Uint8Array(64)), 'read');
    expectErrno('EINVAL', () => s.k.write(fd, new Uint8Array(64)), 'write');
  });

  kcase(b, 'row 14: pread, pwrite → ESPIPE; lseek SEEK_SET, SEEK_END, SEEK_DATA → ESPIPE', (s) => {
    const fd = gmem4(s);
    expectErrno('ESPIPE', () => s.k.pread(fd, new Uint8Array(64), 0), 'pread');
    expectErrno('ESPIPE', () => s.k.pwrite(fd, new Uint8Array(64), 0), 'pwrite');
    for (const whence of [SEEK_SET, SEEK_END, SEEK_DATA]) {
      expectErrno('ESPIPE', () => s.k.lseek(fd, 0, whence), `lseek whence ${whence}`);
    }
  });

  kcase(b, '§5b: pread/pwrite with a negative offset → EINVAL before ESPIPE; lseek whence 5 → EINVAL before ESPIPE', (s) => {
    const fd = gmem4(s);
    expectErrno('EINVAL', () => s.k.pread(fd, new Uint8Array(64), -1), 'pread(-1)');
    expectErrno('EINVAL', () => s.k.pwrite(fd, new Uint8Array(64), -4096), 'pwrite(-4096)');
    expectErrno('EINVAL', () => s.k.lseek(fd, 0, 5), 'lseek whence 5');
    expectErrno('ESPIPE', () => s.k.lseek(fd, -4096, SEEK_SET), 'lseek to a negative offset with a valid whence');
  });

  kcase(b, 'row 15: ftruncate(8 pages), ftruncate(4 pages = size), ftruncate(0) → EINVAL; size unchanged', (s) => {
    const ftruncate = s.needExt('ftruncate');
    const fd = gmem4(s);
    for (const len of [8 * PAGE, 4 * PAGE, 0]) expectErrno('EINVAL', () => ftruncate(fd, len), `ftruncate(${len})`);
    assert.equal(s.k.fstat(fd).st_size, 4 * PAGE, 'ftruncate changed i_size');
  });

  kcase(b, 'row 16: fsync → EINVAL', (s) => {
    const fsync = s.needExt('fsync');
    const fd = gmem4(s);
    expectErrno('EINVAL', () => fsync(fd), 'fsync');
  });

  kcase(b, 'row 17: ioctl(KVM_CHECK_EXTENSION), ioctl(FIONREAD) (and KVM_SET_MEMORY_ATTRIBUTES2) on a gmem fd → ENOTTY', (s) => {
    const fd = gmem4(s);
    expectErrno('ENOTTY', () => s.k.ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD), 'KVM_CHECK_EXTENSION');
    expectErrno('ENOTTY', () => s.k.ioctl(fd, FIONREAD, 0), 'FIONREAD');
    expectErrno('ENOTTY', () => s.k.ioctl(fd, KVM_SET_MEMORY_ATTRIBUTES2, { offset: 0, size: PAGE, attributes: 8, flags: 0 }),
      'KVM_SET_MEMORY_ATTRIBUTES2 (not in 6.18)');
  });

  kcase(b, 'row 20: open("/proc/self/fd/N", O_RDWR) of a gmem fd → ENXIO', (s) => {
    const fd = gmem4(s);
    s.failsCleanly('ENXIO', () => s.k.open(`/proc/self/fd/${fd}`, O_RDWR), 'reopen through procfs');
  });
});
