/** Scenario files: defaults, and every kind of bad input reported as file:line: field: what. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatProblem, SimInputError } from '../../src/sim/errors.js';
import { parseScenario, policyCombos } from '../../src/sim/scenario.js';

function problems(text: string, overrides: Parameters<typeof parseScenario>[2] = []): string[] {
  try {
    parseScenario(text, 'bad.yaml', overrides);
  } catch (e) {
    if (e instanceof SimInputError) return e.problems.map(formatProblem);
    throw e;
  }
  assert.fail('expected the scenario to be refused');
}

const OK = 'guest: 4GiB\nworkload: snp-lazy-accept\n';

test('a minimal scenario gets the schema defaults', () => {
  const sc = parseScenario(OK, 'dir/min.yaml');
  assert.equal(sc.name, 'min');
  assert.equal(sc.guest, 4 * 2 ** 30);
  assert.equal(sc.vm, 'snp');
  assert.equal(sc.backing, '1G');
  assert.equal(sc.uapi, 'in-place');
  assert.equal(sc.vcpus, 4);
  assert.equal(sc.seed, 1);
  assert.equal(sc.workload, 'snp-lazy-accept');
  assert.equal(sc.params.chunk, 4 * 2 ** 20);
  assert.equal(sc.params.bounce, 'auto');
  assert.deepEqual(sc.compare, []);
  assert.deepEqual(policyCombos(sc.policy, sc.compare), [{}]);
});

test('unknown field: its line', () => {
  assert.deepEqual(problems('guest: 4GiB\nworkload: snp-lazy-accept\ncolour: blue\n'),
    ['bad.yaml:3: colour: unknown field (known: name, description, guest, vm, backing, uapi, vcpus, iommu, steps, time, seed, samples, workload, policy, compare)']);
});

test('unknown workload: the line of its type', () => {
  const p = problems('guest: 4GiB\nworkload:\n  type: snp-lazy-acept\n');
  assert.equal(p.length, 1);
  assert.match(p[0] as string, /^bad\.yaml:3: workload\.type: unknown workload 'snp-lazy-acept' \(known: snp-lazy-accept, tdx-boot, pkvm-virtio, dpdk-shared, device-dma\)$/);
});

test('unknown workload parameter and bad parameter values', () => {
  const p = problems('guest: 4GiB\nworkload:\n  type: snp-lazy-accept\n  chunck: 4MiB\n  io_every: -1\n  order: backwards\n');
  assert.equal(p.length, 3);
  assert.match(p[0] as string, /^bad\.yaml:4: workload\.chunck: unknown parameter of snp-lazy-accept/);
  assert.equal(p[1], "bad.yaml:6: workload.order: 'backwards' is not one of sequential, random");
  assert.equal(p[2], 'bad.yaml:5: workload.io_every: -1 is out of range [0, 1000000]');
});

test('a size that is not a multiple of the page size', () => {
  assert.deepEqual(problems('guest: 3000MiB\nworkload: snp-lazy-accept\n'),
    ['bad.yaml:1: guest: 2.9 GiB is not a multiple of the page size (1 GiB, backing 1G)']);
  assert.deepEqual(problems('guest: 4GiB\nbacking: 4K\nworkload:\n  type: snp-lazy-accept\n  chunk: 5000\n'),
    ['bad.yaml:5: workload.chunk: 4.9 KiB is not a multiple of the page size (4 KiB)']);
  assert.deepEqual(problems('guest: 4 parsecs\nworkload: snp-lazy-accept\n'),
    ["bad.yaml:1: guest: '4 parsecs': unknown size unit 'parsecs' (use KiB, MiB, GiB, TiB)"]);
});

test('values out of range', () => {
  assert.deepEqual(problems('guest: 4GiB\nvcpus: 0\nworkload: snp-lazy-accept\n'), ['bad.yaml:2: vcpus: 0 is out of range [1, 1024]']);
  assert.deepEqual(problems('guest: 8TiB\nworkload: snp-lazy-accept\n'), ['bad.yaml:1: guest: 8 TiB is out of range [2 MiB, 4 TiB]']);
  assert.deepEqual(problems('guest: 4GiB\nvm: sev\nworkload: snp-lazy-accept\n'), ["bad.yaml:2: vm: 'sev' is not one of snp, tdx, pkvm, sw-protected"]);
});

test('missing guest and workload', () => {
  assert.deepEqual(problems('name: x\n'), [
    'bad.yaml: guest: required: the guest memory size, e.g. guest: 4GiB',
    'bad.yaml: workload: required: one of snp-lazy-accept, tdx-boot, pkvm-virtio, dpdk-shared, device-dma',
  ]);
});

test('workload on the wrong VM type', () => {
  assert.deepEqual(problems('guest: 4GiB\nvm: tdx\nworkload:\n  type: snp-lazy-accept\n'),
    ['bad.yaml:4: workload.type: workload snp-lazy-accept runs on vm snp or sw-protected, not tdx']);
});

test('unknown policy knob and value', () => {
  const unknown = problems(`${OK}compare:\n  spilt: [eager, lazy]\n`);
  assert.equal(unknown.length, 1);
  assert.match(unknown[0] as string, /^bad\.yaml:4: compare\.spilt: unknown policy knob 'spilt' \(known: split, merge, atomicity, .*iommu\)$/);
  assert.deepEqual(problems(`${OK}compare:\n  split: [eager, lazzy]\n`),
    ['bad.yaml:4: compare.split[1]: "lazzy" is not one of eager, lazy']);
  assert.deepEqual(problems(`${OK}policy:\n  merge: never\n`),
    ['bad.yaml:4: policy.merge: "never" is not one of eager, on-free']);
});

test('a policy the uapi cannot express is refused by name', () => {
  const p = problems('guest: 4GiB\nbacking: 4K\nuapi: v6.18\nworkload: snp-lazy-accept\ncompare:\n  split: [eager, lazy]\n');
  assert.equal(p.length, 1);
  assert.match(p[0] as string, /^bad\.yaml:6: compare\.split: policy split=lazy: uapi 'v6\.18' has no conversion or HugeTLB, so it cannot express it$/);
});

test('HugeTLB needs an in-place uapi; steps and time exclude each other', () => {
  assert.deepEqual(problems('guest: 4GiB\nbacking: 2M\nuapi: v6.18\nworkload: snp-lazy-accept\n'),
    ['bad.yaml:2: backing: HugeTLB 2M backing needs uapi in-place or rfc-1g (6.18 guest_memfd has no HugeTLB)']);
  assert.deepEqual(problems(`${OK}steps: 10\ntime: 1s\n`), ['bad.yaml:4: time: give steps or time, not both']);
});

test('scenario-wide checks name the parameter', () => {
  assert.deepEqual(problems('guest: 1GiB\nworkload:\n  type: snp-lazy-accept\n  bounce: 1GiB\n'),
    ['bad.yaml:4: workload.bounce: 1 GiB and the per-CPU pages do not fit below 1 GiB']);
  assert.deepEqual(problems('guest: 16GiB\nvm: sw-protected\nworkload: device-dma\n'),
    ['bad.yaml:3: iommu: device-dma needs an IOMMU importer: set iommu: vfio-4k, unmap-remap or refresh']);
  // The device is the model's IOMMU domain, which imports guest_memfd files: 6.18's shared memory is not one.
  assert.deepEqual(problems('guest: 4GiB\nbacking: 4K\nuapi: v6.18\niommu: refresh\nworkload: snp-lazy-accept\n'),
    ["bad.yaml:4: iommu: the model's IOMMU domains import guest_memfd files; uapi 'v6.18' keeps shared memory outside guest_memfd (use in-place or rfc-1g)"]);
});

test('YAML syntax errors carry their line', () => {
  const p = problems('guest: 4GiB\nworkload: snp-lazy-accept\ncompare:\n  split: [eager, lazy\n');
  assert.equal(p.length, 1);
  assert.match(p[0] as string, /^bad\.yaml:\d+: yaml: /);
  assert.deepEqual(problems('guest: 4GiB\nguest: 8GiB\nworkload: snp-lazy-accept\n').map((s) => s.split(': ').slice(0, 2).join(': ')), ['bad.yaml:2: yaml']);
  assert.deepEqual(problems('- guest: 4GiB\n'), ['bad.yaml:1: (top level): a scenario is a mapping of fields (name: ..., guest: ...)']);
});

test('command-line overrides are checked and named by their option', () => {
  assert.deepEqual(problems(OK, [{ path: 'steps', value: '0', origin: '--steps 0' }]),
    ['<command line>: steps (--steps 0): 0 is out of range [1, 100000000]']);
  assert.deepEqual(problems(OK, [{ path: 'compare.split', value: ['eager', 'sometimes'], origin: '--compare split=eager,sometimes' }]),
    ['<command line>: compare.split[1] (--compare split=eager,sometimes): "sometimes" is not one of eager, lazy']);
  const sc = parseScenario(`${OK}compare:\n  merge: [eager, on-free]\n`, 'x.yaml', [
    { path: 'compare.split', value: ['eager', 'lazy'], origin: '--compare split=eager,lazy' },
    { path: 'workload.chunk', value: '2MiB', origin: '--set workload.chunk=2MiB' },
    { path: 'seed', value: '7', origin: '--seed 7' },
  ]);
  assert.deepEqual(sc.compare, [{ knob: 'split', values: ['eager', 'lazy'] }]);
  assert.equal(sc.params.chunk, 2 ** 21);
  assert.equal(sc.seed, 7);
});

test('compare is a cartesian product', () => {
  const sc = parseScenario(`${OK}policy:\n  atomicity: per-huge-page\ncompare:\n  split: [eager, lazy]\n  merge: [eager, on-free]\n`, 'x.yaml');
  assert.deepEqual(policyCombos(sc.policy, sc.compare), [
    { atomicity: 'per-huge-page', split: 'eager', merge: 'eager' },
    { atomicity: 'per-huge-page', split: 'eager', merge: 'on-free' },
    { atomicity: 'per-huge-page', split: 'lazy', merge: 'eager' },
    { atomicity: 'per-huge-page', split: 'lazy', merge: 'on-free' },
  ]);
});
