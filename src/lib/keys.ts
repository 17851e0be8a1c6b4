/** Ordered walks over sparse integer-keyed containers (Map or Set). */

/** What keysInRange needs: a Map's or a Set's size, membership and keys. */
export interface IntKeyed {
  readonly size: number;
  has(k: number): boolean;
  keys(): IterableIterator<number>;
}

/** Keys of `m` in [k0, k1), ascending; walks whichever is smaller, the key range or the container. */
export function keysInRange(m: IntKeyed, k0: number, k1: number): number[] {
  if (m.size === 0 || k0 >= k1) return [];
  const out: number[] = [];
  if (k1 - k0 <= m.size * 4) {
    for (let k = k0; k < k1; k++) if (m.has(k)) out.push(k);
  } else {
    for (const k of m.keys()) if (k >= k0 && k < k1) out.push(k);
    out.sort((a, b) => a - b);
  }
  return out;
}
