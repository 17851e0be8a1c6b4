/*
 * gmem_host: the native half of the host backend (src/host/host-kernel.ts).
 *
 * It does only what JavaScript cannot: raw system calls with the kernel's own answer
 * (-errno, never a throw), copies through arbitrary mappings under a SIGBUS/SIGSEGV guard,
 * long-term GUP pins through io_uring buffer registration, and an ArrayBuffer over the
 * vCPU's kvm_run mapping. Every policy (which calls are refused, how structs are laid
 * out, which errors are thrown) lives in TypeScript.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif
/* include/uapi/linux/io_uring.h opcodes of io_uring_register(2). */
#define GMEM_IORING_REGISTER_BUFFERS 0
#define GMEM_IORING_UNREGISTER_BUFFERS 1
/* io_uring refuses a registered buffer longer than 1 GiB, so a pin is split into such pieces. */
#define PIN_PIECE_BYTES (1ULL << 30)
/* The guard copies in 4 KiB pieces so that the first fault in each page is reported at the
 * first byte touched in that page, as a byte-by-byte copy would report it. */
#define GUARD_PAGE_BYTES 4096u

#define TWO_POW_63 9223372036854775808.0
#define TWO_POW_64 18446744073709551616.0

/* ---- Argument conversion -------------------------------------------------------------------- */

/* An integral JS number as the u64 a C caller would pass: two's complement when negative,
 * reduced modulo 2^64 when out of range. */
static uint64_t double_to_u64(double d) {
  if (d >= 0) {
    if (d < TWO_POW_64) return (uint64_t)d;
    return (uint64_t)fmod(d, TWO_POW_64);
  }
  if (d >= -TWO_POW_63) return (uint64_t)(int64_t)d;
  d = fmod(d, TWO_POW_64) + TWO_POW_64; /* exact: |d| >= 2^63 is a multiple of 2^11 */
  return d >= TWO_POW_64 ? 0 : (uint64_t)d;
}

/* number → double_to_u64; bigint → low 64 bits (two's complement); undefined → 0.
 * A number that no C integer can be (fractional, NaN, infinite) sets *non_integer: the call is
 * then answered EINVAL without reaching the kernel, as the Syscalls contract says.
 * Returns false only with a JS exception pending (not a number, bigint or undefined). */
static bool arg_u64(napi_env env, napi_value v, uint64_t *out, bool *non_integer) {
  double d;
  if (napi_get_value_double(env, v, &d) == napi_ok) {
    if (!isfinite(d) || d != trunc(d)) {
      *non_integer = true;
      *out = 0;
    } else {
      *out = double_to_u64(d);
    }
    return true;
  }
  bool lossless;
  if (napi_get_value_bigint_uint64(env, v, out, &lossless) == napi_ok) return true;
  napi_valuetype type;
  if (napi_typeof(env, v, &type) == napi_ok && type == napi_undefined) {
    *out = 0;
    return true;
  }
  napi_throw_type_error(env, NULL, "gmem_host: expected a number or a bigint");
  return false;
}

static bool arg_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len_bytes) {
  napi_typedarray_type type;
  size_t length;
  void *ptr;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, &length, &ptr, &ab, &offset) != napi_ok ||
      type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "gmem_host: expected a Uint8Array");
    return false;
  }
  /* A zero-length view may have no backing store; the kernel then sees a valid pointer anyway. */
  static uint8_t empty;
  *data = ptr ? (uint8_t *)ptr : &empty;
  *len_bytes = length;
  return true;
}

static napi_value make_number(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

/* The raw answer of a system call: the result, or -errno. */
static double raw_result(long r) {
  return r == -1 ? -(double)errno : (double)r;
}

/* ---- Raw system calls ----------------------------------------------------------------------- */

/* sys(nr, a0..a5): any system call whose arguments are all integers. */
static napi_value js_sys(napi_env env, napi_callback_info info) {
  bool non_integer = false;
  size_t argc = 7;
  napi_value argv[7];
  uint64_t a[7] = {0};
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc > 7) argc = 7;
  for (size_t i = 0; i < argc; i++)
    if (!arg_u64(env, argv[i], &a[i], &non_integer)) return NULL;
  if (non_integer) return make_number(env, -EINVAL);
  long r = syscall((long)a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
  return make_number(env, raw_result(r));
}

/* rw(nr, fd, bytes, offset): read/write/pread64/pwrite64 into or from a JS buffer. */
static napi_value js_rw(napi_env env, napi_callback_info info) {
  bool non_integer = false;
  size_t argc = 4;
  napi_value argv[4];
  uint64_t nr, fd, offset = 0;
  uint8_t *data;
  size_t len_bytes;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "gmem_host.rw: (nr, fd, bytes, offset?)");
    return NULL;
  }
  if (!arg_u64(env, argv[0], &nr, &non_integer) || !arg_u64(env, argv[1], &fd, &non_integer) ||
      !arg_bytes(env, argv[2], &data, &len_bytes))
    return NULL;
  if (argc > 3 && !arg_u64(env, argv[3], &offset, &non_integer)) return NULL;
  if (non_integer) return make_number(env, -EINVAL);
  long r = syscall((long)nr, fd, data, len_bytes, offset);
  return make_number(env, raw_result(r));
}

