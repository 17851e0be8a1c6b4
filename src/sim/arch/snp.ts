/**
 * AMD SEV-SNP. The guest asks with Page State Change requests (GHCB PSC), which KVM turns into
 * KVM_HC_MAP_GPA_RANGE exits to user space (a PSC carries at most 253 entries of up to 2 MiB, so
 * the guest issues one request per 506 MiB); after a →private change it validates the pages with
 * PVALIDATE, at 2M where aligned, else 4K. RMP entries are 4K or 2M, so a private stage-2 mapping
 * is at most 2M (sev_private_max_mapping_level), and an IOPTE must not straddle an RMP entry
 * (ecosystem.md C.3). Contents: the host sees the guest's ciphertext after →shared, the guest
 * decrypts the host's plaintext into garbage after →private (scramble, both ways).
 *
 * On the model's KVM_X86_SNP_VM (uapi in-place, rfc-1g) the model does all of that itself: the
 * guest's C-bit per access, private mappings ≤ 2M, re-keyed contents. On the SW_PROTECTED
 * vehicle (uapi v6.18) this backend counts private leaves above 2M at 2M.
 */
import { type GuestApi } from '../../kvm/guest.js';
import { KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_DECRYPTED, KVM_MAP_GPA_RANGE_ENCRYPTED, KVM_MAP_GPA_RANGE_PAGE_SZ_2M, KVM_MAP_GPA_RANGE_PAGE_SZ_4K } from '../../uapi/kvm.js';
import type { Level } from '../../lib/types.js';
import { UC_ACCEPT } from '../protocol.js';
import { KVM_X86_SNP_VM } from '../../uapi/kvm.js';
import { acceptLevel, type ArchBackend, clampLevels, type GuestSeq, type LevelPages, MAP_GPA_RANGE_EXITS, mapGpaRangeRequest } from './types.js';

const PSC_MAX_ENTRIES = 253;
const M2 = 2 ** 21;

export class SnpBackend implements ArchBackend {
  readonly name = 'snp' as const;
  readonly title = 'AMD SEV-SNP';
  readonly nativeVmType = KVM_X86_SNP_VM;
  readonly maxAcceptLevel: Level = 2;
  readonly maxIommuLevel: Level = 2;
  readonly accepts = true;
  readonly howGuestAsks = 'GHCB Page State Change → KVM_HC_MAP_GPA_RANGE exit; PVALIDATE after →private';
  readonly simPageRules = null;
  readonly exitHypercallMask = MAP_GPA_RANGE_EXITS;
  readonly hypercallRequest = mapGpaRangeRequest;
  readonly simLevelRules: string | null;
  private psc_requests = 0;
  private pvalidate_2m = 0;
  private pvalidate_4k = 0;

  constructor(readonly native: boolean) {
    this.simLevelRules = native ? null : 'private leaves above 2M counted at 2M (RMP entries are 4K or 2M)';
  }

  *requestConvert(g: GuestApi, gpa: number, size: number, toPrivate: boolean): GuestSeq<number> {
    let ret = 0;
    for (let off = 0; off < size && ret === 0;) {
      const aligned = (gpa + off) % M2 === 0 && (size - off) >= M2;
      const piece = Math.min(size - off, PSC_MAX_ENTRIES * (aligned ? M2 : 4096));
      const attrs = (toPrivate ? KVM_MAP_GPA_RANGE_ENCRYPTED : KVM_MAP_GPA_RANGE_DECRYPTED)
        | (aligned ? KVM_MAP_GPA_RANGE_PAGE_SZ_2M : KVM_MAP_GPA_RANGE_PAGE_SZ_4K);
      this.psc_requests++;
      ret = (yield g.hypercall(KVM_HC_MAP_GPA_RANGE, gpa + off, piece / 4096, attrs)) as number;
      off += piece;
    }
    return ret;
  }

  *accept(g: GuestApi, gpa: number, size: number): GuestSeq {
    const level = acceptLevel(gpa, size, this.maxAcceptLevel);
    if (level === 2) this.pvalidate_2m += Math.floor(size / M2);
    else this.pvalidate_4k += size / 4096;
    yield g.ucall(UC_ACCEPT, gpa, size, level);
  }

  converted(): void {}
  accepted(): void {}

  effective(model: LevelPages): LevelPages {
    return this.native ? { ...model } : clampLevels(model, 2);
  }

  counters(): Record<string, number> {
    return { psc_requests: this.psc_requests, pvalidate_2m: this.pvalidate_2m, pvalidate_4k: this.pvalidate_4k };
  }
}
