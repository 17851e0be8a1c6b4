/**
 * Issue 3's figures: conversion cost per range (ranges, not pages), against a per-page baseline;
 * create of a 1 TiB file in each default state; split + merge of a 1 GiB folio.
 */
import { createModelKernel, type ModelKernel } from '../src/kernel/model-kernel.js';
import { FALLOC_FL_KEEP_SIZE, O_RDWR } from '../src/uapi/linux.js';
import {
  GUEST_MEMFD_FLAG_HUGETLB, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_CREATE_GUEST_MEMFD, KVM_CREATE_VM,
  KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_SET_MEMORY_ATTRIBUTES2, KVM_X86_SW_PROTECTED_VM,
} from '../src/uapi/kvm.js';
import { best, bestInterleaved, type Figure, rate } from './lib.js';

const GiB = 2 ** 30;
const TiB = 2 ** 40;


function swVm(k: ModelKernel): number {
  return k.ioctl(k.open('/dev/kvm', O_RDWR), KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
}

/** Convert [offset, offset + size) of `fd`; the struct is reused, as a VMM would. */
function converter(k: ModelKernel, fd: number): (offset: number, size: number, to_private: boolean) => void {
  const a = { offset: 0, size: 0, attributes: 0, flags: 0 };
  return (offset, size, to_private) => {
    a.offset = offset;
    a.size = size;
    a.attributes = to_private ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
    k.ioctl(fd, KVM_SET_MEMORY_ATTRIBUTES2, a);
  };
}

export function conversionBench(): Figure[] {
  const out: Figure[] = [];
  const flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
  // 4 KiB conversions on a 64 GiB file: every call changes state. Target case: pages cycle
  // through a window of 1,024 places spread over the file (up to ~2,000 ranges in the map).
  // Beside it, the fragmented case: 200,000 pages left private, 400,000 ranges in the map.
  {
    const k = createModelKernel({ uapi: 'in-place', memoryBytes: 128 * GiB });
    const vm = swVm(k);
    const fd = k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: 64 * GiB, flags });
    const conv = converter(k, fd);
    const N = 200_000;
    const stride = 4096 * 8;
    const WINDOW = 1024;
    const spread = (i: number): number => (i % WINDOW) * 64 * 2 ** 20 + 4096;
    const cycle = (): number => rate(N, (i) => {
      conv(spread(i), 4096, true);
      conv(spread(i), 4096, false);
    }) * 2;
    cycle();
    out.push({ name: 'convert 4KiB of 64GiB gmem, no folios', value: best(3, cycle), unit: 'ops/s', target: '≥ 1,000,000' });
    for (let i = 0; i < WINDOW; i++) k.fallocate(fd, FALLOC_FL_KEEP_SIZE, spread(i), 4096);
    out.push({ name: 'convert 4KiB of 64GiB gmem, 4K folios present', value: best(3, cycle), unit: 'ops/s', target: '≥ 300,000' });
    const k3 = createModelKernel({ uapi: 'in-place', memoryBytes: 128 * GiB });
    const conv3 = converter(k3, k3.ioctl(swVm(k3), KVM_CREATE_GUEST_MEMFD, { size: 64 * GiB, flags }));
    rate(N, (i) => conv3(i * stride, 4096, true));
    const frag = rate(N, (i) => conv3(i * stride + 4096, 4096, true));
    out.push({ name: 'convert 4KiB with 400,000 ranges in the map (fragmented)', value: frag, unit: 'ops/s', target: 'informational' });

    // A whole 1 GiB range, no folios, beside a 4 KiB one, and a per-page baseline (an entry per
    // page, as KVM's per-page attribute xarray kept them).
    const k2 = createModelKernel({ uapi: 'in-place', memoryBytes: 128 * GiB });
    const fd2 = k2.ioctl(swVm(k2), KVM_CREATE_GUEST_MEMFD, { size: 64 * GiB, flags });
    const conv2 = converter(k2, fd2);
    const M = 20_000;
    // Each call flips a range and the next flips it back: to private, then to shared.
    const gig = best(3, () => rate(M, (i) => conv2((i % 60) * GiB, GiB, i % 2 === 0)));
    const small = best(3, () => rate(M, (i) => conv2((i % 60) * GiB, 4096, i % 2 === 0)));
    out.push({ name: 'convert 1GiB range', value: gig, unit: 'ops/s' });
    out.push({ name: 'convert 1GiB / convert 4KiB cost ratio', value: small / gig, unit: 'x', target: '≤ 2' });
    const baseline = perPageBaselineRate(20);
    out.push({ name: 'per-page baseline: convert 1GiB (a map entry per page)', value: baseline, unit: 'ops/s' });
    out.push({ name: 'range map vs per-page baseline, 1GiB conversion', value: gig / baseline, unit: 'x' });
  }
  // create + close of a 1 TiB file, private (default) and shared (INIT_SHARED), vs 4 KiB.
  {
    const k = createModelKernel({ uapi: 'in-place' });
    const vm = swVm(k);
    const N = 50_000;
    const cc = (size: number, f: number) => () => k.close(k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size, flags: f }));
    rate(5000, cc(4096, 0));
    const [small, priv, shared] = bestInterleaved(5, [
      () => rate(N, cc(4096, GUEST_MEMFD_FLAG_MMAP)), () => rate(N, cc(TiB, GUEST_MEMFD_FLAG_MMAP)), () => rate(N, cc(TiB, flags)),
    ]) as [number, number, number];
    out.push({ name: 'in-place create+close 1TiB private / 4KiB rate', value: priv / small, unit: 'x', target: '≈ 1' });
    out.push({ name: 'in-place create+close 1TiB shared / 4KiB rate', value: shared / small, unit: 'x', target: '≈ 1' });
  }
  // Split of a 1 GiB folio to 4K and merge back, through the conversion path (4 KiB to shared
  // splits, back to private merges), and the mechanism alone.
  {
    const k = createModelKernel({ uapi: 'in-place', memoryBytes: 4 * GiB, hugepages: { '1G': 1 } });
    const vm = swVm(k);
    const fd = k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: GiB, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_HUGETLB, page_order: 18 });
    k.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, GiB);
    const conv = converter(k, fd);
    const N = 20_000;
    const pairs = rate(N, (i) => {
      conv((i % 1024) * 4096, 4096, false);
      conv((i % 1024) * 4096, 4096, true);
    });
    const m = k.metrics();
    if (m.splits < N || m.merges < N) throw new Error(`bench: expected ${N} splits and merges, got ${m.splits}/${m.merges}`);
    out.push({ name: '1GiB folio split to 4K + merge back (via 4KiB conversions)', value: pairs, unit: 'pairs/s', target: '≥ 10,000' });
  }
  return out;
}

/** The per-page design: a Map entry per page, set and cleared page by page. */
function perPageBaselineRate(n: number): number {
  const attrs = new Map<number, number>();
  const pages = GiB / 4096;
  return 2 / (1 / rate(n, (i) => {
    const base = (i % 60) * pages;
    for (let p = 0; p < pages; p++) attrs.set(base + p, KVM_MEMORY_ATTRIBUTE_PRIVATE);
  }) + 1 / rate(n, (i) => {
    const base = (i % 60) * pages;
    for (let p = 0; p < pages; p++) attrs.delete(base + p);
  }));
}