/* ioctlBuf(fd, request, bytes): ioctl with a pointer to a JS buffer (the struct argument). */
static napi_value js_ioctl_buf(napi_env env, napi_callback_info info) {
  bool non_integer = false;
  size_t argc = 3;
  napi_value argv[3];
  uint64_t fd, request;
  uint8_t *data;
  size_t len_bytes;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "gmem_host.ioctlBuf: (fd, request, bytes)");
    return NULL;
  }
  if (!arg_u64(env, argv[0], &fd, &non_integer) || !arg_u64(env, argv[1], &request, &non_integer) ||
      !arg_bytes(env, argv[2], &data, &len_bytes))
    return NULL;
  if (non_integer) return make_number(env, -EINVAL);
  long r = syscall(SYS_ioctl, fd, request, data);
  return make_number(env, raw_result(r));
}

/* open(path, flags): openat(AT_FDCWD, path, flags, 0666). */
static napi_value js_open(napi_env env, napi_callback_info info) {
  bool non_integer = false;
  size_t argc = 2;
  napi_value argv[2];
  char path[4096];
  size_t path_len;
  uint64_t flags = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &path_len) != napi_ok) {
    napi_throw_type_error(env, NULL, "gmem_host.open: (path: string, flags)");
    return NULL;
  }
  if (path_len >= sizeof path - 1) return make_number(env, -ENAMETOOLONG);
  if (argc > 1 && !arg_u64(env, argv[1], &flags, &non_integer)) return NULL;
  if (non_integer) return make_number(env, -EINVAL);
  long r = syscall(SYS_openat, AT_FDCWD, path, flags, 0666);
  return make_number(env, raw_result(r));
}

/* fstat(fd, out: Float64Array(6)) → 0 | -errno; out = size, blksize, blocks, ino, mode, nlink. */
static napi_value js_fstat(napi_env env, napi_callback_info info) {
  bool non_integer = false;
  size_t argc = 2;
  napi_value argv[2];
  uint64_t fd;
  napi_typedarray_type type;
  size_t length;
  void *ptr;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2 || !arg_u64(env, argv[0], &fd, &non_integer)) return NULL;
  if (non_integer) return make_number(env, -EBADF); /* no fd is fractional */
  if (napi_get_typedarray_info(env, argv[1], &type, &length, &ptr, NULL, NULL) != napi_ok ||
      type != napi_float64_array || length < 6) {
    napi_throw_type_error(env, NULL, "gmem_host.fstat: out must be a Float64Array(6)");
    return NULL;
  }
  struct stat st;
  long r = syscall(SYS_fstat, fd, &st);
  if (r == 0) {
    double *out = ptr;
    out[0] = (double)st.st_size;
    out[1] = (double)st.st_blksize;
    out[2] = (double)st.st_blocks;
    out[3] = (double)st.st_ino;
    out[4] = (double)st.st_mode;
    out[5] = (double)st.st_nlink;
  }
  return make_number(env, raw_result(r));
}

/* ---- Guarded copies through mappings -------------------------------------------------------- */

struct guard {
  sigjmp_buf *jump;
  volatile sig_atomic_t armed;
  int signo;
  uintptr_t fault_addr;
};
/* initial-exec: the handler must not go through __tls_get_addr, which may allocate. */
static __thread struct guard tls_guard __attribute__((tls_model("initial-exec")));
static struct sigaction prev_sigbus, prev_sigsegv;
static int handlers_installed;

/* Not ours: hand the signal to whoever had it before, as if we were not here. */
static void chain_signal(int sig, siginfo_t *si, void *uc) {
  struct sigaction *prev = sig == SIGBUS ? &prev_sigbus : &prev_sigsegv;
  if (prev->sa_flags & SA_SIGINFO) {
    prev->sa_sigaction(sig, si, uc);
    return;
  }
  if (prev->sa_handler == SIG_DFL || prev->sa_handler == SIG_IGN) {
    /* Restore the default action; a real fault then re-executes and terminates as it would have. */
    signal(sig, SIG_DFL);
    if (si->si_code <= 0) raise(sig); /* sent by kill(): it does not re-occur by itself */
    return;
  }
  prev->sa_handler(sig);
}

static void guard_handler(int sig, siginfo_t *si, void *uc) {
  struct guard *g = &tls_guard;
  if (g->armed) {
    g->armed = 0;
    g->signo = sig;
    g->fault_addr = (uintptr_t)si->si_addr;
    siglongjmp(*g->jump, 1);
  }
  chain_signal(sig, si, uc);
}

