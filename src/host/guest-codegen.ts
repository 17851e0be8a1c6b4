/**
 * A tiny x86-64 code generator: a GuestProgram (guest-program.ts) to 64-bit machine code.
 *
 * Only what straight-line test programs need: 64-bit immediates into registers, byte loads and
 * stores through rsi/rdi, counted loops, port output and hlt. Every jump is rel32 so that
 * labels can be patched without relaxation. The ucall convention is ucall-abi.ts.
 */
import { UCALL_PIO_PORT } from '../uapi/kvm.js';
import {
  GUEST_UCALL_CHECK_FAILED, GUEST_UCALL_READ, validateGuestProgram, type GuestProgram, type GuestProgramOp,
} from './guest-program.js';
import { UCALL_ARG_REGS, type GprName } from './ucall-abi.js';

/** The hardware register numbers (ModRM/REX encoding), not the kvm_regs order. */
const HW_REG: Readonly<Record<GprName, number>> = {
  rax: 0, rcx: 1, rdx: 2, rbx: 3, rsp: 4, rbp: 5, rsi: 6, rdi: 7,
  r8: 8, r9: 9, r10: 10, r11: 11, r12: 12, r13: 13, r14: 14, r15: 15,
};

const REX_W = 0x48;
const REX_R = 0x04;
const REX_B = 0x01;
const TWO_POW_32 = 2 ** 32;

type Condition = 'ne' | 'e';
const JCC_OPCODE: Readonly<Record<Condition, number>> = { e: 0x84, ne: 0x85 };

export class Label {
  position: number | null = null;
  readonly fixups: number[] = [];
}

export class X86Assembler {
  private readonly bytes: number[] = [];
  private readonly unbound = new Set<Label>();

  get size_bytes(): number {
    return this.bytes.length;
  }

  private emit(...values: number[]): void {
    for (const v of values) this.bytes.push(v & 0xff);
  }

  private emitU32(value: number): void {
    this.emit(value, value >>> 8, value >>> 16, value >>> 24);
  }

  /** mov reg, imm64 (REX.W B8+r): the u64 as C would store it (two's complement if negative). */
  movImm64(reg: GprName, value: number | bigint): void {
    const hw = HW_REG[reg];
    this.emit(REX_W | (hw >= 8 ? REX_B : 0), 0xb8 + (hw & 7));
    const bits = BigInt.asUintN(64, typeof value === 'bigint' ? value : BigInt(Math.trunc(value)));
    const low = Number(bits & 0xffffffffn);
    const high = Number(bits >> 32n);
    this.emitU32(low);
    this.emitU32(high);
  }

  /** mov eax/edx, imm32 (B8+r; zero-extends into the full register). */
  movImm32(reg: 'rax' | 'rdx', value: number): void {
    this.emit(0xb8 + HW_REG[reg]);
    this.emitU32(value >>> 0);
  }

  /** mov dst, src (REX.W 89 /r). */
  movReg(dst: GprName, src: GprName): void {
    const d = HW_REG[dst];
    const s = HW_REG[src];
    this.emit(REX_W | (s >= 8 ? REX_R : 0) | (d >= 8 ? REX_B : 0), 0x89, 0xc0 | ((s & 7) << 3) | (d & 7));
  }

  /** movzx eax, byte [rsi] (0F B6 /r, mod 00 rm=rsi). */
  loadByteFromRsi(): void {
    this.emit(0x0f, 0xb6, 0x06);
  }

  /** mov byte [rdi], imm8 (C6 /0, mod 00 rm=rdi). */
  storeByteToRdi(byte: number): void {
    this.emit(0xc6, 0x07, byte);
  }

  /** inc reg / dec reg (REX.W FF /0, /1). */
  inc(reg: GprName): void {
    const hw = HW_REG[reg];
    this.emit(REX_W | (hw >= 8 ? REX_B : 0), 0xff, 0xc0 | (hw & 7));
  }

  dec(reg: GprName): void {
    const hw = HW_REG[reg];
    this.emit(REX_W | (hw >= 8 ? REX_B : 0), 0xff, 0xc8 | (hw & 7));
  }

  /** cmp al, imm8 (3C ib). */
  cmpAl(byte: number): void {
    this.emit(0x3c, byte);
  }

  /** out dx, eax (EF). */
  outDxEax(): void {
    this.emit(0xef);
  }

  hlt(): void {
    this.emit(0xf4);
  }

  jcc(cond: Condition, target: Label): void {
    this.emit(0x0f, JCC_OPCODE[cond]);
    this.rel32(target);
  }

