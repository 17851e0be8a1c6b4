/**
 * What the model counts, for the simulator's reports: a snapshot taken at any time. Counters are
 * cumulative since the kernel was created; gauges are the state now.
 */
export interface ModelMetrics {
  /** Guest memory mapped in stage-2 (all VMs), in 4 KiB pages, by level. Gauge. */
  stage2_pages: { '4k': number; '2m': number; '1g': number };
  /** Guest memory mapped in IOMMU domains, in 4 KiB pages, by level. Gauge. */
  iommu_pages: { '4k': number; '2m': number; '1g': number };
  /** HugeTLB folios: whole vs split, per size. Gauge. */
  huge_folios: { whole_2m: number; split_2m: number; whole_1g: number; split_1g: number };
  /** Order-0 folios from the page allocator. Gauge. */
  order0_folios: number;
  /** Folio splits and merges, and the vmemmap (HVO) pages they allocated / freed. Counters. */
  splits: number;
  merges: number;
  vmemmap_pages_allocated: number;
  vmemmap_pages_freed: number;
  /** vmemmap pages held now for split HugeTLB folios. Gauge. */
  vmemmap_pages_in_use: number;
  /** Conversion requests: done (incl. no-ops), failed with EAGAIN, failed otherwise. Counters. */
  conversions_done: number;
  conversions_eagain: number;
  conversions_failed: number;
  /** Pages whose shareability changed. Counter. */
  pages_converted: number;
  /** KVM invalidations (begin/end pairs), leaves zapped, remote TLB flushes. Counters. */
  invalidations: number;
  zapped_leaves: number;
  tlb_flushes: number;
  /** Stage-2 faults handled, host user faults, SIGBUS delivered. Counters. */
  guest_faults: number;
  host_faults: number;
  sigbus: number;
  /** DMA that met an unmapped IOVA. Counter. */
  dma_faults: number;
  /** Model memory: bytes of JS heap the model's own structures hold (typed arrays, slabs). Gauge. */
  model_bytes: number;
}
