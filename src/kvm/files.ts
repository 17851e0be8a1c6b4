/** The KVM files an fd can name: /dev/kvm, a VM, a vCPU. */
import { KFile } from '../vfs/file.js';
import type { Vcpu } from './vcpu.js';
import type { Kvm } from './vm.js';

export class KvmDevFile extends KFile {
  readonly kind = 'kvm' as const;
  protected release(): void {}
}

export class VmFile extends KFile {
  readonly kind = 'vm' as const;
  constructor(readonly vm: Kvm) {
    super();
  }
  protected release(): void {
    this.vm.kvmPut();
  }
}

export class VcpuFile extends KFile {
  readonly kind = 'vcpu' as const;
  constructor(readonly vcpu: Vcpu) {
    super();
  }
  protected release(): void {
    this.vcpu.vm.kvmPut();
  }
}
