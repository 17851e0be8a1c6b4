/**
 * gmem diff: the model and the host agree on thousands of random calls (where /dev/kvm is there),
 * and the machinery that reports a divergence works (shown on an injected one, on any machine).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { asTest, compareOnce, modelForDiff, runDiff, shrink } from '../../src/diff/diff.js';
import { modelGuestRunner } from '../../src/diff/exec.js';
import { randomProgram } from '../../src/diff/program.js';
import { parseDiffArgs } from '../../src/cli/diff.js';
import { EINVAL } from '../../src/uapi/errno.js';
import { SyscallError } from '../../src/uapi/errors.js';
import { KVM_CREATE_GUEST_MEMFD } from '../../src/uapi/kvm.js';
import type { Syscalls } from '../../src/uapi/syscalls.js';
import { diffBackends } from '../lib/diff-backends.js';

test('gmem diff: model and host agree on at least 2,000 compared calls', async (t) => {
  const b = await diffBackends();
  if (b === null) return t.skip('host backend unavailable (no /dev/kvm or no native helper): nothing to compare against');
  const r = runDiff(b, 1, 20, 200);
  if (r.divergence !== null) assert.fail(`divergence:\n${asTest(r.divergence, 1)}`);
  console.log(`# gmem diff: ${r.compared} calls compared over ${r.programs} programs`);
  assert.ok(r.compared >= 2000, `only ${r.compared} calls compared`);
});

/** A model that deliberately answers EINVAL to one guest_memfd size: a divergence to find and shrink. */
function brokenModel(): Syscalls {
  const k = modelForDiff();
  const ioctl = k.ioctl.bind(k);
  k.ioctl = (fd, request, arg) => {
    const r = ioctl(fd, request, arg);
    if (request === KVM_CREATE_GUEST_MEMFD && (arg as { size: number }).size === 16 * 4096) {
      k.close(r);
      throw new SyscallError(EINVAL, 'ioctl(KVM_CREATE_GUEST_MEMFD)', 'injected');
    }
    return r;
  };
  return k;
}

test('gmem diff finds an injected divergence, shrinks it to a minimal program and prints a test', () => {
  // The reference side is the real model, the other a model with one wrong answer: runs anywhere.
  const b = { model: modelForDiff, host: brokenModel(), hostGuest: modelGuestRunner };
  let found = null;
  for (let seed = 1; seed < 200 && found === null; seed++) {
    const r = compareOnce(b, randomProgram(seed, 200));
    if (r.div !== null) found = r.div;
  }
  assert.ok(found !== null, 'no program created a 64 KiB guest_memfd');
  const small = shrink(b, found);
  // Minimal: a VM and the one creation that diverges.
  assert.deepEqual(small.program.map((op) => op.op), ['create_vm', 'create_gmem']);
  assert.equal(small.model, 'ok');
  assert.equal(small.host, 'errno EINVAL');
  const text = asTest(small, 5);
  assert.match(text, /compareOnce\(b, program\)/);
  assert.match(text, /"op":"create_gmem"/);
});

test('gmem diff: same seed, same program', () => {
  assert.deepEqual(randomProgram(42, 300), randomProgram(42, 300));
  assert.notDeepEqual(randomProgram(42, 300), randomProgram(43, 300));
});

test('gmem diff: bad options are refused with a message', () => {
  assert.equal(typeof parseDiffArgs(['--seed', 'x']), 'string');
  assert.equal(typeof parseDiffArgs(['--bogus', '1']), 'string');
  assert.equal(typeof parseDiffArgs(['--programs', '0']), 'string');
  assert.deepEqual(parseDiffArgs(['--seed', '9', '--ops', '10']), { seed: 9, programs: 20, ops: 10, json: false });
});
