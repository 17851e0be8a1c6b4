/**
 * The host backend's pure parts, which need no /dev/kvm: the x86-64 encoder, GuestProgram
 * validation and its model-backend form, the struct codecs, and the owned-range bookkeeping.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OwnedRanges } from '../../src/host/address-space.js';
import { compileGuestProgram, Label, X86Assembler } from '../../src/host/guest-codegen.js';
import {
  GUEST_UCALL_CHECK_FAILED, GUEST_UCALL_READ, guestProgramCode, validateGuestProgram, type GuestOpsApi,
} from '../../src/host/guest-program.js';
import { ioctlSyscallName, NonIntegerFieldError, STRUCT_CODECS, writeU64 } from '../../src/host/ioctl-codec.js';
import {
  KVM_CREATE_GUEST_MEMFD, KVM_PRE_FAULT_MEMORY, KVM_SET_MEMORY_ATTRIBUTES2, KVM_SET_USER_MEMORY_REGION2,
} from '../../src/uapi/kvm.js';

const hex = (bytes: Uint8Array): string => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(' ');

test('x86 encoder: the instructions guest code uses, byte for byte', () => {
  const asm = new X86Assembler();
  asm.movImm64('rdi', 0x400000);
  asm.movImm64('r8', -1);
  asm.movImm32('rdx', 0x1000);
  asm.movReg('r8', 'rax');
  asm.loadByteFromRsi();
  asm.storeByteToRdi(0xff);
  asm.inc('rsi');
  asm.dec('rcx');
  asm.cmpAl(0x42);
  asm.outDxEax();
  asm.hlt();
  assert.equal(hex(asm.finish()), [
    '48 bf 00 00 40 00 00 00 00 00', // mov rdi, 0x400000
    '49 b8 ff ff ff ff ff ff ff ff', // mov r8, -1
    'ba 00 10 00 00', // mov edx, 0x1000
    '49 89 c0', // mov r8, rax
    '0f b6 06', // movzx eax, byte [rsi]
    'c6 07 ff', // mov byte [rdi], 0xff
    '48 ff c6', // inc rsi
    '48 ff c9', // dec rcx
    '3c 42', // cmp al, 0x42
    'ef', // out dx, eax
    'f4', // hlt
  ].join(' '));
});

test('x86 encoder: rel32 jumps backwards and forwards; an unbound label is an error', () => {
  const asm = new X86Assembler();
  const top = new Label();
  const end = new Label();
  asm.bind(top);
  asm.hlt();
  asm.jcc('ne', end); // forward: patched at bind
  asm.jmp(top); // backward: -(1 + 6 + 5) = -12
  asm.bind(end);
  assert.equal(hex(asm.finish()), 'f4 0f 85 05 00 00 00 e9 f4 ff ff ff');
  const dangling = new X86Assembler();
  dangling.jmp(new Label());
  assert.throws(() => dangling.finish(), /never bound/);
});

test('compileGuestProgram: every program ends halted for good; bad programs are RangeErrors', () => {
  assert.equal(hex(compileGuestProgram([])), 'f4 e9 fa ff ff ff');
  assert.ok(compileGuestProgram([{ op: 'fill', gpa: 0x1000, len: 0, byte: 1 }]).byteLength === 6, 'an empty fill emits nothing');
  assert.throws(() => validateGuestProgram([{ op: 'fill', gpa: 0, len: 1, byte: 256 }]), RangeError);
  assert.throws(() => validateGuestProgram([{ op: 'check', gpa: -1, len: 1, byte: 0 }]), RangeError);
  assert.throws(() => validateGuestProgram([{ op: 'ucall', args: [1, 2, 3, 4, 5, 6, 7, 8, 9] }]), RangeError);
});

/** Runs the model form of a program against a flat memory, as the model's vCPU would. */
function runModelForm(program: Parameters<typeof guestProgramCode>[0], memory: Uint8Array): number[][] {
  type Op = { kind: 'read'; gpa: number; length: number } | { kind: 'write'; gpa: number; data: Uint8Array } | { kind: 'ucall'; args: number[] };
  const api: GuestOpsApi<Op> = {
    read: (gpa, length) => ({ kind: 'read', gpa, length }),
    write: (gpa, data) => ({ kind: 'write', gpa, data }),
    ucall: (...args) => ({ kind: 'ucall', args }),
  };
  const ucalls: number[][] = [];
  const gen = guestProgramCode<Op>(program)(api);
  let reply: unknown;
  for (let step = gen.next(); !step.done; step = gen.next(reply)) {
    const op = step.value;
    reply = undefined;
    if (op.kind === 'read') reply = memory.slice(op.gpa, op.gpa + op.length);
    else if (op.kind === 'write') memory.set(op.data, op.gpa);
    else ucalls.push(op.args);
  }
  return ucalls;
}

