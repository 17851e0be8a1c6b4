/**
 * Page contents, only where written. A page that no one wrote reads as zeros and owns no buffer;
 * a written page owns one 4 KiB slot in a slab. Zeroing a page is dropping its slot.
 *
 * Index: pfn chunk (pfn / 512) → Int32Array(512) of slot+1 (0 = never written).
 */
import { assert } from '../lib/assert.js';
import type { Pfn } from '../lib/types.js';

const PAGE = 4096;
const SLOTS_PER_SLAB = 256; // 1 MiB slabs
const CHUNK = 512;

export class ContentStore {
  private readonly chunks = new Map<number, Int32Array>();
  private readonly slabs: Uint8Array[] = [];
  private freeSlots: Int32Array = new Int32Array(1024);
  private nr_free_slots = 0;
  private nr_slots = 0;
  /** Pages holding a buffer now. */
  nr_written_pages = 0;

  private slotView(slot: number): Uint8Array {
    const slab = this.slabs[Math.floor(slot / SLOTS_PER_SLAB)] as Uint8Array;
    const off = (slot % SLOTS_PER_SLAB) * PAGE;
    return slab.subarray(off, off + PAGE);
  }

  private allocSlot(): number {
    if (this.nr_free_slots > 0) return this.freeSlots[--this.nr_free_slots] as number;
    if (this.nr_slots % SLOTS_PER_SLAB === 0) this.slabs.push(new Uint8Array(SLOTS_PER_SLAB * PAGE));
    return this.nr_slots++;
  }

  private freeSlot(slot: number): void {
    this.slotView(slot).fill(0); // a reused slot must read as zeros
    if (this.nr_free_slots === this.freeSlots.length) {
      const bigger = new Int32Array(this.freeSlots.length * 2);
      bigger.set(this.freeSlots);
      this.freeSlots = bigger;
    }
    this.freeSlots[this.nr_free_slots++] = slot;
  }

  /** The page's buffer, or null when it reads as zeros. */
  peek(p: Pfn): Uint8Array | null {
    const chunk = this.chunks.get(Math.floor(p / CHUNK));
    if (chunk === undefined) return null;
    const s = chunk[p % CHUNK] as number;
    return s === 0 ? null : this.slotView(s - 1);
  }

  /** The page's buffer, created (zeroed) if absent: for writes. */
  writable(p: Pfn): Uint8Array {
    const key = Math.floor(p / CHUNK);
    let chunk = this.chunks.get(key);
    if (chunk === undefined) {
      chunk = new Int32Array(CHUNK);
      this.chunks.set(key, chunk);
    }
    const i = p % CHUNK;
    let s = chunk[i] as number;
    if (s === 0) {
      s = this.allocSlot() + 1;
      chunk[i] = s;
      this.nr_written_pages++;
    }
    return this.slotView(s - 1);
  }

  /** Copy `len` bytes at `off` of page `p` into dst[dstOff..]. */
  read(p: Pfn, off: number, dst: Uint8Array, dstOff: number, len: number): void {
    const page = this.peek(p);
    if (page === null) dst.fill(0, dstOff, dstOff + len);
    else dst.set(page.subarray(off, off + len), dstOff);
  }

  write(p: Pfn, off: number, src: Uint8Array, srcOff: number, len: number): void {
    this.writable(p).set(src.subarray(srcOff, srcOff + len), off);
  }

  /** Zero one page (the common free path). */
  zeroOne(p: Pfn): void {
    if (this.nr_written_pages === 0) return;
    const key = Math.floor(p / CHUNK);
    const chunk = this.chunks.get(key);
    if (chunk === undefined) return;
    const s = chunk[p % CHUNK] as number;
    if (s === 0) return;
    this.freeSlot(s - 1);
    chunk[p % CHUNK] = 0;
    this.nr_written_pages--;
    for (let i = 0; i < CHUNK; i++) if (chunk[i] !== 0) return;
    this.chunks.delete(key);
  }

  /** Zero pages [p, p + nr_pages): drop their buffers. Cost follows the chunks present, not nr_pages. */
  zero(p: Pfn, nr_pages: number): void {
    const end = p + nr_pages;
    for (let key = Math.floor(p / CHUNK); key * CHUNK < end; key++) {
      const chunk = this.chunks.get(key);
      if (chunk === undefined) continue;
      const lo = Math.max(p, key * CHUNK) - key * CHUNK;
      const hi = Math.min(end, (key + 1) * CHUNK) - key * CHUNK;
      let left = 0;
      for (let i = 0; i < CHUNK; i++) {
        const s = chunk[i] as number;
        if (s === 0) continue;
        if (i >= lo && i < hi) {
          this.freeSlot(s - 1);
          chunk[i] = 0;
          this.nr_written_pages--;
        } else {
          left++;
        }
      }
      if (left === 0) this.chunks.delete(key);
    }
  }

  /** True when some page of [p, p + nr_pages) holds a buffer (checker). */
  anyWritten(p: Pfn, nr_pages: number): boolean {
    const end = p + nr_pages;
    for (let key = Math.floor(p / CHUNK); key * CHUNK < end; key++) {
      const chunk = this.chunks.get(key);
      if (chunk === undefined) continue;
      const lo = Math.max(p, key * CHUNK) - key * CHUNK;
      const hi = Math.min(end, (key + 1) * CHUNK) - key * CHUNK;
      for (let i = lo; i < hi; i++) if (chunk[i] !== 0) return true;
    }
    return false;
  }

  /** Every written pfn (checker, digests): ascending. */
  *writtenPfns(): IterableIterator<Pfn> {
    const keys = [...this.chunks.keys()].sort((a, b) => a - b);
    for (const key of keys) {
      const chunk = this.chunks.get(key) as Int32Array;
      for (let i = 0; i < CHUNK; i++) if (chunk[i] !== 0) yield (key * CHUNK + i) as Pfn;
    }
  }

  /** Bytes held for contents (slabs), for the model-memory metric. */
  get heap_bytes(): number {
    return this.slabs.length * SLOTS_PER_SLAB * PAGE;
  }

  checkConsistent(): void {
    let n = 0;
    for (const chunk of this.chunks.values()) for (let i = 0; i < CHUNK; i++) if (chunk[i] !== 0) n++;
    assert(n === this.nr_written_pages, () => `content store counts ${this.nr_written_pages} pages, holds ${n}`);
  }
}
