/**
 * Lazy acceptance of guest memory, as Linux does it on SEV-SNP and TDX (unaccepted memory): the
 * buddy allocator accepts a MAX_PAGE_ORDER block (4 MiB) the first time it hands out memory from
 * it, taking blocks from the zone's unaccepted list in address order. Each acceptance is a
 * conversion request (→private: SNP Page State Change, TDX MapGPA) followed by the accept sweep
 * (PVALIDATE / TDG.MEM.PAGE.ACCEPT), which faults the chunk in at mapping granularity.
 *
 * Boot (vCPU 0): the chunks holding the per-CPU area and the bounce-buffer pool are accepted,
 * then the SWIOTLB pool is converted shared (SEV/TDX guests size it 6% of memory, 64 MiB..1 GiB,
 * allocated top-down below 4 GiB), and, on SNP, each vCPU's GHCB page (the per-CPU runtime data,
 * two pages per CPU, just below the pool). Events: one chunk accepted each; every `io_every`
 * events a virtio request goes through the next bounce slot (the host device model touches it); every
 * `coherent_every` events a dma_alloc_coherent buffer is made shared, used by the host, and
 * freed (→private again, re-accepted at 4K).
 *
 * Implicit conversions (`implicit: N`, SNP/TDX VM types only): after accepting its chunk, the
 * event uses N pages of it as shared buffers without asking first (KVM turns an access of the
 * other kind into an exit to user space, which QEMU answers by converting): the guest writes the page shared (C-bit
 * clear / shared bit set), KVM_RUN fails with EFAULT and KVM_EXIT_MEMORY_FAULT (flags 0, the
 * page's gpa, size 4096), the VMM converts that page shared (QEMU kvm_convert_memory) and re-enters,
 * the write completes; the host reads the page; then the guest takes the page back by accessing it
 * private: the same exit with KVM_MEMORY_EXIT_FLAG_PRIVATE, a conversion back, re-entry; and it
 * re-accepts the page at 4K. Two exits per page; the pages are spread evenly over the chunk
 * (page j at offset ⌊j × chunk pages / N⌋).
 *
 * Layout (hand-checkable): low = min(guest, 4 GiB); bounce pool = [align2M(low − bounce), +bounce);
 * per-CPU pages at pool − 2 MiB + 8 KiB × cpu (256 CPUs per 2 MiB, further ones 2 MiB lower).
 */
import type { GuestApi } from '../../kvm/guest.js';
import type { ArchBackend, GuestSeq } from '../arch/types.js';
import { tagBytes, bytesTag } from '../contents.js';
import { IO_HOST_READS, IO_HOST_WRITES, UC_BOOT_DONE, UC_EVENT, UC_HOST_IO } from '../protocol.js';
import type { Scenario } from '../scenario.js';
import type { ParamSpecs } from '../schema.js';
import { formatBytes, GiB, MiB } from '../units.js';
import type { Vmm } from '../vmm.js';
import { IndexPermutation, M2, num, PAGE, PRIVATE, SHARED, type Workload, type WorkloadCtx } from './types.js';

export function lazyAcceptParams(defaults: { percpu_shared: boolean; coherent_every: number; rate: number }): ParamSpecs {
  return {
    chunk: { kind: 'size', doc: 'accept unit (Linux: MAX_PAGE_ORDER block, 4 MiB)', min: 4096, max: GiB, multipleOf: 4096, default: 4 * MiB },
    order: { kind: 'enum', doc: 'order in which chunks are accepted (Linux: address order)', values: ['sequential', 'random'], default: 'sequential' },
    initial: {
      kind: 'enum', values: ['private', 'shared'], default: 'private',
      doc: 'state of unaccepted memory: private (QEMU today: all RAM private at start, accept conversions are no-ops) or shared (the VMM mirrors the firmware: each accept is a real shared→private conversion)',
    },
    bounce: { kind: 'size', doc: "SWIOTLB pool converted shared at boot ('auto': 6% of memory, 64 MiB..1 GiB; 0: none)", min: 0, max: GiB, multipleOf: M2, default: 'auto' },
    percpu_shared: { kind: 'bool', doc: 'one shared page per vCPU below the pool (SNP: the GHCB)', default: defaults.percpu_shared },
    io_every: { kind: 'int', doc: 'a virtio request through a bounce buffer every N events (0: never)', min: 0, max: 1_000_000, default: 16 },
    io_size: { kind: 'size', doc: 'bytes per virtio request', min: 4096, max: 64 * MiB, multipleOf: 4096, default: 16 * 1024 },
    coherent_every: { kind: 'int', doc: 'a shared dma_alloc_coherent buffer made and freed every N events (0: never)', min: 0, max: 1_000_000, default: defaults.coherent_every },
    coherent_size: { kind: 'size', doc: 'bytes per coherent buffer', min: 4096, max: M2, multipleOf: 4096, default: 4096 },
    implicit: {
      kind: 'int', min: 0, max: 262144, default: 0,
      doc: 'pages per accepted chunk the guest shares and takes back without asking (SNP/TDX VM types): each access of the wrong kind is a KVM_EXIT_MEMORY_FAULT the VMM answers with a conversion (0: every conversion is an explicit request)',
    },
    rate: { kind: 'number', doc: 'events per simulated second', min: 1e-3, max: 1e9, default: defaults.rate },
  };
}

