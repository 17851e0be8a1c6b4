/**
 * What the simulator itself counts (the VMM, the host actors, the device on top of the model's IOMMU), next to what
 * the model counts (ModelMetrics). All cumulative; deterministic for a seed.
 */
export class SimCounters {
  /** Conversion requests the VMM handled (hypercall, memory-fault exit or its own). */
  conversions_requested = 0;
  /** ... that succeeded (including kernel no-ops), failed with EAGAIN at least once, gave up. */
  conversions_done = 0;
  conversions_noop = 0;
  conversions_eagain = 0;
  conversions_failed = 0;
  /** EAGAIN returns seen (a request may see several before it succeeds). */
  eagain_returns = 0;
  /** Long-term references the VMM asked their owners to drop after EAGAIN. */
  ref_drops = 0;
  /** Pages whose private/shared state changed (VMM's view). */
  pages_converted = 0;
  /** KVM_EXIT_MEMORY_FAULT exits answered with an implicit conversion ... */
  implicit_conversions = 0;
  /** ... of which with KVM_MEMORY_EXIT_FLAG_PRIVATE (a private access to a shared page: →private). */
  implicit_to_private = 0;
  hypercall_exits = 0;
  ucall_exits = 0;
  kvm_runs = 0;
  /** Accept sweeps (KVM_PRE_FAULT_MEMORY calls) and their failures. */
  prefaults = 0;
  prefault_errors = 0;
  punches = 0;
  /** Host user space (device model, vhost-user): buffer accesses, SIGBUS, lost contents. */
  host_io = 0;
  host_sigbus = 0;
  content_lost = 0;
  host_pins = 0;
  /** The assigned device: DMAs issued (the pages that found no IOPTE are the model's dma_faults). */
  dma_ops = 0;
  /** DMAs in flight over a huge IOPTE the model's 'unmap-remap' took down and put back (a window). */
  dma_gap_hits = 0;
  /** IOPTEs left over private memory after a →private conversion (TDX: machine check; SNP: RMP fault). */
  iommu_private_exposure = 0;
  /** Workload events (steps) done. */
  events = 0;
}

export type SimCounterName = keyof SimCounters;
