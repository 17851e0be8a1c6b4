/**
 * Address spaces kept apart by type. Each is a plain number at run time (exact below 2^53); the
 * brand stops a gfn from being passed where a pfn or a file index is expected.
 *
 *   Gpa  guest physical address (bytes)        Gfn    guest frame number (gpa >> 12)
 *   Pfn  host physical frame number            PgOff  page index into a file (pgoff / index)
 *   Hva  host (user) virtual address (bytes)
 */
declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

export type Gpa = Brand<number, 'gpa'>;
export type Gfn = Brand<number, 'gfn'>;
export type Pfn = Brand<number, 'pfn'>;
export type PgOff = Brand<number, 'pgoff'>;
export type Hva = Brand<number, 'hva'>;

export const PAGE_SIZE_BYTES = 4096;
export const PAGES_PER_2M = 512;
export const PAGES_PER_1G = 262144;

export const gfn = (n: number): Gfn => n as Gfn;
export const pfn = (n: number): Pfn => n as Pfn;
export const pgoff = (n: number): PgOff => n as PgOff;
export const hva = (n: number): Hva => n as Hva;
export const gpa = (n: number): Gpa => n as Gpa;

export const gpaToGfn = (a: Gpa): Gfn => Math.floor(a / PAGE_SIZE_BYTES) as Gfn;
export const gfnToGpa = (f: Gfn): Gpa => (f * PAGE_SIZE_BYTES) as Gpa;

/** Mapping levels, as KVM numbers them: PG_LEVEL_4K = 1, 2M = 2, 1G = 3. */
export type Level = 1 | 2 | 3;
export const PG_LEVEL_4K: Level = 1;
export const PG_LEVEL_2M: Level = 2;
export const PG_LEVEL_1G: Level = 3;
export const levelPages = (level: Level): number => (level === 1 ? 1 : level === 2 ? PAGES_PER_2M : PAGES_PER_1G);
export const orderToLevel = (order: number): Level => (order >= 18 ? 3 : order >= 9 ? 2 : 1);
