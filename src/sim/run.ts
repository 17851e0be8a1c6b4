/**
 * Running a scenario: for each policy to compare, a fresh model kernel with that policy (arm64 for
 * pKVM, else x86_64), the VM type (the arch's own where the kernel has it — KVM_CAP_VM_TYPES on
 * x86, KVM_VM_TYPE_ARM_PROTECTED on arm64 — else the SW_PROTECTED vehicle for SNP/TDX), the VMM,
 * the arch backend and the workload's guest code; metrics sampled over the run. Same scenario
 * and seed → the same result, byte for byte.
 */
import { createModelKernel, type ModelKernel, type ModelKernelOptions } from '../kernel/model-kernel.js';
import type { GuestApi } from '../kvm/guest.js';
import { checkPolicy, type Policy } from '../kvm/policy.js';
import { Rng } from '../lib/rng.js';
import { chooseVmType, kernelArch, makeArch, type VmTypeChoice } from './arch/index.js';
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
  /** The KVM VM type the guest ran on, and why. */
  vm_type: VmTypeChoice;
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
    guest: number; vm: string; vm_title: string; backing: string; uapi: string; vcpus: number; iommu: string;
    seed: number; how_guest_asks: string; layout: Array<{ name: string; gpa: number; size: number }>;
    /** The KVM VM type the guest ran on (the same for every policy: it depends on the uapi). */
    vm_type: VmTypeChoice;
    /** What the simulator decides about stage-2 levels on top of the model (null: nothing). */
    sim_level_rules: string | null;
    /** Other rules the simulator applies because the model does not (pKVM's page states; null: none). */
    sim_page_rules: string | null;
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
    arch: kernelArch(sc.vm),
    memoryBytes,
    ...(huge ? { hugepages: { [sc.backing]: sc.guest / BACKING_BYTES[sc.backing] } as { '2M'?: number; '1G'?: number } } : {}),
    policy: { ...knobs },
  };
}

/**
 * One policy's run. `makeKernel` builds the model kernel (tests pass one wrapped in the invariant
 * checker); by default createModelKernel.
 */
export function runPolicy(
  scenario: Scenario, run: Record<string, string>, label: string, onProgress?: (f: number) => void,
  makeKernel: (o: ModelKernelOptions) => ModelKernel = createModelKernel,
): PolicyResult {
  const knobs = modelKnobs(run);
  const sc: Scenario = { ...scenario, ...(run.iommu !== undefined ? { iommu: run.iommu as Scenario['iommu'] } : {}) };
  const policy = checkPolicy(sc.uapi, knobs);
  const k = makeKernel(kernelOptions(sc, knobs));
  const rng = new Rng(sc.seed);
  const counters = new SimCounters();
  const tags = new ContentTags();
  const vmType = chooseVmType(k, sc.vm, `uapi ${sc.uapi}`, sc.guest);
  const arch = makeArch(sc.vm, sc.guest / 4096, vmType.native);
  const spec = WORKLOADS[sc.workload];
  if (spec === undefined) throw new Error(`unknown workload ${sc.workload}`);
  const w = spec.create({ sc, arch, rng, tags, counters });
  const steps = sc.steps ?? (sc.time !== null ? Math.max(1, Math.round(sc.time * w.rate)) : w.defaultSteps);
  const every = Math.max(1, Math.ceil(steps / Math.max(1, sc.samples - 1)));
  let sampler: Sampler | null = null;
  let taken = 0;
  const vmm = new Vmm(k, sc, arch, counters, tags, {
    onBooted: () => sampler?.sample(0, 0),
    onEvent: () => {
      const n = counters.events;
      if (n % every === 0 || n === steps) sampler?.sample(n, n / w.rate);
      if (onProgress !== undefined && (n & 63) === 0) onProgress(n / Math.max(1, steps));
    },
  }, policy, vmType);
  sampler = new Sampler(k, arch, counters, () => vmm.iommu, (): Record<string, number> => {
    const a = vmm.acceptedUnmapped();
    return a === null ? {} : { accepted_pages: a.accepted, accepted_pages_unmapped_by_model: a.unmapped };
  });
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
  const final = sampler.final();
  const unmapped = final.arch.accepted_pages_unmapped_by_model ?? 0;
  if (unmapped > 0) {
    vmm.notes.push(`the model's stage-2 does not map ${unmapped.toLocaleString('en-US')} of the ${(final.arch.accepted_pages ?? 0).toLocaleString('en-US')} `
      + 'pages the guest accepted and kept: its conversions zap every leaf of the huge folio\'s range, where TDX keeps accepted '
      + 'pages mapped and demotes only the 2M leaf around the converted pages; the stage-2 rows undercount what TDX maps');
  }
  return {
    label, knobs, iommu: sc.iommu, vm_type: vmType, policy, steps, sim_seconds: steps / w.rate,
    series: sampler.series, final, notes: vmm.notes,
  };
}

export function runScenario(sc: Scenario, opts: RunOptions = {}): SimResult {
  const combos = policyCombos(sc.policy, sc.compare);
  const policies: PolicyResult[] = [];
  for (const [i, knobs] of combos.entries()) {
    policies.push(runPolicy(sc, knobs, policyLabel(knobs, sc.compare), (f) => opts.onProgress?.(i, f)));
  }
  const vmType = (policies[0] as PolicyResult).vm_type; // policyCombos gives at least one run
  const arch = makeArch(sc.vm, 1, vmType.native);
  const layoutCtx = WORKLOADS[sc.workload]?.create({ sc, arch, rng: new Rng(sc.seed), tags: new ContentTags(), counters: new SimCounters() });
  return {
    scenario: {
      name: sc.name, description: sc.description, file: sc.file, workload: sc.workload, params: { ...sc.params },
      guest: sc.guest, vm: sc.vm, vm_title: arch.title, backing: sc.backing, uapi: sc.uapi,
      vcpus: sc.vcpus, iommu: sc.iommu, seed: sc.seed, how_guest_asks: arch.howGuestAsks, layout: layoutCtx?.layout ?? [],
      vm_type: vmType, sim_level_rules: arch.simLevelRules, sim_page_rules: arch.simPageRules,
    },
    policies,
  };
}
