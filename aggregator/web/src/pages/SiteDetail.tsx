import { useState } from 'preact/hooks';
import { api, ApiError, type Agent, type AgentVCenter, type SiteTimeline } from '../api';
import { PluginTable } from '../components/AgentPlugins';
import { ActionNotice, Badge, Card, ErrorBox, Fields, Loading } from '../components/common';
import { locale, t } from '../i18n';
import { useAction } from '../lib/action';
import { formatBytes, formatDateTime, formatDuration, formatNumber, formatPercent, formatRelative } from '../lib/format';
import { useAsync, useNow } from '../lib/hooks';
import { can } from '../lib/me';
import { pluginsNeedAttention } from '../lib/plugins';
import { connectedShare, place, type Stretch } from '../lib/timeline';

const RANGES = [
  ['24h', 86_400_000],
  ['7d', 7 * 86_400_000],
  ['30d', 30 * 86_400_000],
] as const;

function Strip({ label, kind, items, from, to }: { label: string; kind: string; items: Stretch[]; from: number; to: number }) {
  return (
    <div class="strip-row">
      <span class="strip-label">{label}</span>
      <div class={'strip strip-' + kind} role="img" aria-label={t('siteDetail.stripAria', { what: label, n: items.length })}>
        {items.map((s, i) => {
          const p = place(s, from, to);
          return p ? <span key={i} class="strip-seg" data-kind={kind} style={{ left: p.left + '%', width: p.width + '%' }} /> : null;
        })}
      </div>
    </div>
  );
}

function Timeline({ tl, now }: { tl: SiteTimeline; now: Date }) {
  const l = locale.value;
  const from = Date.parse(tl.from);
  const to = Date.parse(tl.to);
  const sessions = tl.sessions ?? [];
  const share = connectedShare(sessions, from, to);
  return (
    <div data-testid="site-timeline">
      <p class="muted">
        {t('siteDetail.connectedShare', { pct: formatPercent(share * 100, l), from: formatDateTime(tl.from, l), to: formatDateTime(tl.to, l) })}
      </p>
      <div class="strips">
        <Strip label={t('siteDetail.connected')} kind="session" items={sessions} from={from} to={to} />
        <Strip label={t('siteDetail.offline')} kind="offline" items={tl.offline ?? []} from={from} to={to} />
        <Strip label={t('siteDetail.backfill')} kind="backfill" items={tl.backfills ?? []} from={from} to={to} />
        <Strip label={t('siteDetail.gaps')} kind="gap" items={tl.gaps ?? []} from={from} to={to} />
      </div>
      <h3>{t('siteDetail.events')}</h3>
      <ul class="event-list">
        {sessions.map((s, i) => (
          <li key={'s' + i} data-kind="session">
            {t('siteDetail.session', {
              agent: s.agent.name || s.agent.id,
              from: formatDateTime(s.from, l),
              to: s.to ? formatDateTime(s.to, l) : t('siteDetail.now'),
              reason: s.to ? t('siteDetail.end.' + (s.end_reason || 'disconnected')) : '',
            })}
          </li>
        ))}
        {(tl.backfills ?? []).map((b, i) => (
          <li key={'b' + i} data-kind="backfill">
            {t('siteDetail.backfillItem', {
              n: formatNumber(b.batches, l),
              from: formatDateTime(b.from, l),
              dataFrom: formatDateTime(b.data_from, l),
              dataTo: formatDateTime(b.data_to, l),
            })}
          </li>
        ))}
        {(tl.gaps ?? []).map((g, i) => (
          <li key={'g' + i} data-kind="gap">
            {t('siteDetail.gapItem', {
              n: formatNumber(g.batches, l),
              size: formatBytes(g.bytes, l),
              from: formatDateTime(g.from, l),
              to: formatDateTime(g.to, l),
              reason: g.reason,
            })}
          </li>
        ))}
      </ul>
      <p class="muted">{t('siteDetail.asOf', { when: formatRelative(tl.to, now, l) })}</p>
    </div>
  );
}

