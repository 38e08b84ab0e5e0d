// Pure logic of the alert pages: the rule editor's draft (the form's
// strings) to the API's rule and back, with field errors named the way the
// API names them; silence matchers; how long an alert has been going.
import type { AlertCondition, AlertRule, AlertRuleInput, AlertMatcher } from '../api/types';

export const SEVERITIES = ['critical', 'warning', 'info'] as const;
export const ENTITY_KINDS = ['vm', 'host', 'cluster', 'datastore', 'site', 'vcenter'] as const;
export const OPS = ['>', '>=', '<', '<=', '==', '!='] as const;
export const AGGS = ['last', 'avg', 'min', 'max'] as const;
export const MATCH_OPS = ['=', '!=', '=~', '!~'] as const;
/** State metrics of the default pack (internal/alert pack.go, vcenter.go, alarms.go) by entity kind, besides the counters of GET /metrics. */
export const STATE_METRICS_BY_KIND: Readonly<Record<string, readonly string[]>> = {
  vm: ['vm.snapshot.age_hours', 'vm.snapshot.count', 'vm.connected.state', 'vm.tools.running', 'vm.tools.outdated', 'vm.consolidation.needed', 'vcenter.alarm.status'],
  host: ['host.connected.state', 'host.maintenance.state', 'vcenter.alarm.status'],
  cluster: ['vcenter.alarm.status'],
  datastore: ['datastore.free.pct', 'datastore.accessible.state', 'datastore.full.days', 'vcenter.alarm.status'],
  site: ['agent.connected.count', 'agent.spool.dropping', 'agent.spool.backlog_minutes', 'agent.spool.used_pct'],
  vcenter: ['vcenter.reachable.state'],
};

/**
 * previewable says whether POST /alerts/rules/preview can replay a rule of
 * this kind: site and vcenter rules follow the agents' heartbeats, which
 * are not stored as samples, so the API refuses to preview them.
 */
export function previewable(kind: string): boolean {
  return kind !== 'site' && kind !== 'vcenter';
}

/** stateMetricsOf lists the state metrics a rule of this entity kind can watch. */
export function stateMetricsOf(kind: string): readonly string[] {
  return STATE_METRICS_BY_KIND[kind] ?? [];
}

/** A condition as the form holds it: every field a string. */
export interface ConditionDraft {
  metric: string;
  agg: string;
  window: string;
  op: string;
  threshold: string;
  clear: string;
}

/** The rule editor's state. Lists are comma-separated text. */
export interface RuleDraft {
  name: string;
  description: string;
  entity_kind: string;
  severity: string;
  enabled: boolean;
  match: string;
  conditions: ConditionDraft[];
  for: string;
  keep_firing_for: string;
  repeat_interval: string;
  sites: string;
  entities: string;
  tags: string;
  summary: string;
  channels: string[];
  /** Fields of the rule the form does not edit, kept as they were. */
  rest: Pick<AlertRuleInput, 'labels' | 'annotations' | 'scope'>;
}

export interface FieldProblem {
  field: string;
  key: string;
}

export function emptyCondition(): ConditionDraft {
  return { metric: '', agg: 'avg', window: '5m', op: '>', threshold: '', clear: '' };
}

export function newDraft(): RuleDraft {
  return {
    name: '',
    description: '',
    entity_kind: 'vm',
    severity: 'warning',
    enabled: true,
    match: 'all',
    conditions: [emptyCondition()],
    for: '5m',
    keep_firing_for: '',
    repeat_interval: '',
    sites: '',
    entities: '',
    tags: '',
    summary: '',
    channels: [],
    rest: { labels: {}, annotations: {}, scope: {} },
  };
}

const list = (s: string): string[] =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
const num = (n: number | null | undefined): string => (n === null || n === undefined ? '' : String(n));

/** draftOf turns a stored rule into the editor's draft. */
export function draftOf(r: AlertRule): RuleDraft {
  return {
    name: r.name,
    description: r.description,
    entity_kind: r.entity_kind,
    severity: r.severity,
    enabled: r.enabled,
    match: r.match || 'all',
    conditions: (r.conditions ?? []).map((c) => ({
      metric: c.metric,
      agg: c.agg || 'last',
      window: c.window === '0s' ? '' : (c.window ?? ''),
      op: c.op,
      threshold: num(c.threshold),
      clear: num(c.clear_threshold),
    })),
    for: r.for === '0s' ? '' : r.for,
    keep_firing_for: r.keep_firing_for === '0s' ? '' : r.keep_firing_for,
    repeat_interval: r.repeat_interval === '0s' ? '' : r.repeat_interval,
    sites: (r.scope?.sites ?? []).join(', '),
    entities: (r.scope?.entities ?? []).join(', '),
    tags: (r.scope?.tags ?? []).join(', '),
    summary: r.annotations?.summary ?? '',
    channels: r.channels ?? [],
    rest: { labels: r.labels ?? {}, annotations: r.annotations ?? {}, scope: r.scope ?? {} },
  };
}

