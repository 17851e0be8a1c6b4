/**
 * A digest of the whole model: every piece of state a system call can change, serialised in a
 * fixed order and hashed. Two equal digests mean the model is in the same state, which is how the
 * property tests prove that a failed call changed nothing.
 */
import { createHash } from 'node:crypto';
import { GmemFile } from '../gmem/file.js';
import type { ModelState } from '../kernel/model-kernel.js';
import { VcpuFile, VmFile } from '../kvm/files.js';

export function digestModel(k: { state: ModelState }): string {
  const s = k.state;
  const h = createHash('sha256');
  const put = (...parts: Array<string | number | boolean | bigint>): void => {
    h.update(parts.join(','));
    h.update(';');
  };
  const phys = s.phys;
  put('phys', phys.nr_buddy_used, phys.buddy_end);
  for (const head of phys.allocatedFolios()) {
    put('folio', head, phys.order(head), phys.refcount(head), phys.mapcount(head), phys.pincount(head),
      phys.flags(head), phys.owner(head), phys.index(head));
  }
  for (const p of phys.contents.writtenPfns()) {
    put('page', p);
    h.update(phys.contents.peek(p) as Uint8Array);
  }
  for (const [fd, f] of s.fds.entries()) {
    const id = f instanceof GmemFile ? `gmem:${f.inode.ino}` : f instanceof VmFile ? `vm:${f.vm.vm_id}`
      : f instanceof VcpuFile ? `vcpu:${f.vcpu.vm.vm_id}:${f.vcpu.vcpu_id}` : f.kind;
    put('fd', fd, id, f.refs);
  }
  for (const v of s.mm.vmaList) put('vma', v.start, v.end, v.prot, v.shared, v.mayexec, v.pgoff, v.ops.mapping.mapping_id);
  for (const [vpn, p] of s.mm.ptes()) put('pte', vpn, p);
  for (const [id, pin] of s.mm.pinList) put('pin', id, ...pin.pfns);
  for (const inode of [...s.inodes].sort((a, b) => a.ino - b.ino)) {
    put('inode', inode.ino, inode.nr_pages, inode.flags, inode.mtime_ticks, inode.i_blocks, inode.pages.nr_pages);
    for (const f of inode.pages.folios(0, inode.nr_pages)) put('pc', f.index, f.head, f.order);
    if (inode.shareability !== null) for (const r of inode.shareability.all()) put('sh', r.start, r.end, r.value);
    for (const file of inode.files) {
      put('file', file.refs, file.owner.vm_id);
      for (const r of file.bindings.all()) put('bind', r.start, r.end, r.value === null ? -1 : r.value.id);
    }
  }
  for (const vm of [...s.vms].sort((a, b) => a.vm_id - b.vm_id)) {
    put('vm', vm.vm_id, vm.type, vm.refs, vm.exit_hypercall_mask, vm.mmu_invalidate_seq, [...vm.vcpu_ids].join(':'));
    for (const slot of vm.memslots) {
      put('slot', slot.id, slot.base_gfn, slot.npages, slot.flags, slot.userspace_addr, slot.gmem_pgoff,
        slot.gmem_only, slot.gmem_file === null ? -1 : slot.gmem_file.inode.ino);
    }
    for (const r of vm.attributes.all()) put('attr', r.start, r.end, r.value);
    for (const l of vm.stage2.leaves()) put('spte', l.gfn, l.pfn, l.level, l.flags);
  }
  put('lru', ...(s.lru?.queued ?? []));
  for (const [id, d] of s.iommus) {
    put('iommu', id, d.mode, d.dma_faults, d.window_pages, ...[...d.pins].flat());
    for (const a of d.areas) put('area', a.file.inode.ino, a.start, a.end, a.iova_pfn, a.revoked);
    for (const l of d.iopt.leaves()) put('iopte', l.gfn, l.pfn, l.level);
  }
  for (const [id, p] of s.transient_refs) put('transient', id, p);
  for (const [key, vcpu] of s.vcpus) put('vcpu', key, vcpu.halted, vcpu.nr_runs, JSON.stringify(vcpu.run, bigintSafe));
  return h.digest('hex');
}

function bigintSafe(_k: string, v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return Array.from(v);
  return v;
}
