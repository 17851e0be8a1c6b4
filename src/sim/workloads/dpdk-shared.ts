/**
 * dpdk-shared: large, long-lived shared buffers used by host user space, as a DPDK application in
 * the guest sharing hugepage mempools with a vhost-user/DPDK backend on the host. The guest
 * converts each buffer shared once; the host maps and pins it (long-term) and moves packet
 * bursts through it. Every `recycle_every` events the guest frees one buffer (→private: EAGAIN
 * while the host still pins it, until the VMM has the backend let go) and shares a new one
 * elsewhere. Shows what huge folios and mappings become under long-lived sharing, and what
 * merging costs or brings back when a buffer returns to private.
 */
import type { GuestApi } from '../../kvm/guest.js';
import type { ArchBackend, GuestSeq } from '../arch/types.js';
import { bytesTag } from '../contents.js';
import { IO_HOST_WRITES, UC_BOOT_DONE, UC_EVENT, UC_HOST_IO, UC_HOST_PIN, UC_HOST_UNPIN } from '../protocol.js';
import type { Scenario } from '../scenario.js';
import { formatBytes, GiB, MiB } from '../units.js';
import { M2, num, PAGE, SHARED, type Workload, type WorkloadCtx, type WorkloadSpec } from './types.js';

function geometry(sc: Scenario): { touch: number; base: number; slots: number; size: number } {
  const size = num(sc.params, 'buffer_size');
  const touch = sc.params.touch === 'auto' ? Math.min(sc.guest / 4, 4 * GiB) : num(sc.params, 'touch');
  const base = Math.ceil(touch / size) * size;
  return { touch, base, size, slots: Math.floor((sc.guest - base) / size) };
}

export const dpdkShared: WorkloadSpec = {
  name: 'dpdk-shared',
  description: 'large long-lived shared buffers pinned and used by host user space (vhost-user/DPDK)',
  vms: ['snp', 'tdx', 'pkvm', 'sw-protected'],
  params: {
    buffers: { kind: 'int', doc: 'shared buffers live at once', min: 1, max: 64, default: 2 },
    buffer_size: { kind: 'size', doc: 'bytes per buffer (a hugepage mempool)', min: M2, max: 16 * GiB, multipleOf: M2, default: GiB },
    burst: { kind: 'size', doc: 'bytes the host writes per packet burst', min: 4096, max: 64 * MiB, multipleOf: 4096, default: 64 * 1024 },
    pin: {
      kind: 'enum', values: ['none', 'inflight', 'all'], default: 'inflight',
      doc: "what the host backend pins long-term: 'inflight' (zero-copy: the last `inflight` bursts), 'all' (whole buffers, as VFIO/io_uring registration would), 'none'",
    },
    inflight: { kind: 'int', doc: 'bursts the host keeps pinned (pin: inflight)', min: 1, max: 100_000, default: 64 },
    recycle_every: { kind: 'int', doc: 'free one buffer and share a new one every N events (0: never)', min: 0, max: 100_000_000, default: 2000 },
    touch: { kind: 'size', doc: "private memory the guest uses, from gpa 0 ('auto': a quarter of memory, at most 4 GiB)", min: 0, max: 4096 * GiB, multipleOf: M2, default: 'auto' },
    rate: { kind: 'number', doc: 'events per simulated second', min: 1e-3, max: 1e9, default: 100000 },
  },
  check(sc: Scenario): Array<[string, string]> {
    const g = geometry(sc);
    const need = num(sc.params, 'buffers') + (num(sc.params, 'recycle_every') > 0 ? 1 : 0);
    if (g.slots < need) {
      return [['buffers', `${need} buffers of ${formatBytes(g.size)} do not fit above ${formatBytes(g.base)} in a ${formatBytes(sc.guest)} guest`]];
    }
    if (num(sc.params, 'burst') > g.size) return [['burst', 'larger than a buffer']];
    return [];
  },
  create(ctx: WorkloadCtx): Workload {
    const { sc, arch, rng, tags, counters } = ctx;
    const geo = geometry(sc);
    const burst = num(sc.params, 'burst');
    const pin = sc.params.pin as 'none' | 'inflight' | 'all';
    const pinned: number[] = [];
    const recycle = num(sc.params, 'recycle_every');
    const live: number[] = [];
    const used = new Set<number>();
    const slotGpa = (s: number): number => geo.base + s * geo.size;

    function* share(g: GuestApi, a: ArchBackend): GuestSeq {
      let s = rng.below(geo.slots);
      while (used.has(s)) s = (s + 1) % geo.slots;
      used.add(s);
      const gpa = slotGpa(s);
      if ((yield* a.requestConvert(g, gpa, geo.size, false)) !== 0) return;
      if (pin === 'all') yield g.ucall(UC_HOST_PIN, gpa, geo.size);
      live.push(s); // published to the other vCPUs only once shared
    }

    return {
      defaultSteps: 10000,
      rate: num(sc.params, 'rate'),
      layout: [
        { name: 'private memory in use', gpa: 0, size: geo.touch },
        { name: `buffer slots (${geo.slots} × ${formatBytes(geo.size)})`, gpa: geo.base, size: geo.slots * geo.size },
      ],
      hostSetup(): void {},
      *boot(g: GuestApi): GuestSeq {
        for (let off = 0; off < geo.touch; off += GiB) {
          const size = Math.min(GiB, geo.touch - off);
          // pKVM: guest memory is the guest's (OWNED) from the start; a MEM_UNSHARE of a page it owns
          // is refused (-EPERM), so the guest only touches it.
          if (arch.name === 'pkvm' || (yield* arch.requestConvert(g, off, size, true)) === 0) yield* arch.accept(g, off, size);
        }
        for (let i = 0; i < num(sc.params, 'buffers'); i++) yield* share(g, arch);
        yield g.ucall(UC_BOOT_DONE);
      },
      *event(g: GuestApi, _vcpu: number, n: number): GuestSeq {
        // A packet burst: the host fills part of a buffer, the guest picks it up.
        const s = live[rng.below(live.length)] as number;
        const off = rng.below(Math.floor(geo.size / burst)) * burst;
        const gpa = slotGpa(s) + off;
        yield g.ucall(UC_HOST_IO, gpa, burst, IO_HOST_WRITES);
        if (pin === 'inflight') {
          // Zero-copy: the backend keeps the burst pinned until it is recycled, `inflight` bursts later.
          yield g.ucall(UC_HOST_PIN, gpa, burst);
          pinned.push(gpa);
          if (pinned.length > num(sc.params, 'inflight')) yield g.ucall(UC_HOST_UNPIN, pinned.shift() as number, burst);
        }
        const got = (yield g.read(gpa, 8, SHARED)) as Uint8Array;
        if (bytesTag(got) !== tags.expected(gpa / PAGE)) counters.content_lost++;
        tags.forget(gpa / PAGE);
        if (recycle > 0 && n % recycle === recycle - 1) {
          // Free the oldest buffer (the host may still pin it: EAGAIN until dropped), share a new one.
          const old = live.shift() as number;
          const ogpa = slotGpa(old);
          if ((yield* arch.requestConvert(g, ogpa, geo.size, true)) === 0) yield* arch.accept(g, ogpa, geo.size);
          used.delete(old);
          yield* share(g, arch);
        }
        yield g.ucall(UC_EVENT);
      },
    };
  },
};
