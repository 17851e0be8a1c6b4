/** The backends `gmem diff` compares, for tests: null (with the reason printed) where the host is unavailable. */
import { type Backends, modelForDiff } from '../../src/diff/diff.js';
import { hostBackend } from './harness.js';

export async function diffBackends(): Promise<Backends | null> {
  const host = await hostBackend();
  if (host.unavailable !== null) return null;
  return { model: modelForDiff, host: host.make() };
}
