/**
 * The invariant checker: one function over the whole model, run by tests after every operation.
 * It may be slow (tests only). Each property names what broke; the first violation throws
 * ModelBug. The properties (DEVELOPERS.md):
 *   1. the host never maps or pins a private page;
 *   2. no private page is reachable by a shared-only consumer, and no stage-2 leaf maps a page of
 *      the other kind or spans pages of different shareability;
 *   3. no page reaches a new owner unzeroed (free frames and never-prepared folios hold no data;
 *      every mapped guest_memfd folio was zeroed first);
 *   4. every stage-2 and host mapping points at the folio that currently backs it;
 *   5. accounting balances: refcounts, mapcounts, pins, page allocator and pool counters, file and
 *      VM reference counts; no lock is held and no invalidation is in progress at rest.
 */
import { assert } from '../lib/assert.js';
import { type Level, levelPages, type Pfn } from '../lib/types.js';
import { GmemFile } from '../gmem/file.js';
import type { GmemInode } from '../gmem/inode.js';
import { SHARED } from '../gmem/inode.js';
import type { ModelState } from '../kernel/model-kernel.js';
import { VcpuFile, VmFile } from '../kvm/files.js';
import { SPTE_GMEM, SPTE_PRIVATE } from '../kvm/stage2.js';
import { PG_uptodate } from '../mm/memmap.js';
import type { IommuDomain } from '../iommu/domain.js';

interface Owned {
  inode: GmemInode | null;
  index: number;
  in_cache: boolean;
}

