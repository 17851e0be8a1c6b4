/**
 * Every built-in scenario, made small, under every policy it compares, on a model kernel that runs
 * the invariant checker after every call: the simulator's realistic call sequences are also a
 * test of the model's isolation properties and accounting.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createModelKernel } from '../../src/kernel/model-kernel.js';
import { builtinNames, readBuiltin } from '../../src/sim/builtin.js';
import { runPolicy } from '../../src/sim/run.js';
import { parseScenario, policyCombos, policyLabel, type Override } from '../../src/sim/scenario.js';
import { checked } from '../lib/harness.js';

const SMALL: Record<string, Array<[string, unknown]>> = {
  'snp-lazy-accept': [['guest', '4GiB'], ['steps', 40]],
  'tdx-boot': [['guest', '4GiB'], ['steps', 15]],
  'pkvm-virtio': [['guest', '1GiB'], ['steps', 60]],
  'dpdk-shared': [['guest', '4GiB'], ['steps', 12], ['workload.buffer_size', '4MiB'], ['workload.recycle_every', 4]],
  'device-dma': [['guest', '2GiB'], ['steps', 40], ['workload.pool', '8MiB']],
};

for (const name of builtinNames()) {
  test(`built-in ${name} keeps every invariant after every call, under each compared policy`, () => {
    const text = readBuiltin(name);
    assert.ok(text !== null);
    const overrides: Override[] = (SMALL[name] ?? []).map(([path, value]) => ({ path, value, origin: `test ${path}` }));
    const sc = parseScenario(text, `${name}.yaml`, overrides);
    for (const knobs of policyCombos(sc.policy, sc.compare)) {
      const p = runPolicy(sc, knobs, policyLabel(knobs, sc.compare), undefined, (o) => checked(createModelKernel(o)));
      assert.equal(p.final.sim.conversions_failed, 0, `${p.label}: failed conversions`);
      assert.equal(p.final.sim.content_lost, 0, `${p.label}: contents lost`);
      assert.ok((p.final.sim.conversions_done ?? 0) > 0, `${p.label}: the run converted something`);
      assert.ok(p.final.guest_faults > 0, `${p.label}: the guest ran`);
    }
  });
}
