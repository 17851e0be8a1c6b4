/**
 * KVM_X86_SW_PROTECTED_VM: private memory with no firmware. The guest asks with
 * KVM_HC_MAP_GPA_RANGE (as the private_mem_conversions_test guest does), accepts nothing, and
 * may be mapped at 1G; contents are preserved both ways (what the selftests rely on). This is
 * the baseline that shows the kernel's own choices without any firmware limit.
 */
import type { GuestApi } from '../../kvm/guest.js';
import type { Level } from '../../lib/types.js';
import { KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_DECRYPTED, KVM_MAP_GPA_RANGE_ENCRYPTED, KVM_X86_SW_PROTECTED_VM } from '../../uapi/kvm.js';
import { UC_ACCEPT } from '../protocol.js';
import { type ArchBackend, type GuestSeq, type LevelPages, MAP_GPA_RANGE_EXITS, mapGpaRangeRequest } from './types.js';

export class SwProtectedBackend implements ArchBackend {
  readonly name = 'sw-protected' as const;
  readonly title = 'KVM_X86_SW_PROTECTED_VM';
  readonly nativeVmType = KVM_X86_SW_PROTECTED_VM;
  readonly native = true;
  readonly maxAcceptLevel: Level = 3;
  readonly maxIommuLevel: Level = 3;
  readonly accepts = false;
  readonly simLevelRules = null;
  readonly howGuestAsks = 'KVM_HC_MAP_GPA_RANGE hypercall exit';
  readonly simPageRules = null;
  readonly exitHypercallMask = MAP_GPA_RANGE_EXITS;
  readonly hypercallRequest = mapGpaRangeRequest;
  private hypercalls = 0;

  *requestConvert(g: GuestApi, gpa: number, size: number, toPrivate: boolean): GuestSeq<number> {
    this.hypercalls++;
    return (yield g.hypercall(KVM_HC_MAP_GPA_RANGE, gpa, size / 4096,
      toPrivate ? KVM_MAP_GPA_RANGE_ENCRYPTED : KVM_MAP_GPA_RANGE_DECRYPTED)) as number;
  }

  /** No accept on this VM type: the guest's first touch of the range, at mapping granularity. */
  *accept(g: GuestApi, gpa: number, size: number): GuestSeq {
    yield g.ucall(UC_ACCEPT, gpa, size, 3);
  }

  converted(): void {}
  accepted(): void {}

  effective(model: LevelPages): LevelPages {
    return { ...model };
  }

  counters(): Record<string, number> {
    return { map_gpa_range: this.hypercalls };
  }
}
