import { useRef } from 'preact/hooks';
import { api, ApiError, type OverviewAlerts, type OverviewDatastore, type OverviewTopItem, type Page, type RealtimeOverview, type Site } from '../api';
import { Badge, ErrorBox, Loading } from '../components/common';
import { locale, t } from '../i18n';
import { formatBytes, formatDuration, formatMetric, formatNumber, formatPercent, formatRelative, formatTime } from '../lib/format';
import { useAsync, useNow } from '../lib/hooks';
import { useLazyDraw } from '../lib/lazydraw';
import { POWER_STATES, TOOLS_STATES } from '../lib/filters';
import { etaAt, siteFromAgents, siteFromOverview, sortSites, type SiteHealth, type SiteState } from '../lib/sites';

interface Fleet {
  sites: Page<Site>;
  health: SiteHealth[];
  byPower: Record<string, number>;
  byTools: Record<string, number>;
  total: number;
  top: RealtimeOverview['top'] | null;
  /** Active alerts and the datastores closest to full (null without the realtime overview). */
  alerts: OverviewAlerts | null;
  datastores: OverviewDatastore[] | null;
  /** Agent details were refused (no system:read and no realtime overview). */
  limited: boolean;
}

const refused = (e: unknown) => e instanceof ApiError && (e.status === 403 || e.status === 404);

/**
 * loadFleet reads GET /realtime/overview (per-site backlog, drain rate and
 * ETA, counts and top VMs) with GET /sites (VM and host counts). Where the
 * overview is missing or refused it falls back to GET /agents and
 * GET /vms/stats, which have everything but the drain.
 */
async function loadFleet(signal: AbortSignal): Promise<Fleet> {
  const [sites, rt] = await Promise.all([
    api.sites(signal),
    api.realtimeOverview(signal).catch((e: unknown) => (refused(e) ? null : Promise.reject(e))),
  ]);
  if (rt) {
    const bySite = new Map(rt.sites.map((s) => [s.site, s]));
    return {
      sites,
      health: sites.items.map((s) => siteFromOverview(s, bySite.get(s.name))),
      byPower: rt.vms.by_power_state,
      byTools: rt.vms.by_tools_status,
      total: rt.vms.total,
      top: rt.top,
      alerts: rt.alerts ?? null,
      datastores: rt.datastores ?? null,
      limited: false,
    };
  }
  const [agents, stats] = await Promise.all([
    api.agents(signal).then(
      (p) => p.items,
      (e: unknown) => (refused(e) ? null : Promise.reject(e)),
    ),
    api.vmStats({}, signal),
  ]);
  return {
    sites,
    health: sites.items.map((s) => siteFromAgents(s, agents)),
    byPower: stats.by_power_state,
    byTools: stats.by_tools_status,
    total: stats.total,
    top: null,
    alerts: null,
    datastores: null,
    limited: agents === null,
  };
}

let early: Promise<Fleet> | null = null;

/**
 * prefetchFleet starts loading the overview while the console still asks
 * who the user is (right after login), so the two round trips overlap.
 */
export function prefetchFleet(): void {
  early ??= loadFleet(new AbortController().signal);
  early.catch(() => undefined);
}

/** firstFleet takes the prefetched answer once, then loads afresh. */
function firstFleet(signal: AbortSignal): Promise<Fleet> {
  const p = early;
  early = null;
  return p ?? loadFleet(signal);
}

const stateTone: Record<SiteState, 'ok' | 'warn' | 'bad' | 'muted'> = { online: 'ok', catching_up: 'warn', offline: 'bad', no_agent: 'muted' };

