import { describe, expect, it } from 'vitest';
import type { AlertRule } from '../src/api/types';
import { alertAge, draftOf, ENTITY_KINDS, matcherText, newDraft, parseMatchers, previewable, ruleOf, sortProblems, STATE_METRICS_BY_KIND, stateMetricsOf } from '../src/lib/alerts';

describe('rule editor draft', () => {
  it('names every bad field the way the API does', () => {
    const d = newDraft();
    d.for = '5 minutes';
    d.conditions = [{ metric: '', agg: 'avg', window: 'x', op: '>', threshold: 'abc', clear: 'no' }];
    const { problems } = ruleOf(d);
    expect(problems.map((p) => p.field).sort()).toEqual(
      ['conditions[0].clear_threshold', 'conditions[0].metric', 'conditions[0].threshold', 'conditions[0].window', 'for', 'name'].sort(),
    );
  });

  it('asks for at least one condition', () => {
    const d = { ...newDraft(), name: 'x', conditions: [] };
    expect(ruleOf(d).problems).toEqual([{ field: 'conditions', key: 'rules.err.noCondition' }]);
  });

  it('round-trips a stored rule, keeping what the form does not edit', () => {
    const stored: AlertRule = {
      id: 'r1', name: 'CPU high', description: 'd', entity_kind: 'vm', severity: 'critical', enabled: true, match: 'any',
      conditions: [{ metric: 'cpu.usage.average', agg: 'avg', window: '5m0s', op: '>', threshold: 90, clear_threshold: 80 }],
      for: '10m0s', keep_firing_for: '0s', repeat_interval: '1h0m0s',
      scope: { sites: ['dc-east', 'dc-west'], vm_groups: ['g1'] }, labels: { team: 'ops' }, annotations: { summary: 's', runbook: 'http://x' },
      channels: ['c1'], builtin: '', revision: 3, created_at: '', updated_at: '', created_by: '', updated_by: '',
    };
    const d = draftOf(stored);
    expect(d.sites).toBe('dc-east, dc-west');
    expect(d.keep_firing_for).toBe('');
    const { rule, problems } = ruleOf(d);
    expect(problems).toEqual([]);
    expect(rule.conditions).toEqual(stored.conditions);
    expect(rule.scope.vm_groups).toEqual(['g1']);
    expect(rule.scope.sites).toEqual(['dc-east', 'dc-west']);
    expect(rule.labels).toEqual({ team: 'ops' });
    expect(rule.annotations).toEqual({ summary: 's', runbook: 'http://x' });
    expect(rule.for).toBe('10m0s');
    expect(rule.channels).toEqual(['c1']);
  });

  it('drops an empty summary annotation', () => {
    const d = { ...newDraft(), name: 'x', summary: '', rest: { labels: {}, annotations: { summary: 'old' }, scope: {} } };
    d.conditions = [{ metric: 'cpu.usage.average', agg: 'avg', window: '', op: '>', threshold: '1', clear: '' }];
    const { rule } = ruleOf(d);
    expect(rule.annotations).toEqual({});
    expect(rule.conditions[0]).toEqual({ metric: 'cpu.usage.average', agg: 'avg', op: '>', threshold: 1 });
  });
});

describe('silence matchers', () => {
  it('reads every operator, commas and lines, quoted values', () => {
    const m = parseMatchers('site=dc-east, alertname=~Disk.*\nseverity!=info,entity!~"web-.*"');
    expect(m.bad).toBe(-1);
    expect(m.matchers).toEqual([
      { name: 'site', op: '=', value: 'dc-east' },
      { name: 'alertname', op: '=~', value: 'Disk.*' },
      { name: 'severity', op: '!=', value: 'info' },
      { name: 'entity', op: '!~', value: 'web-.*' },
    ]);
    expect(m.matchers.map(matcherText)).toEqual(['site=dc-east', 'alertname=~Disk.*', 'severity!=info', 'entity!~web-.*']);
  });

  it('says which matcher it cannot read, and refuses none', () => {
    expect(parseMatchers('site=a, nonsense').bad).toBe(1);
    expect(parseMatchers('   ').bad).toBe(0);
  });
});

describe('problems', () => {
  it('measure how long an alert goes', () => {
    const now = new Date('2026-01-01T01:00:00Z');
    expect(alertAge({ starts_at: '2026-01-01T00:00:00Z', ends_at: null }, now)).toBe(3_600_000);
    expect(alertAge({ starts_at: '2026-01-01T00:00:00Z', ends_at: '2026-01-01T00:10:00Z' }, now)).toBe(600_000);
  });

  it('list unacknowledged first, then by severity, newest first', () => {
    const a = (id: number, acked: boolean, severity: string, starts_at: string) => ({ id, acked, severity, starts_at });
    const got = sortProblems([
      a(1, true, 'critical', '2026-01-01T00:00:00Z'),
      a(2, false, 'info', '2026-01-01T00:00:00Z'),
      a(3, false, 'critical', '2026-01-01T00:00:00Z'),
      a(4, false, 'critical', '2026-01-01T01:00:00Z'),
    ]).map((x) => x.id);
    expect(got).toEqual([4, 3, 2, 1]);
  });
});

describe('rule editor kinds', () => {
  it('offers vCenter rules with their reachability metric', () => {
    expect(ENTITY_KINDS).toContain('vcenter');
    expect(stateMetricsOf('vcenter')).toEqual(['vcenter.reachable.state']);
    expect(stateMetricsOf('vm')).not.toContain('vcenter.reachable.state');
    for (const k of ENTITY_KINDS) expect(STATE_METRICS_BY_KIND, k).toHaveProperty([k]);
  });

  it('previews only the kinds whose samples are stored', () => {
    expect(ENTITY_KINDS.filter(previewable)).toEqual(['vm', 'host', 'cluster', 'datastore']);
  });

  it('sends a vCenter rule with its sources as entities', () => {
    const d = { ...newDraft(), name: 'vc down', entity_kind: 'vcenter', entities: 'vc-east.example.com, vc-west.example.com' };
    d.conditions = [{ metric: 'vcenter.reachable.state', agg: 'last', window: '', op: '<', threshold: '1', clear: '' }];
    const { rule, problems } = ruleOf(d);
    expect(problems).toEqual([]);
    expect(rule.entity_kind).toBe('vcenter');
    expect(rule.scope.entities).toEqual(['vc-east.example.com', 'vc-west.example.com']);
  });
});
