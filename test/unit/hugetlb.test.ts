/** HugeTLB pool accounting and O(1) split/merge, at the mm level. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PhysMem } from '../../src/mm/memmap.js';
import type { Pfn } from '../../src/lib/types.js';

test('subpool reservation, allocation, free and destroy follow mm/hugetlb.c', () => {
  const phys = new PhysMem(64 * 2 ** 20, { '2M': 4 });
  const h = phys.hugetlb;
  assert.ok(h !== null);
  const hs = h.hstate(9);
  assert.ok(hs !== undefined);
  assert.deepEqual([hs.nr, hs.free, hs.resv], [4, 4, 0]);
  assert.equal(h.createSubpool(9, 5), null, 'a pool of 4 cannot reserve 5');
  const sp = h.createSubpool(9, 2);
  assert.ok(sp !== null);
  assert.deepEqual([hs.free, hs.resv], [4, 2]);
  const head = h.allocFolio(sp) as Pfn;
  assert.deepEqual([hs.free, hs.resv, sp.used], [3, 1, 1]);
  phys.put(head);
  assert.deepEqual([hs.free, hs.resv, sp.used], [4, 2, 0]);
  h.destroySubpool(sp);
  assert.deepEqual([hs.free, hs.resv], [4, 0]);
});

test('a 1 GiB split and merge cost O(1) and account 4,095 vmemmap pages', () => {
  const phys = new PhysMem(4 * 2 ** 30, { '1G': 1 });
  const h = phys.hugetlb;
  assert.ok(h !== null);
  const sp = h.createSubpool(18, 1);
  assert.ok(sp !== null);
  const head = h.allocFolio(sp) as Pfn;
  phys.get(head, 262144 - 1); // the page cache's references
  const before = phys.nr_buddy_used;
  assert.ok(h.split(head));
  assert.equal(phys.nr_buddy_used - before, 4095);
  assert.equal(phys.refcount((head + 1000) as Pfn), 1, 'a default subpage holds its cache reference');
  phys.pinFolio((head + 7) as Pfn);
  assert.equal(h.mergeable(head), false);
  assert.equal(h.firstBusySubpage(head, 0, 262144), 7);
  phys.unpinFolio((head + 7) as Pfn);
  assert.ok(h.mergeable(head));
  h.merge(head);
  assert.equal(phys.nr_buddy_used, before);
  assert.deepEqual([h.splits, h.merges, h.vmemmap_in_use], [1, 1, 0]);
});

test('eviction of a split folio frees what nobody holds; a pinned page returns the huge page later', () => {
  const phys = new PhysMem(64 * 2 ** 20, { '2M': 1 });
  const h = phys.hugetlb;
  assert.ok(h !== null);
  const hs = h.hstate(9);
  const sp = h.createSubpool(9, 1);
  assert.ok(sp !== null && hs !== undefined);
  const head = h.allocFolio(sp) as Pfn;
  phys.get(head, 511);
  assert.ok(h.split(head));
  phys.contents.write((head + 3) as Pfn, 0, new Uint8Array([0xaa]), 0, 1);
  phys.contents.write((head + 9) as Pfn, 0, new Uint8Array([0xbb]), 0, 1);
  phys.pinFolio((head + 3) as Pfn);
  h.evictSplit(head);
  h.destroySubpool(sp);
  assert.equal(hs.free, 0, 'the pinned subpage keeps the huge page out of the pool');
  assert.equal(phys.contents.peek((head + 9) as Pfn), null, 'freed subpages are zeroed');
  assert.equal(phys.contents.peek((head + 3) as Pfn)?.[0], 0xaa, 'the pinned page keeps its data');
  phys.unpinFolio((head + 3) as Pfn);
  assert.deepEqual([hs.free, hs.resv, h.vmemmap_in_use], [1, 0, 0]);
  assert.equal(phys.contents.nr_written_pages, 0);
});
