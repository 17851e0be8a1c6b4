/**
 * `--json`: the whole result, series included. Deterministic: the same scenario and seed give
 * the same bytes (no timings, no process memory; keys in a fixed order). Version 2: the guest's
 * VM type (`scenario.vm_type`), `stage2_model` (was `stage2_raw`, the vehicle's), implicit
 * conversions in the series; `scenario.sim_page_rules` (rules other than levels the simulator applies, e.g. pKVM's page
 * states; null: none).
 */
import type { SimResult } from '../run.js';

export const JSON_FORMAT_VERSION = 2;

export function renderJson(r: SimResult): string {
  return `${JSON.stringify({ format: 'gmem-sim', version: JSON_FORMAT_VERSION, ...r }, null, 2)}\n`;
}