/** VCenterTable is the reachability of each endpoint an agent polls, as its last heartbeat said. */
function VCenterTable({ items, now }: { items: AgentVCenter[]; now: Date }) {
  const l = locale.value;
  return (
    <table class="mini" data-testid="agent-vcenters">
      <caption>{t('siteDetail.vcenters')}</caption>
      <thead>
        <tr>
          <th scope="col">{t('siteDetail.vcenter.source')}</th>
          <th scope="col">{t('siteDetail.vcenter.state')}</th>
          <th scope="col">{t('siteDetail.vcenter.lastOK')}</th>
          <th scope="col">{t('siteDetail.vcenter.lastError')}</th>
        </tr>
      </thead>
      <tbody>
        {items.map((v) => (
          <tr key={v.source} data-vcenter={v.source} data-reachable={String(v.reachable)}>
            <td>
              <code>{v.source}</code>
            </td>
            <td>
              <Badge tone={v.reachable ? 'ok' : 'bad'}>{t(v.reachable ? 'siteDetail.vcenter.reachable' : 'siteDetail.vcenter.unreachable')}</Badge>
              {v.since && (
                <span class="muted">
                  {' '}
                  {t('siteDetail.vcenter.since', { when: formatRelative(v.since, now, l) })}
                </span>
              )}
            </td>
            <td>{v.last_ok ? <time dateTime={v.last_ok}>{formatRelative(v.last_ok, now, l)}</time> : '–'}</td>
            <td class="ua">{v.last_error || '–'}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function AgentCard({ a, now }: { a: Agent; now: Date }) {
  const l = locale.value;
  const certLeft = Date.parse(a.cert_not_after) - now.getTime();
  const attention = pluginsNeedAttention(a.plugins ?? []);
  return (
    <Card title={a.name} class="agent-card">
      <div data-agent={a.id}>
        <Badge tone={a.connected ? 'ok' : a.state === 'revoked' ? 'muted' : 'bad'}>{t('agent.state.' + a.state)}</Badge>{' '}
        {attention > 0 && <Badge tone="bad">{t('plugins.attention', { n: attention })}</Badge>}
        <Fields
          rows={[
            [t('siteDetail.version'), a.version],
            [t('siteDetail.cert'), t('siteDetail.certLeft', { when: formatDateTime(a.cert_not_after, l), left: formatDuration(Math.max(0, certLeft), l) })],
            [t('site.lastSeen'), a.last_seen ? formatRelative(a.last_seen, now, l) : t('site.never')],
            [
              t('siteDetail.spool'),
              a.spool_max_bytes
                ? t('siteDetail.spoolQuota', {
                    n: formatNumber(a.spool_depth, l),
                    size: formatBytes(a.spool_bytes, l),
                    max: formatBytes(a.spool_max_bytes, l),
                    pct: formatPercent((100 * a.spool_bytes) / a.spool_max_bytes, l),
                  })
                : t('siteDetail.spoolValue', { n: formatNumber(a.spool_depth, l), size: formatBytes(a.spool_bytes, l) }),
            ],
            [t('siteDetail.oldest'), a.spool_depth > 0 ? formatDuration(a.oldest_unsent_ms, l) : ''],
            [t('siteDetail.lag'), formatDuration(a.collection_lag_ms, l)],
            [t('siteDetail.dropped'), formatNumber(a.dropped_batches, l)],
            [t('siteDetail.address'), a.remote_addr],
          ]}
        />
        {a.vcenters && a.vcenters.length > 0 && <VCenterTable items={a.vcenters} now={now} />}
        <PluginTable plugins={a.plugins} now={now} caption={t('plugins.collectors')} />
      </div>
    </Card>
  );
}

/** A site: its agents (version, certificate, spool, lag), connectivity and backfill timeline, resync. */
export default function SiteDetail({ params }: { params: Record<string, string> }) {
  const name = params.id ?? '';
  const [range, setRange] = useState<(typeof RANGES)[number][0]>('24h');
  const site = useAsync((s) => api.site(name, s), [name]);
  const agents = useAsync(
    (s) => (can('system:read') ? api.agents(s).then((p) => p.items.filter((a) => a.site === name)) : Promise.resolve(null)),
    [name],
    15_000,
  );
  const tl = useAsync(
    (s) => {
      const to = new Date();
      const span = RANGES.find((r) => r[0] === range)![1];
      return api.siteTimeline(name, { from: new Date(to.getTime() - span).toISOString(), to: to.toISOString() }, s);
    },
    [name, range],
    60_000,
  );
  const act = useAction();
  const now = useNow();
  const l = locale.value;
  if (site.error !== undefined) return <ErrorBox error={site.error} onRetry={site.reload} />;
  if (!site.data) return <Loading />;
  const s = site.data;

  return (
    <div class="page page-wide" data-site-detail={s.name}>
      <nav class="crumbs" aria-label={t('nav.crumbs')}>
        <a href="/">{t('nav.overview')}</a> / <span>{s.name}</span>
      </nav>
      <div class="page-head">
        <h1>{s.name}</h1>
        <Badge tone={s.agents_connected > 0 ? 'ok' : s.agents > 0 ? 'bad' : 'muted'}>
          {s.agents_connected > 0 ? t('site.state.online') : s.agents > 0 ? t('site.state.offline') : t('site.state.no_agent')}
        </Badge>
        {can('vm:write') && (
          <button
            type="button"
            class="btn"
            disabled={act.busy !== null}
            data-testid="site-resync"
            onClick={() =>
              void act.run('resync', async () => {
                const r = await api.siteResync(name);
                return t('siteDetail.resynced', { n: r.agents_notified });
              })
            }
          >
            {t('siteDetail.resync')}
          </button>
        )}
      </div>
      {s.description && <p class="muted">{s.description}</p>}
      <ActionNotice error={act.error} done={act.done} />
      <div class="cards">
        <Card title={t('siteDetail.summary')}>
          <Fields
            rows={[
              [t('site.vms'), formatNumber(s.vms, l)],
              [t('site.hosts'), formatNumber(s.hosts, l)],
              [t('site.agents'), t('site.agentsConnected', { connected: s.agents_connected, total: s.agents })],
              [t('siteDetail.sources'), s.sources.join(', ')],
              [t('siteDetail.created'), formatDateTime(s.created_at, l)],
            ]}
          />
          <p>
            <a href={'/vms?site=' + encodeURIComponent(s.name)}>{t('siteDetail.vmsLink')}</a> · <a href={'/alerts?site=' + encodeURIComponent(s.name)}>{t('siteDetail.alertsLink')}</a>
          </p>
        </Card>
        {agents.data?.map((a) => <AgentCard key={a.id} a={a} now={now} />)}
      </div>
      {agents.data === null && <p class="muted">{t('overview.noAgentPermission')}</p>}
      {agents.error !== undefined && !(agents.error instanceof ApiError && agents.error.status === 403) && <ErrorBox error={agents.error} onRetry={agents.reload} />}
      <div class="charts-head">
        <h2 class="section-title">{t('siteDetail.timeline')}</h2>
        <div class="ranges" role="group" aria-label={t('chart.range')}>
          {RANGES.map(([r]) => (
            <button key={r} type="button" class="btn btn-small" aria-current={r === range ? 'true' : undefined} onClick={() => setRange(r)}>
              {t('range.' + r)}
            </button>
          ))}
        </div>
      </div>
      {tl.error !== undefined && <ErrorBox error={tl.error} onRetry={tl.reload} />}
      {tl.data ? <Timeline tl={tl.data} now={now} /> : tl.error === undefined && <Loading />}
    </div>
  );
}
