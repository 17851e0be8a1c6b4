/**
 * gmem: guest_memfd, KVM and host mm as an executable model, and the same interface over the
 * host's real /dev/kvm. The package root: the contract's entry points and every uAPI constant.
 */
export * from './uapi/index.js';
export { createModelKernel, ModelKernel, type ModelKernelOptions, type ModelState } from './kernel/model-kernel.js';
export type { GuestApi, GuestCode, GuestOp, AccessOptions } from './kvm/guest.js';
export { checkInvariants } from './checker/invariants.js';
export { openHostKernel, hostKernelUnavailableReason } from './host/host-kernel.js';
export type { Policy } from './kvm/policy.js';
export type { ModelMetrics } from './kernel/metrics.js';
