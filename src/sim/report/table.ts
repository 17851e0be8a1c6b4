/** The terminal table: the policies side by side. */
import type { SimResult } from '../run.js';
import { headerLines, summaryRows } from './rows.js';

export function renderTable(r: SimResult): string {
  const rows = summaryRows(r);
  const heads = r.policies.map((p) => p.label);
  const labelW = Math.max(...rows.map((x) => x.label.length), 8);
  const colW = heads.map((h, i) => Math.max(h.length, ...rows.map((x) => (x.values[i] ?? '').length)));
  const out: string[] = [...headerLines(r), ''];
  out.push(`${''.padEnd(labelW)}  ${heads.map((h, i) => h.padStart(colW[i] as number)).join('  ')}`);
  for (const row of rows) {
    if (row.section === true) {
      out.push(`${row.label}${row.hint !== undefined ? `  (${row.hint})` : ''}`);
      continue;
    }
    out.push(`${row.label.padEnd(labelW)}  ${row.values.map((v, i) => v.padStart(colW[i] as number)).join('  ')}`);
  }
  const notes = [...new Set(r.policies.flatMap((p) => p.notes))];
  for (const n of notes) out.push(`note: ${n}`);
  return `${out.join('\n')}\n`;
}
