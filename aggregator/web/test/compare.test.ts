import { describe, expect, it } from 'vitest';
import { compareSearch, parseCompare } from '../src/lib/compare';

describe('history URL', () => {
  it('round-trips entities (ids with colons), metrics, range and aggregation', () => {
    const s = {
      entities: [
        { kind: 'vm', id: '4c4c4544-0042:vm-1' },
        { kind: 'host', id: '4c4c4544-0042:host-9' },
      ],
      metrics: ['cpu.usage.average', 'mem.usage.average'],
      range: '7d' as const,
      agg: 'max' as const,
      step: '5m' as const,
    };
    expect(parseCompare(compareSearch(s))).toEqual(s);
  });

  it('drops what it cannot read and repeats', () => {
    const got = parseCompare('?e=vm:a:vm-1&e=vm:a:vm-1&e=bogus:x&e=nocolon&m=cpu.usage.average&m=bad metric&range=2y&agg=p99&step=7m');
    expect(got).toEqual({ entities: [{ kind: 'vm', id: 'a:vm-1' }], metrics: ['cpu.usage.average'], range: '24h', agg: 'avg', step: '' });
  });

  it('keeps the defaults out of the URL', () => {
    expect(compareSearch({ entities: [], metrics: [], range: '24h', agg: 'avg', step: '' })).toBe('');
  });
});
