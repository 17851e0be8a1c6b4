/**
 * Plots as inline SVG (no scripts, no external assets): stacked areas for shares that add up to
 * a whole, lines for counters. Sizes in user units; the HTML scales them to the page width.
 */

export interface Layer {
  name: string;
  color: string;
  ys: number[];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
}

const W = 640;
const H = 260;
const M = { l: 58, r: 14, t: 40, b: 40 };

export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmtTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e9) return `${+(v / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  return `${+v.toPrecision(3)}`;
}

/** A round step for about `n` intervals over `range`. */
function niceStep(range: number, n: number): number {
  if (range <= 0) return 1;
  const raw = range / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

const FONT = 'font-family="sans-serif"';

function frame(o: ChartOptions, xs: number[], yMax: number, yFmt: (v: number) => string): { parts: string[]; sx: (x: number) => number; sy: (y: number) => number } {
  const w = o.width ?? W;
  const h = o.height ?? H;
  const x0 = xs[0] ?? 0;
  const x1 = Math.max(xs[xs.length - 1] ?? 1, x0 + 1e-9);
  const sx = (x: number): number => M.l + ((x - x0) / (x1 - x0)) * (w - M.l - M.r);
  const sy = (y: number): number => h - M.b - (y / yMax) * (h - M.t - M.b);
  const parts: string[] = [];
  parts.push(`<text x="${M.l}" y="16" ${FONT} font-size="13" font-weight="600">${esc(o.title)}</text>`);
  for (let i = 0; i <= 4; i++) {
    const y = (yMax * i) / 4;
    parts.push(`<line x1="${M.l}" x2="${w - M.r}" y1="${sy(y).toFixed(1)}" y2="${sy(y).toFixed(1)}" stroke="#eee"/>`);
    parts.push(`<text x="${M.l - 6}" y="${(sy(y) + 4).toFixed(1)}" ${FONT} font-size="10" fill="#555" text-anchor="end">${esc(yFmt(y))}</text>`);
  }
  const step = niceStep(x1 - x0, 5);
  for (let x = Math.ceil(x0 / step) * step; x <= x1 + step * 1e-9; x += step) {
    const px = sx(x);
    const anchor = px > w - M.r - 12 ? 'end' : 'middle';
    parts.push(`<line x1="${px.toFixed(1)}" x2="${px.toFixed(1)}" y1="${h - M.b}" y2="${h - M.b + 4}" stroke="#999"/>`);
    parts.push(`<text x="${px.toFixed(1)}" y="${h - M.b + 16}" ${FONT} font-size="10" fill="#555" text-anchor="${anchor}">${esc(fmtTick(+x.toPrecision(6)))}</text>`);
  }
  parts.push(`<text x="${((M.l + w - M.r) / 2).toFixed(0)}" y="${h - 6}" ${FONT} font-size="11" fill="#333" text-anchor="middle">${esc(o.xLabel)}</text>`);
  const cy = ((M.t + h - M.b) / 2).toFixed(0);
  parts.push(`<text x="14" y="${cy}" ${FONT} font-size="11" fill="#333" text-anchor="middle" transform="rotate(-90 14 ${cy})">${esc(o.yLabel)}</text>`);
  parts.push(`<line x1="${M.l}" x2="${M.l}" y1="${M.t}" y2="${h - M.b}" stroke="#999"/><line x1="${M.l}" x2="${w - M.r}" y1="${h - M.b}" y2="${h - M.b}" stroke="#999"/>`);
  return { parts, sx, sy };
}

function legend(layers: Layer[], w: number): string {
  let x = w - M.r;
  const items: string[] = [];
  for (const l of [...layers].reverse()) {
    x -= 8 + l.name.length * 6.2 + 16;
    items.push(`<rect x="${x.toFixed(0)}" y="22" width="10" height="10" fill="${l.color}"/><text x="${(x + 14).toFixed(0)}" y="31" ${FONT} font-size="11" fill="#333">${esc(l.name)}</text>`);
  }
  return items.join('');
}

function svg(o: ChartOptions, body: string[]): string {
  const w = o.width ?? W;
  const h = o.height ?? H;
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="${esc(o.title)}">${body.join('')}</svg>`;
}

/**
 * Stacked areas of shares (each ys in [0, 1], their sum ≤ 1), bottom layer first. The y axis
 * goes to 100%, or with `fit` to a round value above the largest total.
 */
export function stackedShares(o: ChartOptions, xs: number[], layers: Layer[], fit = false): string {
  const top = Math.max(0, ...xs.map((_, i) => layers.reduce((a, l) => a + (l.ys[i] ?? 0), 0)));
  const yMax = fit ? Math.min(1, niceMax(top)) : 1;
  const pct = (v: number): string => `${+(v * 100).toPrecision(3)}%`;
  const { parts, sx, sy } = frame(o, xs, yMax, pct);
  const base = xs.map(() => 0);
  for (const l of layers) {
    const top = xs.map((_, i) => (base[i] as number) + (l.ys[i] ?? 0));
    const pts: string[] = [];
    xs.forEach((x, i) => pts.push(`${sx(x).toFixed(1)},${sy(top[i] as number).toFixed(1)}`));
    for (let i = xs.length - 1; i >= 0; i--) pts.push(`${sx(xs[i] as number).toFixed(1)},${sy(base[i] as number).toFixed(1)}`);
    parts.push(`<polygon points="${pts.join(' ')}" fill="${l.color}" stroke="none"><title>${esc(l.name)}</title></polygon>`);
    top.forEach((v, i) => { base[i] = v; });
  }
  parts.push(legend(layers, o.width ?? W));
  return svg(o, parts);
}

/** Lines over a shared y scale from 0. */
export function lines(o: ChartOptions, xs: number[], layers: Layer[]): string {
  const yMax = niceMax(Math.max(0, ...layers.flatMap((l) => l.ys)));
  const { parts, sx, sy } = frame(o, xs, yMax, fmtTick);
  for (const l of layers) {
    const pts = xs.map((x, i) => `${sx(x).toFixed(1)},${sy(l.ys[i] ?? 0).toFixed(1)}`).join(' ');
    parts.push(`<polyline points="${pts}" fill="none" stroke="${l.color}" stroke-width="1.8"><title>${esc(l.name)}</title></polyline>`);
  }
  parts.push(legend(layers, o.width ?? W));
  return svg(o, parts);
}
