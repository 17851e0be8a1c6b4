/**
 * How guest code talks to the VMM beyond conversions. Conversions use the real exits
 * (KVM_HC_MAP_GPA_RANGE hypercall exits, KVM_EXIT_MEMORY_FAULT); everything else a guest does
 * that the host sees is a doorbell, modelled as a ucall (KVM_EXIT_IO on the model's ucall port),
 * as a virtio kick is a PIO/MMIO exit. args[0] is the code below.
 */
export const UC_BOOT_DONE = 1;
/** [UC_ACCEPT, gpa, size, level]: the guest's accept sweep (SNP PVALIDATE, TDX TDG.MEM.PAGE.ACCEPT). */
export const UC_ACCEPT = 2;
/** [UC_HOST_IO, gpa, size, dir]: a virtio kick; the host device model reads the buffer (checking the
 * guest's tag) or fills it (writing a fresh tag the guest checks). */
export const UC_HOST_IO = 3;
/** [UC_DMA, gpa, size]: the assigned device DMAs into the buffer through the IOMMU. */
export const UC_DMA = 4;
/** [UC_EVENT]: one workload event (step) is done. */
export const UC_EVENT = 5;
/** [UC_HOST_PIN, gpa, size]: host user space (vhost-user/DPDK) maps and pins a buffer long-term. */
export const UC_HOST_PIN = 6;
/** [UC_HOST_UNPIN, gpa, size]: host user space lets go of buffers in a range. */
export const UC_HOST_UNPIN = 7;
/** [UC_PUNCH, gpa, size]: the guest gives memory back (balloon / free page reporting): the VMM punches it. */
export const UC_PUNCH = 8;

/** UC_HOST_IO directions. */
export const IO_HOST_READS = 0;
export const IO_HOST_WRITES = 1;
