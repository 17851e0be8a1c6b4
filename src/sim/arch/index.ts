/** The arch backend for a scenario's VM type, and the model VM type it runs on. */
import { KVM_CAP_VM_TYPES, KVM_CHECK_EXTENSION, KVM_X86_SNP_VM, KVM_X86_SW_PROTECTED_VM, KVM_X86_TDX_VM } from '../../uapi/kvm.js';
import { O_RDWR } from '../../uapi/linux.js';
import type { Syscalls } from '../../uapi/syscalls.js';
import type { VmTypeName } from '../schema.js';
import { PkvmBackend } from './pkvm.js';
import { SnpBackend } from './snp.js';
import { SwProtectedBackend } from './sw.js';
import { TdxBackend } from './tdx.js';
import type { ArchBackend } from './types.js';

const TYPE_NAMES: Readonly<Record<number, string>> = {
  [KVM_X86_SW_PROTECTED_VM]: 'KVM_X86_SW_PROTECTED_VM',
  [KVM_X86_SNP_VM]: 'KVM_X86_SNP_VM',
  [KVM_X86_TDX_VM]: 'KVM_X86_TDX_VM',
};

/** The model VM type a scenario's guest runs on, and why. */
export interface VmTypeChoice {
  /** The KVM_CREATE_VM type. */
  type: number;
  /** Its kernel name (KVM_X86_SNP_VM, ...). */
  name: string;
  /** The arch's own VM type (true), or the SW_PROTECTED vehicle (false). */
  native: boolean;
  /** KVM_CHECK_EXTENSION(KVM_CAP_VM_TYPES) on /dev/kvm: the types the kernel creates, as a bit mask. */
  vm_types_cap: number;
  /** Why the vehicle, when it is one. */
  why_vehicle: string | null;
}

/** The VM type each arch wants; pKVM has none in the model (no arm64 protected VM). */
const WANTED: Readonly<Record<VmTypeName, number | null>> = {
  'sw-protected': KVM_X86_SW_PROTECTED_VM, snp: KVM_X86_SNP_VM, tdx: KVM_X86_TDX_VM, pkvm: null,
};

/**
 * Ask the kernel which VM types it creates (KVM_CAP_VM_TYPES, as QEMU does before KVM_CREATE_VM)
 * and pick the arch's own type when it is there, else the SW_PROTECTED vehicle. `kernel` names
 * the kernel for the report ('uapi v6.18').
 */
export function chooseVmType(k: Syscalls, vm: VmTypeName, kernel: string): VmTypeChoice {
  const fd = k.open('/dev/kvm', O_RDWR);
  let cap: number;
  try {
    cap = k.ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES);
  } finally {
    k.close(fd);
  }
  const wanted = WANTED[vm];
  if (wanted !== null && (cap & (1 << wanted)) !== 0) {
    return { type: wanted, name: TYPE_NAMES[wanted] as string, native: true, vm_types_cap: cap, why_vehicle: null };
  }
  const why = wanted === null
    ? 'the model has no pKVM (arm64 protected) VM type'
    : `${kernel} has no ${TYPE_NAMES[wanted] as string}: KVM_CAP_VM_TYPES = 0x${cap.toString(16)}`;
  return { type: KVM_X86_SW_PROTECTED_VM, name: 'KVM_X86_SW_PROTECTED_VM', native: vm === 'sw-protected', vm_types_cap: cap, why_vehicle: why };
}

export function makeArch(vm: VmTypeName, guest_pages: number, native: boolean): ArchBackend {
  switch (vm) {
    case 'snp': return new SnpBackend(native);
    case 'tdx': return new TdxBackend(native);
    case 'pkvm': return new PkvmBackend(guest_pages);
    case 'sw-protected': return new SwProtectedBackend();
  }
}

export { PkvmBackend, SnpBackend, SwProtectedBackend, TdxBackend };
export type { ArchBackend };
