// The VM list's state lives in the URL: every /vms filter, the sort and the
// page. parseVMList and vmListSearch are inverses on valid state
// (test/filters.test.ts); anything invalid in a URL falls back to the
// default rather than reaching the API.

export const VM_FILTERS = ['q', 'site', 'datacenter', 'cluster', 'host', 'power_state', 'tools_status', 'group', 'tag'] as const;
export type VMFilterKey = (typeof VM_FILTERS)[number];

export const POWER_STATES = ['poweredOn', 'poweredOff', 'suspended'] as const;
export const TOOLS_STATES = ['guestToolsRunning', 'guestToolsNotRunning', 'guestToolsExecutingScripts'] as const;
/** Fields GET /vms sorts by. */
export const VM_SORT_FIELDS = ['name', 'site', 'power_state', 'num_cpu', 'memory_mb', 'updated_at'] as const;
export const PAGE_SIZES = [50, 100, 200, 500] as const;
export const DEFAULT_PAGE_SIZE = 100;

export interface VMListState {
  filters: Partial<Record<VMFilterKey, string>>;
  /** "field" or "-field"; empty for the API's default (name). */
  sort: string;
  page: number;
  pageSize: number;
}

const enums: Partial<Record<VMFilterKey, readonly string[]>> = { power_state: POWER_STATES, tools_status: TOOLS_STATES };
const maxLen: Record<VMFilterKey, number> = {
  q: 200, site: 63, datacenter: 255, cluster: 512, host: 512, power_state: 32, tools_status: 32, group: 36, tag: 255,
};
const uuidRE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function validSort(s: string): boolean {
  return (VM_SORT_FIELDS as readonly string[]).includes(s.replace(/^-/, ''));
}

/** parseVMList reads the list state from a query string ("?a=b" or "a=b"). */
export function parseVMList(search: string): VMListState {
  const p = new URLSearchParams(search);
  const filters: VMListState['filters'] = {};
  for (const k of VM_FILTERS) {
    const v = p.get(k)?.trim();
    if (!v || v.length > maxLen[k]) continue;
    if (enums[k] && !enums[k].includes(v)) continue;
    if (k === 'group' && !uuidRE.test(v)) continue;
    filters[k] = v;
  }
  const sort = p.get('sort') ?? '';
  const page = Number(p.get('page'));
  const size = Number(p.get('page_size'));
  return {
    filters,
    sort: validSort(sort) ? sort : '',
    page: Number.isInteger(page) && page >= 1 && page <= 1_000_000 ? page : 1,
    pageSize: (PAGE_SIZES as readonly number[]).includes(size) ? size : DEFAULT_PAGE_SIZE,
  };
}

/** vmListSearch writes the state as a query string, defaults left out, keys in a fixed order. */
export function vmListSearch(s: VMListState): string {
  const p = new URLSearchParams();
  for (const k of VM_FILTERS) {
    const v = s.filters[k];
    if (v) p.set(k, v);
  }
  if (s.sort) p.set('sort', s.sort);
  if (s.page > 1) p.set('page', String(s.page));
  if (s.pageSize !== DEFAULT_PAGE_SIZE) p.set('page_size', String(s.pageSize));
  const qs = p.toString();
  return qs ? '?' + qs : '';
}

/** vmListQuery is the GET /vms query of a state. */
export function vmListQuery(s: VMListState): Record<string, string | number> {
  const q: Record<string, string | number> = { page: s.page, page_size: s.pageSize };
  for (const k of VM_FILTERS) {
    const v = s.filters[k];
    if (v) q[k] = v;
  }
  if (s.sort) q.sort = s.sort;
  return q;
}

/** toggleSort cycles a column: ascending, descending, back to the default. */
export function toggleSort(current: string, field: string): string {
  if (current === field) return '-' + field;
  if (current === '-' + field) return '';
  return field;
}