const DURATION = /^(\d+(\.\d+)?(ms|s|m|h))+$/;

/**
 * ruleOf checks a draft and turns it into the API's rule. Problems name
 * the field as the API would ("conditions[0].threshold") and a catalog key.
 */
export function ruleOf(d: RuleDraft): { rule: AlertRuleInput; problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  if (!d.name.trim()) problems.push({ field: 'name', key: 'rules.err.required' });
  if (d.conditions.length === 0) problems.push({ field: 'conditions', key: 'rules.err.noCondition' });
  for (const [f, v] of [
    ['for', d.for],
    ['keep_firing_for', d.keep_firing_for],
    ['repeat_interval', d.repeat_interval],
  ] as const) {
    if (v.trim() && !DURATION.test(v.trim())) problems.push({ field: f, key: 'rules.err.duration' });
  }
  const conditions: AlertCondition[] = d.conditions.map((c, i) => {
    const at = `conditions[${i}]`;
    if (!c.metric.trim()) problems.push({ field: at + '.metric', key: 'rules.err.required' });
    const threshold = Number(c.threshold);
    if (c.threshold.trim() === '' || !Number.isFinite(threshold)) problems.push({ field: at + '.threshold', key: 'rules.err.number' });
    let clear: number | null = null;
    if (c.clear.trim() !== '') {
      clear = Number(c.clear);
      if (!Number.isFinite(clear)) problems.push({ field: at + '.clear_threshold', key: 'rules.err.number' });
    }
    if (c.window.trim() && !DURATION.test(c.window.trim())) problems.push({ field: at + '.window', key: 'rules.err.duration' });
    const out: AlertCondition = { metric: c.metric.trim(), agg: c.agg, op: c.op, threshold };
    if (c.window.trim()) out.window = c.window.trim();
    if (clear !== null) out.clear_threshold = clear;
    return out;
  });
  const scope = { ...d.rest.scope, sites: list(d.sites), entities: list(d.entities), tags: list(d.tags) };
  const annotations = { ...d.rest.annotations };
  if (d.summary.trim()) annotations.summary = d.summary.trim();
  else delete annotations.summary;
  return {
    rule: {
      name: d.name.trim(),
      description: d.description.trim(),
      entity_kind: d.entity_kind,
      severity: d.severity,
      enabled: d.enabled,
      match: d.match,
      conditions,
      for: d.for.trim(),
      keep_firing_for: d.keep_firing_for.trim(),
      repeat_interval: d.repeat_interval.trim(),
      scope,
      labels: d.rest.labels,
      annotations,
      channels: d.channels,
    },
    problems,
  };
}

/**
 * parseMatchers reads silence matchers written one per line or separated
 * by commas: `site=dc-east`, `alertname=~Disk.*`, `severity!=info`.
 * It returns the matchers, or the 0-based index of the first it cannot read.
 */
export function parseMatchers(text: string): { matchers: AlertMatcher[]; bad: number } {
  const parts = text
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter(Boolean);
  const matchers: AlertMatcher[] = [];
  for (let i = 0; i < parts.length; i++) {
    const m = /^([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*(.+)$/.exec(parts[i]!);
    if (!m) return { matchers, bad: i };
    matchers.push({ name: m[1]!, op: m[2]!, value: m[3]!.trim().replace(/^"(.*)"$/, '$1') });
  }
  return { matchers, bad: matchers.length === 0 ? 0 : -1 };
}

/** matcherText writes a matcher back as parseMatchers reads it. */
export function matcherText(m: AlertMatcher): string {
  return m.name + m.op + m.value;
}

/** alertAge is how long an alert has been (or was) going, in milliseconds. */
export function alertAge(a: { starts_at: string; ends_at: string | null }, now: Date): number {
  const end = a.ends_at ? Date.parse(a.ends_at) : now.getTime();
  return Math.max(0, end - Date.parse(a.starts_at));
}

const sevRank: Record<string, number> = { critical: 0, warning: 1, info: 2 };

/** sortProblems orders active alerts: unacknowledged first, then by severity, then newest. */
export function sortProblems<T extends { acked: boolean; severity: string; starts_at: string }>(xs: T[]): T[] {
  return [...xs].sort(
    (a, b) =>
      Number(a.acked) - Number(b.acked) ||
      (sevRank[a.severity] ?? 9) - (sevRank[b.severity] ?? 9) ||
      Date.parse(b.starts_at) - Date.parse(a.starts_at),
  );
}