  jmp(target: Label): void {
    this.emit(0xe9);
    this.rel32(target);
  }

  bind(label: Label): void {
    label.position = this.bytes.length;
    this.unbound.delete(label);
    for (const at of label.fixups) this.patchRel32(at, label.position);
  }

  /** The code; fails if a label was jumped to but never bound. */
  finish(): Uint8Array {
    if (this.unbound.size > 0) throw new Error('X86Assembler: a jump targets a label that was never bound');
    return Uint8Array.from(this.bytes);
  }

  private rel32(target: Label): void {
    const at = this.bytes.length;
    this.emitU32(0);
    if (target.position === null) {
      target.fixups.push(at);
      this.unbound.add(target);
    }
    else this.patchRel32(at, target.position);
  }

  /** rel32 is relative to the end of the 4-byte displacement. */
  private patchRel32(at: number, target: number): void {
    let rel = target - (at + 4);
    if (rel < 0) rel += TWO_POW_32;
    for (let i = 0; i < 4; i++) this.bytes[at + i] = (rel >>> (8 * i)) & 0xff;
  }
}

/** The ucall sequence: args into UCALL_ARG_REGS (already-loaded registers are kept), count in eax. */
function emitUcallTail(asm: X86Assembler, nr_args: number): void {
  asm.movImm32('rax', nr_args);
  asm.movImm32('rdx', UCALL_PIO_PORT);
  asm.outDxEax();
}

function emitUcall(asm: X86Assembler, args: readonly number[]): void {
  args.forEach((value, i) => asm.movImm64(UCALL_ARG_REGS[i] as GprName, value));
  emitUcallTail(asm, args.length);
}

/** hlt for good: a later KVM_RUN resumes at the jmp and halts again. */
function emitHaltForever(asm: X86Assembler): void {
  const again = new Label();
  asm.bind(again);
  asm.hlt();
  asm.jmp(again);
}

function emitFill(asm: X86Assembler, gpa: number, len: number, byte: number): void {
  if (len === 0) return;
  const loop = new Label();
  asm.movImm64('rdi', gpa);
  asm.movImm64('rcx', len);
  asm.bind(loop);
  asm.storeByteToRdi(byte);
  asm.inc('rdi');
  asm.dec('rcx');
  asm.jcc('ne', loop);
}

/** Byte by byte, so each byte is read exactly once (one MMIO exit per byte where the range exits). */
function emitCheck(asm: X86Assembler, gpa: number, len: number, byte: number): void {
  if (len === 0) return;
  const loop = new Label();
  const mismatch = new Label();
  const done = new Label();
  asm.movImm64('rsi', gpa);
  asm.movImm64('rcx', len);
  asm.bind(loop);
  asm.loadByteFromRsi();
  asm.cmpAl(byte);
  asm.jcc('ne', mismatch);
  asm.inc('rsi');
  asm.dec('rcx');
  asm.jcc('ne', loop);
  asm.jmp(done);
  asm.bind(mismatch);
  // [CHECK_FAILED, gpa (rsi), got (rax), expected]
  asm.movReg('r8', 'rax');
  asm.movImm64('rdi', GUEST_UCALL_CHECK_FAILED);
  asm.movImm64('r9', byte);
  emitUcallTail(asm, 4);
  emitHaltForever(asm);
  asm.bind(done);
}

function emitRead(asm: X86Assembler, gpa: number): void {
  // [READ, gpa (rsi), value (rax)]
  asm.movImm64('rsi', gpa);
  asm.loadByteFromRsi();
  asm.movReg('r8', 'rax');
  asm.movImm64('rdi', GUEST_UCALL_READ);
  emitUcallTail(asm, 3);
}

function emitOp(asm: X86Assembler, op: GuestProgramOp): void {
  switch (op.op) {
    case 'fill': return emitFill(asm, op.gpa, op.len, op.byte);
    case 'check': return emitCheck(asm, op.gpa, op.len, op.byte);
    case 'read': return emitRead(asm, op.gpa);
    case 'ucall': return emitUcall(asm, op.args);
    case 'hlt': return emitHaltForever(asm);
  }
}

/** The program as position-independent x86-64 code (all jumps relative), ending in hlt. */
export function compileGuestProgram(program: GuestProgram): Uint8Array {
  validateGuestProgram(program);
  const asm = new X86Assembler();
  for (const op of program) emitOp(asm, op);
  emitHaltForever(asm);
  return asm.finish();
}
