import { describe, expect, it } from 'vitest';
import type { Agent, OverviewSite, Site } from '../src/api/types';
import { drainOf, etaAt, siteFromAgents, siteFromOverview, sortSites } from '../src/lib/sites';

const site = (name: string, agents = 1, connected = 1): Site => ({
  name,
  description: '',
  created_at: '2025-01-01T00:00:00Z',
  vms: 10,
  hosts: 2,
  sources: [],
  agents,
  agents_connected: connected,
});

const ov = (o: Partial<OverviewSite> & { state: string; eta?: number | null; batches?: number }): OverviewSite => ({
  site: 's',
  connected: o.state !== 'offline',
  agents: 1,
  agents_connected: o.state === 'offline' ? 0 : 1,
  last_seen: '2025-01-01T00:00:00Z',
  collection_lag_seconds: 20,
  backlog: { batches: o.batches ?? 0, bytes: 1000, oldest_unsent_seconds: 600 },
  drain: { window_seconds: 300, acked_per_second: 2, backlog_per_second: 1.5, state: o.state, eta_seconds: o.eta ?? null },
  dropped_batches: 0,
  ...o,
});

describe('site drain and ETA', () => {
  it('reads the drain state', () => {
    expect(drainOf(ov({ state: 'draining', eta: 120, batches: 180 }))).toEqual({ kind: 'draining', etaSeconds: 120, perSecond: 1.5 });
    expect(drainOf(ov({ state: 'caught_up', eta: 0 }))).toEqual({ kind: 'caught_up' });
    expect(drainOf(ov({ state: 'stalled', batches: 5 }))).toEqual({ kind: 'stalled' });
    expect(drainOf(ov({ state: 'offline', batches: 5 }))).toEqual({ kind: 'waiting' });
    expect(drainOf(ov({ state: 'offline', batches: 0 }))).toEqual({ kind: 'unknown' });
    expect(drainOf(ov({ state: 'draining', eta: null }))).toEqual({ kind: 'unknown' });
  });

  it('puts the ETA on the clock', () => {
    const now = new Date('2025-01-01T10:00:00Z');
    expect(etaAt(now, 90).toISOString()).toBe('2025-01-01T10:01:30.000Z');
    expect(etaAt(now, -5).toISOString()).toBe('2025-01-01T10:00:00.000Z');
  });

  it('derives the tile state from the overview', () => {
    expect(siteFromOverview(site('a'), ov({ state: 'draining', eta: 60, batches: 90 })).state).toBe('catching_up');
    expect(siteFromOverview(site('a'), ov({ state: 'caught_up', eta: 0 })).state).toBe('online');
    const off = siteFromOverview(site('a'), ov({ state: 'offline', batches: 40 }));
    expect([off.state, off.spoolBatches, off.oldestUnsentMS, off.lagMS]).toEqual(['offline', 40, 600_000, 20_000]);
    expect(siteFromOverview(site('a', 0, 0), ov({ state: 'offline', agents: 0, agents_connected: 0 })).state).toBe('no_agent');
  });

  it('falls back to the agents, or to the site counts', () => {
    const agent = (o: Partial<Agent>): Agent =>
      ({ site: 'a', state: 'connected', connected: true, spool_depth: 0, spool_bytes: 0, oldest_unsent_ms: 0, collection_lag_ms: 0, dropped_batches: 0, last_seen: null, ...o }) as Agent;
    const h = siteFromAgents(site('a'), [
      agent({ connected: false, state: 'disconnected', spool_depth: 7, spool_bytes: 700, dropped_batches: 2, last_seen: '2025-01-01T00:00:00Z' }),
      agent({ site: 'b', spool_depth: 100 }),
      agent({ state: 'revoked', connected: false, spool_depth: 1000 }),
    ]);
    expect([h.state, h.spoolBatches, h.dropped, h.lastSeen, h.drain.kind]).toEqual(['offline', 7, 2, '2025-01-01T00:00:00Z', 'waiting']);
    expect(siteFromAgents(site('a', 2, 0), null).state).toBe('offline');
    expect(siteFromAgents(site('a', 0, 0), null).state).toBe('no_agent');
    expect(siteFromAgents(site('a', 1, 1), null).detail).toBe(false);
  });

  it('lists the sites that need a look first', () => {
    const hs = [siteFromAgents(site('z'), null), siteFromAgents(site('y', 1, 0), null), siteFromAgents(site('x', 0, 0), null)];
    expect(sortSites(hs).map((h) => h.site.name)).toEqual(['y', 'x', 'z']);
  });
});
