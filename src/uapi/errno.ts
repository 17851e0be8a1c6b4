/**
 * Linux errno values (x86_64 / arm64 generic numbering), by their kernel names.
 * One table: every SyscallError carries one of these numbers and its name.
 */
export const EPERM = 1;
export const ENOENT = 2;
export const EINTR = 4;
export const EIO = 5;
export const ENXIO = 6;
export const E2BIG = 7;
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EACCES = 13;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const EXDEV = 18;
export const ENODEV = 19;
export const EINVAL = 22;
export const EMFILE = 24;
export const ENOTTY = 25;
export const EFBIG = 27;
export const ENOSPC = 28;
export const ESPIPE = 29;
export const ERANGE = 34;
export const ENOSYS = 38;
export const EOVERFLOW = 75;
export const EOPNOTSUPP = 95;
export const EHWPOISON = 133;

/** errno number → name, for messages and for SyscallError.code. */
export const ERRNO_NAMES: Readonly<Record<number, string>> = Object.freeze({
  [EPERM]: 'EPERM', [ENOENT]: 'ENOENT', [EINTR]: 'EINTR', [EIO]: 'EIO', [ENXIO]: 'ENXIO',
  [E2BIG]: 'E2BIG', [EBADF]: 'EBADF', [EAGAIN]: 'EAGAIN', [ENOMEM]: 'ENOMEM', [EACCES]: 'EACCES',
  [EFAULT]: 'EFAULT', [EBUSY]: 'EBUSY', [EEXIST]: 'EEXIST', [EXDEV]: 'EXDEV', [ENODEV]: 'ENODEV',
  [EINVAL]: 'EINVAL', [EMFILE]: 'EMFILE', [ENOTTY]: 'ENOTTY', [EFBIG]: 'EFBIG', [ENOSPC]: 'ENOSPC',
  [ESPIPE]: 'ESPIPE', [ERANGE]: 'ERANGE', [ENOSYS]: 'ENOSYS', [EOVERFLOW]: 'EOVERFLOW',
  [EOPNOTSUPP]: 'EOPNOTSUPP', [EHWPOISON]: 'EHWPOISON',
});

export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `E#${errno}`;
}
