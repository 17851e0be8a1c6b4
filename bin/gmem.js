#!/usr/bin/env node
// The gmem command line: a thin launcher for the compiled CLI (npm run build first; npm start does).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'dist', 'src', 'cli', 'main.js');
if (!existsSync(cli)) {
  console.error('gmem: the project is not built yet: run `npm run build` (npm start and npm test build it).');
  process.exit(2);
}
const { main } = await import(cli);
process.exitCode = await main(process.argv.slice(2));
