/** --seed reproduces a run exactly: the same seed gives byte-identical JSON. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sim } from './helpers.js';

const ARGS = ['snp-lazy-accept', '--guest', '8GiB', '--steps', '300', '--set', 'workload.order=random',
  '--set', 'workload.coherent_every=7', '--json', '--quiet'];

test('same seed → byte-identical JSON; another seed → another run', async () => {
  const a = await sim([...ARGS, '--seed', '42']);
  const b = await sim([...ARGS, '--seed', '42']);
  const c = await sim([...ARGS, '--seed', '43']);
  assert.equal(a.code, 0, a.err);
  assert.equal(a.out, b.out);
  assert.notEqual(a.out, c.out);
});

test('randomness reaches the host side too (pkvm-virtio, device-dma): same seed, same bytes', async () => {
  for (const args of [
    ['pkvm-virtio', '--guest', '2GiB', '--steps', '150'],
    ['device-dma', '--guest', '4GiB', '--steps', '150', '--set', 'workload.pool=64MiB'],
  ]) {
    const a = await sim([...args, '--seed', '5', '--json', '--quiet']);
    const b = await sim([...args, '--seed', '5', '--json', '--quiet']);
    assert.equal(a.code, 0, a.err);
    assert.equal(a.out, b.out);
  }
});

test('implicit conversions on 2 vCPUs (tdx-boot): same seed, same bytes; every exit answered', async () => {
  const args = ['tdx-boot', '--guest', '4GiB', '--steps', '200', '--vcpus', '2', '--set', 'workload.implicit=3', '--json', '--quiet'];
  const a = await sim([...args, '--seed', '7']);
  const b = await sim([...args, '--seed', '7']);
  assert.equal(a.code, 0, a.err);
  assert.equal(a.out, b.out);
  const j = JSON.parse(a.out) as { policies: Array<{ final: { sim: Record<string, number> } }> };
  for (const p of j.policies) {
    assert.equal(p.final.sim.implicit_conversions, 200 * 3 * 2);
    assert.equal(p.final.sim.conversions_failed, 0);
  }
});
