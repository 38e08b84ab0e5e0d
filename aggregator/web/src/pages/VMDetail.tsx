import { useMemo, useState } from 'preact/hooks';
import { api, type Alert, type AuditRecord, type HistoryAnswer, type VMDetail as Detail } from '../api';
import { Chart } from '../components/Chart';
import { VMFieldsEditor, VMGroupsEditor } from '../components/VMEditor';
import { Badge, Card, ErrorBox, Fields, Loading } from '../components/common';
import { locale, t, tv } from '../i18n';
import { chartBands } from '../lib/coverage';
import { formatBytes, formatDateTime, formatDuration, formatMemoryMB, formatNumber, formatRelative } from '../lib/format';
import { chartRangeSearch, customRangeOf, localInputValue, parseChartRange, RANGES, type ChartRange, type RangeKey } from '../lib/filters';
import { bandOf } from '../lib/band';
import { membershipOf } from '../lib/vmgroups';
import { useAsync, useNow } from '../lib/hooks';
import { can } from '../lib/me';
import { navigate, search } from '../lib/router';
import { powerTone } from './VMList';

/** The charts of this slice: one metric each, the VM as a whole (instance ""). */
export const CHARTS = [
  { metric: 'cpu.usage.average', key: 'chart.cpu' },
  { metric: 'mem.usage.average', key: 'chart.memory' },
  { metric: 'disk.usage.average', key: 'chart.disk' },
  { metric: 'net.usage.average', key: 'chart.network' },
] as const;

function rangeHref(id: string, r: ChartRange): string {
  return '/vms/' + encodeURIComponent(id) + chartRangeSearch(r);
}

/** CustomRange is the from/to form of the VM's charts; applying it puts the range in the URL. */
function CustomRange({ id, from, to }: { id: string; from: number; to: number }) {
  const [f, setF] = useState(() => localInputValue(from));
  const [tt, setT] = useState(() => localInputValue(to));
  const [problem, setProblem] = useState<{ field: 'from' | 'to'; key: string } | null>(null);
  const inv = (field: 'from' | 'to') => (problem?.field === field ? { 'aria-invalid': true as const, 'aria-describedby': 'cr-err' } : {});
  return (
    <form
      class="custom-range"
      aria-label={t('range.custom.title')}
      data-testid="custom-range"
      onSubmit={(e) => {
        e.preventDefault();
        const r = customRangeOf(f, tt);
        if ('field' in r) {
          setProblem(r);
          return;
        }
        setProblem(null);
        navigate(rangeHref(id, r.range));
      }}
    >
      <label for="cr-from">{t('range.custom.from')}</label>
      <input id="cr-from" type="datetime-local" value={f} {...inv('from')} onInput={(e) => setF(e.currentTarget.value)} />
      <label for="cr-to">{t('range.custom.to')}</label>
      <input id="cr-to" type="datetime-local" value={tt} {...inv('to')} onInput={(e) => setT(e.currentTarget.value)} />
      <button type="submit" class="btn btn-small">
        {t('action.apply')}
      </button>
      {problem && (
        <span class="field-error" id="cr-err" data-field={problem.field}>
          {t(problem.key)}
        </span>
      )}
    </form>
  );
}

