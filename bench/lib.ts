/** What every benchmark file shares: the figure type and the timing helpers. */
import { performance } from 'node:perf_hooks';

export interface Figure {
  name: string;
  value: number;
  unit: string;
  /** The target, for the human-readable line. */
  target?: string;
}

/** Run `fn` `n` times and return calls per second. */
export function rate(n: number, fn: (i: number) => void): number {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn(i);
  const s = (performance.now() - t0) / 1000;
  return n / s;
}

/** The best of `rounds` measurements (a collection or a scheduler hiccup only ever slows a round). */
export function best(rounds: number, measure: () => number): number {
  let b = 0;
  for (let r = 0; r < rounds; r++) b = Math.max(b, measure());
  return b;
}

