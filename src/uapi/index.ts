export * from './errno.js';
export * from './errors.js';
export * from './ioctl.js';
export * from './kvm.js';
export * from './linux.js';
export type * from './syscalls.js';
