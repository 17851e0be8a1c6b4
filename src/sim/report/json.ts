/**
 * `--json`: the whole result, series included. Deterministic: the same scenario and seed give
 * the same bytes (no timings, no process memory; keys in a fixed order).
 */
import type { SimResult } from '../run.js';

export const JSON_FORMAT_VERSION = 1;

export function renderJson(r: SimResult): string {
  return `${JSON.stringify({ format: 'gmem-sim', version: JSON_FORMAT_VERSION, ...r }, null, 2)}\n`;
}
