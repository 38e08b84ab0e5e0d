// The min–max band of a chart: the history API answers one aggregation per
// call, so the band is two more answers (agg=min, agg=max) with the same
// step, aligned here with the average's timestamps.
import type { HistoryAnswer } from '../api/types';

/**
 * bandOf is the band of one metric (and instance) aligned with avg's
 * timestamps: each step's min and max, null where either answer has no
 * value for it; undefined when there is nothing to draw.
 */
export function bandOf(avg: HistoryAnswer, lo: HistoryAnswer, hi: HistoryAnswer, metric: string, instance: string): { lo: (number | null)[]; hi: (number | null)[] } | undefined {
  const pick = (h: HistoryAnswer) => {
    const s = h.series.find((x) => x.metric === metric && x.instance === instance);
    if (!s) return null;
    const at = new Map<number, number | null>();
    h.timestamps.forEach((ts, i) => at.set(Date.parse(ts), s.values[i] ?? null));
    return at;
  };
  const mins = pick(lo);
  const maxs = pick(hi);
  if (!mins || !maxs) return undefined;
  const out = { lo: [] as (number | null)[], hi: [] as (number | null)[] };
  let any = false;
  for (const ts of avg.timestamps) {
    const k = Date.parse(ts);
    const a = mins.get(k) ?? null;
    const b = maxs.get(k) ?? null;
    const both = a !== null && b !== null;
    out.lo.push(both ? Math.min(a, b) : null);
    out.hi.push(both ? Math.max(a, b) : null);
    any ||= both;
  }
  return any ? out : undefined;
}
