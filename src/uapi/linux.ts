/** Generic Linux uAPI constants used by the Syscalls interface (x86_64 values). */
export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;

export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_LARGEFILE = 0x8000;
export const O_CLOEXEC = 0x80000;

export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_NO_HIDE_STALE = 0x04;
export const FALLOC_FL_COLLAPSE_RANGE = 0x08;
export const FALLOC_FL_ZERO_RANGE = 0x10;
export const FALLOC_FL_INSERT_RANGE = 0x20;
export const FALLOC_FL_UNSHARE_RANGE = 0x40;

export const PROT_NONE = 0x0;
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const PROT_EXEC = 0x4;

export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_SHARED_VALIDATE = 0x03;
export const MAP_TYPE = 0x0f;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MAP_POPULATE = 0x8000;
export const MAP_FIXED_NOREPLACE = 0x100000;
export const MAP_FAILED = -1;

export const MADV_NORMAL = 0;
export const MADV_DONTNEED = 4;
export const MADV_REMOVE = 9;
export const MADV_HUGEPAGE = 14;
export const MADV_PAGEOUT = 21;
export const MADV_COLLAPSE = 25;

/** The lowest and (exclusive) highest user virtual address on x86_64 with 4-level paging. */
export const TASK_SIZE = 0x7ffffffff000;
export const MMAP_MIN_ADDR = 0x10000;

// ---- Added for the host backend's tests (open(2) of a scratch file) ----------------------------
export const O_CREAT = 0o100;
export const O_TRUNC = 0o1000;
