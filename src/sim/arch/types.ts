/**
 * Arch backends: what differs between SEV-SNP, TDX, pKVM and a software-protected VM at the depth
 * the workloads need: how the guest asks for a conversion, what it does after one (accept), the
 * mapping-level limits, what a conversion does to page contents, and the device-mapping order.
 *
 * The model's KVM runs every VM as KVM_X86_SW_PROTECTED_VM (the only private-memory VM type it
 * has); the backends apply their firmware's rules in the simulator layer, on top of Syscalls, and
 * say so in the report. See each backend for the sources of its rules.
 */
import type { GuestApi, GuestOp } from '../../kvm/guest.js';
import type { Level } from '../../lib/types.js';
import type { VmTypeName } from '../schema.js';

export type ContentEffect = 'preserve' | 'zero' | 'scramble';

/** Pages by mapping level (4 KiB units). */
export interface LevelPages { '4k': number; '2m': number; '1g': number }

/** What a backend needs to read from the model's stage-2 to apply its rules. */
export interface Stage2View {
  /** The level of the leaf mapping gfn, or 0 when unmapped. */
  levelAt(gfn: number): 0 | Level;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type GuestSeq<R = void> = Generator<GuestOp, R, any>;

export interface ArchBackend {
  readonly name: VmTypeName;
  readonly title: string;
  /** Largest stage-2 level for private memory (SNP: RMP entries are 4K/2M; TDX: 2M; pKVM: PMD). */
  readonly maxPrivateLevel: Level;
  /** Largest IOPTE for shared memory (SNP: IOPTEs must not straddle RMP entries). */
  readonly maxIommuLevel: Level;
  /** Whether 4K mappings of a 2M range are ever collapsed back (TDX: never). */
  readonly promotion: boolean;
  /** What the firmware does to a page's contents on private→shared and shared→private. */
  readonly contentToShared: ContentEffect;
  readonly contentToPrivate: ContentEffect;
  /** The guest accepts private memory before use (SNP PVALIDATE, TDX ACCEPT). */
  readonly accepts: boolean;
  /** One line on how the guest asks, for the report. */
  readonly howGuestAsks: string;

  /** Guest ops that request [gpa, gpa+size) become private/shared; returns the hypercall's ret. */
  requestConvert(g: GuestApi, gpa: number, size: number, toPrivate: boolean): GuestSeq<number>;
  /** Guest ops that accept [gpa, gpa+size) after it became private (nothing where there is no accept). */
  accept(g: GuestApi, gpa: number, size: number): GuestSeq;

  /** VMM side: a conversion of [gpa, gpa+size) succeeded. */
  converted(gpa: number, size: number, toPrivate: boolean): void;
  /** VMM side: the guest accepted [gpa, gpa+size) at `level`. */
  accepted(gpa: number, size: number, level: Level): void;
  /**
   * The stage-2 mapping as this firmware would have it, from the vehicle's: levels above the
   * limit count at the limit, demoted ranges at 4K.
   */
  effective(raw: LevelPages, view: Stage2View): LevelPages;
  /** Arch-specific counters for the report (e.g. PSC requests, TDX demotions, pKVM shares). */
  counters(): Record<string, number>;
}

/** Clamp raw per-level pages to a maximum level: 1G leaves count as 2M (512 × 2M each), etc. */
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
