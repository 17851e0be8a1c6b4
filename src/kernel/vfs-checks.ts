/**
 * The generic VFS checks that run before a file's own operation, in the kernel's order
 * (vfs_fallocate, ksys_pread64, ksys_lseek, sys_mmap).
 */
import { EFBIG, EINVAL, ENODEV, EOPNOTSUPP } from '../uapi/errno.js';
import { SyscallError } from '../uapi/errors.js';
import {
  FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_ZERO_RANGE,
} from '../uapi/linux.js';
import { S64_MAX } from '../lib/u64.js';
import type { KFile } from '../vfs/file.js';

/** FALLOC_FL_WRITE_ZEROES (6.17+). */
const FALLOC_FL_WRITE_ZEROES = 0x80;
const FALLOC_FL_MODE_MASK = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE | FALLOC_FL_COLLAPSE_RANGE |
  FALLOC_FL_INSERT_RANGE | FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_WRITE_ZEROES;
/** s_maxbytes of the anon-inode fs: MAX_LFS_FILESIZE. */
const S_MAXBYTES = S64_MAX;

/** vfs_fallocate's checks; offset and len are s64. */
export function vfsFallocateChecks(f: KFile, mode: number, offset: bigint, len: bigint): void {
  const name = 'fallocate';
  if (offset < 0n || len <= 0n) throw new SyscallError(EINVAL, name);
  if (!Number.isInteger(mode) || mode < 0 || (mode & ~(FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE)) !== 0) {
    throw new SyscallError(EOPNOTSUPP, name, 'unknown mode bits');
  }
  switch (mode & FALLOC_FL_MODE_MASK) {
    case 0:
    case FALLOC_FL_UNSHARE_RANGE:
    case FALLOC_FL_ZERO_RANGE:
      break;
    case FALLOC_FL_PUNCH_HOLE:
      if ((mode & FALLOC_FL_KEEP_SIZE) === 0) throw new SyscallError(EOPNOTSUPP, name, 'PUNCH_HOLE needs KEEP_SIZE');
      break;
    case FALLOC_FL_COLLAPSE_RANGE:
    case FALLOC_FL_INSERT_RANGE:
      if ((mode & FALLOC_FL_KEEP_SIZE) !== 0) throw new SyscallError(EOPNOTSUPP, name);
      break;
    case FALLOC_FL_WRITE_ZEROES:
      if ((mode & FALLOC_FL_KEEP_SIZE) !== 0) throw new SyscallError(EOPNOTSUPP, name);
      break;
    default:
      throw new SyscallError(EOPNOTSUPP, name, 'more than one mode');
  }
  if (!f.is_regular) throw new SyscallError(ENODEV, name, 'not a regular file');
  if (offset + len > S_MAXBYTES) throw new SyscallError(EFBIG, name);
}
