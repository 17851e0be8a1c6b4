/**
 * A read/write semaphore as the model sees one: calls are atomic here, so a lock is never
 * contended; it records who holds it so that the checker (and the interleaving explorer) can
 * assert the locking protocol: no operation returns with a lock held, writers exclude readers.
 */
import { assert } from '../lib/assert.js';

export class RwSem {
  private readers = 0;
  private writer = false;
  constructor(readonly name: string) {}

  downRead(): void {
    assert(!this.writer, () => `${this.name}: read lock while write-locked`);
    this.readers++;
  }
  upRead(): void {
    assert(this.readers > 0, () => `${this.name}: read unlock without lock`);
    this.readers--;
  }
  downWrite(): void {
    assert(!this.writer && this.readers === 0, () => `${this.name}: write lock while held`);
    this.writer = true;
  }
  upWrite(): void {
    assert(this.writer, () => `${this.name}: write unlock without lock`);
    this.writer = false;
  }
  get held(): boolean {
    return this.writer || this.readers > 0;
  }
  get writeHeld(): boolean {
    return this.writer;
  }
}
