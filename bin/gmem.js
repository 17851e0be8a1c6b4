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
// A reader that stops early (gmem sim ... | head) closes the pipe: that is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
}
const { main } = await import(cli);
process.exitCode = await main(process.argv.slice(2));
