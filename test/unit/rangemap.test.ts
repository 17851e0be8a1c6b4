/** The range map against a plain array, on seeded random stores and queries. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RangeMap } from '../../src/lib/rangemap.js';
import { Rng } from '../../src/lib/rng.js';

test('RangeMap agrees with a per-index array and stays merged', () => {
  const rng = new Rng(7);
  for (let trial = 0; trial < 150; trial++) {
    const n = 1 + rng.below(300);
    const m = new RangeMap<number>(n, 0);
    const a = new Array<number>(n).fill(0);
    for (let op = 0; op < 200; op++) {
      const s = rng.below(n);
      const e = s + 1 + rng.below(n - s);
      const v = rng.below(3);
      m.set(s, e, v);
      a.fill(v, s, e);
      m.checkWellFormed('trial');
      const q = rng.below(n);
      assert.equal(m.get(q), a[q]);
      const qs = rng.below(n);
      const qe = qs + 1 + rng.below(n - qs);
      const slice = a.slice(qs, qe);
      const u = m.uniform(qs, qe);
      assert.equal(u.found, slice.every((x) => x === slice[0]));
      if (u.found) assert.equal(u.value, slice[0]);
      assert.equal(m.countNotEqual(qs, qe, 1), slice.filter((x) => x !== 1).length);
      const first = slice.indexOf(2);
      assert.equal(m.firstEqual(qs, qe, 2), first < 0 ? -1 : qs + first);
    }
    let runs = 0;
    for (let i = 0; i < n; i++) if (i === 0 || a[i] !== a[i - 1]) runs++;
    assert.equal(m.nr_ranges, runs);
    const flat: number[] = [];
    for (const r of m.all()) for (let i = r.start; i < r.end; i++) flat.push(r.value);
    assert.deepEqual(flat, a);
  }
});

test('RangeMap over 2^28 pages: 40,000 ranges, then one store over everything', () => {
  const pages = 2 ** 28; // 1 TiB of 4 KiB pages
  const m = new RangeMap<number>(pages, 0);
  for (let i = 0; i < 20000; i++) m.set(i * 2, i * 2 + 1, 8);
  assert.equal(m.nr_ranges, 40000); // 20,000 private pages, 20,000 shared gaps (the last runs to the end)
  m.set(0, pages, 0);
  assert.equal(m.nr_ranges, 1);
  assert.ok(m.allEqual(0, pages, 0));
});
