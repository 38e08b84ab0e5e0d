// The history/compare page's state lives in the URL, so a view can be
// shared: ?e=vm:<id>&e=host:<id>&m=<metric>&m=<metric>&range=24h&agg=avg&step=5m.
// Ids are "<vCenter UUID>:<moref>", so an entity is split at its first colon.
import { RANGES, type RangeKey } from './filters';
import type { EntityRef } from '../api/types';

export const KINDS = ['vm', 'host', 'cluster', 'datastore'] as const;
export const AGGS = ['avg', 'min', 'max'] as const;
/** Steps one can ask for; '' lets the API pick from the range. */
export const STEPS = ['', '20s', '5m', '1h', '24h'] as const;
/** At most this many entities × metrics (POST /metrics/query takes 100 entities). */
export const MAX_ENTITIES = 20;
export const MAX_METRICS = 6;

export interface CompareState {
  entities: EntityRef[];
  metrics: string[];
  range: RangeKey;
  agg: (typeof AGGS)[number];
  step: (typeof STEPS)[number];
}

/** parseCompare reads the state from a query string, dropping what it cannot read. */
export function parseCompare(search: string): CompareState {
  const p = new URLSearchParams(search);
  const entities: EntityRef[] = [];
  for (const e of p.getAll('e')) {
    const i = e.indexOf(':');
    const kind = e.slice(0, i);
    const id = e.slice(i + 1);
    if (i > 0 && id && (KINDS as readonly string[]).includes(kind) && !entities.some((x) => x.kind === kind && x.id === id)) entities.push({ kind, id });
  }
  const metrics = [...new Set(p.getAll('m').filter((m) => /^[A-Za-z0-9_.]{1,100}$/.test(m)))];
  const r = p.get('range') ?? '';
  const a = p.get('agg') ?? '';
  const st = p.get('step') ?? '';
  return {
    entities: entities.slice(0, MAX_ENTITIES),
    metrics: metrics.slice(0, MAX_METRICS),
    range: r in RANGES ? (r as RangeKey) : '24h',
    agg: (AGGS as readonly string[]).includes(a) ? (a as CompareState['agg']) : 'avg',
    step: (STEPS as readonly string[]).includes(st) ? (st as CompareState['step']) : '',
  };
}

/** compareSearch writes the state as parseCompare reads it. */
export function compareSearch(s: CompareState): string {
  const p = new URLSearchParams();
  for (const e of s.entities) p.append('e', e.kind + ':' + e.id);
  for (const m of s.metrics) p.append('m', m);
  if (s.range !== '24h') p.set('range', s.range);
  if (s.agg !== 'avg') p.set('agg', s.agg);
  if (s.step) p.set('step', s.step);
  const q = p.toString();
  return q ? '?' + q : '';
}
