/** The arch backend for a scenario's VM type, and the model VM type it runs on. */
import { EINVAL } from '../../uapi/errno.js';
import { SyscallError } from '../../uapi/errors.js';
import {
  KVM_CAP_VM_TYPES, KVM_CHECK_EXTENSION, KVM_CREATE_VM, KVM_VM_TYPE_ARM_PROTECTED, KVM_X86_SNP_VM, KVM_X86_SW_PROTECTED_VM,
  KVM_X86_TDX_VM,
} from '../../uapi/kvm.js';
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
  /** The KVM_CREATE_VM type argument (arm64: with the IPA size in bits 0..7, 0 = the default 40 bits). */
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

/** The x86 VM type each arch wants (pKVM is arm64: chosen by choosePkvm). */
const WANTED: Readonly<Record<Exclude<VmTypeName, 'pkvm'>, number>> = {
  'sw-protected': KVM_X86_SW_PROTECTED_VM, snp: KVM_X86_SNP_VM, tdx: KVM_X86_TDX_VM,
};

/** The model kernel's architecture a scenario's guest needs: arm64 for pKVM, else x86_64. */
export function kernelArch(vm: VmTypeName): 'x86_64' | 'arm64' {
  return vm === 'pkvm' ? 'arm64' : 'x86_64';
}

/**
 * Ask the kernel which VM types it creates (KVM_CAP_VM_TYPES, as QEMU does before KVM_CREATE_VM)
 * and pick the arch's own type when it is there, else the SW_PROTECTED vehicle. pKVM (arm64) is
 * chosen by choosePkvm. `kernel` names the kernel for the report ('uapi v6.18'); `guest_bytes`
 * sizes the arm64 IPA space.
 */
export function chooseVmType(k: Syscalls, vm: VmTypeName, kernel: string, guest_bytes = 0): VmTypeChoice {
  const cap = vmTypesCap(k);
  if (vm === 'pkvm') return choosePkvm(k, kernel, guest_bytes, cap);
  const wanted = WANTED[vm];
  if ((cap & (1 << wanted)) !== 0) {
    return { type: wanted, name: TYPE_NAMES[wanted] as string, native: true, vm_types_cap: cap, why_vehicle: null };
  }
  const why = `${kernel} has no ${TYPE_NAMES[wanted] as string}: KVM_CAP_VM_TYPES = 0x${cap.toString(16)}`;
  return { type: KVM_X86_SW_PROTECTED_VM, name: 'KVM_X86_SW_PROTECTED_VM', native: vm === 'sw-protected', vm_types_cap: cap, why_vehicle: why };
}

function vmTypesCap(k: Syscalls): number {
  const fd = k.open('/dev/kvm', O_RDWR);
  try {
    return k.ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES);
  } finally {
    k.close(fd);
  }
}

/** The IPA size a guest of `guest_bytes` at IPA 0 needs: 0 (the default, 40 bits) up to 1 TiB, else log2 rounded up. */
export function armIpaBits(guest_bytes: number): number {
  return guest_bytes <= 2 ** 40 ? 0 : Math.ceil(Math.log2(guest_bytes));
}

/**
 * pKVM: arm64 has no KVM_CAP_VM_TYPES (0); a VMM asks for KVM_VM_TYPE_ARM_PROTECTED with the IPA
 * size the guest needs (crosvm, kvmtool) and the kernel refuses a type it lacks with EINVAL. The
 * probe VM is closed again. There is no vehicle: a pKVM guest shares memory in place, which a
 * kernel without the type (uapi v6.18) cannot do, so the run is refused (as the scenario is).
 */
function choosePkvm(k: Syscalls, kernel: string, guest_bytes: number, cap: number): VmTypeChoice {
  const type = KVM_VM_TYPE_ARM_PROTECTED + armIpaBits(guest_bytes); // never a JS |: it would go negative
  const fd = k.open('/dev/kvm', O_RDWR);
  try {
    k.close(k.ioctl(fd, KVM_CREATE_VM, type));
  } catch (e) {
    if (e instanceof SyscallError && e.errno === EINVAL) {
      throw new Error(`${kernel} has no KVM_VM_TYPE_ARM_PROTECTED (KVM_CREATE_VM 0x${type.toString(16)}: EINVAL): pKVM needs uapi in-place or rfc-1g`);
    }
    throw e;
  } finally {
    k.close(fd);
  }
  return { type, name: 'KVM_VM_TYPE_ARM_PROTECTED', native: true, vm_types_cap: cap, why_vehicle: null };
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
