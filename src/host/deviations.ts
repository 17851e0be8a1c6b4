/**
 * Known deviations of a backend from upstream Linux 6.18, declared once, by name, with their
 * evidence. A case affected by a deviation asserts the deviating behaviour explicitly on that
 * backend (never "anything goes"), and asserts upstream behaviour everywhere else.
 */

export interface Deviation {
  /** The name cases and docs/conformance-matrix.md refer to. */
  readonly name: string;
  /** The backend that deviates. */
  readonly backend: 'model' | 'host';
  /** The inventory rows it affects. */
  readonly rows: readonly string[];
  /** What upstream does (and what the model, which follows upstream TDP semantics, does). */
  readonly upstream: string;
  /** What the deviating backend does instead. */
  readonly observed: string;
  /** Where it was observed. */
  readonly evidence: string;
}

/**
 * The host (Linux 6.18.44 under Firecracker, out-of-tree kvm_pvm with shadow paging) does not
 * serve guest accesses to a guest_memfd slot whose userspace_addr is NULL from guest_memfd: it
 * emulates the access through the hva and exits to user space with KVM_EXIT_MMIO.
 */
export const HOST_PVM_GMEM_NULL_UADDR_MMIO: Deviation = {
  name: 'HOST_PVM_GMEM_NULL_UADDR_MMIO',
  backend: 'host',
  rows: ['§5 row 70', '§5 row 73', '§4.1 #16 test_guest_memfd_guest'],
  upstream:
    'row 70 / §4.1 #16: a slot bound to a guest_memfd created with GUEST_MEMFD_FLAG_MMAP is GMEM_ONLY, every guest ' +
    'fault is served from guest_memfd (upstream-linux.md 2E.9 and 2E.13): the guest reads the data the host wrote ' +
    'through its gmem mmap and the host sees the guest\'s writes; userspace_addr (NULL) is never used for the ' +
    'fault. row 73: a gmem without MMAP on a default VM is never consulted for shared faults, the fault goes ' +
    'through userspace_addr 0, which maps nothing: KVM_RUN fails with EFAULT and a KVM_EXIT_MEMORY_FAULT exit ' +
    'with flags 0 (2I.5). The model implements both (TDP semantics).',
  observed:
    'KVM_RUN returns 0 with exit_reason KVM_EXIT_MMIO (6) at the slot\'s first gpa, for MMAP|INIT_SHARED, for ' +
    'MMAP-only and after fallocate (row 70), and for a gmem with flags 0 (row 73): kvm_pvm emulates the access ' +
    'through the hva, and hva 0 has no mapping.',
  evidence:
    'upstream-linux.md §5 rows 70 and 73 (empirical, Linux 6.18.44 under Firecracker, kvm_pvm backend, ' +
    'tdp_mmu = N, no vmx/svm): "KVM_EXIT_MMIO at gpa 0x400000 (6), not gmem data. PVM emulates through the hva, so ' +
    'the upstream test_guest_memfd_guest would fail on this host".',
};

/**
 * KVM_PRE_FAULT_MEMORY on a VM without any memslot: the host's shadow-paging MMU has no page budget
 * yet and fails the MMU reload that precedes the "no TDP" check.
 */
export const HOST_PVM_PREFAULT_NO_MEMSLOT_ENOSPC: Deviation = {
  name: 'HOST_PVM_PREFAULT_NO_MEMSLOT_ENOSPC',
  backend: 'host',
  rows: ['§5b last line', '§5 row 64'],
  upstream:
    'with TDP (KVM_CAP_PRE_FAULT_MEMORY = 1, the model): a gpa without a memslot is emulated MMIO, the call fails ' +
    'with ENOENT and the range is unchanged (2J.4); without TDP the call answers EOPNOTSUPP (row 64).',
  observed: 'ENOSPC while the VM has no memslot at all; EOPNOTSUPP once one slot exists (row 64).',
  evidence: 'upstream-linux.md §5b: "Host artifact, not upstream behaviour: KVM_PRE_FAULT_MEMORY on a VM with no ' +
    'memslot at all answers ENOSPC (shadow-paging MMU with no page budget yet)".',
};

export const DEVIATIONS: readonly Deviation[] = [HOST_PVM_GMEM_NULL_UADDR_MMIO, HOST_PVM_PREFAULT_NO_MEMSLOT_ENOSPC];
