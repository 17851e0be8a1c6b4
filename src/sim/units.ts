/**
 * Sizes and durations as scenario files and the command line write them ("4GiB", "256G", "4 MiB",
 * "4096", "10s", "250ms"), and their display. Binary units only: K/KiB = 2^10, M/MiB = 2^20, ...
 */

export const KiB = 2 ** 10;
export const MiB = 2 ** 20;
export const GiB = 2 ** 30;
export const TiB = 2 ** 40;
export const PAGE = 4096;

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1, k: KiB, kb: KiB, kib: KiB, m: MiB, mb: MiB, mib: MiB, g: GiB, gb: GiB, gib: GiB, t: TiB, tb: TiB, tib: TiB,
};

/** A size in bytes, or an error message. Accepts a non-negative integer or "<number><unit>". */
export function parseSize(v: unknown): number | string {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) return `'${v}' is not a size in bytes (a non-negative integer)`;
    return v;
  }
  if (typeof v !== 'string') return `expected a size such as 4GiB, got ${describe(v)}`;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  if (m === null) return `'${v}' is not a size (write e.g. 4GiB, 2MiB, 4096)`;
  const unit = SIZE_UNITS[(m[2] as string).toLowerCase()];
  if (unit === undefined) return `'${v}': unknown size unit '${m[2] as string}' (use KiB, MiB, GiB, TiB)`;
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes)) return `'${v}' is not a whole number of bytes`;
  return bytes;
}

/** A duration in seconds, or an error message. Accepts a number (seconds) or "<number><unit>". */
export function parseDuration(v: unknown): number | string {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) return `'${v}' is not a duration`;
    return v;
  }
  if (typeof v !== 'string') return `expected a duration such as 10s, got ${describe(v)}`;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|min|h)?\s*$/.exec(v);
  if (m === null) return `'${v}' is not a duration (write e.g. 10s, 250ms, 2min)`;
  const scale = { us: 1e-6, ms: 1e-3, s: 1, m: 60, min: 60, h: 3600 }[(m[2] ?? 's') as 'us' | 'ms' | 's' | 'm' | 'min' | 'h'];
  return Number(m[1]) * scale;
}

/** "4 GiB", "2 MiB", "12 KiB", "512 B"; exact units when the value is a whole multiple, else 1 decimal. */
export function formatBytes(n: number): string {
  const units: Array<[number, string]> = [[TiB, 'TiB'], [GiB, 'GiB'], [MiB, 'MiB'], [KiB, 'KiB']];
  for (const [u, name] of units) {
    if (n >= u) {
      const v = n / u;
      return `${Number.isInteger(v) ? v : v.toFixed(1)} ${name}`;
    }
  }
  return `${n} B`;
}

/** Short YAML-ish description of a value, for messages. */
export function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (typeof v === 'string') return `'${v}'`;
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `'${String(v)}'`;
}
