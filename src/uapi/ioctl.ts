/**
 * The kernel's ioctl request encoding (include/uapi/asm-generic/ioctl.h):
 * bits 0..7 nr, 8..15 type, 16..29 size, 30..31 direction.
 */
export const IOC_NONE = 0;
export const IOC_WRITE = 1;
export const IOC_READ = 2;

export function IOC(dir: number, type: number, nr: number, size_bytes: number): number {
  // >>> 0 keeps the result an unsigned 32-bit number, as the request is in C.
  return ((dir << 30) | (size_bytes << 16) | (type << 8) | nr) >>> 0;
}
export const IO = (type: number, nr: number): number => IOC(IOC_NONE, type, nr, 0);
export const IOW = (type: number, nr: number, size_bytes: number): number => IOC(IOC_WRITE, type, nr, size_bytes);
export const IOR = (type: number, nr: number, size_bytes: number): number => IOC(IOC_READ, type, nr, size_bytes);
export const IOWR = (type: number, nr: number, size_bytes: number): number =>
  IOC(IOC_READ | IOC_WRITE, type, nr, size_bytes);

export const ioc_nr = (request: number): number => request & 0xff;
export const ioc_type = (request: number): number => (request >>> 8) & 0xff;
export const ioc_size = (request: number): number => (request >>> 16) & 0x3fff;
export const ioc_dir = (request: number): number => (request >>> 30) & 0x3;
