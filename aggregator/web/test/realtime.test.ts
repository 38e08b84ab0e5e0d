import { describe, expect, it } from 'vitest';
import type { RealtimeSample } from '../src/api/types';
import { align, Buffer, pausedSites } from '../src/lib/realtime';

const s = (id: string, ts: number, value: number, extra: Partial<RealtimeSample> = {}): RealtimeSample => ({
  kind: 'vm', id, site: 'dc-east', instance: '', metric: 'cpu.usage.average', unit: '%', ts: new Date(ts * 1000).toISOString(), value, ...extra,
});

describe('realtime buffer', () => {
  it('keeps samples in time order, replaces a repeat and skips instances', () => {
    const b = new Buffer(600);
    b.add([s('a', 100, 1), s('a', 140, 3), s('a', 120, 2), s('a', 140, 4), s('a', 120, 9, { instance: 'vmnic0' })], 150);
    expect(b.line('vm', 'a', 'cpu.usage.average')).toEqual({ xs: [100, 120, 140], ys: [1, 2, 4], unit: '%' });
    expect(b.latest('vm', 'a', 'cpu.usage.average')).toEqual({ ts: 140, value: 4, unit: '%' });
    expect(b.sites.get('vm:a')).toBe('dc-east');
  });

  it('forgets what falls out of the window and breaks long silences into gaps', () => {
    const b = new Buffer(100);
    b.add([s('a', 0, 1), s('a', 60, 2), s('a', 200, 3)], 200);
    expect(b.line('vm', 'a', 'cpu.usage.average', 60)).toEqual({ xs: [200], ys: [3], unit: '%' });
    const c = new Buffer(1000);
    c.add([s('a', 0, 1), s('a', 20, 2), s('a', 200, 3)], 200);
    expect(c.line('vm', 'a', 'cpu.usage.average', 60)).toEqual({ xs: [0, 20, 21, 200], ys: [1, 2, null, 3], unit: '%' });
  });

  it('aligns lines on one axis with nulls where a line has nothing', () => {
    expect(align([{ xs: [1, 3], ys: [10, 30], unit: '' }, { xs: [2, 3], ys: [20, 31], unit: '' }])).toEqual({
      xs: [1, 2, 3],
      ys: [
        [10, null, 30],
        [null, 20, 31],
      ],
    });
  });

  it('pauses the sites with no agent connected', () => {
    expect(pausedSites(['dc-east', 'dc-west', 'dc-west', 'new'], new Map([['dc-east', true], ['dc-west', false]]))).toEqual(['dc-west']);
  });
});
