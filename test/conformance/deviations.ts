/**
 * The known deviations are declared once, in src/host/deviations.ts (gmem diff steers around the
 * same declarations); this module re-exports them for the conformance cases.
 */
import type { Backend } from '../lib/harness.js';
import type { Deviation } from '../../src/host/deviations.js';

export * from '../../src/host/deviations.js';

/** Does `d` apply to backend `b`? */
export function deviates(b: Backend, d: Deviation): boolean {
  return d.backend === b.name;
}
