import { describe, expect, it } from 'vitest';
import { chartRangeSearch, customRangeOf, DEFAULT_PAGE_SIZE, MAX_CHART_RANGE_MS, parseChartRange, parseRange, parseVMList, searchFilters, toggleSort, vmListQuery, vmListSearch, type VMListState } from '../src/lib/filters';

const state = (s: Partial<VMListState>): VMListState => ({ filters: {}, sort: '', page: 1, pageSize: DEFAULT_PAGE_SIZE, ...s });

describe('VM list URL', () => {
  const cases: VMListState[] = [
    state({}),
    state({ filters: { site: 'dc-east', power_state: 'poweredOff' } }),
    state({
      filters: {
        q: '10.1.2',
        site: 'dc west',
        datacenter: 'DC1',
        cluster: 'vc-1:domain-c7',
        host: 'esx 1',
        power_state: 'suspended',
        tools_status: 'guestToolsNotRunning',
        group: '0b7a1c52-3f0e-4d7e-9b1a-2c3d4e5f6a7b',
        tag: 'env/prod & co',
      },
      sort: '-memory_mb',
      page: 7,
      pageSize: 500,
    }),
    state({ filters: { q: '数据库 サーバ' }, sort: 'name', page: 2 }),
  ];

  it('round-trips every filter, the sort and the page', () => {
    for (const s of cases) expect(parseVMList(vmListSearch(s))).toEqual(s);
  });

  it('writes nothing for the defaults and a stable key order', () => {
    expect(vmListSearch(state({}))).toBe('');
    expect(vmListSearch(state({ filters: { tag: 'a', site: 'b' } }))).toBe('?site=b&tag=a');
  });

  it('drops what the API would refuse', () => {
    const s = parseVMList('?power_state=on&tools_status=x&group=not-a-uuid&sort=-evil&page=-3&page_size=7&q=' + 'x'.repeat(201));
    expect(s).toEqual(state({}));
    expect(parseVMList('?page=2.5').page).toBe(1);
  });

  it('makes the API query', () => {
    expect(vmListQuery(state({ filters: { site: 'a' }, sort: '-site', page: 3 }))).toEqual({ site: 'a', sort: '-site', page: 3, page_size: DEFAULT_PAGE_SIZE });
  });

  it('cycles a column sort', () => {
    expect(toggleSort('', 'name')).toBe('name');
    expect(toggleSort('name', 'name')).toBe('-name');
    expect(toggleSort('-name', 'name')).toBe('');
    expect(toggleSort('-name', 'site')).toBe('site');
  });

  it('reads the chart range', () => {
    expect(parseRange('?range=7d')).toBe('7d');
    expect(parseRange('?range=1y')).toBe('1h');
    expect(parseRange('')).toBe('1h');
  });
});

describe('chart ranges in the URL', () => {
  it('round-trips presets and custom ranges', () => {
    expect(parseChartRange('')).toEqual({ kind: 'preset', key: '1h' });
    expect(parseChartRange('?range=7d')).toEqual({ kind: 'preset', key: '7d' });
    const custom = { kind: 'custom' as const, from: Date.parse('2026-01-01T00:00:00Z'), to: Date.parse('2026-01-02T12:00:00Z') };
    expect(parseChartRange(chartRangeSearch(custom))).toEqual(custom);
    expect(chartRangeSearch({ kind: 'preset', key: '1h' })).toBe('');
    expect(parseChartRange(chartRangeSearch({ kind: 'preset', key: '30d' }))).toEqual({ kind: 'preset', key: '30d' });
  });
  it('falls back to the preset for a custom range that is not valid', () => {
    expect(parseChartRange('?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z&range=24h')).toEqual({ kind: 'preset', key: '24h' });
    expect(parseChartRange('?from=yesterday&to=2026-01-01T00:00:00Z')).toEqual({ kind: 'preset', key: '1h' });
    expect(parseChartRange('?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z')).toEqual({ kind: 'preset', key: '1h' });
  });
  it('reads the custom-range form and names what is wrong', () => {
    expect(customRangeOf('', '2026-01-01T10:00')).toEqual({ field: 'from', key: 'range.custom.fromRequired' });
    expect(customRangeOf('2026-01-01T10:00', '')).toEqual({ field: 'to', key: 'range.custom.toRequired' });
    expect(customRangeOf('2026-01-01T10:00', '2026-01-01T09:00')).toEqual({ field: 'to', key: 'range.custom.toBeforeFrom' });
    const long = customRangeOf('2024-01-01T00:00', '2026-01-01T00:00');
    expect(long).toEqual({ field: 'from', key: 'range.custom.tooLong' });
    const ok = customRangeOf('2026-01-01T10:00', '2026-01-01T12:00');
    expect('range' in ok && ok.range.kind === 'custom' && ok.range.to - ok.range.from).toBe(2 * 3_600_000);
    expect(MAX_CHART_RANGE_MS).toBe(400 * 86_400_000);
  });
});

describe('searchFilters', () => {
  const { parse, toSearch } = searchFilters(['actor', 'result'] as const, 7, (k, v) => k !== 'result' || v === 'success');
  it('reads each key once, trimmed and cut, and drops empty or refused values', () => {
    expect(parse('?actor=%20alice-longer%20&result=nope&other=x')).toEqual({ actor: 'alice-l' });
    expect(parse('result=success&actor=')).toEqual({ result: 'success' });
  });
  it('writes what it reads back, in key order', () => {
    const f = parse('result=success&actor=bob');
    expect(toSearch(f)).toBe('?actor=bob&result=success');
    expect(parse(toSearch(f))).toEqual(f);
    expect(toSearch({})).toBe('');
  });
});
