/**
 * `gmem sim <scenario> [options]`: run a scenario (built-in name or YAML file) with each policy
 * to compare, and print the policies side by side. Exit codes: 0 done, 1 the run failed,
 * 2 bad input (unknown scenario, workload, field, policy; bad sizes or ranges): nothing written.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { builtinNames, readBuiltin } from '../sim/builtin.js';
import { formatProblem, SimInputError } from '../sim/errors.js';
import { renderHtml } from '../sim/report/html.js';
import { renderJson } from '../sim/report/json.js';
import { renderTable } from '../sim/report/table.js';
import { Progress } from '../sim/progress.js';
import { runScenario } from '../sim/run.js';
import { type Override, parseScenario, policyCombos, policyLabel } from '../sim/scenario.js';
import { describeSpec, SCENARIO_FIELDS, POLICY_KNOBS, type FieldSpec } from '../sim/schema.js';
import { WORKLOADS } from '../sim/workloads/index.js';

export const SIM_USAGE = `usage: gmem sim <scenario> [options]
       gmem sim --list | --schema

<scenario> is a built-in scenario name (gmem sim --list) or a YAML file.

options:
  --compare KNOB=V1,V2   compare these values (repeatable: every combination runs); replaces the
                         scenario's comparison. KNOB: a policy knob (split, merge, atomicity,
                         error_offset, punch) or iommu
  --policy KNOB=VALUE    set a policy knob for every run
  --set FIELD=VALUE      set any scenario field or workload parameter (e.g. workload.chunk=2MiB)
  --guest SIZE  --vm TYPE  --backing 4K|2M|1G  --uapi in-place|rfc-1g|v6.18  --vcpus N  --iommu MODE
  --steps N | --time DURATION   run N workload events, or DURATION simulated time
  --seed N               seed of all randomness: the same seed reproduces a run exactly
  --samples N            metric samples over the run (plots)
  --json                 print the result as JSON instead of the table
  --html FILE            also write a self-contained HTML report with plots
  --no-progress          no progress bar
  --quiet                nothing on stderr but errors
`;

export interface SimIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown; isTTY?: boolean };
  cwd?: string;
}

const SUGAR: Record<string, string> = {
  '--guest': 'guest', '--vm': 'vm', '--backing': 'backing', '--uapi': 'uapi', '--vcpus': 'vcpus', '--iommu': 'iommu',
  '--steps': 'steps', '--time': 'time', '--seed': 'seed', '--samples': 'samples',
};

class UsageError extends Error {}

interface Parsed {
  scenario: string | null;
  overrides: Override[];
  json: boolean;
  html: string | null;
  progress: boolean;
  quiet: boolean;
  list: boolean;
  schema: boolean;
  help: boolean;
}

function parseArgs(args: string[]): Parsed {
  const p: Parsed = { scenario: null, overrides: [], json: false, html: null, progress: true, quiet: false, list: false, schema: false, help: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const opt = eq > 0 ? a.slice(0, eq) : a;
    const inline = eq > 0 ? a.slice(eq + 1) : undefined;
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = args[++i];
      if (v === undefined) throw new UsageError(`${opt} needs a value`);
      return v;
    };
    const kv = (what: string): [string, string, string] => {
      const v = value();
      const k = v.indexOf('=');
      if (k <= 0) throw new UsageError(`${opt} ${v}: expected ${what}`);
      return [v.slice(0, k), v.slice(k + 1), `${opt} ${v}`];
    };
    switch (opt) {
      case '--json': p.json = true; break;
      case '--html': p.html = value(); break;
      case '--no-progress': p.progress = false; break;
      case '--quiet': p.quiet = true; p.progress = false; break;
      case '--list': p.list = true; break;
      case '--schema': p.schema = true; break;
      case '-h': case '--help': p.help = true; break;
      case '--compare': {
        const [knob, vals, origin] = kv('KNOB=V1,V2');
        p.overrides.push({ path: `compare.${knob}`, value: vals.split(',').map((s) => s.trim()).filter((s) => s !== ''), origin });
        break;
      }
      case '--policy': {
        const [knob, v, origin] = kv('KNOB=VALUE');
        p.overrides.push({ path: `policy.${knob}`, value: v, origin });
        break;
      }
      case '--set': {
        const [field, v, origin] = kv('FIELD=VALUE');
        p.overrides.push({ path: field, value: yamlScalar(v), origin });
        break;
      }
      default:
        if (opt in SUGAR) {
          const v = value();
          p.overrides.push({ path: SUGAR[opt] as string, value: v, origin: `${opt} ${v}` });
        } else if (a.startsWith('-')) {
          throw new UsageError(`unknown option '${a}'`);
        } else if (p.scenario === null) {
          p.scenario = a;
        } else {
          throw new UsageError(`one scenario at a time (got '${p.scenario}' and '${a}')`);
        }
    }
  }
  return p;
}

function yamlScalar(v: string): unknown {
  try {
    return parseYaml(v) as unknown;
  } catch {
    return v;
  }
}

function listText(): string {
  const lines = ['built-in scenarios:'];
  for (const name of builtinNames()) {
    const text = readBuiltin(name) ?? '';
    const d = /^description:\s*(.*)$/m.exec(text);
    lines.push(`  ${name.padEnd(18)} ${d?.[1]?.replace(/^['"]|['"]$/g, '') ?? ''}`);
  }
  lines.push('', 'workloads:');
  for (const w of Object.values(WORKLOADS)) lines.push(`  ${w.name.padEnd(18)} ${w.description} (vm: ${w.vms.join(', ')})`);
  return `${lines.join('\n')}\n`;
}

function schemaText(): string {
  const out = ['scenario fields:'];
  for (const [k, s] of Object.entries(SCENARIO_FIELDS) as Array<[string, FieldSpec]>) out.push(describeSpec(k, s));
  out.push('  workload       mapping: type: <workload>, then its parameters (below)');
  out.push('  policy         mapping: knob: value, for every run');
  out.push('  compare        mapping: knob: [values]; every combination runs (knobs below, or iommu)');
  out.push('', 'policy knobs:');
  for (const [k, v] of Object.entries(POLICY_KNOBS)) out.push(`  ${k.padEnd(14)} ${v.join(' | ')}`);
  for (const w of Object.values(WORKLOADS)) {
    out.push('', `workload ${w.name}: ${w.description} (vm: ${w.vms.join(', ')})`);
    for (const [k, s] of Object.entries(w.params)) out.push(describeSpec(k, s));
  }
  return `${out.join('\n')}\n`;
}

export async function runSimCli(args: string[], io: SimIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const err = (s: string): void => { io.stderr.write(s); };
  let p: Parsed;
  try {
    p = parseArgs(args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err(`gmem sim: ${e.message}\n${SIM_USAGE}`);
    return 2;
  }
  if (p.help) {
    io.stdout.write(SIM_USAGE);
    return 0;
  }
  if (p.list) {
    io.stdout.write(listText());
    return 0;
  }
  if (p.schema) {
    io.stdout.write(schemaText());
    return 0;
  }
  if (p.scenario === null) {
    err(`gmem sim: which scenario?\n${SIM_USAGE}\n${listText()}`);
    return 2;
  }
  // A file (a path that exists, or anything ending in .yaml), else a built-in name.
  const cwd = io.cwd ?? process.cwd();
  let file: string;
  let text: string;
  const asPath = resolve(cwd, p.scenario);
  if (existsSync(asPath) && statSync(asPath).isFile()) {
    file = p.scenario;
    text = readFileSync(asPath, 'utf8');
  } else if (/\.ya?ml$/.test(p.scenario) || p.scenario.includes('/')) {
    err(`gmem sim: ${p.scenario}: no such file\n`);
    return 2;
  } else {
    const t = readBuiltin(p.scenario);
    if (t === null) {
      err(`gmem sim: unknown scenario '${p.scenario}' (built-in: ${builtinNames().join(', ')}; or give a .yaml file)\n`);
      return 2;
    }
    // Named as the package names it, so messages and JSON do not depend on where it is installed.
    file = `scenarios/${p.scenario}.yaml`;
    text = t;
  }
  if (p.html !== null) {
    const dir = dirname(resolve(cwd, p.html));
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      err(`gmem sim: --html ${p.html}: directory ${dir} does not exist\n`);
      return 2;
    }
  }
  let sc;
  try {
    sc = parseScenario(text, file, p.overrides);
  } catch (e) {
    if (!(e instanceof SimInputError)) throw e;
    for (const prob of e.problems) err(`${formatProblem(prob)}\n`);
    return 2;
  }
  const labels = policyCombos(sc.policy, sc.compare).map((c) => policyLabel(c, sc.compare));
  const progress = new Progress(io.stderr, labels, p.progress);
  let result;
  try {
    result = runScenario(sc, { onProgress: (i, f) => progress.update(i, f) });
  } catch (e) {
    progress.done();
    err(`gmem sim: the run failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  }
  progress.done();
  if (p.json) io.stdout.write(renderJson(result));
  else io.stdout.write(renderTable(result));
  if (p.html !== null) writeFileSync(resolve(cwd, p.html), renderHtml(result));
  if (!p.quiet) {
    err(`gmem sim: ${labels.length} run${labels.length === 1 ? '' : 's'} in ${progress.elapsedSeconds.toFixed(1)} s${p.html !== null ? `; report in ${p.html}` : ''}\n`);
  }
  return 0;
}
