/**
 * The summary both the terminal table and the HTML report show: one row per metric, one column
 * per policy. Memory is shown as bytes and share of guest memory, so numbers can be checked by
 * hand: 1 page = 4 KiB, a 2M leaf = 512 pages, a 1G leaf = 262,144 pages.
 */
import type { LevelPages } from '../arch/types.js';
import type { PolicyResult, SimResult } from '../run.js';
import { formatBytes } from '../units.js';

export interface Row {
  /** Section heading rows have no values. */
  label: string;
  values: string[];
  section?: boolean;
  /** A note under the label (units, meaning). */
  hint?: string;
}

const PAGE = 4096;

export function fmtInt(n: number | null): string {
  if (n === null) return 'n/a';
  return Math.round(n).toLocaleString('en-US');
}

function pagesCell(pages: number, guestPages: number): string {
  if (pages === 0) return '0';
  const pct = (100 * pages) / guestPages;
  return `${formatBytes(pages * PAGE)} (${pct >= 10 ? pct.toFixed(1) : pct.toPrecision(2)}%)`;
}

function levelRows(title: string, pick: (p: PolicyResult) => LevelPages, ps: PolicyResult[], guestPages: number, hint: string): Row[] {
  return [
    { label: title, values: [], section: true, hint },
    { label: '  at 1G', values: ps.map((p) => pagesCell(pick(p)['1g'], guestPages)) },
    { label: '  at 2M', values: ps.map((p) => pagesCell(pick(p)['2m'], guestPages)) },
    { label: '  at 4K', values: ps.map((p) => pagesCell(pick(p)['4k'], guestPages)) },
  ];
}

