/**
 * Differential-test programs: seeded random sequences of calls over the subset that both the
 * model (uapi 'v6.18') and this host kernel support. Handles are symbolic: an op names the op
 * that created the fd or mapping it uses, so a program means the same thing on both backends
 * (and still means something after the shrinker removed ops: a missing handle is fd -1).
 */
import { Rng } from '../lib/rng.js';
import type { GuestProgram } from '../host/guest-program.js';

export type DiffOp =
  | { op: 'create_vm' }
  | { op: 'create_gmem'; vm: number; size: number; flags: number }
  | { op: 'fallocate'; gmem: number; mode: number; offset: number; len: number }
  | { op: 'mmap'; gmem: number; len: number; prot: number; flags: number; offset: number }
  | { op: 'munmap'; map: number }
  | { op: 'store'; map: number; offset: number; len: number; byte: number }
  | { op: 'load'; map: number; offset: number; len: number }
  | { op: 'fstat'; gmem: number }
  | { op: 'memslot'; vm: number; slot: number; gpa: number; size: number; gmem: number; gmem_offset: number; map: number; flags: number }
  | { op: 'delete_slot'; vm: number; slot: number }
  | { op: 'close'; fd: number }
  | { op: 'guest'; vm: number; program: GuestProgram };

export type DiffProgram = DiffOp[];

const PAGE = 4096;
/** Where diff memslots live: clear of the host loader's slot (3 GiB, slot 32000). */
export const DIFF_GPA_BASE = 2 ** 32;

/** One random program of `nr_ops` calls. */
export function randomProgram(seed: number, nr_ops: number): DiffProgram {
  const rng = new Rng(seed);
  const prog: DiffProgram = [];
  const made = { vm: [] as number[], gmem: [] as number[], map: [] as number[] };
  const any = (xs: number[]): number => (xs.length === 0 || rng.bool(0.05) ? -1 : rng.pick(xs));
  for (let i = 0; i < nr_ops; i++) {
    const k = made.vm.length === 0 ? 0 : made.gmem.length === 0 ? 4 : rng.below(100);
    let op: DiffOp;
    // VM creation costs the host ~1 ms (and a vCPU ~0.3 ms): rare, so thousands of calls a second compare.
    if (k < 1) {
      op = { op: 'create_vm' };
      made.vm.push(i);
    } else if (k < 14) {
      op = {
        op: 'create_gmem', vm: any(made.vm),
        size: rng.pick([PAGE, 4 * PAGE, 16 * PAGE, 2 ** 21, 0, PAGE + 1, 2 ** 40]),
        flags: rng.pick([0, 1, 2, 3, 3, 3, 4]),
      };
      made.gmem.push(i);
    } else if (k < 30) {
      op = {
        op: 'fallocate', gmem: any(made.gmem),
        mode: rng.pick([1, 3, 3, 0, 2, 0x10, 0x11]),
        offset: rng.pick([0, PAGE, 2 * PAGE, 3 * PAGE, 8 * PAGE, 15 * PAGE, 1, 2 ** 21]),
        len: rng.pick([PAGE, 2 * PAGE, 4 * PAGE, 16 * PAGE, PAGE - 1, 0]),
      };
    } else if (k < 40) {
      op = {
        op: 'mmap', gmem: any(made.gmem), len: rng.pick([PAGE, 4 * PAGE, 16 * PAGE, 32 * PAGE]),
        prot: rng.pick([3, 3, 1, 5]), flags: rng.pick([1, 1, 1, 2]), offset: rng.pick([0, 0, PAGE, 1]),
      };
      made.map.push(i);
    } else if (k < 44) {
      op = { op: 'munmap', map: any(made.map) };
    } else if (k < 60) {
      op = { op: 'store', map: any(made.map), offset: rng.below(20) * PAGE + rng.below(8), len: rng.pick([1, 8, PAGE]), byte: rng.below(256) };
    } else if (k < 75) {
      op = { op: 'load', map: any(made.map), offset: rng.below(20) * PAGE, len: rng.pick([1, 16, PAGE]) };
    } else if (k < 78) {
      op = { op: 'fstat', gmem: any(made.gmem) };
    } else if (k < 86) {
      op = {
        op: 'memslot', vm: any(made.vm), slot: rng.below(4), gpa: DIFF_GPA_BASE + rng.below(4) * 16 * PAGE,
        size: rng.pick([PAGE, 4 * PAGE, 16 * PAGE]), gmem: any(made.gmem), gmem_offset: rng.pick([0, PAGE, 0, 1]),
        map: any(made.map), flags: rng.pick([4, 4, 4, 0, 6]),
      };
    } else if (k < 89) {
      op = { op: 'delete_slot', vm: any(made.vm), slot: rng.below(4) };
    } else if (k < 96) {
      op = { op: 'close', fd: any(rng.bool(0.8) ? made.gmem : made.vm) };
    } else {
      const gpa = DIFF_GPA_BASE + rng.below(4) * 16 * PAGE + rng.below(4) * PAGE;
      const byte = rng.below(256);
      const program: GuestProgram = rng.bool()
        ? [{ op: 'fill', gpa, len: rng.pick([1, 64]), byte }, { op: 'read', gpa }]
        : [{ op: 'read', gpa }, { op: 'ucall', args: [byte] }];
      op = { op: 'guest', vm: any(made.vm), program };
    }
    prog.push(op);
  }
  return prog;
}
