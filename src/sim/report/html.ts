/**
 * The HTML report: one self-contained file (inline CSS and SVG, no scripts, no external assets)
 * that opens offline: the scenario, the summary table with the policies side by side, and per
 * policy the plots over simulated time: share of guest memory by stage-2 mapping level (and by
 * IOPTE level with an IOMMU), huge folios whole vs split, and the event counters.
 */
import type { PolicyResult, SimResult } from '../run.js';
import { formatBytes } from '../units.js';
import { headerLines, summaryRows } from './rows.js';
import { esc, lines, stackedShares } from './svg.js';

const C1G = '#1b5e20';
const C2M = '#66bb6a';
const C4K = '#ffa726';
const CNONE = '#e0e0e0';

function levelChart(title: string, p: PolicyResult, guestPages: number, pick: 'stage2' | 'iommu'): string {
  const xs = p.series.map((s) => s.t);
  const share = (lv: '1g' | '2m' | '4k'): number[] => p.series.map((s) => s[pick][lv] / guestPages);
  const mapped = p.series.map((s) => (s[pick]['1g'] + s[pick]['2m'] + s[pick]['4k']) / guestPages);
  const layers = [
    { name: '1G', color: C1G, ys: share('1g') },
    { name: '2M', color: C2M, ys: share('2m') },
    { name: '4K', color: C4K, ys: share('4k') },
  ];
  // Stage-2: the whole guest, unmapped included. IOMMU: only shared memory is ever mapped, so
  // the axis fits what is.
  if (pick === 'iommu') return stackedShares({ title, xLabel: 'simulated time (s)', yLabel: 'share of guest memory' }, xs, layers, true);
  return stackedShares({ title, xLabel: 'simulated time (s)', yLabel: 'share of guest memory' }, xs, [
    ...layers,
    { name: 'not mapped', color: CNONE, ys: mapped.map((m) => 1 - m) },
  ]);
}

function policySection(r: SimResult, p: PolicyResult): string {
  const gp = r.scenario.guest / 4096;
  const xs = p.series.map((s) => s.t);
  const charts: string[] = [];
  const by = r.scenario.sim_level_rules === null
    ? `the model's ${r.scenario.vm_type.name}`
    : `as ${r.scenario.vm_title} maps it: model + simulator rules`;
  charts.push(levelChart(`${p.label}: stage-2 mappings by level (${by})`, p, gp, 'stage2'));
  if (p.iommu !== 'none') charts.push(levelChart(`${p.label}: IOMMU mappings by level (${p.iommu})`, p, gp, 'iommu'));
  charts.push(lines({ title: `${p.label}: huge folios`, xLabel: 'simulated time (s)', yLabel: 'folios' }, xs, [
    { name: 'whole', color: C1G, ys: p.series.map((s) => s.huge_whole) },
    { name: 'split', color: C4K, ys: p.series.map((s) => s.huge_split) },
  ]));
  charts.push(lines({ title: `${p.label}: splits, merges, vmemmap pages in use`, xLabel: 'simulated time (s)', yLabel: 'count' }, xs, [
    { name: 'splits', color: '#d84315', ys: p.series.map((s) => s.splits) },
    { name: 'merges', color: '#1565c0', ys: p.series.map((s) => s.merges) },
    { name: 'vmemmap pages', color: '#6a1b9a', ys: p.series.map((s) => s.vmemmap_pages_in_use) },
  ]));
  charts.push(lines({ title: `${p.label}: conversions, memory-fault exits, EAGAIN, TLB flushes`, xLabel: 'simulated time (s)', yLabel: 'cumulative' }, xs, [
    { name: 'conversions', color: '#1565c0', ys: p.series.map((s) => s.conversions_done) },
    { name: 'memory-fault exits', color: '#2e7d32', ys: p.series.map((s) => s.implicit_conversions) },
    { name: 'EAGAIN', color: '#c62828', ys: p.series.map((s) => s.eagain_returns) },
    { name: 'TLB flushes', color: '#757575', ys: p.series.map((s) => s.tlb_flushes) },
  ]));
  if (p.series.some((s) => s.dma_faults + s.dma_gap_hits > 0) || p.iommu !== 'none') {
    charts.push(lines({ title: `${p.label}: DMA that met a gap`, xLabel: 'simulated time (s)', yLabel: 'cumulative' }, xs, [
      { name: "pages with no IOPTE (model)", color: '#c62828', ys: p.series.map((s) => s.dma_faults) },
      { name: 'DMAs in flight through a window (simulator)', color: '#ef6c00', ys: p.series.map((s) => s.dma_gap_hits) },
    ]));
  }
  const notes = p.notes.map((n) => `<p class="note">${esc(n)}</p>`).join('');
  return `<section><h2>${esc(p.label)}</h2>${notes}<div class="charts">${charts.map((c) => `<figure>${c}</figure>`).join('')}</div></section>`;
}

export function renderHtml(r: SimResult): string {
  const rows = summaryRows(r);
  const head = `<tr><th></th>${r.policies.map((p) => `<th>${esc(p.label)}</th>`).join('')}</tr>`;
  const body = rows.map((row) => row.section === true
    ? `<tr class="sec"><td colspan="${r.policies.length + 1}">${esc(row.label)}${row.hint !== undefined ? ` <span class="hint">(${esc(row.hint)})</span>` : ''}</td></tr>`
    : `<tr><td>${esc(row.label.trim())}${row.hint !== undefined ? ` <span class="hint">(${esc(row.hint)})</span>` : ''}</td>${row.values.map((v) => `<td class="n">${esc(v)}</td>`).join('')}</tr>`).join('\n');
  const layout = r.scenario.layout.map((l) => `<li>${esc(l.name)}: [${esc(formatBytes(l.gpa))}, ${esc(formatBytes(l.gpa + l.size))})</li>`).join('');
  const [title, ...rest] = headerLines(r);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gmem sim: ${esc(r.scenario.name)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:20px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:left}
td.n,th{text-align:right;font-variant-numeric:tabular-nums}tr.sec td{font-weight:600;padding-top:10px;border-bottom:1px solid #bbb}
.hint{color:#777;font-weight:400;font-size:12px}.note{color:#b71c1c}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:12px}
figure{margin:0;border:1px solid #eee;padding:4px}svg{width:100%;height:auto}
</style></head><body>
<h1>gmem sim: ${esc(title ?? '')}</h1>
${rest.map((l) => `<p>${esc(l)}</p>`).join('\n')}
<p>Guest-physical layout:</p><ul>${layout}</ul>
<table>${head}
${body}
</table>
${r.policies.map((p) => policySection(r, p)).join('\n')}
<p class="hint">Generated by gmem sim (model of guest_memfd + KVM + host mm). Same scenario and seed give the same report.</p>
</body></html>
`;
}