function Charts({ id, range }: { id: string; range: ChartRange }) {
  // A preset range ends now when the page (or the range) is opened; "now"
  // is rounded to the minute so a reload within it asks the same question.
  const rangeKey = range.kind === 'custom' ? range.from + '-' + range.to : range.key;
  const to = useMemo(() => (range.kind === 'custom' ? range.to : Math.floor(Date.now() / 60_000) * 60_000 + 60_000), [id, rangeKey]);
  const from = range.kind === 'custom' ? range.from : to - RANGES[range.key];
  const q = (agg: string, step?: string) => ({
    metric: CHARTS.map((c) => c.metric).join(','),
    instance: [''],
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    agg,
    step,
  });
  const hist = useAsync((s) => api.vmMetrics(id, q('avg'), s), [id, from, to]);
  const l = locale.value;
  const h: HistoryAnswer | undefined = hist.data;
  // On a rollup each step also has a min and a max: asked for with the
  // same step once the average is drawn, and drawn as a band around it.
  const rollup = h !== undefined && h.resolution !== 'raw';
  const extremes = useAsync(
    (s) => (rollup && h ? Promise.all([api.vmMetrics(id, q('min', h.step), s), api.vmMetrics(id, q('max', h.step), s)]) : Promise.resolve(null)),
    [id, from, to, rollup, h?.step],
  );
  const [showCustom, setShowCustom] = useState(range.kind === 'custom');
  // Built once per answer: a new array would redraw the charts.
  const charts = useMemo(() => {
    if (!h) return [];
    const xs = h.timestamps.map((ts) => Date.parse(ts) / 1000);
    const [lo, hi] = extremes.data ?? [null, null];
    return CHARTS.map((c) => {
      const s = h.series.find((x) => x.metric === c.metric && x.instance === '') ?? h.series.find((x) => x.metric === c.metric);
      return {
        ...c,
        xs,
        ys: s?.values ?? xs.map(() => null),
        unit: s?.unit || (c.metric.startsWith('cpu') || c.metric.startsWith('mem') ? '%' : 'KBps'),
        bands: chartBands([s?.coverage ?? h.coverage], from, to),
        band: lo && hi ? bandOf(h, lo, hi, c.metric, s?.instance ?? '') : undefined,
      };
    });
  }, [h, extremes.data, from, to]);
  return (
    <section class="charts-section" aria-labelledby="charts-title">
      <div class="charts-head">
        <h2 id="charts-title" class="section-title">
          {t('vm.charts')}
        </h2>
        <nav class="ranges" aria-label={t('chart.range')}>
          {(Object.keys(RANGES) as RangeKey[]).map((r) => (
            <a key={r} href={rangeHref(id, { kind: 'preset', key: r })} class="btn btn-small" aria-current={range.kind === 'preset' && r === range.key ? 'true' : undefined}>
              {t('range.' + r)}
            </a>
          ))}
          <button
            type="button"
            class="btn btn-small"
            aria-expanded={showCustom}
            aria-current={range.kind === 'custom' ? 'true' : undefined}
            data-testid="custom-range-toggle"
            onClick={() => setShowCustom(!showCustom)}
          >
            {t('range.custom')}
          </button>
        </nav>
        <a class="btn btn-small" href={'/history?e=vm:' + encodeURIComponent(id) + '&m=cpu.usage.average&m=mem.usage.average'}>
          {t('realtime.toHistory')}
        </a>
        <a class="btn btn-small" href={'/realtime?e=vm:' + encodeURIComponent(id) + '&m=cpu.usage.average&m=mem.usage.average'}>
          {t('history.live')}
        </a>
        {h && (
          <p class="muted chart-meta">
            {t('chart.meta', { step: h.step, resolution: tv('resolution.', h.resolution) })}
          </p>
        )}
      </div>
      {showCustom && <CustomRange key={rangeKey} id={id} from={from} to={to} />}
      {hist.error !== undefined && <ErrorBox error={hist.error} onRetry={hist.reload} />}
      {extremes.error !== undefined && <ErrorBox error={extremes.error} onRetry={extremes.reload} />}
      {!h && !hist.error && <Loading />}
      {h && (
        <div class="charts" data-resolution={h.resolution} data-from={h.from} aria-busy={hist.loading}>
          {charts.map((c) => (
            <Chart
              key={c.metric + rangeKey + l}
              id={'chart-' + c.metric.replace(/\./g, '-')}
              title={t(c.key)}
              metric={c.metric}
              unit={c.unit}
              xs={c.xs}
              ys={c.ys}
              bands={c.bands}
              band={c.band}
              from={from / 1000}
              to={to / 1000}
              syncKey={'vm:' + id}
            />
          ))}
        </div>
      )}
    </section>
  );
}

function Placement({ vm }: { vm: Detail }) {
  return (
    <Card title={t('vm.placement')}>
      <Fields
        rows={[
          [t('vm.site'), vm.site],
          [t('vm.datacenter'), vm.datacenter],
          [t('vm.cluster'), vm.cluster?.name ?? ''],
          [t('vm.host'), vm.host?.name ?? ''],
          [t('vm.resourcePool'), vm.resource_pool?.name ?? ''],
          [t('vm.datastores'), vm.datastores.map((d) => d.name).join(', ')],
          [t('vm.path'), vm.path],
        ]}
      />
    </Card>
  );
}

