/**
 * KVM_CREATE_GUEST_MEMFD and the new file: upstream-linux.md §5 rows 4–11 (2A).
 */
import assert from 'node:assert/strict';
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_CREATE_GUEST_MEMFD } from '../../src/uapi/kvm.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MAP_SHARED, PROT_READ, PROT_WRITE } from '../../src/uapi/linux.js';
import { expectErrno } from '../lib/harness.js';
import { forBackends, kcase, PAGE, Skip } from './common.js';

/** Row 9: every single bit from 2 to 63, then MMAP|bit 2. */
const ROW9_FLAGS: bigint[] = [...Array.from({ length: 62 }, (_, i) => 1n << BigInt(i + 2)), 5n];

forBackends('KVM_CREATE_GUEST_MEMFD (§5 rows 4–11)', (b) => {
  kcase(b, 'row 4: KVM_CREATE_GUEST_MEMFD on the /dev/kvm fd and on a vCPU fd → EINVAL', (s) => {
    const vm = s.vm(0);
    const vcpu = s.vcpu(vm, 0);
    expectErrno('EINVAL', () => s.k.ioctl(s.kvm(), KVM_CREATE_GUEST_MEMFD, { size: PAGE, flags: 0 }), '/dev/kvm');
    expectErrno('EINVAL', () => s.k.ioctl(vcpu, KVM_CREATE_GUEST_MEMFD, { size: PAGE, flags: 0 }), 'vCPU fd');
  });

  kcase(b, 'row 5: size 0, 1, 4095, 4097, 0xfffffffffffff000, 1<<63 → EINVAL each, no fd created', (s) => {
    const vm = s.vm(0);
    for (const size of [0, 1, 4095, 4097, 0xfffffffffffff000n, 1n << 63n]) {
      s.failsCleanly('EINVAL', () => s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size, flags: 0 }), `size ${size}`);
    }
  });

  kcase(b, 'row 6: size 0x7ffffffffffff000 → fd; KEEP(0x7fffffffffffe000, 4096) → 0; PUNCH|KEEP(0, whole) → 0', (s) => {
    const vm = s.vm(0);
    const fd = s.gmem(vm, 0x7ffffffffffff000n);
    assert.equal(s.k.fstat(fd).st_size, 0x7ffffffffffff000);
    s.k.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0x7fffffffffffe000n, PAGE);
    s.k.fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 0x7ffffffffffff000n);
  });

  kcase(b, 'row 7: size 1 TiB → fd (sparse: nothing allocated at create)', (s) => {
    const vm = s.vm(0);
    const fd = s.gmem(vm, 2 ** 40);
    assert.equal(s.k.fstat(fd).st_size, 2 ** 40);
  });

  kcase(b, 'row 8: flags MMAP, INIT_SHARED alone, MMAP|INIT_SHARED on a default VM → fd each', (s) => {
    const vm = s.vm(0);
    for (const flags of [GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED]) {
      s.close(s.gmem(vm, PAGE, flags));
    }
  });

  kcase(b, 'row 9: flags 1<<2 … 1<<63, flags 5, size 0 with flags 8 → EINVAL each, no fd created', (s) => {
    const vm = s.vm(0);
    for (const flags of ROW9_FLAGS) {
      s.failsCleanly('EINVAL', () => s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: PAGE, flags }), `flags 0x${flags.toString(16)}`);
    }
    s.failsCleanly('EINVAL', () => s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: 0, flags: 8 }), 'size 0 flags 8');
  });

  kcase(b, 'row 10: reserved[0] = 0xdead, reserved[5] = 1 → fd (reserved is not checked)', (s) => {
    const vm = s.vm(0);
    const fd = s.own(s.k.ioctl(vm, KVM_CREATE_GUEST_MEMFD, { size: PAGE, flags: 0, reserved: [0xdead, 0, 0, 0, 0, 1] }));
    assert.equal(s.k.fstat(fd).st_size, PAGE);
  });

  kcase(b, 'row 11: fstat of a 4-page gmem: size 16384, blksize 4096, blocks 0 (also after fallocate and faulting), mode 0100600, nlink 1, distinct st_ino', (s) => {
    const vm = s.vm(0);
    const fd = s.gmem(vm, 4 * PAGE, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
    const check = (when: string): void => {
      const st = s.k.fstat(fd);
      assert.equal(st.st_size, 16384, when);
      assert.equal(st.st_blksize, 4096, when);
      assert.equal(st.st_blocks, 0, when);
      // st_mode and st_nlink are extensions of Stat: a backend that does not report them skips.
      if (st.st_mode === undefined || st.st_nlink === undefined) throw new Skip(`the ${b.name} backend's fstat has no st_mode/st_nlink`);
      assert.equal(st.st_mode, 0o100600, when);
      assert.equal(st.st_nlink, 1, when);
    };
    check('after create');
    s.k.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4 * PAGE);
    check('after fallocate');
    const mem = s.mmap(4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
    s.k.store(mem, new Uint8Array(4 * PAGE).fill(1));
    check('after faulting');
    const other = s.gmem(vm, 4 * PAGE);
    assert.notEqual(s.k.fstat(other).st_ino, s.k.fstat(fd).st_ino);
  });
});
