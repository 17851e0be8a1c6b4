/**
 * Guest code for the model backend: a generator that yields guest operations and receives their
 * results (CONTRACT.md "Guest code"). The operations are what a vCPU does that KVM can see:
 * memory accesses (which may fault), hypercalls, and ucalls (port I/O to user space).
 */

export interface AccessOptions {
  /** The guest's choice of private vs shared where the VM type lets it choose (SNP C-bit, TDX shared bit). */
  private?: boolean;
}

export type GuestOp =
  | { readonly op: 'read'; readonly gpa: number; readonly length: number; readonly private?: boolean }
  | { readonly op: 'write'; readonly gpa: number; readonly data: Uint8Array; readonly private?: boolean }
  | { readonly op: 'hypercall'; readonly nr: number; readonly args: readonly number[] }
  | { readonly op: 'ucall'; readonly args: readonly number[] };

export interface GuestApi {
  read(gpa: number, length: number, opts?: AccessOptions): GuestOp;
  write(gpa: number, data: Uint8Array, opts?: AccessOptions): GuestOp;
  hypercall(nr: number, ...args: number[]): GuestOp;
  ucall(...args: number[]): GuestOp;
}

/**
 * The value sent back into the generator depends on the operation (Uint8Array for read, the
 * hypercall's ret for hypercall, undefined otherwise), so it is typed loosely here.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type GuestGenerator = Generator<GuestOp, void, any>;
export type GuestCode = (g: GuestApi) => GuestGenerator;

export const guestApi: GuestApi = Object.freeze({
  read: (gpa: number, length: number, opts?: AccessOptions): GuestOp =>
    ({ op: 'read', gpa, length, ...(opts?.private !== undefined ? { private: opts.private } : {}) }),
  write: (gpa: number, data: Uint8Array, opts?: AccessOptions): GuestOp =>
    ({ op: 'write', gpa, data, ...(opts?.private !== undefined ? { private: opts.private } : {}) }),
  hypercall: (nr: number, ...args: number[]): GuestOp => ({ op: 'hypercall', nr, args }),
  ucall: (...args: number[]): GuestOp => ({ op: 'ucall', args }),
});