static void install_handlers_once(void) {
  if (__atomic_exchange_n(&handlers_installed, 1, __ATOMIC_SEQ_CST)) return;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = guard_handler;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &prev_sigbus);
  sigaction(SIGSEGV, &sa, &prev_sigsegv);
}

/* Copies in page order; `mem_is_dst` says which side is the (possibly faulting) mapping. */
/* noinline: the locals of guarded_copy then stay unmodified between sigsetjmp and a longjmp. */
__attribute__((noinline)) static void copy_in_page_order(uint8_t *dst, const uint8_t *src, size_t len, bool mem_is_dst) {
  while (len > 0) {
    uintptr_t mem = mem_is_dst ? (uintptr_t)dst : (uintptr_t)src;
    size_t chunk = GUARD_PAGE_BYTES - (mem & (GUARD_PAGE_BYTES - 1));
    if (chunk > len) chunk = len;
    /* The first byte alone: a fault in this page is reported at this exact address. */
    *(volatile uint8_t *)dst = *(volatile const uint8_t *)src;
    memcpy(dst + 1, src + 1, chunk - 1);
    dst += chunk;
    src += chunk;
    len -= chunk;
  }
}

/* Returns 0, or the signal number that interrupted the copy (address in tls_guard). */
static int guarded_copy(uint8_t *dst, const uint8_t *src, size_t len, bool mem_is_dst) {
  sigjmp_buf jump;
  struct guard *g = &tls_guard;
  g->jump = &jump;
  if (sigsetjmp(jump, 1) != 0) return g->signo; /* the handler disarmed the guard */
  g->armed = 1;
  copy_in_page_order(dst, src, len, mem_is_dst);
  g->armed = 0;
  return 0;
}

/* guardedCopy(addr, bytes, toMemory) → 0 | signal number (see lastFaultAddress()) | -EINVAL. */
static napi_value js_guarded_copy(napi_env env, napi_callback_info info) {
  bool non_integer = false;
  size_t argc = 3;
  napi_value argv[3];
  uint64_t addr;
  uint8_t *data;
  size_t len_bytes;
  bool to_memory = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "gmem_host.guardedCopy: (addr, bytes, toMemory)");
    return NULL;
  }
  if (!arg_u64(env, argv[0], &addr, &non_integer) || !arg_bytes(env, argv[1], &data, &len_bytes)) return NULL;
  if (non_integer) return make_number(env, -EINVAL);
  if (napi_get_value_bool(env, argv[2], &to_memory) != napi_ok) {
    napi_throw_type_error(env, NULL, "gmem_host.guardedCopy: toMemory must be a boolean");
    return NULL;
  }
  uint8_t *mem = (uint8_t *)(uintptr_t)addr;
  int signo = to_memory ? guarded_copy(mem, data, len_bytes, true)
                        : guarded_copy(data, mem, len_bytes, false);
  return make_number(env, signo);
}

static napi_value js_last_fault_address(napi_env env, napi_callback_info info) {
  (void)info;
  return make_number(env, (double)tls_guard.fault_addr);
}

/* ---- Long-term pins (io_uring registered buffers) ------------------------------------------- */

/* pin(addr, len) → the io_uring fd holding the pin | -errno (of io_uring_setup or _register).
 * Buffer registration pins the pages with FOLL_WRITE | FOLL_LONGTERM. */
static napi_value js_pin(napi_env env, napi_callback_info info) {
  bool non_integer = false;
  size_t argc = 2;
  napi_value argv[2];
  uint64_t addr, len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2 || !arg_u64(env, argv[0], &addr, &non_integer) || !arg_u64(env, argv[1], &len, &non_integer)) return NULL;
  if (non_integer) return make_number(env, -EINVAL);

  uint64_t nr_pieces = len == 0 ? 1 : (len + PIN_PIECE_BYTES - 1) / PIN_PIECE_BYTES;
  if (nr_pieces > 16384) return make_number(env, -EINVAL); /* io_uring's own table limit */
  struct iovec *iov = calloc(nr_pieces, sizeof *iov);
  if (!iov) return make_number(env, -ENOMEM);
  for (uint64_t i = 0; i < nr_pieces; i++) {
    uint64_t done = i * PIN_PIECE_BYTES;
    iov[i].iov_base = (void *)(uintptr_t)(addr + done);
    iov[i].iov_len = len - done < PIN_PIECE_BYTES ? len - done : PIN_PIECE_BYTES;
  }
  uint8_t params[256]; /* struct io_uring_params (120 bytes), zeroed: default setup */
  memset(params, 0, sizeof params);
  long ring = syscall(__NR_io_uring_setup, 1, params);
  double result;
  if (ring < 0) {
    result = -(double)errno;
  } else if (syscall(__NR_io_uring_register, ring, GMEM_IORING_REGISTER_BUFFERS, iov, nr_pieces) < 0) {
    result = -(double)errno;
    close((int)ring);
  } else {
    result = (double)ring;
  }
  free(iov);
  return make_number(env, result);
}

