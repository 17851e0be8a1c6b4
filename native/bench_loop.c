/*
 * bench_loop: the C baseline for bench/host.ts, compiled and run at bench time.
 *
 * The same two loops as the host backend's benchmark, straight from C:
 *   punch   fallocate(PUNCH_HOLE | KEEP_SIZE) of 4 KiB at successive offsets of a 64 GiB guest_memfd
 *   create  KVM_CREATE_GUEST_MEMFD of 4 KiB, then close
 * Usage: bench_loop PUNCH_ITERATIONS CREATE_ITERATIONS
 * Prints one JSON line: {"punch_per_s": N, "create_close_per_s": N}, or exits 1 with a message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define KVM_CREATE_VM_REQ 0xAE01UL
#define KVM_CREATE_GUEST_MEMFD_REQ 0xC040AED4UL
#define FALLOC_PUNCH_KEEP 0x03
#define BENCH_GMEM_BYTES (64ULL << 30)
#define PAGE_BYTES 4096ULL

struct create_guest_memfd {
  uint64_t size;
  uint64_t flags;
  uint64_t reserved[6];
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int create_gmem(int vm, uint64_t size_bytes) {
  struct create_guest_memfd arg;
  memset(&arg, 0, sizeof arg);
  arg.size = size_bytes;
  return ioctl(vm, KVM_CREATE_GUEST_MEMFD_REQ, &arg);
}

static double punch_per_s(int vm, long iterations) {
  int fd = create_gmem(vm, BENCH_GMEM_BYTES);
  if (fd < 0) { perror("KVM_CREATE_GUEST_MEMFD (64 GiB)"); exit(1); }
  uint64_t nr_pages = BENCH_GMEM_BYTES / PAGE_BYTES;
  double start = now_s();
  for (long i = 0; i < iterations; i++) {
    if (fallocate(fd, FALLOC_PUNCH_KEEP, (off_t)(((uint64_t)i % nr_pages) * PAGE_BYTES), PAGE_BYTES) < 0) {
      perror("fallocate(PUNCH_HOLE)");
      exit(1);
    }
  }
  double elapsed = now_s() - start;
  close(fd);
  return iterations / elapsed;
}

static double create_close_per_s(int vm, long iterations) {
  double start = now_s();
  for (long i = 0; i < iterations; i++) {
    int fd = create_gmem(vm, PAGE_BYTES);
    if (fd < 0) { perror("KVM_CREATE_GUEST_MEMFD (4 KiB)"); exit(1); }
    close(fd);
  }
  return iterations / (now_s() - start);
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: %s PUNCH_ITERATIONS CREATE_ITERATIONS\n", argv[0]); return 1; }
  long punch_iterations = atol(argv[1]);
  long create_iterations = atol(argv[2]);
  int kvm = open("/dev/kvm", O_RDWR);
  if (kvm < 0) { perror("open /dev/kvm"); return 1; }
  int vm = ioctl(kvm, KVM_CREATE_VM_REQ, 0);
  if (vm < 0) { perror("KVM_CREATE_VM"); return 1; }
  double punch = punch_per_s(vm, punch_iterations);
  double create = create_close_per_s(vm, create_iterations);
  printf("{\"punch_per_s\": %.0f, \"create_close_per_s\": %.0f}\n", punch, create);
  return 0;
}
