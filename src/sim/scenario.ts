/**
 * Scenario files: YAML, validated against the schema (schema.ts) and the workloads' parameter
 * specs. Every problem is reported as `file:line: field: what is wrong` (line numbers from the
 * yaml package's LineCounter and node ranges); command-line overrides are checked the same way
 * and reported against the option that gave them. Nothing runs unless the whole scenario is valid.
 */
import { basename } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, type Pair } from 'yaml';
import type { GmemUapi } from '../gmem/inode.js';
import { checkPolicy, POLICY_VALUES } from '../kvm/policy.js';
import { type InputProblem, SimInputError } from './errors.js';
import {
  type Backing, BACKING_BYTES, checkValue, type FieldSpec, IOMMU_MODES, type IommuMode, MAPPING_FIELDS, type ParamValue,
  SCENARIO_FIELDS, type VmTypeName,
} from './schema.js';
import { formatBytes } from './units.js';
import { WORKLOADS } from './workloads/index.js';

export interface ComparedKnob {
  knob: string;
  values: string[];
}

export interface Scenario {
  /** Where it came from: a file path, or '<built-in>/name.yaml'. */
  file: string;
  name: string;
  description: string;
  guest: number;
  vm: VmTypeName;
  backing: Backing;
  uapi: GmemUapi;
  vcpus: number;
  iommu: IommuMode;
  workload: string;
  /** Workload parameters, validated, defaults filled in ('auto' is resolved by the workload). */
  params: Record<string, ParamValue>;
  /** Base policy (knob → value) every compared run starts from. */
  policy: Record<string, string>;
  compare: ComparedKnob[];
  steps: number | null;
  time: number | null;
  seed: number;
  samples: number;
}

/** A value given on the command line, replacing or adding to the file's. */
export interface Override {
  /** 'guest', 'workload.chunk', 'policy.split', 'compare.split', 'workload.type'. */
  path: string;
  value: unknown;
  /** The option as typed, for messages: '--steps 0'. */
  origin: string;
}

interface Located {
  value: unknown;
  line?: number;
  /** Set when the value came from the command line. */
  origin?: string;
  /** For mappings: their entries. */
  entries?: Map<string, Located>;
}

const CMDLINE = '<command line>';