interface Layout {
  low: number;
  bounce: number;
  bounce_gpa: number;
  percpu_lowest: number;
  reserved_lo: number;
  reserved_hi: number;
}

/** The bounce pool size for 'auto': 6% of guest memory, 64 MiB..1 GiB, up to a 2 MiB multiple. */
export function autoBounce(guest: number): number {
  const six = Math.min(Math.max(Math.floor(guest * 6 / 100), 64 * MiB), GiB);
  return Math.ceil(six / M2) * M2;
}

function layoutOf(sc: Scenario): Layout {
  const p = sc.params;
  const chunk = num(p, 'chunk');
  const low = Math.min(sc.guest, 4 * GiB);
  const bounce = p.bounce === 'auto' ? Math.min(autoBounce(sc.guest), Math.floor(low / 2 / M2) * M2) : num(p, 'bounce');
  const bounce_gpa = Math.floor((low - bounce) / M2) * M2;
  const percpu_blocks = p.percpu_shared === true ? Math.ceil(sc.vcpus / 256) : 0;
  const percpu_lowest = bounce_gpa - percpu_blocks * M2;
  const top = bounce > 0 ? bounce_gpa + bounce : bounce_gpa;
  const bottom = percpu_blocks > 0 ? percpu_lowest : bounce_gpa;
  return {
    low, bounce, bounce_gpa, percpu_lowest,
    reserved_lo: Math.floor(bottom / chunk) * chunk,
    reserved_hi: top > bottom ? Math.min(Math.ceil(top / chunk) * chunk, sc.guest) : Math.floor(bottom / chunk) * chunk,
  };
}

export function checkLazyAccept(sc: Scenario): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const p = sc.params;
  const chunk = num(p, 'chunk');
  if (chunk > sc.guest) out.push(['chunk', `${formatBytes(chunk)} is larger than the guest (${formatBytes(sc.guest)})`]);
  const l = layoutOf(sc);
  if (l.percpu_lowest < 0 || l.bounce_gpa < 0) {
    out.push(['bounce', `${formatBytes(l.bounce)} and the per-CPU pages do not fit below ${formatBytes(l.low)}`]);
  }
  const implicit = num(p, 'implicit');
  if (implicit > chunk / PAGE) out.push(['implicit', `${implicit} pages do not fit in a ${formatBytes(chunk)} chunk (${chunk / PAGE} pages)`]);
  if (implicit > 0 && (sc.vm === 'sw-protected' || sc.vm === 'pkvm' || sc.uapi === 'v6.18')) {
    out.push(['implicit', `implicit conversions need a VM type on which the guest chooses private or shared per access: vm snp or tdx on uapi in-place or rfc-1g (here vm ${sc.vm}, uapi ${sc.uapi})`]);
  }
  if (num(p, 'io_every') > 0 && l.bounce < num(p, 'io_size')) {
    out.push(['io_size', `${formatBytes(num(p, 'io_size'))} does not fit in the bounce pool (${formatBytes(l.bounce)}); set io_every: 0 or a pool`]);
  }
  return out;
}

