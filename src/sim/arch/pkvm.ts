/**
 * pKVM (arm64 protected VMs). The guest learns the share granule from HYP_MEMINFO (PAGE_SIZE) and
 * shares and unshares one granule per hypercall: ARM_SMCCC_KVM_FUNC_MEM_SHARE (3) / MEM_UNSHARE
 * (4), args[0] the IPA; upstream has no ranged form (ecosystem.md B.3). Guest memory is mapped by
 * PMD blocks at most (2M). Contents are preserved both ways (the page is the same; pKVM only
 * changes ownership).
 *
 * The guest runs on the model's arm64 KVM_VM_TYPE_ARM_PROTECTED (uapi in-place, rfc-1g): the
 * model decides private vs shared (guest_memfd's shareability), exits each MEM_SHARE /
 * MEM_UNSHARE to the VMM as KVM_EXIT_HYPERCALL (enabled with KVM_CAP_EXIT_HYPERCALL), limits
 * stage-2 blocks (private and shared) to 2M and preserves contents (src/kvm/arch.ts, src/kvm/vcpu.ts). The
 * VMM converts the granule and answers run.hypercall.ret. uapi v6.18 has no pKVM type (and no
 * in-place sharing): the scenario is refused there; there is no SW_PROTECTED vehicle for pKVM.
 *
 * What stays here, because the model does not do it:
 * - the hypervisor's per-page state machine (pkvm_page_state, ecosystem.md B.2): a share needs a
 *   guest page that is OWNED (private) and backed, an unshare one that is SHARED_OWNED (shared);
 *   anything else is refused with -EPERM. A share of an IPA not backed yet first faults it in
 *   (the hypervisor fakes a host stage-2 fault, the host donates the page, the guest retries).
 *   The model exits every MEM_SHARE / MEM_UNSHARE to user space without looking at the page, and
 *   converts an unbacked page as well as a backed one. OWNED vs SHARED_OWNED is the model's
 *   shareability as the VMM recorded it; this backend keeps only "donated yet" (NOPAGE or not).
 */
import type { GuestApi } from '../../kvm/guest.js';
import type { Level } from '../../lib/types.js';
import { RangeMap } from '../../lib/rangemap.js';
import {
  ARM_SMCCC_KVM_FUNC_HYP_MEMINFO, ARM_SMCCC_KVM_FUNC_MEM_SHARE, ARM_SMCCC_KVM_FUNC_MEM_UNSHARE, KVM_VM_TYPE_ARM_PROTECTED,
} from '../../uapi/kvm.js';
import { UC_ACCEPT } from '../protocol.js';
import { type ArchBackend, type GuestSeq, type HypercallRequest, type LevelPages } from './types.js';

export const PKVM_FUNC_MEM_SHARE = ARM_SMCCC_KVM_FUNC_MEM_SHARE;
export const PKVM_FUNC_MEM_UNSHARE = ARM_SMCCC_KVM_FUNC_MEM_UNSHARE;
/** The share granule: the host's PAGE_SIZE (what HYP_MEMINFO answers). */
const PKVM_GRANULE = 4096;

export class PkvmBackend implements ArchBackend {
  readonly name = 'pkvm' as const;
  readonly title = 'pKVM (arm64 protected VM)';
  readonly nativeVmType = KVM_VM_TYPE_ARM_PROTECTED;
  /** Always the model's own type: pKVM is refused where the model has none (uapi v6.18). */
  readonly native = true;
  readonly maxAcceptLevel: Level = 2;
  readonly maxIommuLevel: Level = 2;
  readonly accepts = false;
  readonly exitHypercallMask = (1 << ARM_SMCCC_KVM_FUNC_MEM_SHARE) | (1 << ARM_SMCCC_KVM_FUNC_MEM_UNSHARE);
  /** None: the model's pKVM type maps no block above PMD size, private or shared. */
  readonly simLevelRules = null;
  readonly simPageRules = "pKVM's page states: a share of a page that is not private and backed (OWNED), or an unshare of one "
    + 'that is not shared (SHARED_OWNED), is refused with -EPERM; a share of a page never faulted in faults it in first (donation)';
  readonly howGuestAsks = 'HVC MEM_SHARE / MEM_UNSHARE per granule (HYP_MEMINFO: 4 KiB) → KVM_EXIT_HYPERCALL';
  /** Guest pages donated (faulted in) at least once: pKVM's NOPAGE vs the rest. */
  private readonly donatedPages: RangeMap<boolean>;
  /** The granule HYP_MEMINFO answered (asked once, on the first share). */
  private granule = 0;
  private shares = 0;
  private unshares = 0;
  private donations = 0;
  private refused = 0;

  constructor(guest_pages: number) {
    this.donatedPages = new RangeMap<boolean>(guest_pages, false);
  }

  *requestConvert(g: GuestApi, gpa: number, size: number, toPrivate: boolean): GuestSeq<number> {
    if (this.granule === 0) this.granule = (yield g.hypercall(ARM_SMCCC_KVM_FUNC_HYP_MEMINFO)) as number;
    const nr = toPrivate ? ARM_SMCCC_KVM_FUNC_MEM_UNSHARE : ARM_SMCCC_KVM_FUNC_MEM_SHARE;
    let ret = 0;
    for (let off = 0; off < size && ret === 0; off += this.granule) {
      if (toPrivate) this.unshares++;
      else this.shares++;
      ret = (yield g.hypercall(nr, gpa + off)) as number;
    }
    return ret;
  }

  /** VMM side: MEM_SHARE / MEM_UNSHARE exits convert one granule at the IPA; anything else is not ours. */
  hypercallRequest(nr: number, args: readonly number[]): HypercallRequest | null {
    if (nr !== ARM_SMCCC_KVM_FUNC_MEM_SHARE && nr !== ARM_SMCCC_KVM_FUNC_MEM_UNSHARE) return null;
    return { gpa: args[0] ?? 0, size: PKVM_GRANULE, toPrivate: nr === ARM_SMCCC_KVM_FUNC_MEM_UNSHARE };
  }

  /** No accept on pKVM: the guest's first touch of the range, the host donating it as it faults. */
  *accept(g: GuestApi, gpa: number, size: number): GuestSeq {
    yield g.ucall(UC_ACCEPT, gpa, size, this.maxAcceptLevel);
  }

  /**
   * The hypervisor's checks before the host sees the request, given whether the page is shared
   * now: 'donate' when it is not backed yet (the host must fault it in first), 'ok', or 'refuse'
   * (-EPERM to the guest).
   */
  check(gfn: number, toPrivate: boolean, shared: boolean): 'ok' | 'donate' | 'refuse' {
    if (toPrivate) return shared ? 'ok' : 'refuse';
    if (shared) return 'refuse';
    return this.donatedPages.get(gfn) ? 'ok' : 'donate';
  }

  donated(gfn_start: number, gfn_end: number): void {
    for (const r of [...this.donatedPages.runs(gfn_start, gfn_end)]) {
      if (!r.value) {
        this.donations += r.end - r.start;
        this.donatedPages.set(r.start, r.end, true);
      }
    }
  }

  refusedOne(): void {
    this.refused++;
  }

  converted(): void {}

  /** The first touch donated the range. */
  accepted(gpa: number, size: number): void {
    this.donated(gpa / 4096, (gpa + size) / 4096);
  }

  effective(model: LevelPages): LevelPages {
    return model;
  }

  counters(): Record<string, number> {
    return { mem_share: this.shares, mem_unshare: this.unshares, donations: this.donations, refused: this.refused };
  }
}