/** Parse and validate a scenario; throws SimInputError listing every problem. */
export function parseScenario(text: string, file: string, overrides: readonly Override[] = []): Scenario {
  const problems: InputProblem[] = [];
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  for (const e of doc.errors) {
    const line = e.linePos?.[0]?.line ?? lc.linePos(e.pos[0]).line;
    problems.push({ file, line, field: 'yaml', message: e.message.split('\n')[0] as string });
  }
  if (problems.length > 0) throw new SimInputError(problems);

  const root = doc.contents;
  const top = new Map<string, Located>();
  if (root !== null && root !== undefined) {
    if (!isMap(root)) {
      throw new SimInputError([{ file, line: lineOf(lc, root), field: '(top level)', message: 'a scenario is a mapping of fields (name: ..., guest: ...)' }]);
    }
    readMap(root.items as Pair[], lc, top);
  }
  applyOverrides(top, overrides);

  const at = (path: string, loc: Located | undefined, message: string): void => {
    problems.push(loc?.origin !== undefined
      ? { file: CMDLINE, field: `${path} (${loc.origin})`, message }
      : { file, ...(loc?.line !== undefined ? { line: loc.line } : {}), field: path, message });
  };

  // ---- unknown fields --------------------------------------------------------------------------
  for (const [key, loc] of top) {
    if (!(key in SCENARIO_FIELDS) && !(MAPPING_FIELDS as readonly string[]).includes(key)) {
      at(key, loc, `unknown field (known: ${[...Object.keys(SCENARIO_FIELDS), ...MAPPING_FIELDS].join(', ')})`);
    }
  }

  // ---- scalar fields ---------------------------------------------------------------------------
  const val: Record<string, ParamValue | undefined> = {};
  for (const [key, spec] of Object.entries(SCENARIO_FIELDS) as Array<[string, FieldSpec]>) {
    const loc = top.get(key);
    if (loc === undefined || loc.value === null) {
      val[key] = spec.default as ParamValue | undefined;
      continue;
    }
    const r = checkValue(spec, loc.value);
    if (r.ok) val[key] = r.value;
    else at(key, loc, r.message);
  }
  if (top.get('guest') === undefined) at('guest', undefined, 'required: the guest memory size, e.g. guest: 4GiB');
  const backing = (val.backing ?? '1G') as Backing;
  const uapi = (val.uapi ?? 'in-place') as GmemUapi;
  const vm = (val.vm ?? 'snp') as VmTypeName;
  if (typeof val.guest === 'number' && val.guest % BACKING_BYTES[backing] !== 0) {
    at('guest', top.get('guest'), `${formatBytes(val.guest)} is not a multiple of the page size (${formatBytes(BACKING_BYTES[backing])}, backing ${backing})`);
  }
  if (backing !== '4K' && uapi === 'v6.18') {
    at('backing', top.get('backing') ?? top.get('uapi'), `HugeTLB ${backing} backing needs uapi in-place or rfc-1g (6.18 guest_memfd has no HugeTLB)`);
  }
  if (vm === 'pkvm' && uapi === 'v6.18') {
    at('vm', top.get('vm'), "pKVM shares memory in place; uapi 'v6.18' has no in-place sharing (use in-place or rfc-1g)");
  }
  if (val.steps !== undefined && val.time !== undefined) {
    at('time', top.get('time'), 'give steps or time, not both');
  }

  // ---- workload ----------------------------------------------------------------------------------
  const wl = top.get('workload');
  let workload = '';
  const params: Record<string, ParamValue> = {};
  if (wl === undefined) {
    at('workload', undefined, `required: one of ${Object.keys(WORKLOADS).join(', ')}`);
  } else {
    const typeLoc = typeof wl.value === 'string' ? wl : wl.entries?.get('type');
    if (typeLoc === undefined || typeof typeLoc.value !== 'string') {
      at('workload.type', typeLoc ?? wl, `required: one of ${Object.keys(WORKLOADS).join(', ')}`);
    } else if (!(typeLoc.value in WORKLOADS)) {
      at('workload.type', typeLoc, `unknown workload '${typeLoc.value}' (known: ${Object.keys(WORKLOADS).join(', ')})`);
    } else {
      workload = typeLoc.value;
      const spec = WORKLOADS[workload as keyof typeof WORKLOADS];
      if (!spec.vms.includes(vm)) {
        at('workload.type', typeLoc, `workload ${workload} runs on vm ${spec.vms.join(' or ')}, not ${vm}`);
      }
      const given = wl.entries ?? new Map<string, Located>();
      for (const [key, loc] of given) {
        if (key === 'type') continue;
        if (!(key in spec.params)) {
          at(`workload.${key}`, loc, `unknown parameter of ${workload} (known: ${Object.keys(spec.params).join(', ')})`);
        }
      }
      for (const [key, pspec] of Object.entries(spec.params)) {
        const loc = given.get(key);
        if (loc === undefined || loc.value === null) {
          if (pspec.default !== undefined) params[key] = pspec.default as ParamValue;
          continue;
        }
        const r = checkValue(pspec, loc.value);
        if (r.ok) params[key] = r.value;
        else at(`workload.${key}`, loc, r.message);
      }
    }
  }
  if (wl !== undefined && wl.entries === undefined && typeof wl.value !== 'string') {
    at('workload', wl, 'expected a mapping (type: ..., parameters) or a workload name');
  }

  // ---- policy and compare -----------------------------------------------------------------------------
  const policy: Record<string, string> = {};
  const polLoc = top.get('policy');
  if (polLoc !== undefined && polLoc.value !== null) {
    if (polLoc.entries === undefined) at('policy', polLoc, 'expected a mapping of knob: value (e.g. merge: eager)');
    for (const [knob, loc] of polLoc.entries ?? []) {
      const msg = checkKnob(knob, loc.value);
      if (msg !== null) at(`policy.${knob}`, loc, msg);
      else policy[knob] = String(loc.value);
    }
  }
  const compare: ComparedKnob[] = [];
  const cmpLoc = top.get('compare');
  if (cmpLoc !== undefined && cmpLoc.value !== null) {
    if (cmpLoc.entries === undefined) at('compare', cmpLoc, 'expected a mapping of knob: [values] (e.g. split: [eager, lazy])');
    for (const [knob, loc] of cmpLoc.entries ?? []) {
      const values = Array.isArray(loc.value) ? loc.value : typeof loc.value === 'string' ? loc.value.split(',').map((s) => s.trim()) : null;
      if (values === null || values.length === 0) {
        at(`compare.${knob}`, loc, 'expected a list of values, e.g. [eager, lazy]');
        continue;
      }
      const knobProblem = checkKnob(knob, undefined, true);
      if (knobProblem !== null && knobProblem.startsWith('unknown')) {
        at(`compare.${knob}`, loc, knobProblem);
        continue;
      }
      let ok = true;
      for (const [i, v] of values.entries()) {
        const msg = checkKnob(knob, v, true);
        if (msg !== null) {
          at(`compare.${knob}[${i}]`, loc, msg);
          ok = false;
          break;
        }
      }
      if (ok) compare.push({ knob, values: values.map(String) });
    }
  }
  // Every policy that will run must be one the uapi can express: refused by name.
  if (!problems.some((p) => p.field.startsWith('policy') || p.field.startsWith('compare'))) {
    for (const combo of policyCombos(policy, compare)) {
      try {
        checkPolicy(uapi, modelKnobs(combo));
      } catch (e) {
        const knob = Object.keys(combo).find((kn) => (e as Error).message.includes(kn)) ?? '';
        const loc = cmpLoc?.entries?.get(knob) ?? polLoc?.entries?.get(knob) ?? top.get('uapi');
        at(compare.some((c) => c.knob === knob) ? `compare.${knob}` : `policy.${knob}`, loc, (e as Error).message);
        break;
      }
    }
  }

  if (problems.length > 0) throw new SimInputError(problems);
  const sc: Scenario = {
    file,
    name: typeof val.name === 'string' ? val.name : basename(file).replace(/\.ya?ml$/, ''),
    description: String(val.description ?? ''),
    guest: val.guest as number,
    vm, backing, uapi,
    vcpus: val.vcpus as number,
    iommu: val.iommu as IommuMode,
    workload, params, policy, compare,
    steps: (val.steps as number | undefined) ?? null,
    time: (val.time as number | undefined) ?? null,
    seed: val.seed as number,
    samples: val.samples as number,
  };
  // The device maps guest_memfd's shared pages through the model's IOMMU importer; 6.18 keeps
  // shared memory in anonymous memory, which the model's IOMMU domains cannot import.
  const iommus = compare.find((c) => c.knob === 'iommu')?.values ?? [sc.iommu];
  if (uapi === 'v6.18' && iommus.some((m) => m !== 'none')) {
    const cmp = compare.some((c) => c.knob === 'iommu');
    at(cmp ? 'compare.iommu' : 'iommu', (cmp ? cmpLoc?.entries?.get('iommu') : undefined) ?? top.get('iommu') ?? top.get('uapi'),
      "the model's IOMMU domains import guest_memfd files; uapi 'v6.18' keeps shared memory outside guest_memfd (use in-place or rfc-1g)");
  }
  // Checks that need the whole scenario (sizes against the guest, ...).
  const spec = WORKLOADS[workload as keyof typeof WORKLOADS];
  for (const [param, message] of spec.check(sc)) {
    // '/field' names a top-level field; anything else a workload parameter.
    if (param.startsWith('/')) at(param.slice(1), top.get(param.slice(1)) ?? top.get('workload'), message);
    else at(`workload.${param}`, top.get('workload')?.entries?.get(param) ?? top.get('workload'), message);
  }
  if (problems.length > 0) throw new SimInputError(problems);
  return sc;
}

