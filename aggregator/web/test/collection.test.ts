import { describe, expect, it } from 'vitest';
import { collectionDraftOf, collectionInputOf, type CollectionSettings } from '../src/lib/collection';

const none: CollectionSettings = { revision: 0, realtime_interval: null, historical_interval: null, events_poll: null, tag_interval: null, counters: null };
const set: CollectionSettings = { revision: 3, realtime_interval: '40s', historical_interval: null, events_poll: '30s', tag_interval: null, counters: { vm: ['cpu.usage.average', 'mem.usage.average'] } };

describe('collection settings form', () => {
  it('shows what is set, empty for the agents’ own', () => {
    const d = collectionDraftOf(set);
    expect(d.realtime_interval).toBe('40s');
    expect(d.historical_interval).toBe('');
    expect(d.counters.vm).toBe('cpu.usage.average\nmem.usage.average');
    expect(d.counters.host).toBe('');
    expect(collectionDraftOf(undefined).events_poll).toBe('');
  });
  it('sends nothing when nothing changed', () => {
    expect(collectionInputOf(collectionDraftOf(set), set)).toEqual({});
    expect(collectionInputOf(collectionDraftOf(none), none)).toEqual({});
  });
  it('sends changes, and returns emptied fields to the agents ("0s", [])', () => {
    const d = collectionDraftOf(set);
    d.realtime_interval = ' 60s ';
    d.events_poll = '';
    d.tag_interval = '10m';
    d.counters.vm = '';
    d.counters.host = 'cpu.usage.average, cpu.usage.average\nmem.usage.average';
    expect(collectionInputOf(d, set)).toEqual({
      realtime_interval: '60s',
      events_poll: '0s',
      tag_interval: '10m',
      counters: { vm: [], host: ['cpu.usage.average', 'mem.usage.average'] },
    });
  });
});
