import { describe, expect, it } from 'vitest';
import { defaultHygiene, durationMS, hygieneQuery, hygieneSearch, parseHygiene, severityTone, type HygieneState } from '../src/lib/hygiene';

const state = (s: Partial<HygieneState>): HygieneState => ({ ...defaultHygiene(), ...s });

describe('hygiene thresholds', () => {
  it('reads days, hours and minutes as the API does', () => {
    expect(durationMS('7d')).toBe(7 * 86_400_000);
    expect(durationMS('36h')).toBe(36 * 3_600_000);
    expect(durationMS('90m')).toBe(90 * 60_000);
    expect(durationMS('1h30m')).toBe(90 * 60_000);
    expect(durationMS('3650d')).toBe(3650 * 86_400_000);
  });
  it('refuses what the API would refuse', () => {
    for (const bad of ['', 'd', '7', '-1d', '0d', '30m', '59m', '3651d', '1.5h', '7 d', '7D', 'abc', '1d2h']) expect(durationMS(bad)).toBeNull();
  });
});

describe('hygiene URL', () => {
  const cases: HygieneState[] = [
    state({}),
    state({ kind: 'old_snapshot' }),
    state({ kind: 'powered_off', site: 'dc west', q: '数据库 サーバ', snapshotAge: '36h', poweredOffFor: '90d', page: 3 }),
    state({ kind: 'tools_outdated', snapshotAge: '1h30m' }),
  ];
  it('round-trips the filters, thresholds and page', () => {
    for (const s of cases) expect(parseHygiene(hygieneSearch(s))).toEqual(s);
  });
  it('leaves the defaults out of the URL', () => {
    expect(hygieneSearch(defaultHygiene())).toBe('');
    expect(hygieneSearch(state({ kind: 'powered_off', page: 2 }))).toBe('?kind=powered_off&page=2');
  });
  it('drops invalid values instead of sending them', () => {
    expect(parseHygiene('?kind=snapshots&snapshot_age=7&powered_off_for=0d&page=0&site=' + 'x'.repeat(64))).toEqual(defaultHygiene());
    expect(parseHygiene('kind=tools_not_running&page=2.5')).toEqual(state({ kind: 'tools_not_running' }));
  });
  it('builds the API query with the thresholds always set', () => {
    expect(hygieneQuery(state({ site: 'dc1', page: 2 }))).toEqual({ snapshot_age: '7d', powered_off_for: '30d', page: 2, page_size: 100, site: 'dc1' });
  });
  it('gives warnings their tone', () => {
    expect(severityTone('warning')).toBe('warn');
    expect(severityTone('info')).toBe('info');
  });
});
