/**
 * The kernel layout of every struct argument the Syscalls interface knows, by ioctl request
 * number (shared/spec/upstream-linux.md §1.2, in-place-conversion-and-hugetlb.md §1): object in,
 * bytes to the kernel, out-fields copied back into the same object as the kernel copies them.
 *
 * Nothing is validated here: a field the kernel checks reaches it as given (u64 values wrap to
 * 64 bits, negative numbers are two's complement, absent fields and reserved words are zero).
 * The one exception is a number that no C integer can be (fractional, NaN, infinite): encoding
 * throws NonIntegerFieldError, which the backend answers EINVAL without calling the kernel.
 */
import {
  KVM_CREATE_GUEST_MEMFD, KVM_ENABLE_CAP, KVM_GMEM_CONVERT_PRIVATE, KVM_GMEM_CONVERT_SHARED,
  KVM_PRE_FAULT_MEMORY, KVM_SET_MEMORY_ATTRIBUTES, KVM_SET_MEMORY_ATTRIBUTES2, KVM_SET_USER_MEMORY_REGION,
  KVM_SET_USER_MEMORY_REGION2,
} from '../uapi/kvm.js';
import * as kvmUapi from '../uapi/kvm.js';

const TWO_POW_32 = 2 ** 32;

/** A struct argument as the caller gives it: the kernel's field names. */
export type StructArg = Record<string, unknown>;

export interface StructCodec {
  readonly size_bytes: number;
  /** Writes the object's fields into a zeroed buffer of size_bytes. */
  encode(view: DataView, arg: StructArg): void;
  /** Copies the kernel's out-fields back into the object (absent for copy-in-only structs). */
  copyOut?(view: DataView, arg: StructArg): void;
}

function wrongType(value: unknown): never {
  throw new TypeError(`a u64 field must be a number or a bigint, not ${typeof value}`);
}

/** A struct field holds a number that is not an integer: no C caller could pass it. */
export class NonIntegerFieldError extends RangeError {
  constructor(readonly value: number) {
    super(`a struct field holds ${value}, which is not an integer`);
    this.name = 'NonIntegerFieldError';
  }
}

function integral(value: number): number {
  if (!Number.isInteger(value)) throw new NonIntegerFieldError(value);
  return value;
}

/** Writes a u64 little-endian; a number without going through BigInt (the hot paths use numbers). */
export function writeU64(view: DataView, offset: number, value: unknown): void {
  if (typeof value === 'number') {
    const v = integral(value);
    const high = Math.floor(v / TWO_POW_32);
    view.setUint32(offset, v - high * TWO_POW_32, true);
    view.setUint32(offset + 4, high, true); // ToUint32: two's complement and modulo 2^32, as C would
  } else if (typeof value === 'bigint') {
    view.setBigUint64(offset, BigInt.asUintN(64, value), true);
  } else if (value !== undefined) {
    wrongType(value);
  }
}

export function writeU32(view: DataView, offset: number, value: unknown): void {
  if (typeof value === 'number') view.setUint32(offset, integral(value), true);
  else if (typeof value === 'bigint') view.setUint32(offset, Number(BigInt.asUintN(32, value)), true);
  else if (value !== undefined) wrongType(value);
}

function writeU8(view: DataView, offset: number, value: unknown): void {
  if (typeof value === 'number') view.setUint8(offset, integral(value));
  else if (typeof value === 'bigint') view.setUint8(offset, Number(BigInt.asUintN(8, value)));
  else if (value !== undefined) wrongType(value);
}

/** Writes up to max_count u64 words of an optional array field. */
function writeU64Array(view: DataView, offset: number, value: unknown, max_count: number): void {
  if (value === undefined) return;
  if (!Array.isArray(value)) throw new TypeError('an array field (reserved, pad2, args, ...) must be an array');
  const count = Math.min(value.length, max_count);
  for (let i = 0; i < count; i++) writeU64(view, offset + 8 * i, value[i]);
}

function readU64(view: DataView, offset: number): bigint {
  return view.getBigUint64(offset, true);
}

/** The u64 the kernel left in a field, stored back only if it changed, as a number where exact. */
function copyOutU64(view: DataView, offset: number, arg: StructArg, field: string): void {
  const now = readU64(view, offset);
  const before = arg[field];
  const beforeBits = typeof before === 'bigint' ? BigInt.asUintN(64, before)
    : typeof before === 'number' && Number.isFinite(before) ? BigInt.asUintN(64, BigInt(Math.trunc(before)))
      : 0n;
  if (before !== undefined && beforeBits === now) return;
  arg[field] = now <= BigInt(Number.MAX_SAFE_INTEGER) && typeof before !== 'bigint' ? Number(now) : now;
}

