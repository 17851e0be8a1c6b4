/**
 * IOMMU importers of a guest_memfd (src/iommu/domain.ts): shared pages only, IOPTE levels that
 * follow folio and shareability, and the three designs around a conversion and a punch.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { modelKernel, expectErrno } from '../lib/harness.js';
import {
  GUEST_MEMFD_FLAG_HUGETLB, GUEST_MEMFD_FLAG_MMAP, KVM_CREATE_GUEST_MEMFD, KVM_CREATE_VM, KVM_SET_MEMORY_ATTRIBUTES2,
  KVM_X86_SW_PROTECTED_VM,
} from '../../src/uapi/kvm.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, O_RDWR } from '../../src/uapi/linux.js';
import type { ImportMode } from '../../src/iommu/domain.js';

const M2 = 2 ** 21;
const IOVA = 2 ** 30;

/**
 * Lazy splitting keeps a uniformly shared block's folio whole, so a device can map it at 2M (eager
 * splits any block with a shared page at allocation: 4K IOPTEs only).
 */
function setup(mode: ImportMode, split: 'eager' | 'lazy' = 'lazy') {
  const k = modelKernel({ uapi: 'in-place', hugepages: { '2M': 4 }, memoryBytes: 64 * 2 ** 20, policy: { split } });
  const vm = k.ioctl(k.open('/dev/kvm', O_RDWR), KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
  const gmem = k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: 2 * M2, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_HUGETLB, page_order: 9 });
  const convert = (offset: number, size: number, to_private: boolean) =>
    k.ioctl(gmem, KVM_SET_MEMORY_ATTRIBUTES2, { offset, size, attributes: to_private ? 8 : 0, flags: 0 });
  convert(0, M2, false); // the first 2M is a shared DMA pool
  const d = k.iommuCreateDomain(mode);
  return { k, gmem, d, convert };
}

test('a private page cannot be mapped; a shared pool maps at 2M unless pinned (4K)', () => {
  for (const mode of ['pin', 'unmap-remap', 'refresh'] as const) {
    const { k, gmem, d } = setup(mode);
    expectErrno('EFAULT', () => k.iommuMapFile(d, gmem, M2, 4096, IOVA), 'private page');
    k.iommuMapFile(d, gmem, 0, M2, IOVA);
    assert.deepEqual(k.metrics().iommu_pages, mode === 'pin' ? { '4k': 512, '2m': 0, '1g': 0 } : { '4k': 0, '2m': 512, '1g': 0 });
    k.dma(d, IOVA + 100, 3, new Uint8Array([1, 2, 3]));
    assert.deepEqual([...k.dma(d, IOVA + 100, 3).bytes], [1, 2, 3]);
  }
  const eager = setup('refresh', 'eager');
  eager.k.iommuMapFile(eager.d, eager.gmem, 0, M2, IOVA);
  assert.deepEqual(eager.k.metrics().iommu_pages, { '4k': 512, '2m': 0, '1g': 0 }, 'eager: a shared block is 4K folios');
});

test('converting one 4K page of the pool: pin blocks it (EAGAIN), unmap-remap opens a window, refresh is hitless', () => {
  {
    const { k, gmem, d, convert } = setup('pin');
    k.iommuMapFile(d, gmem, 0, M2, IOVA);
    expectErrno('EAGAIN', () => convert(8192, 4096, true), 'a page the IOMMU pins');
    k.iommuUnmapFile(d, 0);
    convert(8192, 4096, true);
  }
  for (const mode of ['unmap-remap', 'refresh'] as const) {
    const { k, gmem, d, convert } = setup(mode);
    k.iommuMapFile(d, gmem, 0, M2, IOVA);
    k.dma(d, IOVA, 1, new Uint8Array([7]));
    convert(8192, 4096, true);
    const dom = k.state.iommus.get(d);
    assert.ok(dom !== undefined);
    // The 2M IOPTE went; the 511 pages that stay shared are mapped again at 4K.
    assert.deepEqual(k.metrics().iommu_pages, { '4k': 511, '2m': 0, '1g': 0 });
    assert.equal(dom.window_pages, mode === 'unmap-remap' ? 511 : 0);
    assert.equal(k.dma(d, IOVA + 8192, 1).faulted_pages, 1, 'the private page is unreachable');
    assert.deepEqual([...k.dma(d, IOVA, 1).bytes], [7], 'a neighbour keeps its contents');
    convert(8192, 4096, false);
    assert.equal(k.dma(d, IOVA + 8192, 1).faulted_pages, 0, 'mapped again after →shared');
  }
});

test('a punch under the device: unmap-remap revokes the area, refresh installs the new pages, pins make it EAGAIN', () => {
  const results: Record<string, number[]> = {};
  for (const mode of ['pin', 'unmap-remap', 'refresh'] as const) {
    const { k, gmem, d } = setup(mode);
    k.iommuMapFile(d, gmem, 0, M2, IOVA);
    k.dma(d, IOVA, 1, new Uint8Array([9]));
    if (mode === 'pin') {
      // The pinned pages split the block; freeing it needs a merge, which the pins forbid.
      expectErrno('EAGAIN', () => k.fallocate(gmem, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, M2), 'punch under pins');
      results[mode] = [0, k.dma(d, IOVA, 1).bytes[0] ?? -1];
      continue;
    }
    k.fallocate(gmem, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, M2);
    const r = k.dma(d, IOVA, 1);
    results[mode] = [r.faulted_pages, r.bytes[0] ?? -1];
  }
  assert.deepEqual(results, {
    pin: [0, 9], // the punch failed (EAGAIN): the device still sees its data
    'unmap-remap': [1, 0], // revoked: DMA faults
    refresh: [0, 0], // the file's fresh zeroed page
  });
});

test('refresh re-merges: a block uniformly shared again gets its 2M IOPTE back; unmap-remap does not', () => {
  for (const [mode, expect] of [['refresh', { '4k': 0, '2m': 512, '1g': 0 }], ['unmap-remap', { '4k': 512, '2m': 0, '1g': 0 }]] as const) {
    const { k, gmem, d, convert } = setup(mode);
    k.iommuMapFile(d, gmem, 0, M2, IOVA);
    convert(8192, 4096, true);
    assert.deepEqual(k.metrics().iommu_pages, { '4k': 511, '2m': 0, '1g': 0 });
    convert(8192, 4096, false);
    assert.deepEqual(k.metrics().iommu_pages, expect, mode);
  }
});

test('a punch of private pages does not revoke an unmap-remap area', () => {
  const { k, gmem, d } = setup('unmap-remap');
  k.iommuMapFile(d, gmem, 0, M2, IOVA);
  k.fallocate(gmem, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, M2, M2); // the private second 2M
  assert.equal(k.dma(d, IOVA, 1).faulted_pages, 0);
});