/** Ranges of the VM charts, in the URL as ?range=. */
export const RANGES = { '1h': 3_600_000, '24h': 86_400_000, '7d': 7 * 86_400_000, '30d': 30 * 86_400_000 } as const;
export type RangeKey = keyof typeof RANGES;

export function parseRange(search: string): RangeKey {
  const r = new URLSearchParams(search).get('range') ?? '';
  return r in RANGES ? (r as RangeKey) : '1h';
}

/** The longest range the history API answers (httpapi MaxHistoryRange). */
export const MAX_CHART_RANGE_MS = 400 * 86_400_000;

/** A chart's range: one of RANGES ending now, or a custom from/to (ms) from the URL. */
export type ChartRange = { kind: 'preset'; key: RangeKey } | { kind: 'custom'; from: number; to: number };

/**
 * parseChartRange reads ?from=&to= (RFC 3339, a non-empty range of at most
 * MAX_CHART_RANGE_MS) as a custom range, else ?range= as parseRange does;
 * a custom range that is not valid falls back to the preset.
 */
export function parseChartRange(search: string): ChartRange {
  const p = new URLSearchParams(search);
  const f = p.get('from');
  const t = p.get('to');
  if (f && t) {
    const from = Date.parse(f);
    const to = Date.parse(t);
    if (Number.isFinite(from) && Number.isFinite(to) && to > from && to - from <= MAX_CHART_RANGE_MS) return { kind: 'custom', from, to };
  }
  return { kind: 'preset', key: parseRange(search) };
}

/** chartRangeSearch writes a range as the query string parseChartRange reads ("" for the default, 1 h). */
export function chartRangeSearch(r: ChartRange): string {
  if (r.kind === 'custom') return '?' + new URLSearchParams({ from: new Date(r.from).toISOString(), to: new Date(r.to).toISOString() }).toString();
  return r.key === '1h' ? '' : '?range=' + r.key;
}

/**
 * customRangeOf reads the custom-range form (datetime-local values, in the
 * browser's zone): the range, or the message key of what is wrong.
 */
export function customRangeOf(fromText: string, toText: string): { range: ChartRange } | { field: 'from' | 'to'; key: string } {
  const from = fromText ? new Date(fromText).getTime() : NaN;
  const to = toText ? new Date(toText).getTime() : NaN;
  if (!Number.isFinite(from)) return { field: 'from', key: 'range.custom.fromRequired' };
  if (!Number.isFinite(to)) return { field: 'to', key: 'range.custom.toRequired' };
  if (to <= from) return { field: 'to', key: 'range.custom.toBeforeFrom' };
  if (to - from > MAX_CHART_RANGE_MS) return { field: 'from', key: 'range.custom.tooLong' };
  return { range: { kind: 'custom', from, to } };
}

/** localInputValue is a time as a datetime-local input shows it (the browser's zone, to the minute). */
export function localInputValue(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/**
 * searchFilters is the URL codec of a list page's plain text filters (the
 * alerts, operation log and login log): each key once, trimmed, cut to
 * maxLen, dropped when empty or when valid refuses it. parse and toSearch
 * are inverses on what parse returns (test/filters.test.ts).
 */
export function searchFilters<K extends string>(
  keys: readonly K[],
  maxLen: number,
  valid: (key: K, value: string) => boolean = () => true,
) {
  type Filters = Partial<Record<K, string>>;
  return {
    parse(s: string): Filters {
      const p = new URLSearchParams(s);
      const f: Filters = {};
      for (const k of keys) {
        const v = p.get(k)?.trim();
        if (v && valid(k, v)) f[k] = v.slice(0, maxLen);
      }
      return f;
    },
    toSearch(f: Filters): string {
      const p = new URLSearchParams();
      for (const k of keys) {
        const v = f[k];
        if (v) p.set(k, v);
      }
      const s = p.toString();
      return s ? '?' + s : '';
    },
  };
}