function DrainText({ h, now }: { h: SiteHealth; now: Date }) {
  const l = locale.value;
  const d = h.drain;
  switch (d.kind) {
    case 'caught_up':
      return <>{t('site.drain.caughtUp')}</>;
    case 'draining':
      return (
        <span data-eta-seconds={Math.round(d.etaSeconds)}>
          {t('site.drain.eta', {
            eta: formatDuration(d.etaSeconds * 1000, l),
            at: formatTime(etaAt(now, d.etaSeconds), l),
            rate: formatNumber(d.perSecond * 60, l),
          })}
        </span>
      );
    case 'stalled':
      return <>{t('site.drain.stalled')}</>;
    case 'waiting':
      return <>{t('site.drain.waiting')}</>;
  }
  return <>–</>;
}

/**
 * SiteTile is a site's tile. Its name, link and state are always there
 * (find in page, screen readers); the figures are drawn when the tile is
 * on screen or scrolled near (useLazyDraw), so 50 sites do not block the
 * first paint. Until then the tile keeps its
 * place (.tile-pending reserves a drawn tile's height).
 */
function SiteTile({ h, now }: { h: SiteHealth; now: Date }) {
  const ref = useRef<HTMLElement>(null);
  const drawn = useLazyDraw(ref);
  const s = h.site;
  return (
    <article
      ref={ref}
      class={'tile tile-' + h.state + (drawn ? '' : ' tile-pending')}
      data-site={s.name}
      data-state={h.state}
      data-drain={h.drain.kind}
      data-drawn={drawn ? '' : undefined}
      aria-labelledby={'site-' + s.name}
    >
      <header class="tile-head">
        <h3 id={'site-' + s.name}>
          <a href={'/sites/' + encodeURIComponent(s.name)}>{s.name}</a>
        </h3>
        <Badge tone={stateTone[h.state]}>{t('site.state.' + h.state)}</Badge>
      </header>
      {drawn && <SiteFigures h={h} now={now} />}
    </article>
  );
}

/** SiteFigures is the body of a drawn tile. */
function SiteFigures({ h, now }: { h: SiteHealth; now: Date }) {
  const l = locale.value;
  const s = h.site;
  return (
    <>
      {s.description && <p class="muted tile-desc">{s.description}</p>}
      <dl class="tile-stats">
        <div>
          <dt>{t('site.vms')}</dt>
          <dd>
            <a href={'/vms?site=' + encodeURIComponent(s.name)}>{formatNumber(s.vms, l)}</a>
          </dd>
        </div>
        <div>
          <dt>{t('site.hosts')}</dt>
          <dd>{formatNumber(s.hosts, l)}</dd>
        </div>
        <div>
          <dt>{t('site.agents')}</dt>
          <dd>{t('site.agentsConnected', { connected: formatNumber(s.agents_connected, l), total: formatNumber(s.agents, l) })}</dd>
        </div>
        {h.detail && (
          <>
            <div>
              <dt>{t('site.lastSeen')}</dt>
              <dd>{h.lastSeen ? <time dateTime={h.lastSeen}>{formatRelative(h.lastSeen, now, l)}</time> : t('site.never')}</dd>
            </div>
            <div data-field="backlog">
              <dt>{t('site.backlog')}</dt>
              <dd>
                {h.spoolBatches > 0
                  ? t('site.backlogValue', { batches: formatNumber(h.spoolBatches, l), size: formatBytes(h.spoolBytes, l) })
                  : t('site.backlogNone')}
              </dd>
            </div>
            {h.oldestUnsentMS > 0 && (
              <div>
                <dt>{t('site.oldestUnsent')}</dt>
                <dd>{formatDuration(h.oldestUnsentMS, l)}</dd>
              </div>
            )}
            {h.drain.kind !== 'unknown' && (
              <div data-field="drain">
                <dt>{t('site.drain')}</dt>
                <dd>
                  <DrainText h={h} now={now} />
                </dd>
              </div>
            )}
            <div>
              <dt>{t('site.lag')}</dt>
              <dd>{formatDuration(h.lagMS, l)}</dd>
            </div>
            <div data-field="dropped" class={h.dropped > 0 ? 'stat-bad' : undefined}>
              <dt>{t('site.dropped')}</dt>
              <dd>{formatNumber(h.dropped, l)}</dd>
            </div>
          </>
        )}
      </dl>
    </>
  );
}

