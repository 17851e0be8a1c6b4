#!/usr/bin/env node
// Builds the host backend's N-API addon (native/gmem_host.c) with node-gyp; run by `npm ci`
// through package.json's "install" script.
//
// It never fails the install: the model backend needs no addon. On failure it prints why and
// records the reason in native/build/status.json, which src/host/native.ts reads so that
// openHostKernel() returns null and hostKernelUnavailableReason() says why.
// No download: node-gyp is the one bundled with npm, the headers are the local Node's own.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
const buildDir = join(nativeDir, 'build');
const addonPath = join(buildDir, 'Release', 'gmem_host.node');
const statusPath = join(buildDir, 'status.json');
const BUILD_TIMEOUT_MS = 5 * 60 * 1000;

function record(ok, reason) {
  mkdirSync(buildDir, { recursive: true });
  writeFileSync(statusPath, JSON.stringify({ ok, reason, node: process.version, when: new Date().toISOString() }, null, 2) + '\n');
}

// npm exports the node-gyp it bundles as npm_config_node_gyp to lifecycle scripts; outside npm,
// look beside npm itself (npm_execpath, or the prefix of this node binary).
function findNodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  if (process.env.npm_execpath) {
    candidates.push(join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  const prefix = resolve(dirname(process.execPath), '..');
  candidates.push(join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  return candidates.find((p) => p && existsSync(p)) ?? null;
}

// node-gyp downloads headers unless told where they are; the local Node's prefix has them
// (include/node/node_api.h) on distribution builds, and npm may already say so (nodedir).
function findNodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = resolve(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : null;
}

function build() {
  if (process.platform !== 'linux') return `the host backend needs Linux (this is ${process.platform})`;
  const nodeGyp = findNodeGyp();
  if (!nodeGyp) return 'node-gyp not found (neither npm_config_node_gyp nor npm\'s bundled copy)';
  const nodeDir = findNodeDir();
  if (!nodeDir) return `Node headers not found beside ${process.execPath} and npm_config_nodedir is unset`;
  const args = [nodeGyp, 'rebuild', `--nodedir=${nodeDir}`, '--loglevel=warn'];
  const run = spawnSync(process.execPath, args, {
    cwd: nativeDir,
    encoding: 'utf8',
    timeout: BUILD_TIMEOUT_MS,
    env: { ...process.env, npm_config_nodedir: nodeDir },
  });
  if (run.error) return `node-gyp did not run: ${run.error.message}`;
  if (run.status !== 0) {
    const tail = `${run.stdout}\n${run.stderr}`.trim().split('\n').slice(-15).join('\n');
    return `node-gyp rebuild exited with ${run.status ?? run.signal}:\n${tail}`;
  }
  if (!existsSync(addonPath)) return `node-gyp succeeded but ${addonPath} is missing`;
  return null;
}

const reason = build();
if (reason === null) {
  record(true, null);
  console.log(`gmem: built the host backend addon (${addonPath})`);
} else {
  record(false, reason);
  console.warn(`gmem: the host backend addon was not built; openHostKernel() will return null.\n  reason: ${reason}`);
}