/** Scenario fields that `compare` may vary besides the policy knobs. */
export const COMPARABLE_FIELDS: Readonly<Record<string, readonly string[]>> = { iommu: IOMMU_MODES };

function checkKnob(knob: string, value: unknown, compared = false): string | null {
  const allowed = (POLICY_VALUES as Record<string, readonly string[]>)[knob] ?? (compared ? COMPARABLE_FIELDS[knob] : undefined);
  if (allowed === undefined) {
    const known = [...Object.keys(POLICY_VALUES), ...(compared ? Object.keys(COMPARABLE_FIELDS) : [])];
    return `unknown policy knob '${knob}' (known: ${known.join(', ')})`;
  }
  if (typeof value !== 'string' || !allowed.includes(value)) return `${JSON.stringify(value)} is not one of ${allowed.join(', ')}`;
  return null;
}

/** The policies a scenario runs: the base with each combination of compared values (cartesian). */
export function policyCombos(base: Record<string, string>, compare: readonly ComparedKnob[]): Array<Record<string, string>> {
  let combos: Array<Record<string, string>> = [{ ...base }];
  for (const { knob, values } of compare) {
    const next: Array<Record<string, string>> = [];
    for (const c of combos) for (const v of values) next.push({ ...c, [knob]: v });
    combos = next;
  }
  return combos;
}