function Guest({ vm }: { vm: Detail }) {
  const l = locale.value;
  return (
    <Card title={t('vm.guest')}>
      <Fields
        rows={[
          [t('vm.guestOS'), vm.guest_os],
          [t('vm.hostname'), vm.guest_hostname],
          [t('vm.ips'), vm.guest_ips.join(', ')],
          [t('vm.cpu'), vm.num_cpu === null ? '' : formatNumber(vm.num_cpu, l)],
          [t('vm.memory'), vm.memory_mb === null ? '' : formatMemoryMB(vm.memory_mb, l)],
        ]}
      />
      {vm.guest_disks.length > 0 && (
        <table class="mini">
          <caption>{t('vm.disks')}</caption>
          <thead>
            <tr>
              <th scope="col">{t('vm.disk.path')}</th>
              <th scope="col" class="num">
                {t('vm.disk.capacity')}
              </th>
              <th scope="col" class="num">
                {t('vm.disk.free')}
              </th>
            </tr>
          </thead>
          <tbody>
            {vm.guest_disks.map((d) => (
              <tr key={d.path}>
                <td>{d.path}</td>
                <td class="num">{d.capacity === null ? '–' : formatBytes(d.capacity, l)}</td>
                <td class="num">{d.free === null ? '–' : formatBytes(d.free, l)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Card>
  );
}

function Tools({ vm }: { vm: Detail }) {
  return (
    <Card title={t('vm.tools')}>
      <Fields
        rows={[
          [t('vm.toolsRunning'), vm.tools_running_status ? tv('tools.', vm.tools_running_status) : ''],
          [t('vm.toolsVersionStatus'), vm.tools_version_status ? tv('toolsVersion.', vm.tools_version_status) : ''],
          [t('vm.toolsVersion'), vm.tools_version],
        ]}
      />
    </Card>
  );
}

function Snapshots({ vm, now }: { vm: Detail; now: Date }) {
  const l = locale.value;
  const age = vm.snapshot_oldest ? now.getTime() - Date.parse(vm.snapshot_oldest) : null;
  return (
    <Card title={t('vm.snapshots')}>
      <Fields
        rows={[
          [t('vm.snapshotCount'), formatNumber(vm.snapshot_count, l)],
          [
            t('vm.snapshotOldest'),
            vm.snapshot_oldest ? (
              <span data-testid="snapshot-age">
                <time dateTime={vm.snapshot_oldest}>{formatDateTime(vm.snapshot_oldest, l)}</time>{' '}
                {age !== null && <Badge tone={age > 7 * 86_400_000 ? 'warn' : 'muted'}>{t('vm.snapshotAge', { age: formatDuration(age, l) })}</Badge>}
              </span>
            ) : (
              ''
            ),
          ],
        ]}
      />
    </Card>
  );
}

function Operator({ vm }: { vm: Detail }) {
  const labels = Object.entries(vm.labels);
  const attrs = Object.entries(vm.custom_attributes);
  return (
    <Card title={t('vm.operator')}>
      <Fields
        rows={[
          [t('vm.description'), vm.description],
          [t('vm.owner'), vm.owner],
          [t('vm.labels'), labels.length ? <Chips items={labels.map(([k, v]) => k + '=' + v)} /> : ''],
          [t('vm.groups'), vm.groups.length ? <Chips items={vm.groups.map((g) => (g.name || g.id) + ' (' + t('vmEdit.member.' + membershipOf(g)) + ')')} /> : ''],
          [t('vm.tags'), vm.tags.length ? <Chips items={vm.tags} /> : ''],
          [t('vm.attributes'), attrs.length ? <Chips items={attrs.map(([k, v]) => k + ': ' + v)} /> : ''],
          [t('vm.annotation'), vm.annotation],
        ]}
      />
    </Card>
  );
}

function Chips({ items }: { items: string[] }) {
  return (
    <ul class="chips">
      {items.map((x) => (
        <li key={x} class="chip">
          {x}
        </li>
      ))}
    </ul>
  );
}

/** How many of the VM's alerts and audit records the page shows, newest first. */
const RECENT = 20;
const sevTone: Record<string, 'bad' | 'warn' | 'info'> = { critical: 'bad', warning: 'warn', info: 'info' };

/** This VM's alerts (GET /alerts?kind=vm&entity=), every state, newest first. */
function VMAlerts({ id, now }: { id: string; now: Date }) {
  const list = useAsync((s) => api.alerts({ kind: 'vm', entity: id, state: 'all', sort: '-starts_at', page_size: RECENT }, s), [id], 60_000);
  const l = locale.value;
  const items: Alert[] = list.data?.items ?? [];
  return (
    <section aria-labelledby="vm-alerts" class="vm-section">
      <h2 id="vm-alerts" class="section-title">
        {t('vm.alerts')}
      </h2>
      {list.error !== undefined && <ErrorBox error={list.error} onRetry={list.reload} />}
      {!list.data && list.error === undefined && <Loading />}
      {list.data && (
        <table class="table" aria-labelledby="vm-alerts">
          <thead>
            <tr>
              <th scope="col">{t('alerts.col.severity')}</th>
              <th scope="col">{t('alerts.col.state')}</th>
              <th scope="col">{t('alerts.col.rule')}</th>
              <th scope="col">{t('alerts.col.since')}</th>
              <th scope="col">{t('alerts.col.duration')}</th>
            </tr>
          </thead>
          <tbody>
            {items.map((a) => (
              <tr key={a.id} data-alert={a.id}>
                <td>
                  <Badge tone={sevTone[a.severity] ?? 'info'}>{tv('alerts.severity.', a.severity)}</Badge>
                </td>
                <td>{tv('alerts.state.', a.state)}</td>
                <td>
                  <a href={'/alerts/' + a.id}>{a.rule_name || a.summary}</a>
                </td>
                <td>
                  <time dateTime={a.starts_at}>{formatDateTime(a.starts_at, l)}</time>
                </td>
                <td>{formatDuration(Math.max(0, (a.ends_at ? Date.parse(a.ends_at) : now.getTime()) - Date.parse(a.starts_at)), l)}</td>
              </tr>
            ))}
            {items.length === 0 && (
              <tr>
                <td colSpan={5} class="empty">
                  {t('vm.alertsEmpty')}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
      {list.data && list.data.total > items.length && <p class="muted">{t('vm.recentOf', { n: items.length, total: list.data.total })}</p>}
    </section>
  );
}

/**
 * This VM's audit records: those whose resource is the VM's id, vCenter's
 * events about it and the API's changes to it. The API records a path id
 * as the client sent it, so the URL-encoded form is asked for too.
 */
function VMAudit({ id }: { id: string }) {
  const list = useAsync(
    (s) =>
      Promise.all([...new Set([id, encodeURIComponent(id)])].map((r) => api.auditLogs({ resource_id: r, limit: RECENT }, s))).then((pages) =>
        pages
          .flatMap((p) => p.items)
          .sort((a, b) => Date.parse(b.time) - Date.parse(a.time) || b.id - a.id)
          .slice(0, RECENT),
      ),
    [id],
  );
  const l = locale.value;
  const items: AuditRecord[] = list.data ?? [];
  return (
    <section aria-labelledby="vm-audit" class="vm-section">
      <h2 id="vm-audit" class="section-title">
        {t('vm.audit')}
      </h2>
      {list.error !== undefined && <ErrorBox error={list.error} onRetry={list.reload} />}
      {!list.data && list.error === undefined && <Loading />}
      {list.data && (
        <table class="table" aria-labelledby="vm-audit">
          <thead>
            <tr>
              <th scope="col">{t('audit.col.time')}</th>
              <th scope="col">{t('audit.col.actor')}</th>
              <th scope="col">{t('audit.col.action')}</th>
              <th scope="col">{t('audit.col.result')}</th>
            </tr>
          </thead>
          <tbody>
            {items.map((r) => (
              <tr key={r.id} data-audit={r.action}>
                <td>
                  <time dateTime={r.time}>{formatDateTime(r.time, l)}</time>
                </td>
                <td>{r.actor_name || r.actor_type}</td>
                <td>
                  <code>{r.action}</code>
                </td>
                <td>{tv('audit.result.', r.result)}</td>
              </tr>
            ))}
            {items.length === 0 && (
              <tr>
                <td colSpan={4} class="empty">
                  {t('vm.auditEmpty')}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
    </section>
  );
}

export default function VMDetail({ params }: { params: Record<string, string> }) {
  const id = params.id ?? '';
  const vm = useAsync((s) => api.vm(id, s), [id]);
  const now = useNow(60_000);
  const range = parseChartRange(search.value);
  const l = locale.value;
  const d = vm.data;
  return (
    <div class="page page-wide">
      <p class="crumbs">
        <a href="/vms">{t('nav.vms')}</a>
      </p>
      {vm.error !== undefined && <ErrorBox error={vm.error} onRetry={vm.reload} />}
      {!d && !vm.error && <Loading />}
      {d && (
        <>
          <div class="page-head">
            <h1>
              {d.name} <Badge tone={powerTone(d.power_state)}>{d.power_state ? tv('power.', d.power_state) : '–'}</Badge>
            </h1>
            <p class="muted">{t('vm.observed', { when: formatRelative(d.observed_at, now, l) })}</p>
          </div>
          <div class="cards">
            <Placement vm={d} />
            <Guest vm={d} />
            <Tools vm={d} />
            <Snapshots vm={d} now={now} />
            <Operator vm={d} />
          </div>
          {can('vm:write') && (
            <div class="cards">
              <VMFieldsEditor key={d.id} vm={d} onSaved={vm.reload} />
              <VMGroupsEditor vm={d} onChanged={vm.reload} />
            </div>
          )}
          <Charts id={d.id} range={range} />
          {can('alert:read') && <VMAlerts id={d.id} now={now} />}
          {can('audit:read') && <VMAudit id={d.id} />}
        </>
      )}
    </div>
  );
}
