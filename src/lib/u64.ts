/**
 * u64/s64 arithmetic as the kernel does it. User-supplied u64 fields arrive as number or bigint;
 * they are normalised to a bigint in [0, 2^64) (a negative number is its two's complement, like a
 * C cast) before any overflow or alignment rule is applied.
 */
import { EINVAL } from '../uapi/errno.js';
import { SyscallError } from '../uapi/errors.js';
import type { U64 } from '../uapi/syscalls.js';

export const U64_MAX = (1n << 64n) - 1n;
export const S64_MAX = (1n << 63n) - 1n;

/** The u64 value of a user field; a non-integer cannot be a C integer, so it is EINVAL for `syscall`. */
export function toU64(v: U64 | undefined, syscall: string): bigint {
  if (v === undefined) return 0n;
  if (typeof v === 'bigint') return BigInt.asUintN(64, v);
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new SyscallError(EINVAL, syscall, 'not an integer');
  return BigInt.asUintN(64, BigInt(v)); // two's complement for a negative number, as a C cast
}

/** A small non-negative integer field (u32, u8): values outside the C type are truncated as C would. */
export function toU32(v: number | bigint | undefined, syscall: string): number {
  if (v === undefined) return 0;
  if (typeof v === 'bigint') return Number(BigInt.asUintN(32, v));
  if (!Number.isInteger(v)) throw new SyscallError(EINVAL, syscall, 'not an integer');
  return v >>> 0;
}

