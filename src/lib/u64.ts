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
const TWO_64 = 1n << 64n;

/** The u64 value of a user field; a non-integer cannot be a C integer, so it is EINVAL for `syscall`. */
export function toU64(v: U64 | undefined, syscall: string): bigint {
  if (v === undefined) return 0n;
  if (typeof v === 'bigint') return BigInt.asUintN(64, v);
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new SyscallError(EINVAL, syscall, 'not an integer');
  const b = BigInt(v);
  return b < 0n ? (b % TWO_64 + TWO_64) % TWO_64 : BigInt.asUintN(64, b);
}

/** The value reinterpreted as s64 (loff_t). */
export function asS64(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}

/** A small non-negative integer field (u32, u8): values outside the C type are truncated as C would. */
export function toU32(v: number | bigint | undefined, syscall: string): number {
  if (v === undefined) return 0;
  if (typeof v === 'bigint') return Number(BigInt.asUintN(32, v));
  if (!Number.isInteger(v)) throw new SyscallError(EINVAL, syscall, 'not an integer');
  return v >>> 0;
}

/** a + b overflows u64. */
export function addOverflowsU64(a: bigint, b: bigint): boolean {
  return a + b > U64_MAX;
}

/** A bigint known to be below 2^53, as a number. */
export function toSafeNumber(v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RangeError(`value ${v} exceeds 2^53`);
  }
  return Number(v);
}

export function isAligned(v: bigint, align: bigint): boolean {
  return (v & (align - 1n)) === 0n;
}
