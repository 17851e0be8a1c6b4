/**
 * The progress bar, on stderr: redrawn in place on a TTY; elsewhere a line every 10% once the
 * run has taken more than a second (so short runs and test logs stay quiet). Wall-clock time is
 * used here only, never inside the simulation.
 */
import { performance } from 'node:perf_hooks';

export interface ProgressSink {
  isTTY?: boolean;
  write(s: string): unknown;
}

export class Progress {
  private readonly t0 = performance.now();
  private lastDraw = 0;
  private lastDecile = -1;
  private drawn = false;

  constructor(private readonly out: ProgressSink, private readonly labels: string[], private readonly enabled = true) {}

  update(policy: number, fraction: number): void {
    if (!this.enabled) return;
    const now = performance.now();
    const total = (policy + Math.min(1, fraction)) / Math.max(1, this.labels.length);
    if (this.out.isTTY === true) {
      if (now - this.lastDraw < 80 && fraction < 1) return;
      this.lastDraw = now;
      const width = 30;
      const filled = Math.round(total * width);
      this.out.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(total * 100).toFixed(0).padStart(3)}%  ${this.labels[policy] ?? ''} ${((now - this.t0) / 1000).toFixed(1)}s\x1b[K`);
      this.drawn = true;
      return;
    }
    if (now - this.t0 < 1000) return;
    const decile = Math.floor(total * 10);
    if (decile === this.lastDecile) return;
    this.lastDecile = decile;
    this.out.write(`gmem sim: ${decile * 10}% (${this.labels[policy] ?? ''}, ${((now - this.t0) / 1000).toFixed(1)} s)\n`);
  }

  done(): void {
    if (this.drawn) this.out.write('\r\x1b[K');
  }

  get elapsedSeconds(): number {
    return (performance.now() - this.t0) / 1000;
  }
}