export function checkInvariants(k: { state: ModelState }): void {
  const s = k.state;
  const phys = s.phys;

  // Who owns each page-cache folio, from the page caches themselves. Split HugeTLB blocks are
  // kept as ranges: their subpages are order-0 folios at head + i.
  const owner = new Map<number, Owned>();
  const splitOwners: Array<{ head: number; nr: number; inode: GmemInode; index: number }> = [];
  for (const inode of s.inodes) {
    assert(!inode.invalidate_lock.held, () => `inode ${inode.ino}: invalidate_lock held at rest`);
    inode.shareability?.checkWellFormed(`inode ${inode.ino} shareability`);
    if (inode.huge_order > 0 && inode.shareability !== null) {
      // The mixed-block record agrees with the range map, for every block that has a folio.
      for (const f of inode.pages.folios(0, inode.nr_pages)) {
        for (const order of [9, 18]) {
          if (order > inode.huge_order) continue;
          const nr = 2 ** order;
          for (let b = Math.floor(f.index / nr) * nr; b < f.index + 2 ** Math.max(f.order, 0) && b < inode.nr_pages; b += nr) {
            const mixed = !inode.shareability.uniform(b, Math.min(b + nr, inode.nr_pages)).found;
            assert(inode.isMixed(order, b) === mixed, () => `inode ${inode.ino}: block ${b} (order ${order}) mixed=${mixed}, record says ${inode.isMixed(order, b)}`);
          }
        }
      }
    }
    if (inode.huge_order > 0) {
      assert(inode.i_blocks === inode.pages.nr_pages * 8, () => `inode ${inode.ino}: i_blocks ${inode.i_blocks}, cached pages ${inode.pages.nr_pages}`);
    }
    for (const f of inode.pages.folios(0, inode.nr_pages)) {
      if (f.split === true) {
        splitOwners.push({ head: f.head, nr: 2 ** f.order, inode, index: f.index });
        if (inode.policy?.split === 'eager' && inode.shareability !== null) {
          assert(!inode.allPrivate(f.index, f.index + 2 ** f.order) || inode.policy.merge !== 'eager',
            () => `inode ${inode.ino}: block ${f.index} is all private but still split (eager merge)`);
        }
        continue;
      }
      if (f.order > 0 && inode.policy?.split === 'eager' && inode.shareability !== null) {
        assert(inode.allPrivate(f.index, f.index + 2 ** f.order),
          () => `inode ${inode.ino}: whole huge folio at ${f.index} in a block with shared pages (eager split)`);
      }
      assert(phys.isAllocated(f.head), () => `inode ${inode.ino}: page cache holds free pfn ${f.head}`);
      assert(phys.owner(f.head) === inode.mapping_id && phys.index(f.head) === f.index,
        () => `inode ${inode.ino}: folio ${f.head} at ${f.index} has owner ${phys.owner(f.head)}/${phys.index(f.head)}`);
      assert(phys.order(f.head) === f.order, () => `inode ${inode.ino}: folio order mismatch at ${f.index}`);
      owner.set(f.head, { inode, index: f.index, in_cache: true });
    }
  }

  // Anonymous memory's page caches (reachable through the VMAs that map it).
  for (const v of s.mm.vmaList) {
    const mapping = v.ops.mapping;
    if (v.ops instanceof GmemFile) continue;
    for (const f of mapping.pages.folios(0, Number.MAX_SAFE_INTEGER)) {
      assert(phys.owner(f.head) === mapping.mapping_id && phys.index(f.head) === f.index,
        () => `anon mapping ${mapping.mapping_id}: folio ${f.head} at ${f.index} has owner ${phys.owner(f.head)}`);
      owner.set(f.head, { inode: null, index: f.index, in_cache: true });
    }
  }

  const ownerOf = (p: number): Owned | undefined => {
    const o = owner.get(p);
    if (o !== undefined) return o;
    for (const b of splitOwners) if (p >= b.head && p < b.head + b.nr) return { inode: b.inode, index: b.index + (p - b.head), in_cache: true };
    return undefined;
  };

  // Host page tables: mapcounts, and property 1.
  const mapcount = new Map<number, number>();
  for (const [vpn, p] of s.mm.ptes()) {
    mapcount.set(p, (mapcount.get(p) ?? 0) + 1);
    const v = s.mm.findVma(vpn * 4096);
    assert(v !== null, () => `PTE at 0x${(vpn * 4096).toString(16)} outside any VMA`);
    const index = v.indexOf(vpn * 4096);
    const backing = v.ops.mapping.pages.pfnAt(index);
    assert(backing === p, () => `PTE at 0x${(vpn * 4096).toString(16)} maps pfn ${p}, the file has ${backing}`);
    assert(phys.order(p) === 0, () => `PTE at 0x${(vpn * 4096).toString(16)} maps a huge folio`);
    const o = ownerOf(p);
    const inode = o?.inode ?? null;
    if (o !== undefined && inode !== null) {
      assert(inode.isShared(o.index), () => `host maps private guest_memfd page ${o.index} of inode ${inode.ino}`);
      assert(phys.testFlag(p, PG_uptodate), () => `host maps guest_memfd page ${o.index} before it was zeroed`);
    }
  }

  // Pins: property 1 for pins, pincounts.
  const pincount = new Map<number, number>();
  for (const pin of s.mm.pinList.values()) {
    for (const p of pin.pfns) {
      pincount.set(p, (pincount.get(p) ?? 0) + 1);
      const o = ownerOf(p);
      const inode = o?.inode ?? null;
      if (o !== undefined && inode !== null) {
        assert(inode.isShared(o.index), () => `private guest_memfd page ${o.index} of inode ${inode.ino} is pinned`);
      }
    }
  }

  // IOMMU domains: their pins count, and every IOPTE maps what the file maps there, shared only.
  for (const d of s.iommus.values()) {
    for (const [p, n] of d.pins) pincount.set(p, (pincount.get(p) ?? 0) + n);
    checkIommu(d, ownerOf);
  }

  // Transient references held for tests/simulation, by folio.
  const transient = new Map<number, number>();
  for (const p of s.transient_refs.values()) transient.set(p, (transient.get(p) ?? 0) + 1);

  // Every folio: refcount = page cache refs + mapcount + pincount + LRU batch + transient;
  // property 3 for allocated folios.
  let buddy_used = phys.nr_reserved_frames;
  for (const head of phys.allocatedFolios()) {
    const nr = phys.nrPages(head);
    if (head < phys.buddy_end) buddy_used += nr;
    const o = ownerOf(head);
    const expected = (o?.in_cache ? nr : 0) + (mapcount.get(head) ?? 0) + (pincount.get(head) ?? 0) +
      (s.lru?.refsOn(head) ?? 0) + (transient.get(head) ?? 0);
    assert(phys.mapcount(head) === (mapcount.get(head) ?? 0), () => `pfn ${head}: mapcount ${phys.mapcount(head)}, PTEs ${mapcount.get(head) ?? 0}`);
    assert(phys.pincount(head) === (pincount.get(head) ?? 0), () => `pfn ${head}: pincount ${phys.pincount(head)}, pins ${pincount.get(head) ?? 0}`);
    assert(phys.refcount(head) === expected, () => `pfn ${head}: refcount ${phys.refcount(head)}, expected ${expected}`);
    assert(expected > 0, () => `pfn ${head}: allocated with no reference (leak)`);
    if (!phys.testFlag(head, PG_uptodate)) {
      assert(!phys.contents.anyWritten(head, nr), () => `pfn ${head}: data in a folio that was never zeroed`);
    }
  }
  assert(buddy_used === phys.nr_buddy_used, () => `page allocator counts ${phys.nr_buddy_used} used, folios hold ${buddy_used}`);
  const h = phys.hugetlb;
  if (h !== null) {
    assert(h.vmemmap_in_use === phys.nr_reserved_frames, () => `vmemmap in use ${h.vmemmap_in_use}, frames reserved ${phys.nr_reserved_frames}`);
    for (const sp of h.splitFolios()) {
      // A split block in the page cache must be one of a page cache's split entries.
      if (sp.default_in_cache) {
        assert(splitOwners.some((b) => b.head === sp.head), () => `split folio at pfn ${sp.head} in no page cache`);
      }
    }
    let resv = 0;
    for (const inode of s.inodes) if (inode.subpool !== null && inode.subpool.alive) resv += inode.subpool.max - inode.subpool.used;
    for (const hs of h.hstates) {
      assert(hs.free === hs.free_list.length, () => `${hs.size}: free ${hs.free}, free list ${hs.free_list.length}`);
      assert(hs.free >= hs.resv, () => `${hs.size}: free ${hs.free} below resv ${hs.resv}`);
    }
    const total_resv = h.hstates.reduce((a, hs) => a + hs.resv, 0);
    assert(total_resv === resv, () => `hstates reserve ${total_resv} pages, live subpools ${resv}`);
  }

  // Property 3 for free frames: contents exist only inside allocated folios.
  for (const p of phys.contents.writtenPfns()) {
    assert(isInsideAllocatedFolio(s, p) || ownerOf(p) !== undefined, () => `free pfn ${p} still holds data`);
  }
  phys.contents.checkConsistent();

  // VMs: stage-2 leaves (properties 2 and 4), memslot bindings, reference counts.
  // Each open VM or vCPU file (however many fds name it) holds one VM reference.
  const vmFileRefs = new Map<object, number>();
  const gmemFileRefs = new Map<GmemFile, number>();
  const seenFiles = new Set<object>();
  for (const [, f] of s.fds.entries()) {
    if ((f instanceof VmFile || f instanceof VcpuFile) && !seenFiles.has(f)) {
      seenFiles.add(f);
      const vm = f instanceof VmFile ? f.vm : f.vcpu.vm;
      vmFileRefs.set(vm, (vmFileRefs.get(vm) ?? 0) + 1);
    }
    if (f instanceof GmemFile) gmemFileRefs.set(f, (gmemFileRefs.get(f) ?? 0) + 1);
  }
  for (const v of s.mm.vmaList) if (v.ops instanceof GmemFile) gmemFileRefs.set(v.ops, (gmemFileRefs.get(v.ops) ?? 0) + 1);
  for (const d of s.iommus.values()) for (const a of d.areas) gmemFileRefs.set(a.file, (gmemFileRefs.get(a.file) ?? 0) + 1);

  for (const vm of s.vms) {
    assert(vm.mmu_invalidate_in_progress === 0, () => `VM ${vm.vm_id}: invalidation in progress at rest`);
    vm.attributes.checkWellFormed(`VM ${vm.vm_id} attributes`);
    for (const leaf of vm.stage2.leaves()) checkLeaf(s, vm, leaf);
    let gmem_files = 0;
    for (const inode of s.inodes) for (const f of inode.files) if (f.owner === vm) gmem_files++;
    // vCPU files are counted through the fd table; a closed vCPU fd drops its reference.
    const expected_refs = (vmFileRefs.get(vm) ?? 0) + gmem_files;
    assert(vm.refs === expected_refs, () => `VM ${vm.vm_id}: users_count ${vm.refs}, fds + files hold ${expected_refs}`);
    for (const slot of vm.memslots) {
      const file = slot.gmem_file;
      if (file === null) continue;
      assert(!file.released, () => `slot ${slot.id} points at a released guest_memfd file`);
      assert(file.bindings.allEqual(slot.gmem_pgoff, slot.gmem_pgoff + slot.npages, slot),
        () => `slot ${slot.id}: binding range does not point back at it`);
    }
  }
  for (const inode of s.inodes) {
    for (const f of inode.files) {
      f.bindings.checkWellFormed(`inode ${inode.ino} bindings`);
      for (const run of f.bindings.all()) {
        const slot = run.value;
        if (slot === null) continue;
        assert(slot.gmem_file === f, () => `binding at ${run.start} names slot ${slot.id}, which points elsewhere`);
      }
      assert(f.refs === (gmemFileRefs.get(f) ?? 0), () => `guest_memfd file of inode ${inode.ino}: f_count ${f.refs}, fds + VMAs hold ${gmemFileRefs.get(f) ?? 0}`);
    }
  }
}

