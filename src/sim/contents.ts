/**
 * Tags: what the guest wrote at the start of a page that host user space is meant to read. The
 * guest writes an 8-byte tag through the model; the host reads the page through its mapping and
 * compares. A mismatch is content lost by a conversion: the firmware scrambled or zeroed it, or
 * (v6.18) shared and private are different memory.
 */
export class ContentTags {
  private readonly tags = new Map<number, bigint>();
  private next = 1n;

  /** A fresh tag for a write at gfn. */
  issue(gfn: number): bigint {
    const t = 0x6700000000000000n | this.next++;
    this.tags.set(gfn, t);
    return t;
  }

  expected(gfn: number): bigint | undefined {
    return this.tags.get(gfn);
  }

  forget(gfn: number): void {
    this.tags.delete(gfn);
  }

  /** Tagged gfns in [g0, g1). Cost: the tags, never the range. */
  inRange(g0: number, g1: number): number[] {
    const out: number[] = [];
    for (const g of this.tags.keys()) if (g >= g0 && g < g1) out.push(g);
    return out.sort((a, b) => a - b);
  }
}

export function tagBytes(tag: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, tag, true);
  return b;
}

export function bytesTag(b: Uint8Array): bigint {
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
}
