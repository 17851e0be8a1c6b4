/** `gmem sim`: exit codes, messages, outputs; bad input writes nothing. */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { sim } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'gmem-sim-'));
const SMALL = ['--guest', '4GiB', '--steps', '100', '--quiet'];

test('bad scenario file: exit 2, file:line: field: message, nothing written', async () => {
  writeFileSync(join(dir, 'bad.yaml'), 'guest: 4GiB\nvcpus: 4096\nworkload:\n  type: snp-lazy-accept\n  chunk: 3MiB+1\n');
  const html = join(dir, 'bad.html');
  const r = await sim(['bad.yaml', '--html', html], dir);
  assert.equal(r.code, 2);
  assert.equal(r.out, '');
  assert.equal(r.err,
    'bad.yaml:2: vcpus: 4096 is out of range [1, 1024]\n'
    + "bad.yaml:5: workload.chunk: '3MiB+1' is not a size (write e.g. 4GiB, 2MiB, 4096)\n");
  assert.equal(existsSync(html), false);
});

test('unknown scenario, workload, option, policy: exit 2', async () => {
  let r = await sim(['no-such-scenario']);
  assert.equal(r.code, 2);
  assert.match(r.err, /^gmem sim: unknown scenario 'no-such-scenario' \(built-in: device-dma, dpdk-shared, pkvm-virtio, snp-lazy-accept, tdx-boot; or give a \.yaml file\)/);
  r = await sim(['snp-lazy-accept', '--frobnicate']);
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown option '--frobnicate'/);
  r = await sim(['snp-lazy-accept', '--set', 'workload.type=dpdk-sharde', ...SMALL]);
  assert.equal(r.code, 2);
  assert.match(r.err, /^<command line>: workload\.type \(--set workload\.type=dpdk-sharde\): unknown workload 'dpdk-sharde'/);
  r = await sim(['snp-lazy-accept', '--compare', 'split=eager,sideways', ...SMALL]);
  assert.equal(r.code, 2);
  assert.equal(r.err, '<command line>: compare.split[1] (--compare split=eager,sideways): "sideways" is not one of eager, lazy\n');
  r = await sim(['snp-lazy-accept', '--uapi', 'v6.18', '--backing', '4K', ...SMALL]);
  assert.equal(r.code, 2, 'the built-in compares split=eager,lazy, which 6.18 cannot express');
  assert.match(r.err, /compare\.split: policy split=lazy: uapi 'v6\.18' has no conversion or HugeTLB, so it cannot express it/);
  r = await sim(['snp-lazy-accept', '--steps']);
  assert.equal(r.code, 2);
  assert.match(r.err, /--steps needs a value/);
  r = await sim(['snp-lazy-accept', '--guest', '4GiB', '--backing', '2M', '--set', 'guest=5001MiB']);
  assert.equal(r.code, 2);
  assert.match(r.err, /guest \(--set guest=5001MiB\): 4\.9 GiB is not a multiple of the page size \(2 MiB, backing 2M\)/);
});

test('the table shows the policies side by side', async () => {
  const r = await sim(['snp-lazy-accept', ...SMALL]);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.err, '');
  const lines = r.out.split('\n');
  const head = lines.find((l) => l.includes('split=eager'));
  assert.ok(head !== undefined && head.includes('split=lazy'), r.out);
  assert.ok(r.out.includes('stage-2 mappings'));
  assert.ok(r.out.includes('  at 4K'));
  assert.ok(r.out.includes('splits / merges'));
});

test('--json and --html', async () => {
  const html = join(dir, 'r.html');
  const r = await sim(['snp-lazy-accept', ...SMALL, '--json', '--html', html]);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as { format: string; policies: Array<{ label: string; series: unknown[] }> };
  assert.equal(j.format, 'gmem-sim');
  assert.deepEqual(j.policies.map((p) => p.label), ['split=eager', 'split=lazy']);
  assert.ok(j.policies.every((p) => p.series.length >= 2));
  const h = readFileSync(html, 'utf8');
  assert.match(h, /^<!doctype html>/);
  assert.ok((h.match(/<svg /g) ?? []).length >= 4, 'plots per policy');
  assert.ok(h.includes('stage-2 mappings by level'));
  assert.equal(/<script|<link|src=|url\(/i.test(h), false, 'self-contained: no scripts, links or external assets');
  assert.deepEqual([...new Set(h.match(/https?:\/\/[^"'\s)]+/g) ?? [])], ['http://www.w3.org/2000/svg']);
});

test('--list, --schema, --help', async () => {
  const l = await sim(['--list']);
  assert.equal(l.code, 0);
  for (const n of ['snp-lazy-accept', 'tdx-boot', 'pkvm-virtio', 'dpdk-shared', 'device-dma']) assert.ok(l.out.includes(n));
  const s = await sim(['--schema']);
  assert.equal(s.code, 0);
  assert.ok(s.out.includes('guest') && s.out.includes('workload snp-lazy-accept'));
  assert.equal((await sim(['--help'])).code, 0);
  assert.equal((await sim([])).code, 2);
});
