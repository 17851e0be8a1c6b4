/**
 * The scenario schema: every field a scenario file may hold, its type, range and default, as data.
 * The parser (scenario.ts) validates against it; `gmem sim --schema` prints it. Workload
 * parameters are declared by each workload (workloads/*.ts) with the same FieldSpec shapes.
 */
import { POLICY_VALUES } from '../kvm/policy.js';
import { describe, formatBytes, GiB, parseDuration, parseSize, TiB } from './units.js';

export type FieldSpec =
  | { kind: 'string'; doc: string; default?: string }
  | { kind: 'int'; doc: string; min: number; max: number; default?: number }
  | { kind: 'number'; doc: string; min: number; max: number; default?: number }
  | { kind: 'size'; doc: string; min: number; max: number; multipleOf?: number; default?: number | 'auto' }
  | { kind: 'duration'; doc: string; min: number; max: number; default?: number }
  | { kind: 'enum'; doc: string; values: readonly string[]; default?: string }
  | { kind: 'bool'; doc: string; default?: boolean };

export type ParamSpecs = Readonly<Record<string, FieldSpec>>;
export type ParamValue = string | number | boolean;

export const VM_TYPES = ['snp', 'tdx', 'pkvm', 'sw-protected'] as const;
export type VmTypeName = (typeof VM_TYPES)[number];
export const BACKINGS = ['4K', '2M', '1G'] as const;
export type Backing = (typeof BACKINGS)[number];
export const UAPIS = ['in-place', 'rfc-1g', 'v6.18'] as const;
export const IOMMU_MODES = ['none', 'vfio-4k', 'unmap-remap', 'refresh'] as const;
export type IommuMode = (typeof IOMMU_MODES)[number];

export const BACKING_BYTES: Record<Backing, number> = { '4K': 4096, '2M': 2 ** 21, '1G': 2 ** 30 };

/** Largest guest: the model's pfns are 31-bit, and the host needs room for the guest and more. */
export const MAX_GUEST = 4 * TiB;

/** The top-level fields. `workload`, `policy` and `compare` are mappings, checked separately. */
export const SCENARIO_FIELDS = {
  name: { kind: 'string', doc: 'scenario name (default: the file name)' },
  description: { kind: 'string', doc: 'one line on what the scenario shows', default: '' },
  guest: { kind: 'size', doc: 'guest memory size; a multiple of the backing page size', min: 2 ** 21, max: MAX_GUEST },
  vm: { kind: 'enum', doc: 'VM type: its conversion requests, mapping limits and content rules', values: VM_TYPES, default: 'snp' },
  backing: { kind: 'enum', doc: 'guest_memfd backing page size: 4K (buddy) or HugeTLB 2M/1G', values: BACKINGS, default: '1G' },
  uapi: { kind: 'enum', doc: 'which kernel: in-place (KVM_SET_MEMORY_ATTRIBUTES2), rfc-1g (KVM_GMEM_CONVERT_*), v6.18', values: UAPIS, default: 'in-place' },
  vcpus: { kind: 'int', doc: 'vCPUs (each runs its share of the workload; KVM_RUN round-robin)', min: 1, max: 1024, default: 4 },
  iommu: { kind: 'enum', doc: 'device assignment: the IOMMU importer of shared memory', values: IOMMU_MODES, default: 'none' },
  steps: { kind: 'int', doc: 'workload events to run (default: the workload\'s own count)', min: 1, max: 100_000_000 },
  time: { kind: 'duration', doc: 'simulated time to run instead of steps (events = time x workload rate)', min: 1e-6, max: 1e6 },
  seed: { kind: 'int', doc: 'seed of all randomness (src/lib/rng.ts)', min: 0, max: 2 ** 32 - 1, default: 1 },
  samples: { kind: 'int', doc: 'metric samples over the run (for the plots)', min: 2, max: 10_000, default: 200 },
} as const satisfies Record<string, FieldSpec>;

export type ScenarioField = keyof typeof SCENARIO_FIELDS;
export const MAPPING_FIELDS = ['workload', 'policy', 'compare'] as const;

/** Policy knobs and their values (src/kvm/policy.ts), for messages and --schema. */
export const POLICY_KNOBS: Readonly<Record<string, readonly string[]>> = POLICY_VALUES;

/** Check one value against its spec: the parsed value, or a message saying what is wrong. */
export function checkValue(spec: FieldSpec, v: unknown): { ok: true; value: ParamValue } | { ok: false; message: string } {
  const bad = (message: string): { ok: false; message: string } => ({ ok: false, message });
  switch (spec.kind) {
    case 'string':
      if (typeof v !== 'string' && typeof v !== 'number') return bad(`expected text, got ${describe(v)}`);
      return { ok: true, value: String(v) };
    case 'bool':
      if (typeof v !== 'boolean') return bad(`expected true or false, got ${describe(v)}`);
      return { ok: true, value: v };
    case 'enum': {
      const s = typeof v === 'number' || typeof v === 'boolean' ? String(v) : v;
      if (typeof s !== 'string' || !spec.values.includes(s)) {
        return bad(`${describe(v)} is not one of ${spec.values.join(', ')}`);
      }
      return { ok: true, value: s };
    }
    case 'int':
    case 'number': {
      const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
      if (typeof n !== 'number' || !Number.isFinite(n)) return bad(`expected a number, got ${describe(v)}`);
      if (spec.kind === 'int' && !Number.isInteger(n)) return bad(`expected a whole number, got ${describe(v)}`);
      if (n < spec.min || n > spec.max) return bad(`${n} is out of range [${spec.min}, ${spec.max}]`);
      return { ok: true, value: n };
    }
    case 'size': {
      if (v === 'auto' && spec.default === 'auto') return { ok: true, value: 'auto' };
      const n = parseSize(v);
      if (typeof n === 'string') return bad(n);
      if (n < spec.min || n > spec.max) {
        return bad(`${formatBytes(n)} is out of range [${formatBytes(spec.min)}, ${formatBytes(spec.max)}]`);
      }
      if (spec.multipleOf !== undefined && n % spec.multipleOf !== 0) {
        return bad(`${formatBytes(n)} is not a multiple of the page size (${formatBytes(spec.multipleOf)})`);
      }
      return { ok: true, value: n };
    }
    case 'duration': {
      const n = parseDuration(v);
      if (typeof n === 'string') return bad(n);
      if (n < spec.min || n > spec.max) return bad(`${n} s is out of range [${spec.min} s, ${spec.max} s]`);
      return { ok: true, value: n };
    }
  }
}

/** One line per field, for `gmem sim --schema`. */
export function describeSpec(name: string, spec: FieldSpec): string {
  let type: string;
  switch (spec.kind) {
    case 'enum': type = spec.values.join(' | '); break;
    case 'size': type = `size ${formatBytes(spec.min)}..${formatBytes(spec.max)}${spec.multipleOf !== undefined ? `, multiple of ${formatBytes(spec.multipleOf)}` : ''}`; break;
    case 'int': case 'number': type = `${spec.kind} ${spec.min}..${spec.max}`; break;
    case 'duration': type = 'duration (e.g. 10s)'; break;
    default: type = spec.kind;
  }
  const def = spec.default === undefined ? '' : ` (default ${typeof spec.default === 'number' && spec.kind === 'size' ? formatBytes(spec.default) : String(spec.default)})`;
  return `  ${name.padEnd(14)} ${type}${def}\n  ${''.padEnd(14)} ${spec.doc}`;
}

export { GiB };
