// The hygiene page's state lives in the URL: the kind, site and name
// filters, the two thresholds and the page. parseHygiene and hygieneSearch
// are inverses on valid state (test/hygiene.test.ts); anything invalid in a
// URL falls back to the default rather than reaching the API.

/** Finding kinds of GET /vms/hygiene, in display order. */
export const HYGIENE_KINDS = ['old_snapshot', 'tools_not_running', 'tools_outdated', 'powered_off'] as const;
export type HygieneKind = (typeof HYGIENE_KINDS)[number];

/** The API's defaults of the thresholds. */
export const DEFAULT_SNAPSHOT_AGE = '7d';
export const DEFAULT_POWERED_OFF_FOR = '30d';
/** Threshold choices offered by the page (any valid duration in a URL is kept). */
export const SNAPSHOT_AGES = ['1d', '3d', '7d', '14d', '30d', '90d'] as const;
export const POWERED_OFF_FORS = ['7d', '14d', '30d', '60d', '90d', '180d'] as const;
export const HYGIENE_PAGE_SIZE = 100;

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const MIN_MS = HOUR;
const MAX_MS = 3650 * DAY;

/**
 * durationMS reads a threshold as GET /vms/hygiene accepts it, whole days
 * ("7d") or hours and minutes ("36h", "90m", "1h30m"), within 1 h and
 * 3650 d; null for anything else.
 */
export function durationMS(s: string): number | null {
  let ms: number;
  const days = /^(\d{1,4})d$/.exec(s);
  if (days) ms = Number(days[1]) * DAY;
  else {
    const hm = /^(?:(\d{1,6})h)?(?:(\d{1,8})m)?$/.exec(s);
    if (!hm || (!hm[1] && !hm[2])) return null;
    ms = Number(hm[1] ?? 0) * HOUR + Number(hm[2] ?? 0) * 60_000;
  }
  return ms >= MIN_MS && ms <= MAX_MS ? ms : null;
}

export interface HygieneState {
  kind: HygieneKind | '';
  site: string;
  q: string;
  snapshotAge: string;
  poweredOffFor: string;
  page: number;
}

export function defaultHygiene(): HygieneState {
  return { kind: '', site: '', q: '', snapshotAge: DEFAULT_SNAPSHOT_AGE, poweredOffFor: DEFAULT_POWERED_OFF_FOR, page: 1 };
}

/** parseHygiene reads the page's state from a query string ("?a=b" or "a=b"). */
export function parseHygiene(search: string): HygieneState {
  const p = new URLSearchParams(search);
  const s = defaultHygiene();
  const kind = p.get('kind') ?? '';
  if ((HYGIENE_KINDS as readonly string[]).includes(kind)) s.kind = kind as HygieneKind;
  const site = p.get('site')?.trim() ?? '';
  if (site.length <= 63) s.site = site;
  const q = p.get('q')?.trim() ?? '';
  if (q.length <= 200) s.q = q;
  const age = p.get('snapshot_age') ?? '';
  if (durationMS(age) !== null) s.snapshotAge = age;
  const off = p.get('powered_off_for') ?? '';
  if (durationMS(off) !== null) s.poweredOffFor = off;
  const page = Number(p.get('page'));
  if (Number.isInteger(page) && page >= 1 && page <= 1_000_000) s.page = page;
  return s;
}

/** hygieneSearch writes the state as a query string, defaults left out, keys in a fixed order. */
export function hygieneSearch(s: HygieneState): string {
  const p = new URLSearchParams();
  if (s.kind) p.set('kind', s.kind);
  if (s.site) p.set('site', s.site);
  if (s.q) p.set('q', s.q);
  if (s.snapshotAge !== DEFAULT_SNAPSHOT_AGE) p.set('snapshot_age', s.snapshotAge);
  if (s.poweredOffFor !== DEFAULT_POWERED_OFF_FOR) p.set('powered_off_for', s.poweredOffFor);
  if (s.page > 1) p.set('page', String(s.page));
  const qs = p.toString();
  return qs ? '?' + qs : '';
}

/** hygieneQuery is the GET /vms/hygiene query of a state. */
export function hygieneQuery(s: HygieneState): Record<string, string | number> {
  const q: Record<string, string | number> = {
    snapshot_age: s.snapshotAge,
    powered_off_for: s.poweredOffFor,
    page: s.page,
    page_size: HYGIENE_PAGE_SIZE,
  };
  if (s.kind) q.kind = s.kind;
  if (s.site) q.site = s.site;
  if (s.q) q.q = s.q;
  return q;
}

/** severityTone is the badge tone of a finding's severity. */
export function severityTone(severity: string): 'warn' | 'info' {
  return severity === 'warning' ? 'warn' : 'info';
}
