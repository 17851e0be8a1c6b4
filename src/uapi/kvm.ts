/**
 * KVM and guest_memfd uAPI constants, under their kernel names and with the kernel's values
 * (include/uapi/linux/kvm.h, Linux 6.18, plus the two conversion proposals; see
 * shared/spec/upstream-linux.md §1 and in-place-conversion-and-hugetlb.md §1).
 */
import { IO, IOW, IOWR } from './ioctl.js';

export const KVMIO = 0xae;
export const KVM_API_VERSION = 12;

// ---- /dev/kvm and VM ioctls -------------------------------------------------------------------
export const KVM_GET_API_VERSION = IO(KVMIO, 0x00);
export const KVM_CREATE_VM = IO(KVMIO, 0x01);
export const KVM_CHECK_EXTENSION = IO(KVMIO, 0x03);
export const KVM_GET_VCPU_MMAP_SIZE = IO(KVMIO, 0x04);
export const KVM_CREATE_VCPU = IO(KVMIO, 0x41);
export const KVM_SET_USER_MEMORY_REGION = IOW(KVMIO, 0x46, 32);
export const KVM_SET_USER_MEMORY_REGION2 = IOW(KVMIO, 0x49, 160);
export const KVM_RUN = IO(KVMIO, 0x80);
export const KVM_ENABLE_CAP = IOW(KVMIO, 0xa3, 104);
export const KVM_SET_MEMORY_ATTRIBUTES = IOW(KVMIO, 0xd2, 32);
export const KVM_CREATE_GUEST_MEMFD = IOWR(KVMIO, 0xd4, 64);
export const KVM_PRE_FAULT_MEMORY = IOWR(KVMIO, 0xd5, 64);
/** In-place conversion (final design): a guest_memfd ioctl, same nr as the VM ioctl, 128-byte struct. */
export const KVM_SET_MEMORY_ATTRIBUTES2 = IOWR(KVMIO, 0xd2, 128);
// x86 register access, used by the host backend's guest code loader.
export const KVM_GET_REGS = 0x8090ae81;
export const KVM_SET_REGS = 0x4090ae82;
export const KVM_GET_SREGS = 0x8138ae83;
export const KVM_SET_SREGS = 0x4138ae84;

/** RFC 1G-page series (R51): dedicated conversion ioctls on the guest_memfd fd. */
export const KVM_GMEM_IO = 0xaf;
export const KVM_GMEM_CONVERT_SHARED = IOWR(KVM_GMEM_IO, 0x41, 64);
export const KVM_GMEM_CONVERT_PRIVATE = IOWR(KVM_GMEM_IO, 0x42, 64);

// ---- Capabilities ------------------------------------------------------------------------------
export const KVM_CAP_IRQCHIP = 0;
export const KVM_CAP_USER_MEMORY = 3;
export const KVM_CAP_NR_VCPUS = 9;
export const KVM_CAP_NR_MEMSLOTS = 10;
export const KVM_CAP_MAX_VCPUS = 66;
export const KVM_CAP_READONLY_MEM = 81;
export const KVM_CAP_MULTI_ADDRESS_SPACE = 118;
export const KVM_CAP_MAX_VCPU_ID = 128;
export const KVM_CAP_EXIT_HYPERCALL = 201;
export const KVM_CAP_USER_MEMORY2 = 231;
export const KVM_CAP_MEMORY_FAULT_INFO = 232;
export const KVM_CAP_MEMORY_ATTRIBUTES = 233;
export const KVM_CAP_GUEST_MEMFD = 234;
export const KVM_CAP_VM_TYPES = 235;
export const KVM_CAP_PRE_FAULT_MEMORY = 236;
export const KVM_CAP_X86_APIC_BUS_CYCLES_NS = 237;
export const KVM_CAP_X86_GUEST_MODE = 238;
/** R51 placeholders (rfc-1g uapi only). */
export const KVM_CAP_GMEM_SHARED_MEM = 240;
export const KVM_CAP_GMEM_CONVERSION = 241;
export const KVM_CAP_GMEM_HUGETLB = 242;
export const KVM_CAP_GUEST_MEMFD_FLAGS = 244;
/** In-place conversion, final numbering (earlier postings: 245, 248). */
export const KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES = 250;

// ---- VM types (x86) ----------------------------------------------------------------------------
export const KVM_X86_DEFAULT_VM = 0;
export const KVM_X86_SW_PROTECTED_VM = 1;
export const KVM_X86_SEV_VM = 2;
export const KVM_X86_SEV_ES_VM = 3;
export const KVM_X86_SNP_VM = 4;
export const KVM_X86_TDX_VM = 5;

/** arm64 (Android pKVM / crosvm): a protected VM; the low 8 bits of the type are the IPA size. */
export const KVM_VM_TYPE_ARM_PROTECTED = 0x80000000;
export const KVM_VM_TYPE_ARM_IPA_SIZE_MASK = 0xff;

