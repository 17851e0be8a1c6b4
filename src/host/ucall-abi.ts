/**
 * How host guest code passes a ucall to user space (the x86-64 ABI that guest-codegen.ts emits
 * and kvm-run.ts decodes):
 *
 *   args[i] in UCALL_ARG_REGS[i] (rdi, rsi, r8, r9, r10, r11, r12, r13),
 *   eax = the number of args, then `out dx, eax` with dx = UCALL_PIO_PORT.
 *
 * KVM_RUN returns KVM_EXIT_IO (OUT, size 4, count 1) with the count in the PIO data, and the
 * registers reach user space through the kvm_run page's sync-regs area (kvm_valid_regs has
 * KVM_SYNC_X86_REGS, which the loader sets). So the whole ucall is read from kvm_run alone,
 * in one exit, with no guest memory shared for the purpose.
 */

/** Indices into struct kvm_regs (rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8..r15, rip, rflags). */
export const KVM_REGS_INDEX = {
  rax: 0, rbx: 1, rcx: 2, rdx: 3, rsi: 4, rdi: 5, rsp: 6, rbp: 7,
  r8: 8, r9: 9, r10: 10, r11: 11, r12: 12, r13: 13, r14: 14, r15: 15, rip: 16, rflags: 17,
} as const;
export type GprName = Exclude<keyof typeof KVM_REGS_INDEX, 'rip' | 'rflags'>;
export const KVM_REGS_SIZE_BYTES = 18 * 8;

export const UCALL_ARG_REGS: readonly GprName[] = ['rdi', 'rsi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13'];
export const UCALL_MAX_ARGS = UCALL_ARG_REGS.length;