export function createLazyAccept(ctx: WorkloadCtx): Workload {
  const { sc, arch, rng, tags, counters } = ctx;
  const p = sc.params;
  const chunk = num(p, 'chunk');
  const l = layoutOf(sc);
  const total_chunks = Math.ceil(sc.guest / chunk);
  const r0 = l.reserved_lo / chunk;
  const r1 = l.reserved_hi / chunk;
  const event_chunks = total_chunks - (r1 - r0);
  const perm = p.order === 'random' && event_chunks > 0 ? new IndexPermutation(event_chunks, rng) : null;
  const io_every = num(p, 'io_every');
  const io_size = num(p, 'io_size');
  const coherent_every = num(p, 'coherent_every');
  const coherent_size = num(p, 'coherent_size');
  const implicit = num(p, 'implicit');
  let accepted_events = 0;
  let io_count = 0;

  const chunkGpa = (i: number): number => {
    const idx = perm === null ? i : perm.at(i);
    return (idx < r0 ? idx : idx + (r1 - r0)) * chunk;
  };
  const percpuGpa = (cpu: number): number => l.bounce_gpa - M2 * (1 + Math.floor(cpu / 256)) + (cpu % 256) * 2 * PAGE;

  function* acceptRange(g: GuestApi, a: ArchBackend, gpa: number, size: number): GuestSeq {
    const ret = yield* a.requestConvert(g, gpa, size, true);
    if (ret === 0) yield* a.accept(g, gpa, size);
  }

  /**
   * A virtio request through a bounce buffer, alternately host→guest (a disk read: the device
   * fills the buffer, the guest reads it; the first request of a booting guest) and guest→host
   * (the guest writes, the device reads). SWIOTLB hands out slots from a rotating index:
   * request j uses slot j (mod the pool).
   */
  function* virtio(g: GuestApi): GuestSeq {
    const slots = Math.floor(l.bounce / io_size);
    const j = io_count++;
    const gpa = l.bounce_gpa + (j % slots) * io_size;
    if (j % 2 === 0) {
      yield g.ucall(UC_HOST_IO, gpa, io_size, IO_HOST_WRITES);
      const got = (yield g.read(gpa, 8, SHARED)) as Uint8Array;
      if (bytesTag(got) !== tags.expected(gpa / PAGE)) counters.content_lost++;
    } else {
      yield g.write(gpa, tagBytes(tags.issue(gpa / PAGE)), SHARED);
      yield g.ucall(UC_HOST_IO, gpa, io_size, IO_HOST_READS);
    }
  }

  /**
   * `implicit` pages of the chunk at gpa used shared and taken back with no request: each access
   * of the wrong kind exits with KVM_EXIT_MEMORY_FAULT and the VMM converts the page.
   */
  function* implicitUse(g: GuestApi, gpa: number, size: number): GuestSeq {
    const pages = size / PAGE;
    for (let j = 0; j < implicit; j++) {
      const page = gpa + Math.floor((j * pages) / implicit) * PAGE;
      yield g.write(page, tagBytes(tags.issue(page / PAGE)), SHARED); // exit: the VMM converts →shared
      yield g.ucall(UC_HOST_IO, page, PAGE, IO_HOST_READS);
      tags.forget(page / PAGE);
      yield g.read(page, 8, PRIVATE); // exit: the VMM converts →private
      yield* arch.accept(g, page, PAGE);
    }
  }

  /** dma_alloc_coherent + use + dma_free_coherent of a small buffer in accepted memory. */
  function* coherent(g: GuestApi): GuestSeq {
    if (accepted_events === 0) return;
    const base = chunkGpa(rng.below(accepted_events));
    const size = Math.min(coherent_size, sc.guest - base);
    const gpa = base + Math.floor(rng.below(Math.max(1, (Math.min(chunk, sc.guest - base) - size) / PAGE + 1))) * PAGE;
    if ((yield* arch.requestConvert(g, gpa, size, false)) !== 0) return;
    yield g.write(gpa, tagBytes(tags.issue(gpa / PAGE)), SHARED);
    yield g.ucall(UC_HOST_IO, gpa, size, IO_HOST_READS);
    tags.forget(gpa / PAGE);
    yield* acceptRange(g, arch, gpa, size);
  }

  return {
    defaultSteps: event_chunks,
    rate: num(p, 'rate'),
    layout: [
      ...(l.bounce > 0 ? [{ name: 'bounce pool (shared)', gpa: l.bounce_gpa, size: l.bounce }] : []),
      ...(p.percpu_shared === true ? [{ name: `per-CPU shared pages (${sc.vcpus})`, gpa: l.percpu_lowest, size: l.bounce_gpa - l.percpu_lowest }] : []),
      { name: 'accepted at boot', gpa: l.reserved_lo, size: l.reserved_hi - l.reserved_lo },
    ],
    hostSetup(vmm: Vmm): void {
      if (p.initial === 'shared') vmm.convert(0, sc.guest, false);
    },
    *boot(g: GuestApi): GuestSeq {
      for (let c = r0; c < r1; c++) yield* acceptRange(g, arch, c * chunk, Math.min(chunk, sc.guest - c * chunk));
      if (l.bounce > 0) yield* arch.requestConvert(g, l.bounce_gpa, l.bounce, false);
      if (p.percpu_shared === true) {
        for (let cpu = 0; cpu < sc.vcpus; cpu++) yield* arch.requestConvert(g, percpuGpa(cpu), PAGE, false);
        // Each CPU then uses its runtime data: the GHCB (shared) and the backup page next to it (private).
        for (let cpu = 0; cpu < sc.vcpus; cpu++) {
          yield g.write(percpuGpa(cpu), new Uint8Array(8), SHARED);
          yield g.write(percpuGpa(cpu) + PAGE, new Uint8Array(8), PRIVATE);
        }
      }
      yield g.ucall(UC_BOOT_DONE);
    },
    *event(g: GuestApi, _vcpu: number, n: number): GuestSeq {
      if (n < event_chunks) {
        const gpa = chunkGpa(n);
        const size = Math.min(chunk, sc.guest - gpa);
        yield* acceptRange(g, arch, gpa, size);
        if (implicit > 0) yield* implicitUse(g, gpa, size);
        accepted_events = n + 1;
      }
      if (io_every > 0 && l.bounce > 0 && n % io_every === io_every - 1) yield* virtio(g);
      if (coherent_every > 0 && n % coherent_every === coherent_every - 1) yield* coherent(g);
      yield g.ucall(UC_EVENT);
    },
  };
}
