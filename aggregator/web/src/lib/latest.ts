// Latest values for the VM list's visible rows: which VMs to ask about
// (those in view whose values are missing or stale), in batches the API
// accepts (POST /metrics/query takes at most 100 entities), and each
// answer's newest non-null value per metric.
import type { HistoryAnswer } from '../api/types';

/** The metrics the VM list shows, the VM as a whole (instance ""). */
export const LATEST_METRICS = ['cpu.usage.average', 'cpu.ready.percent', 'mem.usage.average'] as const;
export type LatestMetric = (typeof LATEST_METRICS)[number];

/** How far back a latest value may be: older values are not "latest" and show as none. */
export const LATEST_WINDOW_MS = 15 * 60_000;
/** A row's values are asked for again after this long in view. */
export const LATEST_MAX_AGE_MS = 60_000;
/** The most entities one POST /metrics/query may name. */
export const QUERY_MAX_ENTITIES = 100;

/** One metric's newest value: its unit, value and time (ms). */
export interface LatestValue {
  value: number;
  unit: string;
  ts: number;
}

/** A VM's latest values, and when they were fetched (ms). */
export interface LatestRow {
  fetched: number;
  values: Partial<Record<LatestMetric, LatestValue>>;
}

/** latestOf reads each metric's newest non-null value (instance "") from a history answer. */
export function latestOf(h: HistoryAnswer, fetched: number): LatestRow {
  const values: LatestRow['values'] = {};
  for (const m of LATEST_METRICS) {
    const s = h.series.find((x) => x.metric === m && x.instance === '');
    if (!s) continue;
    for (let i = Math.min(s.values.length, h.timestamps.length) - 1; i >= 0; i--) {
      const v = s.values[i];
      if (v !== null && v !== undefined && Number.isFinite(v)) {
        values[m] = { value: v, unit: s.unit, ts: Date.parse(h.timestamps[i]!) };
        break;
      }
    }
  }
  return { fetched, values };
}

/** wanted are the ids in view whose values are not cached, or were fetched more than maxAge ago; each once, in view order. */
export function wanted(visible: readonly string[], cache: ReadonlyMap<string, LatestRow>, pending: ReadonlySet<string>, now: number, maxAge = LATEST_MAX_AGE_MS): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const id of visible) {
    if (seen.has(id) || pending.has(id)) continue;
    seen.add(id);
    const row = cache.get(id);
    if (!row || now - row.fetched > maxAge) out.push(id);
  }
  return out;
}

/** batches cuts ids into groups of at most size. */
export function batches<T>(ids: readonly T[], size = QUERY_MAX_ENTITIES): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < ids.length; i += size) out.push(ids.slice(i, i + size));
  return out;
}
