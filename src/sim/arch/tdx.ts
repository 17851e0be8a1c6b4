/**
 * Intel TDX. The guest asks with TDG.VP.VMCALL<MapGPA>, which KVM forwards to user space as
 * KVM_HC_MAP_GPA_RANGE exits of at most 2 MiB each (KVM splits MapGPA so it can inject
 * interrupts between pieces); after →private it accepts with TDG.MEM.PAGE.ACCEPT at the largest
 * aligned level. With TDX huge page support (TDX-HP, in-place-conversion-and-hugetlb.md §3.5,
 * §4.2) private S-EPT leaves are at most 2M and are never promoted: a 2M range that was split
 * (a conversion inside it, or an accept at 4K, which sets GUEST_INHIBIT above the accept level)
 * stays at 4K for the life of the VM. Contents: the TDX module clears a page removed on
 * →shared (host reads zeros) and ACCEPT initialises a page to zeros on →private. Devices:
 * shared IOPTEs are removed before →private and added after →shared (ecosystem.md C.3); a
 * wrong-type DMA is a host machine check.
 *
 * Who decides what. On the model's KVM_X86_TDX_VM (uapi in-place, rfc-1g) the model applies the
 * shared bit per access, private leaves ≤ 2M, the zeroing both ways, and no promotion of a 2M
 * range it mapped private at 4K (src/kvm/arch.ts). Two TDX rules it lacks stay here:
 * - a conversion that covers part of a 2M private leaf: KVM demotes the leaf to 4K
 *   (tdx_split_cross_boundary) and the range stays at 4K; the model zaps the leaf instead (the
 *   whole huge folio's range) and maps the untouched part at 2M again at the next fault;
 * - an accept at 4K (GUEST_INHIBIT above the accept level): the model's accept sweep
 *   (KVM_PRE_FAULT_MEMORY) maps at the largest level the range allows, not the guest's.
 * Those 2M blocks count at 4K wherever the model maps them at 2M (`effective`). On the
 * SW_PROTECTED vehicle (uapi v6.18) this backend also counts leaves above 2M at 2M.
 */
import type { GuestApi } from '../../kvm/guest.js';
import type { Level } from '../../lib/types.js';
import { KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_DECRYPTED, KVM_MAP_GPA_RANGE_ENCRYPTED, KVM_X86_TDX_VM } from '../../uapi/kvm.js';
import { UC_ACCEPT } from '../protocol.js';
import { acceptLevel, type ArchBackend, clampLevels, type GuestSeq, type LevelPages, type Stage2View, MAP_GPA_RANGE_EXITS, mapGpaRangeRequest } from './types.js';

/** KVM's TDX_MAP_GPA_MAX_LEN. */
const MAP_GPA_MAX = 2 ** 21;
const P2M = 512;

export class TdxBackend implements ArchBackend {
  readonly name = 'tdx' as const;
  readonly title = 'Intel TDX';
  readonly nativeVmType = KVM_X86_TDX_VM;
  readonly maxAcceptLevel: Level = 2;
  readonly maxIommuLevel: Level = 3;
  readonly accepts = true;
  readonly howGuestAsks = 'TDG.VP.VMCALL<MapGPA> → KVM_HC_MAP_GPA_RANGE exits (≤ 2 MiB each); TDG.MEM.PAGE.ACCEPT after →private';
  readonly simPageRules = null;
  readonly exitHypercallMask = MAP_GPA_RANGE_EXITS;
  readonly hypercallRequest = mapGpaRangeRequest;
  readonly simLevelRules: string;
  /** 2M blocks (gfn / 512) TDX keeps at 4K by the rules above: never promoted again. */
  private readonly demoted = new Set<number>();
  private map_gpa_exits = 0;
  private accepts_2m = 0;
  private accepts_4k = 0;

  constructor(readonly native: boolean) {
    const rules = 'a 2M block that a conversion partly covered or the guest accepted at 4K counts at 4K where the model maps it at 2M';
    this.simLevelRules = native ? rules : `private leaves above 2M counted at 2M; ${rules}`;
  }

  *requestConvert(g: GuestApi, gpa: number, size: number, toPrivate: boolean): GuestSeq<number> {
    let ret = 0;
    for (let off = 0; off < size && ret === 0;) {
      const piece = Math.min(size - off, MAP_GPA_MAX - ((gpa + off) % MAP_GPA_MAX));
      this.map_gpa_exits++;
      ret = (yield g.hypercall(KVM_HC_MAP_GPA_RANGE, gpa + off, piece / 4096,
        toPrivate ? KVM_MAP_GPA_RANGE_ENCRYPTED : KVM_MAP_GPA_RANGE_DECRYPTED)) as number;
      off += piece;
    }
    return ret;
  }

  *accept(g: GuestApi, gpa: number, size: number): GuestSeq {
    // try_accept_one: 1G (refused: S-EPT leaves are at most 2M), then 2M, then 4K, piece by piece.
    let off = 0;
    while (off < size) {
      const level = acceptLevel(gpa + off, size - off, this.maxAcceptLevel);
      const run = level === 2 ? Math.floor((size - off) / 2 ** 21) * 2 ** 21 : Math.min(size - off, 2 ** 21 - ((gpa + off) % 2 ** 21));
      yield g.ucall(UC_ACCEPT, gpa + off, run, level);
      off += run;
    }
  }

  converted(gpa: number, size: number): void {
    // KVM splits a 2M leaf that the converted range only partly covers (tdx_split_cross_boundary).
    const g0 = gpa / 4096;
    const g1 = g0 + size / 4096;
    if (g0 % P2M !== 0) this.demoted.add(Math.floor(g0 / P2M));
    if (g1 % P2M !== 0) this.demoted.add(Math.floor(g1 / P2M));
  }

  accepted(gpa: number, size: number, level: Level): void {
    if (level === 2) {
      this.accepts_2m += size / 2 ** 21;
      return;
    }
    this.accepts_4k += size / 4096;
    // GUEST_INHIBIT above the accept level: every 2M block touched by a 4K accept stays at 4K.
    const g0 = gpa / 4096;
    for (let b = Math.floor(g0 / P2M); b * P2M < g0 + size / 4096; b++) this.demoted.add(b);
  }

  effective(model: LevelPages, view: Stage2View): LevelPages {
    const out = this.native ? { ...model } : clampLevels(model, 2);
    for (const b of this.demoted) {
      if (view.privateLevelAt(b * P2M) >= 2) {
        out['2m'] -= P2M;
        out['4k'] += P2M;
      }
    }
    return out;
  }

  /** The 2M blocks this backend keeps at 4K (the model may keep some of them too). */
  demotedBlocks(): ReadonlySet<number> {
    return this.demoted;
  }

  counters(): Record<string, number> {
    return { map_gpa_exits: this.map_gpa_exits, accept_2m: this.accepts_2m, accept_4k: this.accepts_4k, sim_demoted_2m_blocks: this.demoted.size };
  }
}