export function summaryRows(r: SimResult): Row[] {
  const ps = r.policies;
  const gp = r.scenario.guest / PAGE;
  const f = (pick: (p: PolicyResult) => number | null): string[] => ps.map((p) => fmtInt(pick(p)));
  const pair = (a: (p: PolicyResult) => number | null, b: (p: PolicyResult) => number | null): string[] =>
    ps.map((p) => `${fmtInt(a(p))} / ${fmtInt(b(p))}`);
  const rows: Row[] = [];
  const sc = r.scenario;
  if (sc.sim_level_rules === null) {
    rows.push(...levelRows('stage-2 mappings', (p) => p.final.stage2, ps, gp, `guest memory by leaf level, the model's ${sc.vm_type.name}`));
  } else {
    rows.push(...levelRows('stage-2 mappings', (p) => p.final.stage2, ps, gp,
      `guest memory by leaf level as ${sc.vm_title} maps it: the model's levels and the simulator's rules`));
    rows.push(...levelRows('stage-2 mappings in the model', (p) => p.final.stage2_model, ps, gp, `the model's ${sc.vm_type.name} alone`));
  }
  if (ps.some((p) => p.iommu !== 'none')) {
    rows.push({ label: 'IOMMU importer', values: ps.map((p) => p.iommu), section: false });
    rows.push(...levelRows('IOMMU mappings', (p) => p.final.iommu, ps, gp, 'shared guest memory by IOPTE level').slice(1));
  }
  rows.push({ label: 'huge folios', values: [], section: true, hint: 'HugeTLB folios now: whole / split to 4K' });
  rows.push({ label: '  1G whole / split', values: pair((p) => p.final.huge_folios.whole_1g, (p) => p.final.huge_folios.split_1g) });
  rows.push({ label: '  2M whole / split', values: pair((p) => p.final.huge_folios.whole_2m, (p) => p.final.huge_folios.split_2m) });
  rows.push({ label: '  splits / merges', values: pair((p) => p.final.splits, (p) => p.final.merges) });
  rows.push({
    label: '  vmemmap allocated / in use', hint: 'pages of struct page restored by splits (HVO undone)',
    values: ps.map((p) => `${fmtInt(p.final.vmemmap_pages_allocated)} / ${fmtInt(p.final.vmemmap_pages_in_use)} (${formatBytes(p.final.vmemmap_pages_in_use * PAGE)})`),
  });
  rows.push({ label: 'conversions', values: [], section: true, hint: 'requests the VMM handled' });
  rows.push({ label: '  requested', values: f((p) => p.final.sim.conversions_requested ?? 0) });
  rows.push({ label: '  done (of which no-op)', values: ps.map((p) => `${fmtInt(p.final.sim.conversions_done ?? 0)} (${fmtInt(p.final.sim.conversions_noop ?? 0)})`) });
  rows.push({ label: '  hit EAGAIN / failed', values: pair((p) => p.final.sim.conversions_eagain ?? 0, (p) => p.final.sim.conversions_failed ?? 0) });
  rows.push({ label: '  EAGAIN returns / refs dropped', values: pair((p) => p.final.sim.eagain_returns ?? 0, (p) => p.final.sim.ref_drops ?? 0) });
  rows.push({ label: '  pages converted', values: f((p) => p.final.sim.pages_converted ?? 0) });
  rows.push({
    label: '  memory-fault exits (implicit conversions)', hint: 'the guest accessed a page as the other kind; the VMM converted it and re-entered',
    values: f((p) => p.final.sim.implicit_conversions ?? 0),
  });
  rows.push({ label: 'KVM', values: [], section: true });
  rows.push({ label: '  invalidations', values: f((p) => p.final.invalidations) });
  rows.push({ label: '  leaves zapped / TLB flushes', values: pair((p) => p.final.zapped_leaves, (p) => p.final.tlb_flushes) });
  rows.push({ label: '  stage-2 faults', values: f((p) => p.final.guest_faults) });
  rows.push({ label: 'host', values: [], section: true });
  rows.push({ label: '  host faults / SIGBUS', values: pair((p) => p.final.host_faults, (p) => p.final.sigbus) });
  rows.push({ label: '  contents lost', hint: 'host read other than what the guest wrote', values: f((p) => p.final.sim.content_lost ?? 0) });
  if (ps.some((p) => (p.final.sim.dma_ops ?? 0) > 0 || p.iommu !== 'none')) {
    rows.push({ label: 'device', values: [], section: true });
    rows.push({ label: '  DMA ops', values: f((p) => p.final.sim.dma_ops ?? 0) });
    const ops = (pick: (o: NonNullable<PolicyResult['final']['iommu_ops']>) => number): string[] =>
      ps.map((p) => (p.final.iommu_ops === null ? '-' : fmtInt(pick(p.final.iommu_ops))));
    rows.push({
      label: '  DMA met a gap: faulted pages / in flight', hint: "pages with no IOPTE at issue (the model's domain) / DMAs in flight through an unmap/remap window (the simulator's)",
      values: ps.map((p, i) => `${ops((o) => o.dma_faults)[i] ?? '-'} / ${fmtInt(p.final.sim.dma_gap_hits ?? 0)}`),
    });
    rows.push({ label: '  window pages / refreshes', hint: "the model's domain: shared pages unmapped and mapped back (unmap-remap) / hitless refreshes", values: ps.map((_p, i) => `${ops((o) => o.window_pages)[i] ?? '-'} / ${ops((o) => o.refreshes)[i] ?? '-'}`) });
    rows.push({ label: '  pages pinned by the IOMMU', values: ops((o) => o.pinned_pages) });
    rows.push({ label: '  IOPTEs over private memory', values: f((p) => p.final.sim.iommu_private_exposure ?? 0) });
  }
  rows.push({ label: r.scenario.vm_title, values: [], section: true });
  const archKeys = [...new Set(ps.flatMap((p) => Object.keys(p.final.arch)))];
  for (const key of archKeys) rows.push({ label: `  ${ARCH_LABELS[key] ?? key.replace(/_/g, ' ')}`, values: f((p) => p.final.arch[key] ?? 0) });
  rows.push({ label: 'model memory', values: ps.map((p) => formatBytes(p.final.model_bytes)) });
  return rows;
}

