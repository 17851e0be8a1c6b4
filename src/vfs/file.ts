/**
 * struct file: what an fd names. File descriptors (kernel/fdtable.ts) and VMAs hold references;
 * `release` runs when the last one drops, as fput does. Subsystems extend KFile with their
 * file_operations; an operation a file does not implement answers the kernel's default errno.
 */
import { assert } from '../lib/assert.js';

export type FileKind = 'kvm' | 'vm' | 'vcpu' | 'gmem';

export abstract class KFile {
  /** f_count: fds + VMAs + in-flight users. */
  private f_count = 1;
  abstract readonly kind: FileKind;
  /** The inode is a regular file (S_IFREG): vfs_fallocate accepts only those. */
  readonly is_regular: boolean = false;

  get refs(): number {
    return this.f_count;
  }

  get dead(): boolean {
    return this.f_count === 0;
  }

  fget(): void {
    assert(this.f_count > 0, () => `fget on a released ${this.kind} file`);
    this.f_count++;
  }

  fput(): void {
    assert(this.f_count > 0, () => `fput underflow on a ${this.kind} file`);
    if (--this.f_count === 0) this.release();
  }

  /** The last reference is gone. */
  protected abstract release(): void;
}
