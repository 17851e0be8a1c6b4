/**
 * gmem diff: run the same seeded programs on the model (uapi 'v6.18') and on the host kernel,
 * compare every outcome, shrink the first divergence to a minimal program and print it as a
 * ready-to-paste test.
 */
import { createModelKernel } from '../kernel/model-kernel.js';
import { loadGuestProgram } from '../host/guest-loader.js';
import type { Syscalls } from '../uapi/syscalls.js';
import { type ExecResult, execProgram, type GuestRunner, modelGuestRunner } from './exec.js';
import { type DiffProgram, randomProgram } from './program.js';

export const hostGuestRunner: GuestRunner = {
  load(sys, vmFd, vcpuFd, program) {
    const g = loadGuestProgram(sys, vmFd, vcpuFd, program);
    return { reload: (p) => g.reload(p), unload: () => g.unload() };
  },
};

export interface Backends {
  model: () => Syscalls;
  host: Syscalls;
  hostGuest?: GuestRunner;
}

export interface Divergence {
  program: DiffProgram;
  /** Index of the first op whose outcomes differ. */
  at: number;
  model: string;
  host: string;
}

export function compareOnce(b: Backends, prog: DiffProgram): { div: Divergence | null; compared: number; model: ExecResult; host: ExecResult } {
  const model = execProgram(b.model(), modelGuestRunner, prog);
  const host = execProgram(b.host, b.hostGuest ?? hostGuestRunner, prog);
  for (let i = 0; i < prog.length; i++) {
    if (model.outcomes[i] !== host.outcomes[i]) {
      return { div: { program: prog, at: i, model: model.outcomes[i] ?? '', host: host.outcomes[i] ?? '' }, compared: i + 1, model, host };
    }
  }
  return { div: null, compared: model.compared, model, host };
}

/** Remove ops while a divergence remains (one at a time, from the end, until nothing more goes). */
export function shrink(b: Backends, div: Divergence): Divergence {
  let best = div;
  let prog = div.program.slice(0, div.at + 1);
  let changed = true;
  while (changed) {
    changed = false;
    for (let i = prog.length - 1; i >= 0; i--) {
      const candidate = prog.filter((_, j) => j !== i).map((op) => renumber(op, i));
      const r = compareOnce(b, candidate);
      if (r.div !== null) {
        prog = candidate.slice(0, r.div.at + 1);
        best = { ...r.div, program: prog };
        changed = true;
      }
    }
  }
  return best;
}

/** Handles name creating ops by index: removing op `removed` shifts later indices down by one. */
function renumber<T extends object>(op: T, removed: number): T {
  const out = { ...op } as Record<string, unknown>;
  for (const key of ['vm', 'gmem', 'map', 'fd']) {
    const v = out[key];
    if (typeof v !== 'number') continue;
    out[key] = v === removed ? -1 : v > removed ? v - 1 : v;
  }
  return out as unknown as T;
}

export function asTest(d: Divergence, seed: number): string {
  return [
    `// Found by \`gmem diff --seed ${seed}\`: op ${d.at} diverges.`,
    `//   model: ${d.model}`,
    `//   host:  ${d.host}`,
    "import { test } from 'node:test';",
    "import assert from 'node:assert/strict';",
    "import { compareOnce } from '../../src/diff/diff.js';",
    "import { diffBackends } from '../lib/diff-backends.js';",
    '',
    `test('gmem diff seed ${seed}: model and host agree', async (t) => {`,
    '  const b = await diffBackends();',
    '  if (b === null) return t.skip(\'no /dev/kvm\');',
    `  const program = ${JSON.stringify(d.program)};`,
    '  const r = compareOnce(b, program);',
    '  assert.deepEqual(r.model.outcomes, r.host.outcomes);',
    '});',
  ].join('\n');
}

export interface DiffRun {
  programs: number;
  compared: number;
  divergence: Divergence | null;
}

/** Run `programs` programs of `ops` calls from `seed`; stop at (and shrink) the first divergence. */
export function runDiff(b: Backends, seed: number, programs: number, ops: number): DiffRun {
  let compared = 0;
  for (let p = 0; p < programs; p++) {
    const prog = randomProgram(seed + p, ops);
    const r = compareOnce(b, prog);
    compared += r.compared;
    if (r.div !== null) return { programs: p + 1, compared, divergence: shrink(b, r.div) };
  }
  return { programs, compared, divergence: null };
}

export function modelForDiff(): Syscalls {
  return createModelKernel({ uapi: 'v6.18' });
}
