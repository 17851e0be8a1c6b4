/** The process's file descriptor table: lowest free number first, as the kernel allocates. */
import { EBADF, EMFILE } from '../uapi/errno.js';
import { SyscallError } from '../uapi/errors.js';
import type { KFile } from '../vfs/file.js';

/** RLIMIT_NOFILE of the model process. */
export const MAX_FDS = 65536;
/** 0, 1 and 2 are the process's standard streams. */
const FIRST_FD = 3;

export class FdTable {
  private readonly files = new Map<number, KFile>();
  private lowest_free = FIRST_FD;

  install(f: KFile, syscall: string): number {
    let fd = this.lowest_free;
    while (this.files.has(fd)) fd++;
    if (fd >= MAX_FDS) throw new SyscallError(EMFILE, syscall);
    this.files.set(fd, f);
    this.lowest_free = fd + 1;
    return fd;
  }

  get(fd: number): KFile | undefined {
    return Number.isInteger(fd) ? this.files.get(fd) : undefined;
  }

  /** The file, or EBADF. */
  fget(fd: number, syscall: string): KFile {
    const f = this.get(fd);
    if (f === undefined) throw new SyscallError(EBADF, syscall);
    return f;
  }

  /** close(): the fd goes, the file loses a reference. */
  remove(fd: number, syscall: string): KFile {
    const f = this.fget(fd, syscall);
    this.files.delete(fd);
    if (fd < this.lowest_free) this.lowest_free = fd;
    return f;
  }

  entries(): Array<[number, KFile]> {
    return [...this.files.entries()].sort((a, b) => a[0] - b[0]);
  }

  get size(): number {
    return this.files.size;
  }
}
