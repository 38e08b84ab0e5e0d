// The collection settings pushed to agents (the collection group of
// GET/PUT /system/settings): the form's state from the settings in effect,
// and the PUT body from the form. An empty field means "each agent's own
// configuration": sent as "0s" (an interval) or [] (a kind's counters)
// when it was set here before, left out when it was not.

/** The collection group of GET /system/settings. */
export interface CollectionSettings {
  revision: number;
  realtime_interval: string | null;
  historical_interval: string | null;
  events_poll: string | null;
  tag_interval: string | null;
  counters: Record<string, string[]> | null;
}

/** The collection group of PUT /system/settings. */
export interface CollectionInput {
  realtime_interval?: string;
  historical_interval?: string;
  events_poll?: string;
  tag_interval?: string;
  counters?: Record<string, string[]>;
}

export const INTERVALS = ['realtime_interval', 'historical_interval', 'events_poll', 'tag_interval'] as const;
export type IntervalField = (typeof INTERVALS)[number];
export const COUNTER_KINDS = ['vm', 'host', 'cluster', 'datastore'] as const;

/** The form: each interval as typed, each kind's counters one a line. */
export type CollectionDraft = Record<IntervalField, string> & { counters: Record<string, string> };

export function collectionDraftOf(c: CollectionSettings | undefined): CollectionDraft {
  const counters: Record<string, string> = {};
  for (const k of COUNTER_KINDS) counters[k] = (c?.counters?.[k] ?? []).join('\n');
  return {
    realtime_interval: c?.realtime_interval ?? '',
    historical_interval: c?.historical_interval ?? '',
    events_poll: c?.events_poll ?? '',
    tag_interval: c?.tag_interval ?? '',
    counters,
  };
}

const lines = (s: string): string[] =>
  s
    .split(/[\n,]/)
    .map((x) => x.trim())
    .filter((x) => x !== '');

/** collectionInputOf is the PUT body's collection group: only what changed, emptied fields returned to the agents. */
export function collectionInputOf(d: CollectionDraft, current: CollectionSettings | undefined): CollectionInput {
  const out: CollectionInput = {};
  for (const f of INTERVALS) {
    const v = d[f].trim();
    const was = current?.[f] ?? null;
    if (v === '' && was !== null) out[f] = '0s';
    else if (v !== '' && v !== was) out[f] = v;
  }
  const counters: Record<string, string[]> = {};
  for (const k of COUNTER_KINDS) {
    const v = [...new Set(lines(d.counters[k] ?? ''))];
    const was = current?.counters?.[k] ?? null;
    if (v.length === 0 && was !== null && was.length > 0) counters[k] = [];
    else if (v.length > 0 && v.join('\n') !== (was ?? []).join('\n')) counters[k] = v;
  }
  if (Object.keys(counters).length > 0) out.counters = counters;
  return out;
}