/** The knobs of a run that are model policies (the rest are scenario fields such as iommu). */
export function modelKnobs(run: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(run)) if (!(k in COMPARABLE_FIELDS)) out[k] = v;
  return out;
}

/** A short label for a policy run: the compared knobs only ('split=eager'), or 'default'. */
export function policyLabel(p: Record<string, string>, compare: readonly ComparedKnob[]): string {
  const parts = compare.map(({ knob }) => `${knob}=${p[knob] as string}`);
  return parts.length > 0 ? parts.join(',') : 'default';
}

// ---- YAML walking -----------------------------------------------------------------------------------

function lineOf(lc: LineCounter, node: Node | null | undefined): number | undefined {
  const r = node?.range;
  return r === undefined || r === null ? undefined : lc.linePos(r[0]).line;
}

function readMap(items: Pair[], lc: LineCounter, out: Map<string, Located>): void {
  for (const pair of items) {
    const keyNode = pair.key as Node | null;
    const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
    const valueNode = pair.value as Node | null;
    const loc: Located = {
      value: valueNode === null ? null : (valueNode as Node).toJSON(),
      line: lineOf(lc, valueNode ?? keyNode) ?? lineOf(lc, keyNode),
    };
    if (isMap(valueNode)) {
      loc.entries = new Map();
      readMap(valueNode.items as Pair[], lc, loc.entries);
    } else if (isSeq(valueNode)) {
      loc.line = lineOf(lc, keyNode);
    }
    out.set(key, loc);
  }
}

function applyOverrides(top: Map<string, Located>, overrides: readonly Override[]): void {
  const cleared = new Set<string>();
  for (const o of overrides) {
    const [head, ...rest] = o.path.split('.');
    if (head === undefined) continue;
    if (rest.length === 0) {
      top.set(head, { value: o.value, origin: o.origin });
      continue;
    }
    let parent = top.get(head);
    // --compare replaces the file's comparison as a whole; the first one clears it.
    if (head === 'compare' && !cleared.has(head)) {
      parent = undefined;
      cleared.add(head);
    }
    if (parent === undefined || parent.entries === undefined) {
      const prev = parent;
      parent = { value: {}, origin: o.origin, entries: new Map() };
      if (prev !== undefined && typeof prev.value === 'string' && head === 'workload') {
        parent.entries?.set('type', { value: prev.value, ...(prev.line !== undefined ? { line: prev.line } : {}) });
      }
      top.set(head, parent);
    }
    (parent.entries as Map<string, Located>).set(rest.join('.'), { value: o.value, origin: o.origin });
  }
}

export { SimInputError };