/** Arch counters whose key alone would not say which layer counted them. */
const ARCH_LABELS: Readonly<Record<string, string>> = {
  model_demoted_2m_blocks: '2M blocks the model keeps at 4K',
  sim_demoted_2m_blocks: "2M blocks at 4K by the simulator's rules",
  accepted_pages: 'pages accepted (and kept)',
  accepted_pages_unmapped_by_model: 'of which the model left unmapped',
};

/** Which layer decides what: the VM type the guest ran on, and the simulator's own level rules. */
function vmTypeLine(s: SimResult['scenario']): string {
  const t = s.vm_type;
  if (t.native && s.vm === 'pkvm') {
    return `VM type ${t.name} (the model's, arm64): guest_memfd's shareability decides private vs shared, changed by the VMM on the `
      + "guest's MEM_SHARE / MEM_UNSHARE exits; the stage-2 levels (private ≤ 2M) and the contents (preserved) are the model's";
  }
  if (t.native && s.vm === 'sw-protected') {
    return `VM type ${t.name} (the model's): the attribute decides private vs shared; levels and contents (preserved) are the model's`;
  }
  if (t.native) {
    return `VM type ${t.name} (the model's): the model decides private vs shared per access (the guest's choice), the stage-2 levels and what a conversion does to contents`;
  }
  return `VM type ${t.name} as a vehicle for ${s.vm_title} (${t.why_vehicle ?? 'no native type'}): the attribute decides private vs shared; `
    + `${s.vm_title}'s content effect on conversion is not applied`;
}

/** Which layer decides what about the device (src/sim/iommu.ts). */
function iommuLine(vm: string): string {
  const cap = vm === 'snp' || vm === 'pkvm' ? `; ${vm === 'snp' ? 'SNP' : 'pKVM'} IOPTEs above 2M counted at 2M` : '';
  return "IOMMU: the model's domain (vfio-4k = its 'pin', unmap-remap, refresh) decides the IOPTEs and their levels, what a conversion "
    + 'does to them, pins, DMA faults and windows (no re-merge after →shared); the simulator adds what the device maps (all shared '
    + `memory, IOVA = GPA), VFIO's unmap before →private, and DMA in flight through a window${cap}`;
}

/** The scenario in a few lines. */
export function headerLines(r: SimResult): string[] {
  const s = r.scenario;
  const p0 = r.policies[0];
  const lines = [
    `${s.name}: ${s.description}`,
    `guest ${formatBytes(s.guest)}, ${s.vm_title}, ${s.backing === '4K' ? '4K folios' : `HugeTLB ${s.backing}`}, uapi ${s.uapi}, ${s.vcpus} vCPUs${s.iommu !== 'none' ? `, IOMMU ${s.iommu}` : ''}, seed ${s.seed}`,
    vmTypeLine(s),
    ...(s.sim_level_rules !== null ? [`the simulator adds to the model's stage-2 levels: ${s.sim_level_rules}`] : []),
    ...(s.sim_page_rules !== null ? [`the simulator adds (the model does not check them): ${s.sim_page_rules}`] : []),
    ...(r.policies.some((p) => p.iommu !== 'none') ? [iommuLine(s.vm)] : []),
    `workload ${s.workload}: ${Object.entries(s.params).map(([k, v]) => `${k}=${typeof v === 'number' && /size|chunk|bounce|pool|region|burst|touch|request/.test(k) ? formatBytes(v) : String(v)}`).join(' ')}`,
    `the guest asks by ${s.how_guest_asks}`,
  ];
  if (p0 !== undefined) lines.push(`${fmtInt(p0.steps)} steps = ${p0.sim_seconds.toPrecision(3)} s simulated`);
  return lines;
}