// ---- Memslots ----------------------------------------------------------------------------------
export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
export const KVM_MEM_READONLY = 1 << 1;
export const KVM_MEM_GUEST_MEMFD = 1 << 2;
/** KVM_USER_MEM_SLOTS on x86 (KVM_CAP_NR_MEMSLOTS). */
export const KVM_USER_MEM_SLOTS = 32764;
/** x86 has two address spaces (normal, SMM); KVM_CAP_MULTI_ADDRESS_SPACE answers 2 with SMM, else 1. */
export const KVM_ADDRESS_SPACE_NUM = 1;
/** KVM_MEM_MAX_NR_PAGES: a memslot may not reach 2^31 pages. */
export const KVM_MEM_MAX_NR_PAGES = 2 ** 31 - 1;

// ---- guest_memfd flags -------------------------------------------------------------------------
export const GUEST_MEMFD_FLAG_MMAP = 1 << 0;
export const GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1;
/** In-place + HugeTLB work-in-progress: HugeTLB backing; the page size goes in `page_order`. */
export const GUEST_MEMFD_FLAG_HUGETLB = 1 << 2;
/** R51 (rfc-1g) flag names: bit 0 and bit 1 mean something else there. */
export const GUEST_MEMFD_FLAG_SUPPORT_SHARED = 1 << 0;
export const GUEST_MEMFD_FLAG_INIT_PRIVATE = 1 << 1;
/** R51: log2 of the HugeTLB page size in flag bits 58..63. */
export const GUESTMEM_HUGETLB_FLAG_SHIFT = 58;
export const GUESTMEM_HUGETLB_FLAG_MASK = 0x3f;
export const GUESTMEM_HUGETLB_FLAG_2MB = 21n << 58n;
export const GUESTMEM_HUGETLB_FLAG_1GB = 30n << 58n;

// ---- Memory attributes and exits ---------------------------------------------------------------
export const KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3;
export const KVM_MEMORY_EXIT_FLAG_PRIVATE = 1 << 3;

export const KVM_EXIT_UNKNOWN = 0;
export const KVM_EXIT_EXCEPTION = 1;
export const KVM_EXIT_IO = 2;
export const KVM_EXIT_HYPERCALL = 3;
export const KVM_EXIT_DEBUG = 4;
export const KVM_EXIT_HLT = 5;
export const KVM_EXIT_MMIO = 6;
export const KVM_EXIT_SHUTDOWN = 8;
export const KVM_EXIT_FAIL_ENTRY = 9;
export const KVM_EXIT_INTR = 10;
export const KVM_EXIT_INTERNAL_ERROR = 17;
export const KVM_EXIT_MEMORY_FAULT = 39;

export const KVM_EXIT_IO_IN = 0;
export const KVM_EXIT_IO_OUT = 1;

// ---- Hypercalls --------------------------------------------------------------------------------
export const KVM_HC_MAP_GPA_RANGE = 12;
/** args[2] of KVM_HC_MAP_GPA_RANGE (arch/x86/include/uapi/asm/kvm_para.h). */
export const KVM_MAP_GPA_RANGE_PAGE_SZ_4K = 0;
export const KVM_MAP_GPA_RANGE_PAGE_SZ_2M = 1 << 0;
export const KVM_MAP_GPA_RANGE_PAGE_SZ_1G = 1 << 1;
export const KVM_MAP_GPA_RANGE_ENCRYPTED = 1 << 4;
export const KVM_MAP_GPA_RANGE_DECRYPTED = 0 << 4;

/** pKVM guest hypercalls (vendor-hyp SMCCC function numbers, ecosystem.md B.3). */
export const ARM_SMCCC_KVM_FUNC_HYP_MEMINFO = 2;
export const ARM_SMCCC_KVM_FUNC_MEM_SHARE = 3;
export const ARM_SMCCC_KVM_FUNC_MEM_UNSHARE = 4;

/** The port the model's ucall (and the host backend's guest code) uses for KVM_EXIT_IO. */
export const UCALL_PIO_PORT = 0x1000;

// ---- Added for the host backend's guest loader (src/host/guest-loader.ts) ----------------------
/** struct kvm_cpuid2 is an 8-byte header followed by nent 40-byte entries. */
export const KVM_GET_SUPPORTED_CPUID = IOWR(KVMIO, 0x05, 8);
export const KVM_SET_CPUID2 = IOW(KVMIO, 0x90, 8);
export const KVM_CAP_SYNC_REGS = 74;
/** kvm_run.kvm_valid_regs bit: the kernel stores the GPRs into kvm_run.s.regs on every exit. */
export const KVM_SYNC_X86_REGS = 1 << 0;