function CountBar({ title, counts, order, param, prefix }: { title: string; counts: Record<string, number>; order: readonly string[]; param: string; prefix: string }) {
  const l = locale.value;
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const keys = [...order.filter((k) => k in counts), ...Object.keys(counts).filter((k) => !order.includes(k))];
  return (
    <section class="card count-card" aria-label={title}>
      <h2 class="card-title">{title}</h2>
      <div class="bar" aria-hidden="true">
        {keys.map((k) => (
          <span key={k} class={'bar-seg seg-' + k} style={{ flexGrow: counts[k] ?? 0 }} />
        ))}
      </div>
      <ul class="count-list">
        {keys.map((k) => (
          <li key={k} data-count={k}>
            <span class={'dot seg-' + k} aria-hidden="true" />
            {order.includes(k) ? <a href={'/vms?' + param + '=' + encodeURIComponent(k)}>{t(prefix + k)}</a> : <span>{k && k !== 'unknown' ? k : t('state.unknown')}</span>}
            <span class="count">{formatNumber(counts[k] ?? 0, l)}</span>
          </li>
        ))}
        {total === 0 && <li class="muted">{t('overview.noVMs')}</li>}
      </ul>
    </section>
  );
}

function TopList({ title, items, ready }: { title: string; items: OverviewTopItem[]; ready?: boolean }) {
  const l = locale.value;
  return (
    <section class="card top-card" aria-label={title}>
      <h3 class="card-title">{title}</h3>
      {items.length === 0 ? (
        <p class="muted">{t('overview.topEmpty')}</p>
      ) : (
        <ol class="top-list">
          {items.map((it) => (
            <li key={it.id}>
              <a href={'/vms/' + encodeURIComponent(it.id)}>{it.name || it.id}</a>
              <span class="muted top-site">{it.site}</span>
              <span class="count">{ready && it.ready_percent !== undefined ? formatPercent(it.ready_percent, l) : formatMetric(it.value, it.unit, l)}</span>
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}

const SEVERITIES = ['critical', 'warning', 'info'] as const;
const sevTone = { critical: 'bad', warning: 'warn', info: 'muted' } as const;

/** AlertCounts is the active alerts by severity, each linking to the filtered problems list. */
function AlertCounts({ a }: { a: OverviewAlerts }) {
  const l = locale.value;
  return (
    <section class="card count-card" aria-labelledby="ov-alerts" data-testid="overview-alerts">
      <h3 class="card-title" id="ov-alerts">
        {t('overview.alerts.active', { n: formatNumber(a.active, l) })}
      </h3>
      <ul class="count-list">
        {SEVERITIES.map((sev) => (
          <li key={sev} data-severity={sev} data-count={a.by_severity[sev] ?? 0}>
            <a href={'/alerts?severity=' + sev}>{t('alerts.severity.' + sev)}</a>
            <span class="count">
              <Badge tone={(a.by_severity[sev] ?? 0) > 0 ? sevTone[sev] : 'muted'}>{formatNumber(a.by_severity[sev] ?? 0, l)}</Badge>
            </span>
          </li>
        ))}
        <li data-field="unacknowledged" data-count={a.unacknowledged}>
          <a href="/alerts?acked=false">{t('overview.alerts.unacknowledged')}</a>
          <span class="count">{formatNumber(a.unacknowledged, l)}</span>
        </li>
        <li data-field="suppressed" data-count={a.suppressed}>
          <span>{t('overview.alerts.suppressed')}</span>
          <span class="count">{formatNumber(a.suppressed, l)}</span>
        </li>
      </ul>
    </section>
  );
}

/** FullDatastores is the datastores closest to full, with days to full ("—" without a falling trend). */
function FullDatastores({ items }: { items: OverviewDatastore[] }) {
  const l = locale.value;
  return (
    <section class="card" aria-labelledby="ov-ds" data-testid="overview-datastores">
      <h3 class="card-title" id="ov-ds">
        {t('overview.datastores')}
      </h3>
      {items.length === 0 ? (
        <p class="muted">{t('datastores.empty')}</p>
      ) : (
        <table class="table">
          <thead>
            <tr>
              <th scope="col">{t('overview.datastores.name')}</th>
              <th scope="col">{t('overview.datastores.site')}</th>
              <th scope="col" class="num">
                {t('datastores.used')}
              </th>
              <th scope="col" class="num">
                {t('datastores.daysToFull')}
              </th>
            </tr>
          </thead>
          <tbody>
            {items.map((d) => (
              <tr key={d.id} data-datastore={d.name} data-days={d.days_to_full === null ? '' : d.days_to_full.toFixed(1)}>
                <th scope="row">
                  <a href={'/datastores#' + encodeURIComponent('ds-' + d.id)}>{d.name || d.id}</a>
                </th>
                <td>{d.site}</td>
                <td class="num">{formatPercent(d.used_percent, l)}</td>
                <td class="num">{d.days_to_full === null ? '—' : t('datastores.days', { n: formatNumber(d.days_to_full, l, 1) })}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

export function Overview() {
  const fleet = useAsync(firstFleet, [], 30_000);
  const now = useNow();
  const l = locale.value;
  const f = fleet.data;
  return (
    <div class="page">
      <div class="page-head">
        <h1>{t('overview.title')}</h1>
        {f && <p class="muted">{t('overview.summary', { sites: formatNumber(f.sites.total, l), vms: formatNumber(f.total, l) })}</p>}
      </div>
      {fleet.error !== undefined && <ErrorBox error={fleet.error} onRetry={fleet.reload} />}
      {!f && !fleet.error && <Loading />}
      {f && (
        <>
          <h2 class="section-title">{t('overview.sites')}</h2>
          {f.limited && <p class="muted">{t('overview.noAgentPermission')}</p>}
          {f.sites.items.length === 0 ? (
            <p class="muted">{t('overview.noSites')}</p>
          ) : (
            <div class="tiles" data-testid="site-tiles">
              {sortSites(f.health).map((h) => (
                <SiteTile key={h.site.name} h={h} now={now} />
              ))}
            </div>
          )}
          {f.sites.total > f.sites.items.length && (
            <p class="muted">{t('overview.moreSites', { shown: formatNumber(f.sites.items.length, l), total: formatNumber(f.sites.total, l) })}</p>
          )}
          <h2 class="section-title">{t('overview.vms')}</h2>
          <div class="counts">
            <CountBar title={t('overview.byPower')} counts={f.byPower} order={POWER_STATES} param="power_state" prefix="power." />
            <CountBar title={t('overview.byTools')} counts={f.byTools} order={TOOLS_STATES} param="tools_status" prefix="tools." />
          </div>
          {(f.alerts || f.datastores) && (
            <>
              <h2 class="section-title">{t('overview.attention')}</h2>
              <div class="counts">
                {f.alerts && <AlertCounts a={f.alerts} />}
                {f.datastores && <FullDatastores items={f.datastores} />}
              </div>
            </>
          )}
          {f.top && (
            <>
              <h2 class="section-title">{t('overview.top', { window: formatDuration(f.top.window_seconds * 1000, l) })}</h2>
              <div class="counts">
                <TopList title={t('overview.top.cpu_usage')} items={f.top.cpu_usage} />
                <TopList title={t('overview.top.cpu_ready')} items={f.top.cpu_ready} ready />
                <TopList title={t('overview.top.memory_balloon')} items={f.top.memory_balloon} />
                <TopList title={t('overview.top.disk_latency')} items={f.top.disk_latency} />
              </div>
            </>
          )}
        </>
      )}
    </div>
  );
}
