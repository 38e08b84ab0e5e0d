import { describe, expect, it } from 'vitest';
import { DEFAULT_PAGE_SIZE, parseRange, parseVMList, toggleSort, vmListQuery, vmListSearch, type VMListState } from '../src/lib/filters';

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
