import { useState } from 'preact/hooks';
import { api, type Cluster, type Host, type MetricsTop, type Page } from '../api';
import { EntityCharts } from '../components/EntityCharts';
import { Badge, ErrorBox, Loading, SubNav } from '../components/common';
import { locale, t, tv } from '../i18n';
import { heatLevel, readyPercent } from '../lib/capacity';
import { RANGES, type RangeKey } from '../lib/filters';
import { formatBytes, formatMetric, formatNumber, formatPercent } from '../lib/format';
import { useAsync } from '../lib/hooks';
import { path, search } from '../lib/router';

interface Cell {
  id: string;
  name: string;
  site: string;
  a: number | null;
  b: number | null;
}

/** The two heat measures per kind: hosts by CPU ready and swap in use, clusters by CPU and memory use. */
const MEASURES = {
  host: { a: 'cpu.ready.summation', b: 'mem.swapused.average', aMarks: [2, 10], bMarks: [0, 1_000_000] },
  cluster: { a: 'cpu.usage.average', b: 'mem.usage.average', aMarks: [60, 90], bMarks: [70, 95] },
} as const;

function byID(top: MetricsTop | undefined): Map<string, number> {
  return new Map((top?.items ?? []).map((x) => [x.id, x.value]));
}

function HeatGrid({ kind, cells, unitB }: { kind: 'host' | 'cluster'; cells: Cell[]; unitB: string }) {
  const m = MEASURES[kind];
  const l = locale.value;
  const fmtA = (v: number | null) => (v === null ? '–' : kind === 'host' ? formatPercent(v, l) : formatMetric(v, '%', l));
  const fmtB = (v: number | null) => (v === null ? '–' : formatMetric(v, unitB, l));
  return (
    <div>
      <ul class="heat-grid" aria-label={t('hosts.heat')} data-testid="heat-grid">
        {cells.map((c) => (
          <li key={c.id} class="heat-cell" data-heat={c.id}>
            <a href={`?id=${encodeURIComponent(c.id)}`} class="heat-name">
              {c.name}
            </a>
            <span class={'heat heat-' + heatLevel(c.a, m.aMarks[0], m.aMarks[1])}>
              {t('hosts.measure.' + kind + '.a')} {fmtA(c.a)}
            </span>
            <span class={'heat heat-' + heatLevel(c.b, m.bMarks[0], m.bMarks[1])}>
              {t('hosts.measure.' + kind + '.b')} {fmtB(c.b)}
            </span>
          </li>
        ))}
      </ul>
      <p class="muted">{t('hosts.heatHint.' + kind)}</p>
    </div>
  );
}

