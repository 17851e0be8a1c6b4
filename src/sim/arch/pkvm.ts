/**
 * pKVM (arm64 protected VMs). The guest shares and unshares one granule (PAGE_SIZE, from
 * HYP_MEMINFO) per hypercall: ARM_SMCCC_KVM_FUNC_MEM_SHARE (3) / MEM_UNSHARE (4); upstream has no
 * ranged form (ecosystem.md B.3). The hypervisor keeps a per-page state machine (B.2): a guest
 * page must be OWNED to be shared (it becomes SHARED_OWNED, the host's SHARED_BORROWED) and
 * SHARED_OWNED to be unshared; a share of an IPA that is not backed yet first faults it in (the
 * hypervisor fakes a host stage-2 fault, the host donates the page, the guest retries). Guest
 * memory is mapped by PMD blocks at most (2M). Contents are preserved both ways (the page is
 * the same; pKVM only changes ownership).
 *
 * The model has no arm64 protected VM and no MEM_SHARE exit: the share travels as a one-page
 * KVM_HC_MAP_GPA_RANGE exit of the model's SW_PROTECTED vehicle, and this backend keeps the
 * hypervisor's page states, checks its transitions and counts leaves above 2M at 2M (the
 * vehicle preserves contents, as pKVM does).
 */
import type { GuestApi } from '../../kvm/guest.js';
import type { Level } from '../../lib/types.js';
import { RangeMap } from '../../lib/rangemap.js';
import { KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_DECRYPTED, KVM_MAP_GPA_RANGE_ENCRYPTED, KVM_X86_SW_PROTECTED_VM } from '../../uapi/kvm.js';
import { UC_ACCEPT } from '../protocol.js';
import { type ArchBackend, clampLevels, type GuestSeq, type LevelPages } from './types.js';

export const PKVM_FUNC_MEM_SHARE = 3;
export const PKVM_FUNC_MEM_UNSHARE = 4;

/** Guest-side page states (pkvm_page_state), NOPAGE = not yet donated. */
export const PKVM_OWNED = 0;
export const PKVM_SHARED_OWNED = 1;
export const PKVM_NOPAGE = 3;

export class PkvmBackend implements ArchBackend {
  readonly name = 'pkvm' as const;
  readonly title = 'pKVM (arm64 protected VM)';
  /** No pKVM VM type in the model: always the SW_PROTECTED vehicle. */
  readonly nativeVmType = KVM_X86_SW_PROTECTED_VM;
  readonly native = false;
  readonly maxAcceptLevel: Level = 2;
  readonly maxIommuLevel: Level = 2;
  readonly accepts = false;
  readonly simLevelRules = 'leaves above 2M counted at 2M (stage-2 block mappings are at most PMD size)';
  readonly howGuestAsks = 'HVC MEM_SHARE / MEM_UNSHARE per 4 KiB granule (carried as one-page KVM_HC_MAP_GPA_RANGE exits)';
  /** Guest page states by gfn. */
  readonly states: RangeMap<number>;
  private shares = 0;
  private unshares = 0;
  private donations = 0;
  private refused = 0;

  constructor(guest_pages: number) {
    this.states = new RangeMap<number>(guest_pages, PKVM_NOPAGE);
  }

  *requestConvert(g: GuestApi, gpa: number, size: number, toPrivate: boolean): GuestSeq<number> {
    let ret = 0;
    for (let off = 0; off < size && ret === 0; off += 4096) {
      ret = (yield g.hypercall(KVM_HC_MAP_GPA_RANGE, gpa + off, 1,
        toPrivate ? KVM_MAP_GPA_RANGE_ENCRYPTED : KVM_MAP_GPA_RANGE_DECRYPTED)) as number;
    }
    return ret;
  }

  /** No accept on pKVM: the guest's first touch of the range, the host donating it as it faults. */
  *accept(g: GuestApi, gpa: number, size: number): GuestSeq {
    yield g.ucall(UC_ACCEPT, gpa, size, this.maxAcceptLevel);
  }

  /**
   * The hypervisor's checks before the host sees the request: 'donate' when the page is not
   * backed yet (the host must fault it in first), 'ok', or 'refuse' (-EPERM to the guest).
   */
  check(gfn: number, toPrivate: boolean): 'ok' | 'donate' | 'refuse' {
    const s = this.states.get(gfn);
    if (toPrivate) return s === PKVM_SHARED_OWNED ? 'ok' : 'refuse';
    if (s === PKVM_NOPAGE) return 'donate';
    return s === PKVM_OWNED ? 'ok' : 'refuse';
  }

  donated(gfn_start: number, gfn_end: number): void {
    this.donations += gfn_end - gfn_start;
    for (const r of [...this.states.runs(gfn_start, gfn_end)]) {
      if (r.value === PKVM_NOPAGE) this.states.set(r.start, r.end, PKVM_OWNED);
    }
  }

  refusedOne(): void {
    this.refused++;
  }

  converted(gpa: number, size: number, toPrivate: boolean): void {
    const g0 = gpa / 4096;
    const n = size / 4096;
    if (toPrivate) this.unshares += n;
    else this.shares += n;
    this.states.set(g0, g0 + n, toPrivate ? PKVM_OWNED : PKVM_SHARED_OWNED);
  }

  /** The first touch donated the range: guest OWNED from now on. */
  accepted(gpa: number, size: number): void {
    this.donated(gpa / 4096, (gpa + size) / 4096);
  }

  effective(model: LevelPages): LevelPages {
    return clampLevels(model, 2);
  }

  counters(): Record<string, number> {
    return { mem_share: this.shares, mem_unshare: this.unshares, donations: this.donations, refused: this.refused };
  }
}