const createGuestMemfd: StructCodec = {
  size_bytes: 64,
  encode(view, arg) {
    writeU64(view, 0, arg.size);
    writeU64(view, 8, arg.flags);
    writeU64Array(view, 16, arg.reserved, 6); // the 6.18 layout: reserved[6] from offset 16
    writeU8(view, 16, arg.page_order); // the HugeTLB WIP layout: page_order is the u8 at offset 16
  },
};

function memoryRegion(size_bytes: 32 | 160): StructCodec {
  return {
    size_bytes,
    encode(view, arg) {
      writeU32(view, 0, arg.slot);
      writeU32(view, 4, arg.flags);
      writeU64(view, 8, arg.guest_phys_addr);
      writeU64(view, 16, arg.memory_size);
      writeU64(view, 24, arg.userspace_addr);
      if (size_bytes === 32) return; // v1 stops after userspace_addr
      writeU64(view, 32, arg.guest_memfd_offset);
      writeU32(view, 40, arg.guest_memfd);
      writeU32(view, 44, arg.pad1);
      writeU64Array(view, 48, arg.pad2, 14);
    },
  };
}

const memoryAttributes: StructCodec = {
  size_bytes: 32,
  encode(view, arg) {
    writeU64(view, 0, arg.address);
    writeU64(view, 8, arg.size);
    writeU64(view, 16, arg.attributes);
    writeU64(view, 24, arg.flags);
  },
};

const memoryAttributes2: StructCodec = {
  size_bytes: 128,
  encode(view, arg) {
    writeU64(view, 0, arg.offset ?? arg.address); // a union of offset (gmem ioctl) and address
    writeU64(view, 8, arg.size);
    writeU64(view, 16, arg.attributes);
    writeU64(view, 24, arg.flags);
    writeU64(view, 32, arg.error_offset);
    writeU64Array(view, 40, arg.reserved, 11);
  },
  copyOut(view, arg) {
    copyOutU64(view, 32, arg, 'error_offset');
  },
};

const gmemConvert: StructCodec = {
  size_bytes: 64,
  encode(view, arg) {
    writeU64(view, 0, arg.offset);
    writeU64(view, 8, arg.size);
    writeU64(view, 16, arg.error_offset);
    writeU64Array(view, 24, arg.reserved, 5);
  },
  copyOut(view, arg) {
    copyOutU64(view, 16, arg, 'error_offset');
  },
};

const preFaultMemory: StructCodec = {
  size_bytes: 64,
  encode(view, arg) {
    writeU64(view, 0, arg.gpa);
    writeU64(view, 8, arg.size);
    writeU64(view, 16, arg.flags);
    writeU64Array(view, 24, arg.padding, 5);
  },
  copyOut(view, arg) {
    copyOutU64(view, 0, arg, 'gpa');
    copyOutU64(view, 8, arg, 'size');
  },
};

const enableCap: StructCodec = {
  size_bytes: 104,
  encode(view, arg) {
    writeU32(view, 0, arg.cap);
    writeU32(view, 4, arg.flags);
    writeU64Array(view, 8, arg.args, 4);
    writeU64Array(view, 40, arg.pad, 8);
  },
};

/** Struct codecs by request number. */
export const STRUCT_CODECS: ReadonlyMap<number, StructCodec> = new Map<number, StructCodec>([
  [KVM_CREATE_GUEST_MEMFD, createGuestMemfd],
  [KVM_SET_USER_MEMORY_REGION2, memoryRegion(160)],
  [KVM_SET_USER_MEMORY_REGION, memoryRegion(32)],
  [KVM_SET_MEMORY_ATTRIBUTES, memoryAttributes],
  [KVM_SET_MEMORY_ATTRIBUTES2, memoryAttributes2],
  [KVM_GMEM_CONVERT_SHARED, gmemConvert],
  [KVM_GMEM_CONVERT_PRIVATE, gmemConvert],
  [KVM_PRE_FAULT_MEMORY, preFaultMemory],
  [KVM_ENABLE_CAP, enableCap],
]);

/** Request number → kernel name, from every KVM ioctl constant in src/uapi/kvm.ts. */
const IOCTL_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(kvmUapi)
    .filter((e): e is [string, number] => typeof e[1] === 'number' && e[0].startsWith('KVM_') &&
      !e[0].startsWith('KVM_CAP_') && e[1] >= 0xae00 && [0xae, 0xaf].includes((e[1] >>> 8) & 0xff))
    .map(([name, value]) => [value >>> 0, name]),
);

/** 'ioctl(KVM_CREATE_GUEST_MEMFD)', or the request in hex when it has no name here. */
export function ioctlSyscallName(request: number): string {
  const r = request >>> 0;
  return `ioctl(${IOCTL_NAMES.get(r) ?? `0x${r.toString(16)}`})`;
}
