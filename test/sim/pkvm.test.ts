/**
 * pKVM scenarios on the model's arm64 KVM_VM_TYPE_ARM_PROTECTED: the guest's MEM_SHARE /
 * MEM_UNSHARE are real KVM_EXIT_HYPERCALL exits the VMM answers with a conversion of the granule
 * (and run.hypercall.ret); the model decides private vs shared, the private levels (≤ 2M) and the
 * contents (preserved). The simulator keeps only pKVM's page-state checks and the 2M limit on
 * shared blocks, which the model lacks.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createModelKernel } from '../../src/kernel/model-kernel.js';
import { armIpaBits, chooseVmType } from '../../src/sim/arch/index.js';
import { PkvmBackend } from '../../src/sim/arch/pkvm.js';
import { readBuiltin } from '../../src/sim/builtin.js';
import { kernelOptions, runPolicy, runScenario } from '../../src/sim/run.js';
import { type Override, parseScenario } from '../../src/sim/scenario.js';
import { KVM_VM_TYPE_ARM_PROTECTED } from '../../src/uapi/kvm.js';

const GiB = 2 ** 30;

function builtin(name: string, o: Array<[string, unknown]>) {
  const text = readBuiltin(name);
  assert.ok(text !== null);
  const overrides: Override[] = o.map(([path, value]) => ({ path, value, origin: `test ${path}` }));
  return parseScenario(text, `${name}.yaml`, overrides);
}

test('pkvm-virtio runs on an arm64 model kernel, KVM_VM_TYPE_ARM_PROTECTED, shares and unshares as hypercall exits', () => {
  const sc = builtin('pkvm-virtio', [['guest', '1GiB'], ['steps', 100]]);
  assert.equal(kernelOptions(sc, {}).arch, 'arm64');
  const r = runScenario(sc);
  assert.equal(r.scenario.vm_type.name, 'KVM_VM_TYPE_ARM_PROTECTED');
  assert.equal(r.scenario.vm_type.type, KVM_VM_TYPE_ARM_PROTECTED, 'IPA size 0: the default 40 bits cover 1 GiB');
  assert.equal(r.scenario.vm_type.native, true);
  assert.equal(r.scenario.vm_type.vm_types_cap, 0, 'arm64 has no KVM_CAP_VM_TYPES');
  assert.notEqual(r.scenario.sim_page_rules, null);
  for (const p of r.policies) {
    const s = p.final.sim;
    const a = p.final.arch;
    assert.ok((a.mem_share ?? 0) > 0, p.label);
    assert.equal(a.mem_share, a.mem_unshare, `${p.label}: every shared buffer is unshared`);
    // One exit per granule (HYP_MEMINFO answers without one), one conversion of 4 KiB per exit.
    assert.equal(s.hypercall_exits, (a.mem_share ?? 0) + (a.mem_unshare ?? 0), p.label);
    assert.equal(s.conversions_requested, s.hypercall_exits, p.label);
    assert.equal(s.conversions_done, s.hypercall_exits, p.label);
    assert.equal(s.pages_converted, s.hypercall_exits, `${p.label}: no no-op (the page-state checks let none through)`);
    assert.equal(a.refused, 0, p.label);
    assert.equal(s.content_lost, 0, `${p.label}: contents preserved by the model across MEM_SHARE`);
    assert.equal(s.host_sigbus, 0, p.label);
    assert.deepEqual(p.final.stage2, p.final.stage2_model, `${p.label}: no shared leaf above 2M on 2M pages: the levels are the model's`);
  }
});

test('pKVM on 1G pages: the model itself keeps private blocks at 2M', () => {
  // 4 GiB: the region is the second 1G folio (split at its first share), the first 1G folio is private
  // memory the guest touched at boot and stays whole: the model maps it at 2M, not 1G.
  const sc = builtin('pkvm-virtio', [['guest', '4GiB'], ['backing', '1G'], ['steps', 40]]);
  const p = runPolicy(sc, { merge: 'eager' }, 'merge=eager');
  assert.equal(p.final.stage2_model['1g'], 0);
  assert.ok(p.final.stage2_model['2m'] > 0);
  assert.deepEqual(p.final.stage2, p.final.stage2_model);
});

test('the VM type: the IPA size follows the guest; uapi v6.18 has no pKVM type and the run is refused', () => {
  assert.equal(armIpaBits(GiB), 0);
  assert.equal(armIpaBits(2 ** 40), 0);
  assert.equal(armIpaBits(2 * 2 ** 40), 41);
  const k = createModelKernel({ uapi: 'in-place', arch: 'arm64', memoryBytes: GiB });
  const c = chooseVmType(k, 'pkvm', 'uapi in-place', 4 * 2 ** 40);
  assert.equal(c.type, KVM_VM_TYPE_ARM_PROTECTED + 42);
  assert.equal(k.state.vms.size, 0, 'the probe VM is gone');
  assert.throws(() => builtin('pkvm-virtio', [['uapi', 'v6.18'], ['backing', '4K']]), /uapi 'v6.18' has no in-place sharing/);
  const old = createModelKernel({ uapi: 'v6.18', arch: 'arm64', memoryBytes: GiB });
  assert.throws(() => chooseVmType(old, 'pkvm', 'uapi v6.18'), /uapi v6.18 has no KVM_VM_TYPE_ARM_PROTECTED/);
});

test("pKVM's page states (the simulator's rule): refuse a share of a shared page or an unshare of a private one; donate first", () => {
  const b = new PkvmBackend(1024);
  assert.equal(b.check(5, false, false), 'donate', 'never faulted in');
  b.donated(0, 8);
  assert.equal(b.check(5, false, false), 'ok');
  assert.equal(b.check(5, false, true), 'refuse', 'already shared');
  assert.equal(b.check(5, true, false), 'refuse', 'unshare of a private page');
  assert.equal(b.check(5, true, true), 'ok');
  b.donated(4, 12);
  assert.equal(b.counters().donations, 12, 'pages donated, each once');
});

test('dpdk-shared on pKVM: the guest does not unshare memory it owns at boot; nothing refused', () => {
  const sc = builtin('dpdk-shared', [['vm', 'pkvm'], ['backing', '2M'], ['guest', '4GiB'], ['steps', 12],
    ['workload.buffer_size', '4MiB'], ['workload.recycle_every', 4]]);
  const p = runPolicy(sc, {}, 'default');
  assert.equal(p.vm_type.name, 'KVM_VM_TYPE_ARM_PROTECTED');
  assert.equal(p.final.arch.refused, 0);
  assert.equal(p.final.sim.conversions_failed, 0);
  assert.equal(p.final.sim.content_lost, 0);
});