function checkIommu(d: IommuDomain, ownerOf: (p: number) => Owned | undefined): void {
  for (const leaf of d.iopt.leaves()) {
    const nr = levelPages(leaf.level);
    const area = d.areas.find((a) => leaf.gfn >= a.iova_pfn && leaf.gfn + nr <= a.iova_pfn + (a.end - a.start));
    assert(area !== undefined && !area.revoked, () => `IOMMU ${d.id}: IOPTE at IOVA page ${leaf.gfn} outside any live area`);
    const inode = area.file.inode;
    const index = area.start + (leaf.gfn - area.iova_pfn);
    if (d.mode === 'pin') {
      // VFIO-style: the device keeps its pinned page even if the file moved on (stale, never freed).
      assert((d.pins.get(leaf.pfn) ?? 0) > 0, () => `IOMMU ${d.id}: IOPTE at ${leaf.gfn} maps pfn ${leaf.pfn} it does not pin`);
      const o = ownerOf(leaf.pfn);
      if (o?.inode === inode) assert(inode.isShared(o.index), () => `IOMMU ${d.id}: pinned page ${o.index} became private`);
      continue;
    }
    assert(inode.pages.pfnAt(index) === leaf.pfn, () => `IOMMU ${d.id}: IOPTE at ${leaf.gfn} maps pfn ${leaf.pfn}, the file has ${inode.pages.pfnAt(index)}`);
    const sh = inode.shareability;
    const shared = sh === null ? inode.init_shared : sh.allEqual(index, index + nr, SHARED);
    assert(shared, () => `IOMMU ${d.id}: IOPTE at ${leaf.gfn} (level ${leaf.level}) reaches a private page`);
    const f = inode.pages.lookup(index);
    assert(f !== null && (leaf.level === 1 || (f.split !== true && f.order >= (leaf.level === 2 ? 9 : 18))),
      () => `IOMMU ${d.id}: level-${leaf.level} IOPTE over a smaller folio`);
  }
}

