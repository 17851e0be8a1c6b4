/** The built-in scenarios shipped with the package (scenarios/*.yaml at the package root). */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

/** dist/src/sim/builtin.js → <root>/scenarios; src/sim/builtin.ts (ts-node) → <root>/scenarios. */
export function scenariosDir(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  for (const up of ['../../../scenarios', '../../scenarios']) {
    const d = join(here, up);
    if (existsSync(d)) return d;
  }
  return join(here, '../../../scenarios');
}

export function builtinNames(): string[] {
  const d = scenariosDir();
  if (!existsSync(d)) return [];
  return readdirSync(d).filter((f) => f.endsWith('.yaml')).map((f) => f.slice(0, -5)).sort();
}

export function builtinPath(name: string): string {
  return join(scenariosDir(), `${name}.yaml`);
}

export function readBuiltin(name: string): string | null {
  const p = builtinPath(name);
  return existsSync(p) ? readFileSync(p, 'utf8') : null;
}
