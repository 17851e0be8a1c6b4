/**
 * The implicit-conversion path, counted by hand: the guest touches pages as the other kind without
 * asking first, KVM_RUN fails with EFAULT and KVM_EXIT_MEMORY_FAULT, the VMM converts the page
 * (QEMU kvm_convert_memory) and re-enters, and the access is retried.
 *
 * Scenario: a 1 GiB guest on 2M HugeTLB pages, 1 vCPU, no bounce pool, no GHCBs, no virtio, so
 * nothing is accepted at boot (the reserved range [align4M(1G), 1G) is empty) and events 0, 1, 2
 * accept chunks 0, 1, 2 = [0, 4M), [4M, 8M), [8M, 12M). `implicit: 2`: after accepting chunk n,
 * the guest uses pages at offsets ⌊j × 1024 / 2⌋ pages, j = 0, 1, of it: the first page of each of
 * the chunk's two 2M ranges (call such a range X, its first page P). Per page:
 *  a. write P shared: the leaf over P is X's private 2M leaf and the access is shared → a fault
 *     the model cannot serve (shared access, private page): exit, flags 0, gpa P, size 4096.
 *     The VMM converts [P, P+4K) →shared: X's folio range is invalidated, its 2M leaf zapped (1 leaf,
 *     1 TLB flush); eager splits X's folio. Re-entry: the write faults again and maps P shared at
 *     4K (X is mixed: order 0). 2 faults.
 *  b. the host reads P through its mapping (1 host fault; lazy splits X's folio here, and that split
 *     invalidates X's range once more).
 *  c. read P private: the leaf is shared → exit with KVM_MEMORY_EXIT_FLAG_PRIVATE. The VMM
 *     converts P →private: the host PTE goes first and the MMU notifier zaps P's shared 4K leaf
 *     (1 leaf, 1 flush); the folio is merged (eager merge: X is all private again). Re-entry: the
 *     read faults and maps X private at 2M (uniform, a whole 2M folio). 2 faults.
 *  d. re-accept P at 4K (SNP PVALIDATE 4K / TDX ACCEPT 4K): the sweep finds P mapped, no fault.
 * Per event: the explicit accept request (SNP: 1 PSC for 4 MiB; TDX: 2 MapGPA of 2 MiB), kernel
 * no-ops; the accept at 2M (2 faults, 2 2M leaves, 2 folios allocated); then 2 pages × (2 exits,
 * 2 one-page conversions, 4 faults, 2 zapped leaves, 1 host fault, 1 split, 1 merge).
 *
 * Totals over 3 events (both split policies unless said):
 *  memory-fault exits     3 × 2 × 2 = 12, 6 of them →private (PRIVATE flag)
 *  conversions            SNP 3 + 12 = 15 (3 no-ops); TDX 6 + 12 = 18 (6 no-ops); 12 pages converted
 *  stage-2 faults         3 × (2 + 2 × 4) = 30
 *  leaves zapped, flushes 12, 12
 *  host faults            6
 *  splits / merges        6 / 6; 2M folios 6 whole, 0 split; vmemmap 6 × 7 = 42 allocated, 0 in use
 *  invalidations          eager 12 (one per conversion that changed something); lazy 12 + 6 host-fault splits = 18
 *  stage-2 (the model)    SNP: 6 private 2M leaves = 3,072 pages at 2M. TDX: the →shared conversion of
 *                         P first demotes X's private 2M leaf (it crosses the range's edge) into 512
 *                         4K leaves and zaps only P's (still 1 leaf, 1 flush); X is never promoted
 *                         again, so the →private refault maps P at 4K: 6 × 512 = 3,072 pages at 4K.
 *                         Lazy: the host-fault split of X demotes nothing more (X is 4K already).
 *  SNP: 3 PSC, PVALIDATE 2M 3 × 2 = 6, PVALIDATE 4K 6; as SNP maps it = the model's.
 *  TDX: 6 MapGPA, ACCEPT 2M 6 (one 4 MiB sweep = 2 × 2M per chunk), ACCEPT 4K 6. The model and the
 *  simulator's TDX rules agree: all 6 2M ranges demoted (6 by each), 3,072 pages at 4K. Accepted and
 *  kept: 3 chunks × 1,024 pages = 3,072 (each implicit page left the accepted set at →shared and came
 *  back with its 4K accept), all mapped.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createModelKernel } from '../../src/kernel/model-kernel.js';
import { runPolicy, runScenario } from '../../src/sim/run.js';
import { checked } from '../lib/harness.js';
import { parseScenario, SimInputError } from '../../src/sim/scenario.js';

function scenario(vm: 'snp' | 'tdx', extra = ''): string {
  return `
name: implicit-${vm}
guest: 1GiB
vm: ${vm}
backing: 2M
uapi: in-place
vcpus: 1
workload:
  type: ${vm === 'snp' ? 'snp-lazy-accept' : 'tdx-boot'}
  chunk: 4MiB
  bounce: 0
  percpu_shared: false
  io_every: 0
  coherent_every: 0
  implicit: 2
${extra}steps: 3
compare:
  split: [eager, lazy]
seed: 1
`;
}

for (const vm of ['snp', 'tdx'] as const) {
  test(`${vm}: implicit conversions, 12 memory-fault exits counted by hand`, () => {
    const r = runScenario(parseScenario(scenario(vm), `implicit-${vm}.yaml`));
    assert.equal(r.scenario.vm_type.name, vm === 'snp' ? 'KVM_X86_SNP_VM' : 'KVM_X86_TDX_VM');
    const [eager, lazy] = r.policies;
    assert.ok(eager !== undefined && lazy !== undefined);
    for (const p of [eager, lazy]) {
      const s = p.final.sim;
      assert.equal(s.events, 3);
      assert.equal(s.implicit_conversions, 12, `${p.label}: exits`);
      assert.equal(s.implicit_to_private, 6, `${p.label}: exits with the PRIVATE flag`);
      assert.equal(s.conversions_requested, vm === 'snp' ? 15 : 18);
      assert.equal(s.conversions_done, vm === 'snp' ? 15 : 18);
      assert.equal(s.conversions_noop, vm === 'snp' ? 3 : 6);
      assert.equal(s.conversions_failed, 0);
      assert.equal(s.pages_converted, 12);
      assert.equal(s.host_io, 6);
      assert.equal(s.content_lost, 0, 'the host reads what the guest wrote after the implicit →shared');
      assert.equal(p.final.guest_faults, 30);
      assert.equal(p.final.zapped_leaves, 12);
      assert.equal(p.final.tlb_flushes, 12);
      assert.equal(p.final.host_faults, 6);
      assert.equal(p.final.splits, 6);
      assert.equal(p.final.merges, 6);
      assert.deepEqual(p.final.huge_folios, { whole_2m: 6, split_2m: 0, whole_1g: 0, split_1g: 0 });
      assert.equal(p.final.vmemmap_pages_allocated, 42);
      assert.equal(p.final.vmemmap_pages_in_use, 0);
      assert.deepEqual(p.final.stage2_model, vm === 'snp' ? { '4k': 0, '2m': 3072, '1g': 0 } : { '4k': 3072, '2m': 0, '1g': 0 });
      assert.deepEqual(p.final.model_conversions, { done: vm === 'snp' ? 15 : 18, eagain: 0, failed: 0, pages: 12 });
      if (vm === 'snp') {
        assert.deepEqual(p.final.stage2, p.final.stage2_model);
        assert.deepEqual(p.final.arch, { psc_requests: 3, pvalidate_2m: 6, pvalidate_4k: 6 });
      } else {
        assert.deepEqual(p.final.stage2, { '4k': 3072, '2m': 0, '1g': 0 });
        assert.deepEqual(p.final.arch, {
          map_gpa_exits: 6, accept_2m: 6, accept_4k: 6, sim_demoted_2m_blocks: 6, model_demoted_2m_blocks: 6,
          accepted_pages: 3072, accepted_pages_unmapped_by_model: 0,
        });
      }
    }
    assert.equal(eager.final.invalidations, 12);
    assert.equal(lazy.final.invalidations, 18);
  });
}

test('implicit conversions need a VM type on which the guest chooses, and pages that fit in a chunk', () => {
  const bad = (text: string): string => {
    try {
      parseScenario(text, 'x.yaml');
    } catch (e) {
      if (e instanceof SimInputError) return e.message;
      throw e;
    }
    return '';
  };
  assert.match(bad(scenario('snp').replace('vm: snp', 'vm: sw-protected')), /workload\.implicit: implicit conversions need a VM type on which the guest chooses/);
  assert.match(bad(scenario('snp').replace('backing: 2M', 'backing: 4K').replace('uapi: in-place', 'uapi: v6.18').replace(/compare:\n {2}split: \[eager, lazy\]\n/, '')),
    /implicit conversions need .*uapi v6\.18/);
  assert.match(bad(scenario('snp').replace('implicit: 2', 'implicit: 1025')), /workload\.implicit: 1025 pages do not fit in a 4 MiB chunk \(1024 pages\)/);
});

test('uapi v6.18 has no SNP VM type: the guest runs on the SW_PROTECTED vehicle, and the report says so', () => {
  const text = scenario('snp').replace('backing: 2M', 'backing: 4K').replace('uapi: in-place', 'uapi: v6.18')
    .replace('implicit: 2', 'implicit: 0').replace(/compare:\n {2}split: \[eager, lazy\]\n/, '');
  const r = runScenario(parseScenario(text, 'v618.yaml'));
  assert.equal(r.scenario.vm_type.native, false);
  assert.equal(r.scenario.vm_type.name, 'KVM_X86_SW_PROTECTED_VM');
  assert.equal(r.scenario.vm_type.why_vehicle, 'uapi v6.18 has no KVM_X86_SNP_VM: KVM_CAP_VM_TYPES = 0x3');
  assert.match(r.scenario.sim_level_rules ?? '', /at 2M/);
  const p = r.policies[0];
  assert.ok(p !== undefined);
  assert.equal(p.final.sim.implicit_conversions, 0);
  assert.equal(p.final.sim.conversions_failed, 0);
  // 3 chunks accepted on 4K folios: 3,072 private 4K leaves, whatever the level rule.
  assert.deepEqual(p.final.stage2, { '4k': 3072, '2m': 0, '1g': 0 });
});

test("the model's invariants hold after every call of SNP and TDX runs with implicit conversions", () => {
  for (const vm of ['snp', 'tdx'] as const) {
    for (const split of ['eager', 'lazy']) {
      const sc = parseScenario(scenario(vm, 'vcpus: 2\n').replace('vcpus: 1\n', '').replace('  coherent_every: 0\n', '  coherent_every: 2\n')
        .replace('steps: 3', 'steps: 12'), `checked-${vm}.yaml`);
      const p = runPolicy(sc, { split }, `split=${split}`, undefined, (o) => checked(createModelKernel(o)));
      assert.equal(p.final.sim.implicit_conversions, 12 * 2 * 2, `${vm} ${split}`);
      assert.equal(p.final.sim.conversions_failed, 0);
      assert.equal(p.final.sim.host_sigbus, 0);
    }
  }
});