test('guestProgramCode: the model form makes the same ucalls as the host code (read, check failure, stop at hlt)', () => {
  const memory = new Uint8Array(256);
  memory[10] = 0x42;
  const ucalls = runModelForm([
    { op: 'read', gpa: 10 },
    { op: 'fill', gpa: 0, len: 100, byte: 0x11 },
    { op: 'fill', gpa: 60, len: 1, byte: 0x12 },
    { op: 'ucall', args: [7, 8] },
    { op: 'check', gpa: 0, len: 100, byte: 0x11 },
    { op: 'ucall', args: [99] },
  ], memory);
  assert.deepEqual(ucalls, [[GUEST_UCALL_READ, 10, 0x42], [7, 8], [GUEST_UCALL_CHECK_FAILED, 60, 0x12, 0x11]]);
  assert.deepEqual(runModelForm([{ op: 'hlt' }, { op: 'ucall', args: [1] }], memory), []);
});

test('writeU64: numbers without BigInt, two\'s complement negatives, bigints mod 2^64, non-integers refused', () => {
  const view = new DataView(new ArrayBuffer(8));
  const bits = (v: unknown): bigint => {
    writeU64(view, 0, v);
    return view.getBigUint64(0, true);
  };
  assert.equal(bits(0x7ffffffffffff000n), 0x7ffffffffffff000n);
  assert.equal(bits(2 ** 63), 1n << 63n);
  assert.equal(bits(-4096), 0xfffffffffffff000n);
  assert.equal(bits(-1), 0xffffffffffffffffn);
  assert.equal(bits(-1n), 0xffffffffffffffffn);
  assert.equal(bits((1n << 64n) + 5n), 5n);
  assert.equal(bits(2 ** 53 + 2), 2n ** 53n + 2n);
  assert.throws(() => writeU64(view, 0, 0.5), NonIntegerFieldError);
  assert.throws(() => writeU64(view, 0, Infinity), NonIntegerFieldError);
  assert.throws(() => writeU64(view, 0, '1'), TypeError);
});

test('struct codecs: kernel offsets; pre-fault and attributes2 copy back only what the kernel changed', () => {
  const bytesOf = (request: number, arg: Record<string, unknown>): DataView => {
    const codec = STRUCT_CODECS.get(request);
    assert.ok(codec);
    const view = new DataView(new ArrayBuffer(codec.size_bytes));
    codec.encode(view, arg);
    return view;
  };
  const region = bytesOf(KVM_SET_USER_MEMORY_REGION2, {
    slot: 0x10001, flags: 4, guest_phys_addr: 0x1000, memory_size: 0x2000, userspace_addr: 0x3000,
    guest_memfd_offset: 0x4000, guest_memfd: -1, pad1: 7, pad2: [...Array(13).fill(0), 9],
  });
  assert.deepEqual(
    [region.getUint32(0, true), region.getUint32(4, true), region.getBigUint64(8, true), region.getBigUint64(16, true),
      region.getBigUint64(24, true), region.getBigUint64(32, true), region.getUint32(40, true), region.getUint32(44, true),
      region.getBigUint64(48 + 13 * 8, true)],
    [0x10001, 4, 0x1000n, 0x2000n, 0x3000n, 0x4000n, 0xffffffff, 7, 9n],
  );
  const create = bytesOf(KVM_CREATE_GUEST_MEMFD, { size: 1, flags: 2, page_order: 9, reserved: [0, 0, 0, 0, 0, 5] });
  assert.deepEqual([create.getUint8(16), create.getBigUint64(56, true)], [9, 5n]);

  const preFault = STRUCT_CODECS.get(KVM_PRE_FAULT_MEMORY);
  const arg: Record<string, unknown> = { gpa: 0x1000, size: 0x3000, flags: 0 };
  const view = bytesOf(KVM_PRE_FAULT_MEMORY, arg);
  view.setBigUint64(0, 0x2000n, true); // the kernel advanced the range by one page
  view.setBigUint64(8, 0x2000n, true);
  preFault?.copyOut?.(view, arg);
  assert.deepEqual(arg, { gpa: 0x2000, size: 0x2000, flags: 0 });
  const attrs: Record<string, unknown> = { offset: 0, size: 4096, attributes: 8, flags: 0 };
  const attrsView = bytesOf(KVM_SET_MEMORY_ATTRIBUTES2, attrs);
  STRUCT_CODECS.get(KVM_SET_MEMORY_ATTRIBUTES2)?.copyOut?.(attrsView, attrs);
  assert.deepEqual(attrs, { offset: 0, size: 4096, attributes: 8, flags: 0, error_offset: 0 });
  assert.equal(ioctlSyscallName(KVM_CREATE_GUEST_MEMFD), 'ioctl(KVM_CREATE_GUEST_MEMFD)');
  assert.equal(ioctlSyscallName(0x1234), 'ioctl(0x1234)');
});

test('OwnedRanges: add merges, remove splits, uncovered lists the gaps', () => {
  const owned = new OwnedRanges();
  owned.add(0x10000, 0x2000);
  owned.add(0x12000, 0x1000); // adjacent: merged
  owned.add(0x20000, 1); // rounded up to a page
  assert.deepEqual(owned.uncovered(0x10000, 0x3000), []);
  assert.deepEqual(owned.uncovered(0xf000, 0x12000), [{ start: 0xf000, end: 0x10000 }, { start: 0x13000, end: 0x20000 }]);
  owned.remove(0x11000, 0x1000);
  assert.deepEqual(owned.uncovered(0x10000, 0x3000), [{ start: 0x11000, end: 0x12000 }]);
  assert.deepEqual(owned.uncovered(0x20000, 0x1000), []);
});
