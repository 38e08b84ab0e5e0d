import { describe, expect, it } from 'vitest';
import type { HistoryAnswer } from '../src/api/types';
import { bandOf } from '../src/lib/band';
import { batches, latestOf, wanted, type LatestRow } from '../src/lib/latest';

function answer(timestamps: string[], series: { metric: string; instance?: string; unit?: string; values: (number | null)[] }[]): HistoryAnswer {
  return {
    entity: { id: 'vc:vm-1', name: 'vm' } as HistoryAnswer['entity'],
    kind: 'vm',
    site: 's',
    from: timestamps[0] ?? '',
    to: timestamps[timestamps.length - 1] ?? '',
    step: '20s',
    resolution: 'raw',
    agg: 'avg',
    coarsened: false,
    timestamps,
    series: series.map((s) => ({ metric: s.metric, instance: s.instance ?? '', unit: s.unit ?? '%', values: s.values, coverage: [] })),
    coverage: [],
  };
}

const ts = ['2026-01-01T00:00:00Z', '2026-01-01T00:00:20Z', '2026-01-01T00:00:40Z'];

describe('latest values of the VM list', () => {
  it('takes each metric’s newest non-null value of the VM as a whole', () => {
    const h = answer(ts, [
      { metric: 'cpu.usage.average', values: [10, 20, null] },
      { metric: 'cpu.usage.average', instance: '0', values: [99, 99, 99] },
      { metric: 'mem.usage.average', values: [null, null, null] },
      { metric: 'cpu.ready.percent', values: [1, null, 3] },
    ]);
    const row = latestOf(h, 5);
    expect(row.fetched).toBe(5);
    expect(row.values['cpu.usage.average']).toEqual({ value: 20, unit: '%', ts: Date.parse(ts[1]!) });
    expect(row.values['cpu.ready.percent']?.value).toBe(3);
    expect(row.values['mem.usage.average']).toBeUndefined();
  });

  it('asks only for rows in view that are unknown, stale or not already asked for', () => {
    const cache = new Map<string, LatestRow>([
      ['a', { fetched: 1000, values: {} }],
      ['b', { fetched: 0, values: {} }],
    ]);
    expect(wanted(['a', 'b', 'c', 'd', 'c'], cache, new Set(['d']), 61_000)).toEqual(['b', 'c']);
    expect(wanted(['a'], cache, new Set(), 62_000)).toEqual(['a']);
    expect(wanted([], cache, new Set(), 0)).toEqual([]);
  });

  it('cuts the asks into batches the API accepts', () => {
    const ids = Array.from({ length: 250 }, (_, i) => 'vm-' + i);
    expect(batches(ids).map((b) => b.length)).toEqual([100, 100, 50]);
    expect(batches([])).toEqual([]);
  });
});

describe('the min–max band', () => {
  const avg = answer(ts, [{ metric: 'cpu.usage.average', values: [5, 6, null] }]);
  it('aligns min and max by time, null where either is missing', () => {
    const lo = answer(ts.slice(1), [{ metric: 'cpu.usage.average', values: [2, 4] }]);
    const hi = answer(ts, [{ metric: 'cpu.usage.average', values: [8, 9, 7] }]);
    expect(bandOf(avg, lo, hi, 'cpu.usage.average', '')).toEqual({ lo: [null, 2, 4], hi: [null, 9, 7] });
  });
  it('is nothing when a metric is absent or has no step with both', () => {
    const none = answer(ts, [{ metric: 'cpu.usage.average', values: [null, null, null] }]);
    expect(bandOf(avg, none, none, 'cpu.usage.average', '')).toBeUndefined();
    expect(bandOf(avg, avg, avg, 'mem.usage.average', '')).toBeUndefined();
  });
});
