import { describe, expect, it } from 'vitest';
import type { CoverageSpan } from '../src/api/types';
import { chartBands, gapBands, missingShare } from '../src/lib/coverage';

const T = (m: number) => new Date(Date.UTC(2025, 0, 1, 0, m)).toISOString();
const ms = (m: number) => Date.UTC(2025, 0, 1, 0, m);
const span = (from: number, to: number, state: 'data' | 'missing', cause?: string): CoverageSpan => ({ from: T(from), to: T(to), state, cause });

describe('gap bands', () => {
  it('are the missing spans with their causes', () => {
    const cov = [span(0, 10, 'data'), span(10, 20, 'missing', 'spool_drop'), span(20, 28, 'missing', 'no_data'), span(28, 30, 'data')];
    expect(gapBands(cov)).toEqual([
      { from: ms(10), to: ms(20), cause: 'spool_drop' },
      { from: ms(20), to: ms(28), cause: 'no_data' },
    ]);
  });

  it('merge adjacent spans of one cause and clip to the range', () => {
    const cov = [span(0, 5, 'missing', 'site_offline'), span(5, 9, 'missing', 'site_offline'), span(9, 12, 'data')];
    expect(gapBands(cov, ms(2), ms(30))).toEqual([{ from: ms(2), to: ms(9), cause: 'site_offline' }]);
  });

  it('drop empty and malformed spans, and name unknown causes "other"', () => {
    const cov: CoverageSpan[] = [
      span(3, 3, 'missing', 'spool_drop'),
      { from: 'nonsense', to: T(4), state: 'missing', cause: 'spool_drop' },
      span(6, 8, 'missing', 'cosmic_rays'),
      span(1, 2, 'missing'),
    ];
    expect(gapBands(cov)).toEqual([
      { from: ms(1), to: ms(2), cause: 'other' },
      { from: ms(6), to: ms(8), cause: 'other' },
    ]);
  });

  it('shade a chart of several series only where all are missing', () => {
    const a = [span(0, 10, 'missing', 'powered_off'), span(10, 20, 'data')];
    const b = [span(0, 5, 'data'), span(5, 15, 'missing', 'spool_drop'), span(15, 20, 'data')];
    expect(chartBands([a, b])).toEqual([{ from: ms(5), to: ms(10), cause: 'powered_off' }]);
    expect(chartBands([])).toEqual([]);
  });

  it('measure how much of a range is missing', () => {
    const bands = gapBands([span(0, 15, 'missing', 'no_data')]);
    expect(missingShare(bands, ms(0), ms(60))).toBeCloseTo(0.25);
    expect(missingShare(bands, ms(30), ms(30))).toBe(0);
  });
});
