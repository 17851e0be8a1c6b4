/** Every built-in scenario runs (made small), with no failed conversion, SIGBUS or lost contents. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { builtinNames } from '../../src/sim/builtin.js';
import { sim } from './helpers.js';

const SMALL: Record<string, string[]> = {
  'snp-lazy-accept': ['--guest', '4GiB', '--steps', '300'],
  'tdx-boot': ['--guest', '4GiB', '--steps', '300'],
  'pkvm-virtio': ['--guest', '2GiB', '--steps', '200'],
  'dpdk-shared': ['--guest', '8GiB', '--steps', '300', '--set', 'workload.buffer_size=64MiB', '--set', 'workload.recycle_every=50'],
  'device-dma': ['--guest', '4GiB', '--steps', '300', '--set', 'workload.pool=64MiB'],
};

interface J {
  scenario: { vm: string; vm_type: { name: string; native: boolean } };
  policies: Array<{ label: string; steps: number; final: { sim: Record<string, number>; sigbus: number | null } }>;
}

/** The VM type each built-in's guest runs on (uapi in-place has SNP and TDX on x86, pKVM on arm64). */
const VM_TYPE: Record<string, string> = {
  snp: 'KVM_X86_SNP_VM', tdx: 'KVM_X86_TDX_VM', pkvm: 'KVM_VM_TYPE_ARM_PROTECTED', 'sw-protected': 'KVM_X86_SW_PROTECTED_VM',
};

test('the built-in scenarios are the five workloads', () => {
  assert.deepEqual(builtinNames(), Object.keys(SMALL).sort());
});

for (const name of Object.keys(SMALL)) {
  test(`built-in ${name} runs`, async () => {
    const r = await sim([name, ...(SMALL[name] as string[]), '--json', '--quiet']);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as J;
    assert.ok(j.policies.length >= 2, 'a comparison');
    assert.equal(j.scenario.vm_type.name, VM_TYPE[j.scenario.vm]);
    assert.equal(j.scenario.vm_type.native, true, 'every built-in runs on the model\'s own VM type');
    for (const p of j.policies) {
      const s = p.final.sim;
      assert.equal(s.events, p.steps, p.label);
      assert.equal(s.conversions_failed, 0, `${p.label}: failed conversions`);
      assert.equal(s.host_sigbus, 0, `${p.label}: SIGBUS`);
      assert.equal(p.final.sigbus, 0, `${p.label}: model SIGBUS`);
      assert.equal(s.content_lost, 0, `${p.label}: contents lost`);
      assert.equal(s.iommu_private_exposure, 0, `${p.label}: IOPTE over private memory`);
      assert.ok((s.conversions_done ?? 0) > 0);
      assert.equal(s.implicit_conversions, 0, `${p.label}: every access made as the kind the page is (no memory-fault exit)`);
    }
  });
}
