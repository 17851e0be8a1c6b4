/**
 * The design knobs the conversion and HugeTLB proposals argue about
 * (in-place-conversion-and-hugetlb.md §7), as model policies. Each defaults to what the chosen
 * uAPI generation does; a policy the uAPI cannot express is refused by name.
 */
import type { GmemUapi } from '../gmem/inode.js';

export interface Policy {
  /**
   * When a huge folio is split because a page of its block became shared.
   * - 'eager' (R51, HTLB-WIP): at conversion time, so folio structure always mirrors shareability.
   *   For: a fault can never map more than the uniform region; refcounts are per 4K page.
   *   Against: "we end up splitting every 1GB to 4K" — one shared page costs the whole block.
   * - 'lazy' (Michael Roth's alternative): keep the folio whole, record which blocks are mixed
   *   (like lpage_info) and split only when a host fault needs a shared 4K page; KVM maps at the
   *   largest level whose range is uniform.
   *   For: guests that convert but never touch the shared pages from the host keep huge folios.
   *   Against: the per-folio refcount check sees host references of any subpage.
   */
  split: 'eager' | 'lazy';
  /**
   * When a split block becomes a huge folio again.
   * - 'eager' (R51, WIP): as soon as the block is all private again.
   *   For: huge mappings come back. Against: merge needs every subpage unreferenced (EAGAIN churn).
   * - 'on-free': only when the pages are freed (truncate/close), via the folio_put path.
   *   For: never blocks a conversion. Against: a long-lived VM keeps 4K folios forever.
   */
  merge: 'eager' | 'on-free';
  /**
   * What a conversion that fails part-way leaves behind.
   * - 'all-or-nothing' (IPC-v8, order-0): check everything before the point of no return.
   * - 'per-huge-page' (HTLB-WIP): batches of one huge page; earlier batches stay converted.
   * - 'rollback' (R51): a work list, undone in reverse on failure (failures while undoing WARN).
   */
  atomicity: 'all-or-nothing' | 'per-huge-page' | 'rollback';
  /**
   * error_offset on EAGAIN: 'max-start-folio' (final: max(start, folio index)), 'folio-head'
   * (R51: the offending folio's head, may be below start), 'unset' (an AMDESE tree: only for
   * unrecoverable errors).
   */
  error_offset: 'max-start-folio' | 'folio-head' | 'unset';
  /**
   * A sub-huge-page punch on a HugeTLB file: 'zero-partial' (R51: zero the partial huge page,
   * free nothing) or 'aligned-only' (WIP: EINVAL unless huge-page aligned).
   */
  punch: 'zero-partial' | 'aligned-only';
  /**
   * The state of a file whose creation flags do not choose (no INIT_SHARED in 'in-place', no
   * INIT_PRIVATE in 'rfc-1g'):
   * - 'private' (final design): the upstream mmap series' precedent; CoCo guests start private.
   * - 'shared' (R51; Michael Roth: drop INIT_PRIVATE, document shared as the default): simplest,
   *   non-CoCo users benefit, CoCo VMs convert at their own granularity.
   */
  default_state: 'private' | 'shared';
  /**
   * Folios and the per-CPU LRU add batch (which holds a reference until drained):
   * - 'drain-once' (IPC-v2+): gmem folios join the unevictable LRU; the conversion check drains the
   *   batches once (lru_add_drain_all) when a folio shows an extra reference, then re-checks.
   * - 'no-drain': the same LRU participation without the drain: batch references make conversions
   *   fail with EAGAIN until something drains them (what IPC-v1 review ran into).
   * - 'off-lru' (R51, IPC-v1): gmem folios never enter the LRU, so no batch reference exists.
   */
  lru: 'drain-once' | 'no-drain' | 'off-lru';
}

export type PolicyName = keyof Policy;

export const POLICY_VALUES: { readonly [K in PolicyName]: readonly Policy[K][] } = {
  split: ['eager', 'lazy'],
  merge: ['eager', 'on-free'],
  atomicity: ['all-or-nothing', 'per-huge-page', 'rollback'],
  error_offset: ['max-start-folio', 'folio-head', 'unset'],
  punch: ['zero-partial', 'aligned-only'],
  default_state: ['private', 'shared'],
  lru: ['drain-once', 'no-drain', 'off-lru'],
};

/** What each uAPI generation does. */
export function defaultPolicy(uapi: GmemUapi): Policy {
  switch (uapi) {
    case 'rfc-1g':
      return {
        split: 'eager', merge: 'eager', atomicity: 'rollback', error_offset: 'folio-head', punch: 'zero-partial',
        default_state: 'shared', lru: 'off-lru',
      };
    case 'in-place':
    case 'v6.18':
      return {
        split: 'eager', merge: 'eager', atomicity: 'all-or-nothing', error_offset: 'max-start-folio', punch: 'aligned-only',
        default_state: 'private', lru: 'drain-once',
      };
  }
}

/** Policies a uAPI cannot express at all (6.18 has no conversion and no HugeTLB). */
export function checkPolicy(uapi: GmemUapi, p: Partial<Record<string, string>>): Policy {
  const out: Policy = { ...defaultPolicy(uapi) };
  for (const [key, value] of Object.entries(p)) {
    if (!(key in POLICY_VALUES)) throw new TypeError(`unknown policy '${key}' (known: ${Object.keys(POLICY_VALUES).join(', ')})`);
    const allowed = POLICY_VALUES[key as PolicyName] as readonly string[];
    if (value === undefined || !allowed.includes(value)) {
      throw new TypeError(`policy ${key}: '${String(value)}' is not one of ${allowed.join(', ')}`);
    }
    if (uapi === 'v6.18' && value !== (defaultPolicy(uapi) as unknown as Record<string, string>)[key]) {
      throw new TypeError(`policy ${key}=${value}: uapi 'v6.18' has no conversion or HugeTLB, so it cannot express it`);
    }
    (out as unknown as Record<string, string>)[key] = value;
  }
  return out;
}
