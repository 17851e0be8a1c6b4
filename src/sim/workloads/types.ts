/**
 * A workload is a generator of guest operations: guest code that drives the model through the
 * exits a VMM sees. It has a boot part (vCPU 0, before the others start) and events (steps),
 * which every vCPU pulls from one shared source in turn; each event ends with UC_EVENT.
 */
import type { GuestApi } from '../../kvm/guest.js';
import type { Rng } from '../../lib/rng.js';
import type { ArchBackend, GuestSeq } from '../arch/types.js';
import type { ContentTags } from '../contents.js';
import type { SimCounters } from '../counters.js';
import type { Scenario } from '../scenario.js';
import type { ParamSpecs, ParamValue, VmTypeName } from '../schema.js';
import type { Vmm } from '../vmm.js';

export interface WorkloadCtx {
  readonly sc: Scenario;
  readonly arch: ArchBackend;
  readonly rng: Rng;
  readonly tags: ContentTags;
  readonly counters: SimCounters;
}

export interface Workload {
  /** Events when the scenario gives neither steps nor time. */
  readonly defaultSteps: number;
  /** Events per simulated second (time → steps, and the plots' time axis). */
  readonly rate: number;
  /** The layout, for the report: named guest-physical ranges. */
  readonly layout: Array<{ name: string; gpa: number; size: number }>;
  /** Host-side setup before the guest runs (e.g. the initial shared state). */
  hostSetup(vmm: Vmm): void;
  /** vCPU 0's boot, before any event. */
  boot(g: GuestApi): GuestSeq;
  /** Event number n (0-based), run on `vcpu`. */
  event(g: GuestApi, vcpu: number, n: number): GuestSeq;
}

export interface WorkloadSpec {
  readonly name: string;
  readonly description: string;
  /** VM types it is written for. */
  readonly vms: readonly VmTypeName[];
  readonly params: ParamSpecs;
  /** Checks that need the whole scenario: [parameter, message]. */
  check(sc: Scenario): Array<[string, string]>;
  create(ctx: WorkloadCtx): Workload;
}

export function num(p: Record<string, ParamValue>, key: string): number {
  return p[key] as number;
}

/**
 * A permutation of [0, n) computed per index (a 4-round Feistel network with cycle walking), so a
 * random order over a TiB guest's chunks costs nothing up front: cost follows events.
 */
export class IndexPermutation {
  private readonly half: number;
  private readonly mask: number;
  private readonly keys: number[];

  constructor(readonly n: number, rng: Rng) {
    let bits = 2;
    while (2 ** bits < n) bits += 2;
    this.half = bits / 2;
    this.mask = 2 ** this.half - 1;
    this.keys = [rng.u32(), rng.u32(), rng.u32(), rng.u32()];
  }

  at(i: number): number {
    let x = i;
    do x = this.round(x);
    while (x >= this.n);
    return x;
  }

  private round(x: number): number {
    let l = Math.floor(x / 2 ** this.half);
    let r = x & this.mask;
    for (const k of this.keys) {
      const f = (Math.imul(r ^ k, 0x9e3779b1) >>> 7) & this.mask;
      [l, r] = [r, l ^ f];
    }
    return l * 2 ** this.half + r;
  }
}

/**
 * The guest's choice per access (SNP C-bit, TDX shared bit): what the model's SNP/TDX VM types
 * act on. Shared memory (bounce buffers, GHCBs, buffers given to the host) is accessed shared,
 * everything else private. On the SW_PROTECTED vehicle the attribute decides and these are ignored.
 */
export const SHARED = { private: false } as const;
export const PRIVATE = { private: true } as const;

export const PAGE = 4096;
export const M2 = 2 ** 21;
export const G1 = 2 ** 30;
