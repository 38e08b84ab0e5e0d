import { api, type Datastore } from '../api';
import { Badge, ErrorDetail, Loading, SubNav } from '../components/common';
import { locale, t } from '../i18n';
import { daysToFull, slopePerDay } from '../lib/capacity';
import { formatBytes, formatNumber, formatPercent } from '../lib/format';
import { useAsync } from '../lib/hooks';
import { path } from '../lib/router';

const USED = 'disk.used.latest';
const DAY = 86_400_000;

interface Row {
  ds: Datastore;
  usedPct: number | null;
  /** Bytes per day, from the last 30 days of history; null without enough of it. */
  growth: number | null;
  days: number | null;
}

/**
 * loadRows reads the datastores and, 100 at a time over POST /metrics/query,
 * 30 days of their used space at a daily step, and fits the growth.
 */
async function loadRows(signal: AbortSignal): Promise<Row[]> {
  const list = await api.datastores({ page_size: 500 }, signal);
  const to = new Date(Math.ceil(Date.now() / DAY) * DAY);
  const from = new Date(to.getTime() - 30 * DAY);
  const growth = new Map<string, number | null>();
  for (let i = 0; i < list.items.length; i += 100) {
    const part = list.items.slice(i, i + 100);
    const res = await api.metricsQuery(
      { entities: part.map((d) => ({ kind: 'datastore', id: d.id })), metrics: [USED], from: from.toISOString(), to: to.toISOString(), step: '24h', agg: 'max' },
      signal,
    );
    for (const it of res.items) {
      const h = it.history;
      const s = h?.series.find((x) => x.metric === USED && x.instance === '');
      if (!h || !s) continue;
      const perDay = slopePerDay(
        h.timestamps.map((x) => Date.parse(x)),
        s.values,
      );
      // vSphere's kiloBytes are KiB.
      growth.set(it.id, perDay === null ? null : perDay * 1024);
    }
  }
  return list.items.map((ds) => {
    const g = growth.get(ds.id) ?? null;
    const usedPct = ds.capacity && ds.free !== null ? ((ds.capacity - ds.free) / ds.capacity) * 100 : null;
    return { ds, usedPct, growth: g, days: daysToFull(ds.free, g) };
  });
}

/** Datastores: capacity, use, growth and days to full, closest to full first. */
export default function Datastores() {
  const rows = useAsync((s) => loadRows(s), [], 300_000);
  const l = locale.value;
  const sorted = [...(rows.data ?? [])].sort((a, b) => (a.days ?? Infinity) - (b.days ?? Infinity) || (b.usedPct ?? 0) - (a.usedPct ?? 0));
  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{t('datastores.title')}</h1>
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
      <p class="muted">{t('datastores.hint')}</p>
      {rows.error !== undefined && <ErrorDetail error={rows.error} />}
      {!rows.data && rows.error === undefined && <Loading />}
      {rows.data && (
        <table class="table" aria-label={t('datastores.title')}>
          <thead>
            <tr>
              <th scope="col">{t('hosts.name')}</th>
              <th scope="col">{t('alerts.col.site')}</th>
              <th scope="col">{t('datastores.type')}</th>
              <th scope="col">{t('datastores.capacity')}</th>
              <th scope="col">{t('datastores.free')}</th>
              <th scope="col">{t('datastores.used')}</th>
              <th scope="col">{t('datastores.growth')}</th>
              <th scope="col">{t('datastores.daysToFull')}</th>
              <th scope="col">{t('site.vms')}</th>
            </tr>
          </thead>
          <tbody>
            {sorted.map(({ ds, usedPct, growth, days }) => (
              <tr key={ds.id} id={'ds-' + ds.id} data-datastore={ds.name} data-days={days === null ? '' : days.toFixed(1)}>
                <td>
                  {ds.name} {ds.accessible === false && <Badge tone="bad">{t('datastores.inaccessible')}</Badge>}
                </td>
                <td>{ds.site}</td>
                <td>{ds.type}</td>
                <td class="num">{ds.capacity === null ? '–' : formatBytes(ds.capacity, l)}</td>
                <td class="num">{ds.free === null ? '–' : formatBytes(ds.free, l)}</td>
                <td class="num">
                  {usedPct === null ? (
                    '–'
                  ) : (
                    <span class="usage">
                      <meter min={0} max={100} low={80} high={90} optimum={0} value={usedPct} aria-label={t('datastores.used')} /> {formatPercent(usedPct, l)}
                    </span>
                  )}
                </td>
                <td class="num">{growth === null ? t('datastores.noHistory') : t('datastores.perDay', { size: formatBytes(growth, l) })}</td>
                <td class="num">
                  {days === null ? (
                    '–'
                  ) : (
                    <Badge tone={days < 14 ? 'bad' : days < 60 ? 'warn' : 'ok'}>{t('datastores.days', { n: formatNumber(days, l, 0) })}</Badge>
                  )}
                </td>
                <td class="num">{formatNumber(ds.vms, l)}</td>
              </tr>
            ))}
            {sorted.length === 0 && (
              <tr>
                <td colSpan={9} class="empty">
                  {t('datastores.empty')}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
    </div>
  );
}
