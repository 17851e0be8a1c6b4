/**
 * Loading the host backend's N-API addon (native/gmem_host.c, built by scripts/build-native.mjs).
 *
 * Loading never throws: a missing or broken addon is a reason string, so that openHostKernel()
 * can return null and hostKernelUnavailableReason() can say why.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** This architecture's system call numbers, as the addon was compiled with them. */
export interface SyscallNumbers {
  read: number; write: number; close: number; lseek: number; mmap: number; mprotect: number;
  munmap: number; ioctl: number; pread64: number; pwrite64: number; madvise: number; dup: number;
  fcntl: number; fsync: number; ftruncate: number; fallocate: number;
}

/** An integer argument as the addon takes it: a number (two's complement if negative) or a bigint. */
export type NativeInt = number | bigint;

/**
 * The addon's functions. Every call returns the kernel's raw answer: the result, or -errno.
 * Nothing here throws for a kernel error.
 */
export interface NativeAddon {
  sys(nr: number, ...args: NativeInt[]): number;
  rw(nr: number, fd: number, bytes: Uint8Array, offset?: NativeInt): number;
  ioctlBuf(fd: number, request: number, bytes: Uint8Array): number;
  open(path: string, flags: number): number;
  /** out = [st_size, st_blksize, st_blocks, st_ino, st_mode, st_nlink]. */
  fstat(fd: number, out: Float64Array): number;
  /** 0, or the number of the signal (SIGBUS 7, SIGSEGV 11) that stopped the copy. */
  guardedCopy(addr: number, bytes: Uint8Array, toMemory: boolean): number;
  lastFaultAddress(): number;
  /** The io_uring fd that holds the pin, or -errno. */
  pin(addr: number, length: number): number;
  unpin(ringFd: number): number;
  /** An ArrayBuffer over mmap(NULL, len, RW, MAP_SHARED, fd, 0), unmapped when collected; or -errno. */
  mapShared(fd: number, length: number): ArrayBuffer | number;
  readonly nr: SyscallNumbers;
}

export type NativeLoad = { addon: NativeAddon; reason: null } | { addon: null; reason: string };

const ADDON_RELATIVE_PATH = join('native', 'build', 'Release', 'gmem_host.node');
const STATUS_RELATIVE_PATH = join('native', 'build', 'status.json');

/** The package root: the nearest ancestor with native/ (src/host when run from source, dist/src/host when compiled). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 6; depth++) {
    if (existsSync(join(dir, 'native')) && existsSync(join(dir, 'package.json'))) return dir;
    dir = resolve(dir, '..');
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
}

export function defaultAddonPath(): string {
  return join(packageRoot(), ADDON_RELATIVE_PATH);
}

/** Why the build script said it failed, if it did. */
function recordedBuildFailure(): string | null {
  try {
    const status = JSON.parse(readFileSync(join(packageRoot(), STATUS_RELATIVE_PATH), 'utf8')) as
      { ok?: boolean; reason?: string | null };
    return status.ok === false ? `the addon build failed: ${status.reason ?? 'no reason recorded'}` : null;
  } catch {
    return null;
  }
}

function looksLikeAddon(value: unknown): value is NativeAddon {
  const a = value as Partial<NativeAddon> | null;
  return typeof a === 'object' && a !== null && typeof a.sys === 'function' &&
    typeof a.guardedCopy === 'function' && typeof a.nr === 'object';
}

const loads = new Map<string, NativeLoad>();

/** Loads the addon once per path. */
export function loadNative(addonPath: string = defaultAddonPath()): NativeLoad {
  const cached = loads.get(addonPath);
  if (cached) return cached;
  const load = tryLoad(addonPath);
  loads.set(addonPath, load);
  return load;
}

function tryLoad(addonPath: string): NativeLoad {
  if (process.platform !== 'linux') return { addon: null, reason: `the host backend needs Linux (this is ${process.platform})` };
  if (!existsSync(addonPath)) {
    const why = recordedBuildFailure() ?? 'run `npm ci` or `node scripts/build-native.mjs` to build it';
    return { addon: null, reason: `the native addon ${addonPath} is missing; ${why}` };
  }
  try {
    const required: unknown = createRequire(import.meta.url)(addonPath);
    if (!looksLikeAddon(required)) return { addon: null, reason: `${addonPath} is not the gmem_host addon` };
    return { addon: required, reason: null };
  } catch (err) {
    return { addon: null, reason: `loading ${addonPath} failed: ${(err as Error).message}` };
  }
}
