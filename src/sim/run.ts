/**
 * Running a scenario: for each policy to compare, a fresh model kernel with that policy, the VMM,
 * the arch backend and the workload's guest code; metrics sampled over the run. Same scenario
 * and seed → the same result, byte for byte.
 */
import { createModelKernel, type ModelKernelOptions } from '../kernel/model-kernel.js';
import type { GuestApi } from '../kvm/guest.js';
import { checkPolicy, type Policy } from '../kvm/policy.js';
import { Rng } from '../lib/rng.js';
import { makeArch } from './arch/index.js';
import type { GuestSeq } from './arch/types.js';
import { ContentTags } from './contents.js';
import { SimCounters } from './counters.js';
import { type FinalMetrics, type Sample, Sampler } from './metrics.js';
import { modelKnobs, policyCombos, policyLabel, type Scenario } from './scenario.js';
import { BACKING_BYTES } from './schema.js';
import { GiB, TiB } from './units.js';
import { Vmm } from './vmm.js';
import { WORKLOADS } from './workloads/index.js';

export interface PolicyResult {
  label: string;
  /** The knobs this run set (the model defaults the others per uapi). */
  knobs: Record<string, string>;
  /** The IOMMU importer of this run (a compared field). */
  iommu: string;
  /** Every knob, resolved. */
  policy: Policy;
  steps: number;
  sim_seconds: number;
  series: Sample[];
  final: FinalMetrics;
  notes: string[];
}

export interface SimResult {
  scenario: {
    name: string; description: string; file: string; workload: string; params: Record<string, string | number | boolean>;
    guest: number; vm: string; vm_title: string; vehicle: string; backing: string; uapi: string; vcpus: number; iommu: string;
    seed: number; how_guest_asks: string; layout: Array<{ name: string; gpa: number; size: number }>;
  };
  policies: PolicyResult[];
}

export interface RunOptions {
  /** Called with (policy index, fraction done of that policy) now and then. */
  onProgress?: (policyIndex: number, fraction: number) => void;
}

/** Host memory for the model: the HugeTLB pool for the guest plus room for order-0 pages. */
export function kernelOptions(sc: Scenario, knobs: Record<string, string>): ModelKernelOptions {
  const huge = sc.backing !== '4K';
  const pool = huge ? sc.guest : 0;
  const buddy = huge ? Math.max(GiB, Math.ceil(sc.guest / 16 / GiB) * GiB) : sc.guest + GiB;
  const memoryBytes = Math.min(pool + buddy, 8 * TiB - GiB);
  return {
    uapi: sc.uapi,
    arch: 'x86_64',
    memoryBytes,
    ...(huge ? { hugepages: { [sc.backing]: sc.guest / BACKING_BYTES[sc.backing] } as { '2M'?: number; '1G'?: number } } : {}),
    policy: { ...knobs },
  };
}

export function runPolicy(scenario: Scenario, run: Record<string, string>, label: string, onProgress?: (f: number) => void): PolicyResult {
  const knobs = modelKnobs(run);
  const sc: Scenario = { ...scenario, ...(run.iommu !== undefined ? { iommu: run.iommu as Scenario['iommu'] } : {}) };
  const policy = checkPolicy(sc.uapi, knobs);
  const k = createModelKernel(kernelOptions(sc, knobs));
  const rng = new Rng(sc.seed);
  const counters = new SimCounters();
  const tags = new ContentTags();
  const arch = makeArch(sc.vm, sc.guest / 4096);
  const spec = WORKLOADS[sc.workload];
  if (spec === undefined) throw new Error(`unknown workload ${sc.workload}`);
  const w = spec.create({ sc, arch, rng, tags, counters });
  const steps = sc.steps ?? (sc.time !== null ? Math.max(1, Math.round(sc.time * w.rate)) : w.defaultSteps);
  const every = Math.max(1, Math.ceil(steps / Math.max(1, sc.samples - 1)));
  let sampler: Sampler | null = null;
  let taken = 0;
  const vmm = new Vmm(k, sc, arch, counters, tags, rng, {
    onBooted: () => sampler?.sample(0, 0),
    onEvent: () => {
      const n = counters.events;
      if (n % every === 0 || n === steps) sampler?.sample(n, n / w.rate);
      if (onProgress !== undefined && (n & 63) === 0) onProgress(n / Math.max(1, steps));
    },
  }, policy);
  sampler = new Sampler(k, arch, counters, vmm.iommu);
  vmm.setup((vcpu) => function* (g: GuestApi): GuestSeq {
    if (vcpu === 0) yield* w.boot(g);
    while (taken < steps) {
      const n = taken++;
      yield* w.event(g, vcpu, n);
    }
  });
  w.hostSetup(vmm);
  vmm.run();
  if (sampler.series[sampler.series.length - 1]?.step !== counters.events) sampler.sample(counters.events, counters.events / w.rate);
  onProgress?.(1);
  return {
    label, knobs, iommu: sc.iommu, policy, steps, sim_seconds: steps / w.rate,
    series: sampler.series, final: sampler.final(), notes: vmm.notes,
  };
}

export function runScenario(sc: Scenario, opts: RunOptions = {}): SimResult {
  const combos = policyCombos(sc.policy, sc.compare);
  const policies: PolicyResult[] = [];
  for (const [i, knobs] of combos.entries()) {
    policies.push(runPolicy(sc, knobs, policyLabel(knobs, sc.compare), (f) => opts.onProgress?.(i, f)));
  }
  const arch = makeArch(sc.vm, 1);
  const layoutCtx = WORKLOADS[sc.workload]?.create({ sc, arch, rng: new Rng(sc.seed), tags: new ContentTags(), counters: new SimCounters() });
  return {
    scenario: {
      name: sc.name, description: sc.description, file: sc.file, workload: sc.workload, params: { ...sc.params },
      guest: sc.guest, vm: sc.vm, vm_title: arch.title, vehicle: 'KVM_X86_SW_PROTECTED_VM', backing: sc.backing, uapi: sc.uapi,
      vcpus: sc.vcpus, iommu: sc.iommu, seed: sc.seed, how_guest_asks: arch.howGuestAsks, layout: layoutCtx?.layout ?? [],
    },
    policies,
  };
}
