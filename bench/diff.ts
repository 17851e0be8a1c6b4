/** Issue 4's figure: how many calls a second `gmem diff` compares (model and host together). */
import { performance } from 'node:perf_hooks';
import { modelForDiff, runDiff } from '../src/diff/diff.js';
import { hostKernelUnavailableReason, openHostKernel } from '../src/host/host-kernel.js';
import type { Figure } from './lib.js';

export function diffBench(): Figure[] {
  const host = openHostKernel();
  if (host === null) {
    process.stderr.write(`bench: gmem diff skipped: ${hostKernelUnavailableReason() ?? 'no /dev/kvm'}\n`);
    return [];
  }
  runDiff({ model: modelForDiff, host }, 1000, 3, 200); // warm-up
  const t0 = performance.now();
  const r = runDiff({ model: modelForDiff, host }, 1, 30, 200);
  const s = (performance.now() - t0) / 1000;
  if (r.divergence !== null) throw new Error('bench: gmem diff found a divergence; run `gmem diff` to see it');
  return [{ name: 'gmem diff compared calls', value: r.compared / s, unit: 'ops/s', target: '≥ 5,000' }];
}
