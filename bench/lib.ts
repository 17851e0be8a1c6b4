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


/**
 * Best rates of several variants measured in alternating rounds (a, b, c, a, b, c, ...), so that
 * drift of the machine or the heap affects each variant alike: ratios between them are fair.
 */
export function bestInterleaved(rounds: number, measures: ReadonlyArray<() => number>): number[] {
  const out = measures.map(() => 0);
  for (let r = 0; r < rounds; r++) {
    measures.forEach((m, i) => {
      out[i] = Math.max(out[i] as number, m());
    });
  }
  return out;
}