/* unpin(ring) → 0 | -errno: unregister synchronously (the pages are unpinned now, not when the
 * ring's deferred teardown runs), then close the ring. */
static napi_value js_unpin(napi_env env, napi_callback_info info) {
  bool non_integer = false;
  size_t argc = 1;
  napi_value argv[1];
  uint64_t ring;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || !arg_u64(env, argv[0], &ring, &non_integer)) return NULL;
  if (non_integer) return make_number(env, -EINVAL);
  long r = syscall(__NR_io_uring_register, (int)ring, GMEM_IORING_UNREGISTER_BUFFERS, NULL, 0);
  double result = raw_result(r);
  close((int)ring);
  return make_number(env, result < 0 ? result : 0);
}

/* ---- Shared mappings seen from JS (kvm_run) ------------------------------------------------- */

static void unmap_finalizer(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

/* mapShared(fd, len) → ArrayBuffer over mmap(NULL, len, RW, MAP_SHARED, fd, 0) | -errno.
 * The mapping lives exactly as long as the ArrayBuffer: unmapped by its finalizer, so no JS
 * view can outlive it. */
static napi_value js_map_shared(napi_env env, napi_callback_info info) {
  bool non_integer = false;
  size_t argc = 2;
  napi_value argv[2];
  uint64_t fd, len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2 || !arg_u64(env, argv[0], &fd, &non_integer) || !arg_u64(env, argv[1], &len, &non_integer)) return NULL;
  if (non_integer) return make_number(env, -EINVAL);
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
  if (p == MAP_FAILED) return make_number(env, -(double)errno);
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, len, unmap_finalizer, (void *)(uintptr_t)len, &ab) !=
      napi_ok) {
    munmap(p, len);
    napi_throw_error(env, NULL, "gmem_host.mapShared: cannot wrap the mapping");
    return NULL;
  }
  return ab;
}

/* ---- Module ---------------------------------------------------------------------------------- */

static void set_number(napi_env env, napi_value obj, const char *name, double v) {
  napi_set_named_property(env, obj, name, make_number(env, v));
}

/* This architecture's system call numbers, so that TypeScript never hard-codes them. */
static napi_value syscall_numbers(napi_env env) {
  napi_value nr;
  napi_create_object(env, &nr);
  set_number(env, nr, "read", SYS_read);
  set_number(env, nr, "write", SYS_write);
  set_number(env, nr, "close", SYS_close);
  set_number(env, nr, "lseek", SYS_lseek);
  set_number(env, nr, "mmap", SYS_mmap);
  set_number(env, nr, "mprotect", SYS_mprotect);
  set_number(env, nr, "munmap", SYS_munmap);
  set_number(env, nr, "ioctl", SYS_ioctl);
  set_number(env, nr, "pread64", SYS_pread64);
  set_number(env, nr, "pwrite64", SYS_pwrite64);
  set_number(env, nr, "madvise", SYS_madvise);
  set_number(env, nr, "dup", SYS_dup);
  set_number(env, nr, "fcntl", SYS_fcntl);
  set_number(env, nr, "fsync", SYS_fsync);
  set_number(env, nr, "ftruncate", SYS_ftruncate);
  set_number(env, nr, "fallocate", SYS_fallocate);
  return nr;
}

NAPI_MODULE_INIT() {
  install_handlers_once();
  napi_property_descriptor props[] = {
    {"sys", NULL, js_sys, NULL, NULL, NULL, napi_enumerable, NULL},
    {"rw", NULL, js_rw, NULL, NULL, NULL, napi_enumerable, NULL},
    {"ioctlBuf", NULL, js_ioctl_buf, NULL, NULL, NULL, napi_enumerable, NULL},
    {"open", NULL, js_open, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fstat", NULL, js_fstat, NULL, NULL, NULL, napi_enumerable, NULL},
    {"guardedCopy", NULL, js_guarded_copy, NULL, NULL, NULL, napi_enumerable, NULL},
    {"lastFaultAddress", NULL, js_last_fault_address, NULL, NULL, NULL, napi_enumerable, NULL},
    {"pin", NULL, js_pin, NULL, NULL, NULL, napi_enumerable, NULL},
    {"unpin", NULL, js_unpin, NULL, NULL, NULL, napi_enumerable, NULL},
    {"mapShared", NULL, js_map_shared, NULL, NULL, NULL, napi_enumerable, NULL},
    {"nr", NULL, NULL, NULL, NULL, syscall_numbers(env), napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
