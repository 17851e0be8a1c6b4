/** The arch backend for a scenario's VM type. */
import type { VmTypeName } from '../schema.js';
import { PkvmBackend } from './pkvm.js';
import { SnpBackend } from './snp.js';
import { SwProtectedBackend } from './sw.js';
import { TdxBackend } from './tdx.js';
import type { ArchBackend } from './types.js';

export function makeArch(vm: VmTypeName, guest_pages: number): ArchBackend {
  switch (vm) {
    case 'snp': return new SnpBackend();
    case 'tdx': return new TdxBackend();
    case 'pkvm': return new PkvmBackend(guest_pages);
    case 'sw-protected': return new SwProtectedBackend();
  }
}

export { PkvmBackend, SnpBackend, SwProtectedBackend, TdxBackend };
export type { ArchBackend };
