import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/lib/rng.js';

test('Rng: same seed, same sequence; different seeds differ; below() stays in range', () => {
  const a = new Rng(123);
  const b = new Rng(123);
  const c = new Rng(124);
  const xs = Array.from({ length: 100 }, () => a.u32());
  assert.deepEqual(xs, Array.from({ length: 100 }, () => b.u32()));
  assert.notDeepEqual(xs, Array.from({ length: 100 }, () => c.u32()));
  const r = new Rng(5);
  for (let i = 0; i < 10000; i++) {
    const v = r.below(7);
    assert.ok(Number.isInteger(v) && v >= 0 && v < 7);
  }
});
