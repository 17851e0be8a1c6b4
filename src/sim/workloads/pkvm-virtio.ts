/**
 * pkvm-virtio: a pKVM protected guest doing virtio I/O in place: for each request it shares the
 * buffer's pages with MEM_SHARE (one 4 KiB granule per hypercall), kicks the device, and
 * unshares them with MEM_UNSHARE once the host is done. Contents are preserved across the share
 * (the guest writes before sharing; the host must read what it wrote). Sometimes the host
 * backend still holds a reference to a buffer when the guest unshares it (a vhost GUP pin not
 * yet put): the conversion to private fails with EAGAIN until the VMM has it dropped. On vm pkvm
 * each MEM_SHARE / MEM_UNSHARE is a KVM_EXIT_HYPERCALL of the model's KVM_VM_TYPE_ARM_PROTECTED
 * (src/sim/arch/pkvm.ts); on sw-protected a KVM_HC_MAP_GPA_RANGE exit per request.
 */
import type { GuestApi } from '../../kvm/guest.js';
import type { GuestSeq } from '../arch/types.js';
import { bytesTag, tagBytes } from '../contents.js';
import { IO_HOST_READS, IO_HOST_WRITES, UC_BOOT_DONE, UC_EVENT, UC_HOST_IO, UC_HOST_PIN } from '../protocol.js';
import type { Scenario } from '../scenario.js';
import { formatBytes, GiB, MiB } from '../units.js';
import { M2, num, PAGE, PRIVATE, SHARED, type Workload, type WorkloadCtx, type WorkloadSpec } from './types.js';

function regionOf(sc: Scenario): { gpa: number; size: number } {
  const size = sc.params.region === 'auto' ? Math.max(M2, Math.min(Math.floor(sc.guest / 4 / M2) * M2, GiB)) : num(sc.params, 'region');
  const gpa = Math.floor(sc.guest / 4 / M2) * M2;
  return { gpa, size };
}

export const pkvmVirtio: WorkloadSpec = {
  name: 'pkvm-virtio',
  description: 'pKVM guest sharing and unsharing virtio buffers at 4K granularity, host holding some late',
  vms: ['pkvm', 'sw-protected'],
  params: {
    region: { kind: 'size', doc: "where the guest's I/O buffers come from ('auto': a quarter of memory, at most 1 GiB)", min: M2, max: GiB * 64, multipleOf: M2, default: 'auto' },
    request: { kind: 'size', doc: 'bytes per virtio request (pages shared one by one)', min: 4096, max: MiB, multipleOf: 4096, default: 16 * 1024 },
    write_ratio: { kind: 'number', doc: 'share of requests that go guest→host (the rest host→guest)', min: 0, max: 1, default: 0.5 },
    host_hold: { kind: 'number', doc: 'probability the host backend still holds the buffer when the guest unshares', min: 0, max: 1, default: 0.05 },
    touch: { kind: 'size', doc: "memory the guest has in use from gpa 0 at boot, donated as it faults ('auto': up to the end of the region)", min: 0, max: 4096 * GiB, multipleOf: M2, default: 'auto' },
    rate: { kind: 'number', doc: 'events per simulated second', min: 1e-3, max: 1e9, default: 20000 },
  },
  check(sc: Scenario): Array<[string, string]> {
    const r = regionOf(sc);
    if (r.gpa + r.size > sc.guest) return [['region', `${formatBytes(r.size)} at ${formatBytes(r.gpa)} does not fit in the guest (${formatBytes(sc.guest)})`]];
    if (num(sc.params, 'request') > r.size) return [['request', 'larger than the region']];
    if (sc.params.touch !== 'auto' && num(sc.params, 'touch') > sc.guest) return [['touch', `${formatBytes(num(sc.params, 'touch'))} is larger than the guest`]];
    return [];
  },
  create(ctx: WorkloadCtx): Workload {
    const { sc, arch, rng, tags, counters } = ctx;
    const region = regionOf(sc);
    const req = num(sc.params, 'request');
    const slots = Math.floor(region.size / req);
    const busy = new Set<number>();
    const touch = sc.params.touch === 'auto' ? region.gpa + region.size : num(sc.params, 'touch');
    return {
      defaultSteps: 5000,
      rate: num(sc.params, 'rate'),
      layout: [{ name: 'virtio buffer region', gpa: region.gpa, size: region.size }],
      hostSetup(): void {},
      *boot(g: GuestApi): GuestSeq {
        for (let off = 0; off < touch; off += GiB) yield* arch.accept(g, off, Math.min(GiB, touch - off));
        yield g.ucall(UC_BOOT_DONE);
      },
      *event(g: GuestApi, _vcpu: number, _n: number): GuestSeq {
        let slot = rng.below(slots);
        for (let tries = 0; busy.has(slot) && tries < 8; tries++) slot = rng.below(slots);
        if (!busy.has(slot)) {
          busy.add(slot);
          const gpa = region.gpa + slot * req;
          const toHost = rng.bool(num(sc.params, 'write_ratio'));
          // The guest writes its request in place, then shares the pages (pKVM preserves them).
          if (toHost) yield g.write(gpa, tagBytes(tags.issue(gpa / PAGE)), PRIVATE);
          else yield g.write(gpa, new Uint8Array(8), PRIVATE); // the driver touches its buffer (first use donates it)
          if ((yield* arch.requestConvert(g, gpa, req, false)) === 0) {
            if (toHost) {
              yield g.ucall(UC_HOST_IO, gpa, req, IO_HOST_READS);
            } else {
              yield g.ucall(UC_HOST_IO, gpa, req, IO_HOST_WRITES);
              const got = (yield g.read(gpa, 8, SHARED)) as Uint8Array;
              if (bytesTag(got) !== tags.expected(gpa / PAGE)) counters.content_lost++;
            }
            if (rng.bool(num(sc.params, 'host_hold'))) yield g.ucall(UC_HOST_PIN, gpa, req);
            yield* arch.requestConvert(g, gpa, req, true);
          }
          tags.forget(gpa / PAGE);
          busy.delete(slot);
        }
        yield g.ucall(UC_EVENT);
      },
    };
  },
};