/** Hosts and clusters: a heat grid of contention over the last hour, the list, and a chosen one's charts. */
export default function Hosts() {
  const kind: 'host' | 'cluster' = path.value === '/clusters' ? 'cluster' : 'host';
  const q = new URLSearchParams(search.value);
  const chosen = q.get('id') ?? '';
  const [range, setRange] = useState<RangeKey>('24h');
  const m = MEASURES[kind];
  const list = useAsync<Page<Host | Cluster>>((s) => (kind === 'host' ? api.hosts({ page_size: 500 }, s) : api.clusters({ page_size: 500 }, s)), [kind]);
  const heat = useAsync(
    (s) =>
      Promise.all([
        api.metricsTop({ metric: m.a, kind, limit: 100 }, s),
        api.metricsTop({ metric: m.b, kind, limit: 100 }, s),
      ]),
    [kind],
    60_000,
  );
  const l = locale.value;
  const items = (list.data?.items ?? []) as (Host | Cluster)[];
  const [ta, tb] = heat.data ?? [];
  const aByID = byID(ta);
  const bByID = byID(tb);
  const cells: Cell[] = items
    .map((x) => {
      const raw = aByID.get(x.id);
      const a = raw === undefined ? null : kind === 'host' ? readyPercent(raw, (x as Host).cpu_cores ?? 0) : raw;
      return { id: x.id, name: x.name, site: x.site, a, b: bByID.get(x.id) ?? null };
    })
    .sort((x, y) => (y.a ?? -1) - (x.a ?? -1));
  const sel = items.find((x) => x.id === chosen);
  const metrics = kind === 'host' ? ['cpu.usage.average', 'cpu.ready.summation', 'mem.usage.average', 'mem.swapused.average'] : ['cpu.usage.average', 'mem.usage.average'];

  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{kind === 'host' ? t('hosts.title') : t('clusters.title')}</h1>
      </div>
      <SubNav
        label={t('hosts.nav')}
        current={path.value}
        items={[
          ['/hosts', t('hosts.title')],
          ['/clusters', t('clusters.title')],
          ['/datastores', t('nav.datastores')],
        ]}
      />
      {list.error !== undefined && <ErrorBox error={list.error} onRetry={list.reload} />}
      {heat.error !== undefined && <ErrorBox error={heat.error} onRetry={heat.reload} />}
      {!list.data && list.error === undefined && <Loading />}
      {list.data && <HeatGrid kind={kind} cells={cells} unitB={tb?.items[0]?.unit ?? (kind === 'host' ? 'KB' : '%')} />}
      {sel && (
        <section aria-labelledby="entity-charts">
          <div class="charts-head">
            <h2 class="section-title" id="entity-charts">
              {sel.name}
            </h2>
            <div class="ranges" role="group" aria-label={t('chart.range')}>
              {(Object.keys(RANGES) as RangeKey[]).map((r) => (
                <button key={r} type="button" class="btn btn-small" aria-current={r === range ? 'true' : undefined} onClick={() => setRange(r)}>
                  {t('range.' + r)}
                </button>
              ))}
            </div>
          </div>
          <EntityCharts kind={kind} id={sel.id} name={sel.name} metrics={metrics} range={range} />
        </section>
      )}
      {list.data && (
        <table class="table" aria-label={kind === 'host' ? t('hosts.title') : t('clusters.title')}>
          <thead>
            <tr>
              <th scope="col">{t('hosts.name')}</th>
              <th scope="col">{t('alerts.col.site')}</th>
              {kind === 'host' ? (
                <>
                  <th scope="col">{t('vm.cluster')}</th>
                  <th scope="col">{t('alerts.col.state')}</th>
                  <th scope="col">{t('hosts.cores')}</th>
                  <th scope="col">{t('vm.memory')}</th>
                </>
              ) : (
                <>
                  <th scope="col">{t('site.hosts')}</th>
                  <th scope="col">{t('alerts.col.state')}</th>
                  <th scope="col">{t('hosts.cpuTotal')}</th>
                  <th scope="col">{t('vm.memory')}</th>
                </>
              )}
              <th scope="col">{t('site.vms')}</th>
            </tr>
          </thead>
          <tbody>
            {items.map((x) => {
              const h = x as Host;
              const c = x as Cluster;
              return (
                <tr key={x.id} data-object={x.id}>
                  <td>
                    <a href={`?id=${encodeURIComponent(x.id)}`}>{x.name}</a>
                  </td>
                  <td>{x.site}</td>
                  {kind === 'host' ? (
                    <>
                      <td>{h.cluster?.name ?? ''}</td>
                      <td>
                        <Badge tone={h.connection_state === 'connected' ? 'ok' : 'bad'}>{tv('hosts.conn.', h.connection_state || 'unknown')}</Badge>
                        {h.maintenance_mode && <Badge tone="info">{t('hosts.maintenance')}</Badge>}
                      </td>
                      <td class="num">{h.cpu_cores === null ? '–' : formatNumber(h.cpu_cores, l)}</td>
                      <td class="num">{h.memory_bytes === null ? '–' : formatBytes(h.memory_bytes, l)}</td>
                    </>
                  ) : (
                    <>
                      <td class="num">{formatNumber(c.hosts, l)}</td>
                      <td>{tv('hosts.status.', c.overall_status || 'unknown')}</td>
                      <td class="num">{c.cpu_mhz_total === null ? '–' : formatMetric(c.cpu_mhz_total, 'MHz', l)}</td>
                      <td class="num">{c.memory_bytes_total === null ? '–' : formatBytes(c.memory_bytes_total, l)}</td>
                    </>
                  )}
                  <td class="num">{formatNumber(x.vms, l)}</td>
                </tr>
              );
            })}
            {items.length === 0 && (
              <tr>
                <td colSpan={7} class="empty">
                  {t('hosts.empty')}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
    </div>
  );
}
