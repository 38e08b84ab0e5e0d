// What a site tile shows. The source is GET /realtime/overview (health,
// backlog, drain rate and ETA per site); where the API lacks it or the
// caller may not read it, GET /agents gives the same without the drain,
// and without either the tile shows the site's own counts.
import type { Agent, OverviewSite, Site } from '../api/types';

export type SiteState = 'online' | 'catching_up' | 'offline' | 'no_agent';

/** How a site's unsent backlog is moving. */
export type Drain =
  | { kind: 'caught_up' }
  | { kind: 'draining'; etaSeconds: number; perSecond: number }
  | { kind: 'stalled' }
  | { kind: 'waiting' } // offline with a backlog: it drains when the site is back
  | { kind: 'unknown' };

export interface SiteHealth {
  site: Site;
  state: SiteState;
  /** Whether agent details (backlog, last seen) are known. */
  detail: boolean;
  lastSeen: string | null;
  spoolBatches: number;
  spoolBytes: number;
  oldestUnsentMS: number;
  lagMS: number;
  dropped: number;
  drain: Drain;
}

function base(site: Site): SiteHealth {
  return {
    site,
    state: 'no_agent',
    detail: false,
    lastSeen: null,
    spoolBatches: 0,
    spoolBytes: 0,
    oldestUnsentMS: 0,
    lagMS: 0,
    dropped: 0,
    drain: { kind: 'unknown' },
  };
}

/**
 * drainOf reads the overview's drain: an ETA only while draining (a
 * backlog being acknowledged at a measured rate); an offline site with a
 * backlog is waiting, not stalled.
 */
export function drainOf(o: OverviewSite): Drain {
  switch (o.drain.state) {
    case 'caught_up':
      return { kind: 'caught_up' };
    case 'draining':
      return o.drain.eta_seconds !== null && Number.isFinite(o.drain.eta_seconds)
        ? { kind: 'draining', etaSeconds: o.drain.eta_seconds, perSecond: o.drain.backlog_per_second }
        : { kind: 'unknown' };
    case 'stalled':
      return { kind: 'stalled' };
    case 'offline':
      return o.backlog.batches > 0 ? { kind: 'waiting' } : { kind: 'unknown' };
  }
  return { kind: 'unknown' };
}

/** etaAt is when a draining backlog will be empty. */
export function etaAt(now: Date, etaSeconds: number): Date {
  return new Date(now.getTime() + Math.max(0, etaSeconds) * 1000);
}

/** siteFromOverview summarizes a site from GET /realtime/overview. */
export function siteFromOverview(site: Site, o: OverviewSite | undefined): SiteHealth {
  if (!o) return siteFromAgents(site, null);
  const h = base(site);
  h.detail = true;
  h.lastSeen = o.last_seen;
  h.spoolBatches = o.backlog.batches;
  h.spoolBytes = o.backlog.bytes;
  h.oldestUnsentMS = o.backlog.oldest_unsent_seconds * 1000;
  h.lagMS = o.collection_lag_seconds * 1000;
  h.dropped = o.dropped_batches;
  h.drain = drainOf(o);
  if (o.connected) h.state = h.drain.kind === 'draining' || h.drain.kind === 'stalled' ? 'catching_up' : 'online';
  else if (o.agents > 0) h.state = 'offline';
  return h;
}

/**
 * siteFromAgents summarizes a site from GET /agents (agents null: not
 * readable, so the state comes from the site's own counts). A site is
 * online when an agent is connected (catching up while it still has a
 * backlog), offline when it has agents but none is connected.
 */
export function siteFromAgents(site: Site, agents: Agent[] | null): SiteHealth {
  const h = base(site);
  const mine = agents?.filter((a) => a.site === site.name && a.state !== 'revoked') ?? null;
  const connected = mine ? mine.some((a) => a.connected) : site.agents_connected > 0;
  const any = mine ? mine.length > 0 : site.agents > 0;
  h.detail = mine !== null;
  for (const a of mine ?? []) {
    h.spoolBatches += a.spool_depth;
    h.spoolBytes += a.spool_bytes;
    h.oldestUnsentMS = Math.max(h.oldestUnsentMS, a.oldest_unsent_ms);
    h.lagMS = Math.max(h.lagMS, a.collection_lag_ms);
    h.dropped += a.dropped_batches;
    if (a.last_seen && (!h.lastSeen || a.last_seen > h.lastSeen)) h.lastSeen = a.last_seen;
  }
  if (connected) h.state = h.spoolBatches > 0 ? 'catching_up' : 'online';
  else if (any) h.state = 'offline';
  if (!connected && h.spoolBatches > 0) h.drain = { kind: 'waiting' };
  return h;
}

/** Sites that need a look come first: offline, then catching up, then the rest; by name within each. */
export function sortSites(hs: SiteHealth[]): SiteHealth[] {
  const rank: Record<SiteState, number> = { offline: 0, catching_up: 1, no_agent: 2, online: 3 };
  return [...hs].sort((a, b) => rank[a.state] - rank[b.state] || a.site.name.localeCompare(b.site.name));
}
