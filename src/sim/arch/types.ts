/**
 * Arch backends: what differs between SEV-SNP, TDX, pKVM and a software-protected VM at the depth
 * the workloads need: how the guest asks for a conversion, what it does after one (accept), and
 * which of the firmware's rules the simulator has to apply itself because the model does not.
 *
 * Where the uAPI has them (KVM_CAP_VM_TYPES: 'in-place' and 'rfc-1g'), SNP and TDX guests run on
 * the model's own VM types (KVM_X86_SNP_VM, KVM_X86_TDX_VM, src/kvm/arch.ts): the model decides
 * private vs shared per access (the guest's choice), the stage-2 levels (private ≤ 2M, TDX never
 * promotes a 2M range it mapped private at 4K) and the contents on conversion (SNP re-keys, TDX
 * clears). pKVM guests run on the model's arm64 KVM_VM_TYPE_ARM_PROTECTED (same uapis): the
 * shareability decides, MEM_SHARE / MEM_UNSHARE exit to the VMM, private blocks ≤ 2M, contents
 * preserved. The backends then add only what the model lacks (TDX: demotion of a 2M leaf a
 * conversion partly covers and of a range accepted at 4K; pKVM: the hypervisor's page states and
 * shared blocks ≤ 2M). On 'v6.18' (no CoCo VM types) SNP and TDX guests run on the model's
 * KVM_X86_SW_PROTECTED_VM, the *vehicle*, and the backend applies its firmware's level limits
 * itself; pKVM is refused there. The report says which layer decided what.
 */
import type { GuestApi, GuestOp } from '../../kvm/guest.js';
import type { Level } from '../../lib/types.js';
import { KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_ENCRYPTED } from '../../uapi/kvm.js';
import type { VmTypeName } from '../schema.js';

/** Pages by mapping level (4 KiB units). */
export interface LevelPages { '4k': number; '2m': number; '1g': number }

/** What a backend needs to read from the model's stage-2 to apply its rules. */
export interface Stage2View {
  /** The level of the private leaf mapping gfn, or 0 when unmapped or mapped shared. */
  privateLevelAt(gfn: number): 0 | Level;
}

/** A conversion a hypercall exit asks the VMM for. */
export interface HypercallRequest { gpa: number; size: number; toPrivate: boolean }

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type GuestSeq<R = void> = Generator<GuestOp, R, any>;

export interface ArchBackend {
  readonly name: VmTypeName;
  readonly title: string;
  /** The model's KVM VM type this backend runs on natively where the uAPI has it. */
  readonly nativeVmType: number;
  /**
   * True when the guest runs on the model's own VM type for this arch (the model applies the
   * firmware's levels and contents); false on the SW_PROTECTED vehicle.
   */
  readonly native: boolean;
  /** Largest level at which the guest accepts private memory (SNP PVALIDATE, TDX ACCEPT: 2M). */
  readonly maxAcceptLevel: Level;
  /** Largest IOPTE for shared memory (SNP: IOPTEs must not straddle RMP entries). */
  readonly maxIommuLevel: Level;
  /** The guest accepts private memory before use (SNP PVALIDATE, TDX ACCEPT). */
  readonly accepts: boolean;
  /** One line on how the guest asks, for the report. */
  readonly howGuestAsks: string;
  /**
   * The stage-2 rules the simulator applies on top of the model's levels (report text), or
   * null when the model's levels are the firmware's.
   */
  readonly simLevelRules: string | null;
  /** Rules beyond levels the simulator applies because the model does not (report text), or null. */
  readonly simPageRules: string | null;
  /** The KVM_CAP_EXIT_HYPERCALL mask the VMM enables: the hypercalls that exit to it. */
  readonly exitHypercallMask: number;

  /** VMM side: the conversion a KVM_EXIT_HYPERCALL asks for, or null for a hypercall it does not handle. */
  hypercallRequest(nr: number, args: readonly number[]): HypercallRequest | null;

  /** Guest ops that request [gpa, gpa+size) become private/shared; returns the hypercall's ret. */
  requestConvert(g: GuestApi, gpa: number, size: number, toPrivate: boolean): GuestSeq<number>;
  /** Guest ops that accept [gpa, gpa+size) after it became private (nothing where there is no accept). */
  accept(g: GuestApi, gpa: number, size: number): GuestSeq;

  /** VMM side: a conversion of [gpa, gpa+size) succeeded. */
  converted(gpa: number, size: number, toPrivate: boolean): void;
  /** VMM side: the guest accepted [gpa, gpa+size) at `level`. */
  accepted(gpa: number, size: number, level: Level): void;
  /**
   * The stage-2 mapping as this firmware would have it, from the model's: identity where the
   * model applies the firmware's rules; else (vehicle, or rules the model lacks) levels above the
   * limit count at the limit, demoted ranges at 4K.
   */
  effective(model: LevelPages, view: Stage2View): LevelPages;
  /** Arch-specific counters for the report (e.g. PSC requests, TDX demotions, pKVM shares). */
  counters(): Record<string, number>;
}

/** x86: KVM_HC_MAP_GPA_RANGE (gpa, npages, attributes) exits. */
export const MAP_GPA_RANGE_EXITS = 1 << KVM_HC_MAP_GPA_RANGE;

export function mapGpaRangeRequest(nr: number, args: readonly number[]): HypercallRequest | null {
  if (nr !== KVM_HC_MAP_GPA_RANGE) return null;
  const [gpa = 0, npages = 0, attrs = 0] = args;
  return { gpa, size: npages * 4096, toPrivate: (attrs & KVM_MAP_GPA_RANGE_ENCRYPTED) !== 0 };
}

/** Clamp per-level pages to a maximum level: 1G leaves count as 2M (512 × 2M each), etc. */
export function clampLevels(raw: LevelPages, max: Level): LevelPages {
  if (max >= 3) return { ...raw };
  if (max === 2) return { '4k': raw['4k'], '2m': raw['2m'] + raw['1g'], '1g': 0 };
  return { '4k': raw['4k'] + raw['2m'] + raw['1g'], '2m': 0, '1g': 0 };
}

/** The accept level a Linux guest uses for [gpa, gpa+size): the largest aligned size that fits. */
export function acceptLevel(gpa: number, size: number, max: Level): Level {
  if (max >= 3 && gpa % 2 ** 30 === 0 && size >= 2 ** 30) return 3;
  if (max >= 2 && gpa % 2 ** 21 === 0 && size >= 2 ** 21) return 2;
  return 1;
}