function isInsideAllocatedFolio(s: ModelState, p: Pfn): boolean {
  const phys = s.phys;
  if (phys.isAllocated(p)) return true;
  for (const nr of [512, 262144]) {
    const head = (Math.floor(p / nr) * nr) as Pfn;
    if (phys.isAllocated(head) && phys.nrPages(head) > p - head) return true;
  }
  return false;
}

function checkLeaf(s: ModelState, vm: ModelState['vms'] extends ReadonlySet<infer V> ? V : never,
  leaf: { gfn: number; pfn: Pfn; level: Level; flags: number }): void {
  const nr = levelPages(leaf.level);
  const slot = vm.slotFor(leaf.gfn);
  assert(slot !== null && leaf.gfn + nr <= slot.end_gfn, () => `VM ${vm.vm_id}: stage-2 leaf at gfn ${leaf.gfn} outside any memslot`);
  const is_private = (leaf.flags & SPTE_PRIVATE) !== 0;
  if ((leaf.flags & SPTE_GMEM) !== 0) {
    const file = slot.gmem_file;
    assert(file !== null, () => `VM ${vm.vm_id}: gmem leaf at gfn ${leaf.gfn} in a slot with no file`);
    const inode = file.inode;
    const index = leaf.gfn - slot.base_gfn + slot.gmem_pgoff;
    const backing = inode.pages.pfnAt(index);
    assert(backing === leaf.pfn, () => `VM ${vm.vm_id}: leaf at gfn ${leaf.gfn} maps pfn ${leaf.pfn}, guest_memfd has ${backing}`);
    const folio = inode.pages.lookup(index);
    const head = folio?.head;
    assert(head !== undefined && s.phys.testFlag(head, PG_uptodate), () => `VM ${vm.vm_id}: leaf at gfn ${leaf.gfn} maps a folio never zeroed`);
    assert(folio !== null && (leaf.level === 1 || (folio.split !== true && folio.order >= (leaf.level === 2 ? 9 : 18))),
      () => `VM ${vm.vm_id}: level-${leaf.level} leaf at gfn ${leaf.gfn} over a folio of order ${folio?.order} (split ${folio?.split === true})`);
    // A VM without private memory is not a shared-only consumer: it owns all its memory, and (as
    // upstream) KVM never calls its accesses private, even on pages its host may not map.
    if (inode.shareability !== null && vm.has_private_mem) {
      const u = inode.shareability.uniform(index, index + nr);
      assert(u.found, () => `VM ${vm.vm_id}: leaf at gfn ${leaf.gfn} (level ${leaf.level}) spans shared and private pages`);
      assert((u.value !== SHARED) === is_private,
        () => `VM ${vm.vm_id}: ${is_private ? 'private' : 'shared'} leaf at gfn ${leaf.gfn} maps a ${u.value === SHARED ? 'shared' : 'private'} page`);
    }
    if (is_private) assert(vm.memIsPrivate(leaf.gfn), () => `VM ${vm.vm_id}: private leaf at shared gfn ${leaf.gfn}`);
  } else {
    assert(!is_private, () => `VM ${vm.vm_id}: private leaf at gfn ${leaf.gfn} not backed by guest_memfd`);
    const hva = slot.hvaOf(leaf.gfn);
    const pte = s.mm.pteAt(Math.floor(hva / 4096));
    assert(pte === leaf.pfn, () => `VM ${vm.vm_id}: shared leaf at gfn ${leaf.gfn} maps pfn ${leaf.pfn}, the host PTE has ${pte}`);
  }
}
