/**
 * `gmem diff [--seed N] [--programs N] [--ops N] [--json]`: seeded random programs over the subset
 * both backends support, run on the model (uapi 'v6.18') and on this host's /dev/kvm; every return
 * value, errno, signal and byte read is compared. The first divergence is shrunk to a minimal
 * program and printed as a ready-to-paste test; exit 1. No /dev/kvm: the reason, exit 0 (skipped).
 */
import { asTest, modelForDiff, runDiff } from '../diff/diff.js';
import { hostKernelUnavailableReason, openHostKernel } from '../host/host-kernel.js';

export interface DiffArgs {
  seed: number;
  programs: number;
  ops: number;
  json: boolean;
}

/** Parse the options; a string is the usage error. */
export function parseDiffArgs(argv: string[]): DiffArgs | string {
  const args: DiffArgs = { seed: 1, programs: 20, ops: 200, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--json') {
      args.json = true;
      continue;
    }
    const key = a.replace(/^--/, '');
    if (!['seed', 'programs', 'ops'].includes(key) || a === key) return `unknown option '${a}'`;
    const v = argv[++i];
    if (v === undefined || !/^\d+$/.test(v)) return `${a} needs a non-negative integer, got '${v ?? ''}'`;
    const n = Number(v);
    if (key !== 'seed' && (n < 1 || n > 100000)) return `${a} must be between 1 and 100000`;
    (args as unknown as Record<string, number>)[key] = n;
  }
  return args;
}

export function runDiffCommand(a: DiffArgs, out: (line: string) => void): number {
  const host = openHostKernel();
  if (host === null) {
    out(`gmem diff: skipped: the host backend is unavailable: ${hostKernelUnavailableReason() ?? '/dev/kvm cannot be opened'}`);
    return 0;
  }
  const r = runDiff({ model: modelForDiff, host }, a.seed, a.programs, a.ops);
  if (a.json) {
    out(JSON.stringify({ seed: a.seed, programs: r.programs, compared: r.compared, divergence: r.divergence }));
    return r.divergence === null ? 0 : 1;
  }
  out(`gmem diff: seed ${a.seed}: ${r.programs} programs, ${r.compared} calls compared on the model and the host`);
  if (r.divergence === null) {
    out('no divergence.');
    return 0;
  }
  const d = r.divergence;
  out(`DIVERGENCE at op ${d.at} of a ${d.program.length}-op minimal program:`);
  d.program.forEach((op, i) => out(`  ${i === d.at ? '>' : ' '} ${i}: ${JSON.stringify(op)}`));
  out(`  model: ${d.model}`);
  out(`  host:  ${d.host}`);
  out('');
  out('ready-to-paste test (test/diff/):');
  out(asTest(d, a.seed));
  return 1;
}
