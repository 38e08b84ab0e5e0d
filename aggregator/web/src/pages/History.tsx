import { useMemo, useState } from 'preact/hooks';
import { api, type MetricsQueryResult } from '../api';
import { Chart } from '../components/Chart';
import { ErrorBox, ErrorDetail, errorText, Loading } from '../components/common';
import { locale, t, tv } from '../i18n';
import { AGGS, compareSearch, KINDS, MAX_ENTITIES, MAX_METRICS, parseCompare, STEPS, type CompareState } from '../lib/compare';
import { chartBands } from '../lib/coverage';
import { RANGES, type RangeKey } from '../lib/filters';
import { formatMetric } from '../lib/format';
import { useAsync } from '../lib/hooks';
import { navigate, search } from '../lib/router';

const go = (s: CompareState) => navigate('/history' + compareSearch(s));

/** Picker finds entities by name (VMs, hosts, clusters, datastores) and adds them. */
function Picker({ state }: { state: CompareState }) {
  const [kind, setKind] = useState<string>('vm');
  const [q, setQ] = useState('');
  const [asked, setAsked] = useState('');
  const found = useAsync(
    (s) => {
      if (!asked) return Promise.resolve([]);
      const query = { q: asked, page_size: 20 };
      const list =
        kind === 'vm' ? api.vms(query, s) : kind === 'host' ? api.hosts(query, s) : kind === 'cluster' ? api.clusters(query, s) : api.datastores(query, s);
      return list.then((p) => p.items.map((x) => ({ id: x.id, name: x.name, site: x.site })));
    },
    [kind, asked],
  );
  const full = state.entities.length >= MAX_ENTITIES;
  return (
    <form
      class="filters"
      role="search"
      aria-label={t('history.find')}
      onSubmit={(e) => {
        e.preventDefault();
        setAsked(q.trim());
      }}
    >
      <div class="filter">
        <label for="h-kind">{t('rules.kind')}</label>
        <select id="h-kind" value={kind} onChange={(e) => setKind(e.currentTarget.value)}>
          {KINDS.map((k) => (
            <option key={k} value={k}>
              {t('kind.' + k)}
            </option>
          ))}
        </select>
      </div>
      <div class="filter filter-q">
        <label for="h-q">{t('history.find')}</label>
        <input id="h-q" type="search" value={q} onInput={(e) => setQ(e.currentTarget.value)} />
      </div>
      <div class="filter-actions">
        <button type="submit" class="btn">
          {t('history.search')}
        </button>
      </div>
      {found.data && found.data.length > 0 && (
        <ul class="pick-list" aria-label={t('history.results')}>
          {found.data.map((x) => {
            const added = state.entities.some((e) => e.kind === kind && e.id === x.id);
            return (
              <li key={x.id}>
                <button
                  type="button"
                  class="btn btn-small"
                  disabled={added || full}
                  data-pick={x.id}
                  onClick={() => go({ ...state, entities: [...state.entities, { kind, id: x.id }] })}
                >
                  {t('history.add', { name: x.name, site: x.site })}
                </button>
              </li>
            );
          })}
        </ul>
      )}
      {found.data && found.data.length === 0 && asked && <p class="muted">{t('history.nothing')}</p>}
    </form>
  );
}

function Top({ metric }: { metric: string }) {
  const [kind, setKind] = useState('vm');
  const top = useAsync((s) => (metric ? api.metricsTop({ metric, kind, limit: 10 }, s) : Promise.resolve(null)), [metric, kind]);
  const l = locale.value;
  return (
    <section aria-labelledby="h-top">
      <div class="charts-head">
        <h2 class="section-title" id="h-top">
          {t('history.top', { metric: tv('metric.', metric) })}
        </h2>
        <div class="filter">
          <label for="h-top-kind">{t('rules.kind')}</label>
          <select id="h-top-kind" value={kind} onChange={(e) => setKind(e.currentTarget.value)}>
            {KINDS.map((k) => (
              <option key={k} value={k}>
                {t('kind.' + k)}
              </option>
            ))}
          </select>
        </div>
      </div>
      {top.error !== undefined && <ErrorBox error={top.error} onRetry={top.reload} />}
      {top.data && (
        <ol class="top-list" data-testid="top-list">
          {top.data.items.map((x) => (
            <li key={x.id}>
              <span>
                {x.name} <span class="muted">{x.site}</span>
              </span>
              <span class="count">{formatMetric(x.value, x.unit, l)}</span>
            </li>
          ))}
          {top.data.items.length === 0 && <li class="muted">{t('history.noTop')}</li>}
        </ol>
      )}
    </section>
  );
}

/** History and compare: many entities × metrics on shared axes, top-N, CSV export; the view is in the URL. */
export default function History() {
  const state = parseCompare(search.value);
  const key = compareSearch(state);
  const catalog = useAsync((s) => api.metricCatalog(s), []);
  const to = useMemo(() => Math.floor(Date.now() / 60_000) * 60_000 + 60_000, [key]);
  const from = to - RANGES[state.range];
  const res = useAsync<MetricsQueryResult | null>(
    (s) =>
      state.entities.length && state.metrics.length
        ? api.metricsQuery(
            { entities: state.entities, metrics: state.metrics, from: new Date(from).toISOString(), to: new Date(to).toISOString(), agg: state.agg, step: state.step || undefined },
            s,
          )
        : Promise.resolve(null),
    [key, from],
  );
  const [note, setNote] = useState<string | null>(null);
  const l = locale.value;
  const kinds = new Set(state.entities.map((e) => e.kind));
  const metrics = (catalog.data?.items ?? []).filter((m) => kinds.size === 0 || m.entity_kinds.some((k) => kinds.has(k)));
  const names = new Map((res.data?.items ?? []).map((it) => [it.kind + ':' + it.id, it.history?.entity.name || it.id]));

  const charts = useMemo(() => {
    const items = (res.data?.items ?? []).filter((it) => it.history);
    if (items.length === 0) return [];
    const xs = items[0]!.history!.timestamps.map((ts) => Date.parse(ts) / 1000);
    return state.metrics.map((m) => {
      const lines = items.map((it) => {
        const h = it.history!;
        const s = h.series.find((x) => x.metric === m && x.instance === '') ?? h.series.find((x) => x.metric === m);
        const byTs = new Map(h.timestamps.map((ts, i) => [Date.parse(ts) / 1000, s?.values[i] ?? null]));
        return { label: h.entity.name || it.id, ys: xs.map((x) => byTs.get(x) ?? null), unit: s?.unit ?? '', coverage: s?.coverage ?? h.coverage };
      });
      return { metric: m, xs, first: lines[0]!, more: lines.slice(1), unit: lines.find((x) => x.unit)?.unit ?? '', bands: chartBands([lines[0]!.coverage], from, to) };
    });
  }, [res.data, key]);

  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{t('history.title')}</h1>
        <p class="muted">{t('history.share')}</p>
        {state.entities.length > 0 && (
          <a class="btn btn-small" href={'/realtime' + key}>
            {t('history.live')}
          </a>
        )}
      </div>
      <Picker state={state} />
      <div class="chips" aria-label={t('history.entities')} role="group">
        {state.entities.map((e) => (
          <span class="chip" key={e.kind + e.id} data-entity={e.id}>
            {t('kind.' + e.kind)} · {names.get(e.kind + ':' + e.id) ?? e.id}{' '}
            <button
              type="button"
              class="btn btn-small btn-ghost"
              aria-label={t('history.remove', { name: names.get(e.kind + ':' + e.id) ?? e.id })}
              onClick={() => go({ ...state, entities: state.entities.filter((x) => x !== e) })}
            >
              ×
            </button>
          </span>
        ))}
        {state.entities.length === 0 && <span class="muted">{t('history.noEntities')}</span>}
      </div>
      <div class="filters">
        <div class="filter">
          <label for="h-metric">{t('history.addMetric')}</label>
          <select
            id="h-metric"
            value=""
            disabled={state.metrics.length >= MAX_METRICS}
            onChange={(e) => {
              const m = e.currentTarget.value;
              if (m && !state.metrics.includes(m)) go({ ...state, metrics: [...state.metrics, m] });
            }}
          >
            <option value="">{t('history.chooseMetric')}</option>
            {metrics.map((m) => (
              <option key={m.name} value={m.name}>
                {tv('metric.', m.name)}
              </option>
            ))}
          </select>
        </div>
        <div class="filter">
          <label for="h-agg">{t('rules.agg')}</label>
          <select id="h-agg" value={state.agg} onChange={(e) => go({ ...state, agg: e.currentTarget.value as CompareState['agg'] })}>
            {AGGS.map((a) => (
              <option key={a} value={a}>
                {t('rules.agg.' + a)}
              </option>
            ))}
          </select>
        </div>
        <div class="filter">
          <label for="h-step">{t('history.step')}</label>
          <select id="h-step" value={state.step} onChange={(e) => go({ ...state, step: e.currentTarget.value as CompareState['step'] })}>
            {STEPS.map((st) => (
              <option key={st} value={st}>
                {st ? st : t('history.stepAuto')}
              </option>
            ))}
          </select>
        </div>
        <div class="ranges" role="group" aria-label={t('chart.range')}>
          {(Object.keys(RANGES) as RangeKey[]).map((r) => (
            <button key={r} type="button" class="btn btn-small" aria-current={r === state.range ? 'true' : undefined} onClick={() => go({ ...state, range: r })}>
              {t('range.' + r)}
            </button>
          ))}
        </div>
      </div>
      <div class="chips" role="group" aria-label={t('history.metrics')}>
        {state.metrics.map((m) => (
          <span class="chip" key={m} data-metric-chip={m}>
            {tv('metric.', m)}{' '}
            <button type="button" class="btn btn-small btn-ghost" aria-label={t('history.remove', { name: m })} onClick={() => go({ ...state, metrics: state.metrics.filter((x) => x !== m) })}>
              ×
            </button>
          </span>
        ))}
      </div>
      {res.error !== undefined && <ErrorDetail error={res.error} />}
      {res.loading && !res.data && state.entities.length > 0 && state.metrics.length > 0 && <Loading />}
      {(res.data?.items ?? []).filter((x) => !x.found).map((x) => (
        <p class="notice notice-warn" key={x.id}>
          {t('history.notFound', { id: x.id })}
        </p>
      ))}
      <div class="charts">
        {charts.map((c) => (
          <Chart
            key={c.metric + key + l}
            id={'hc-' + c.metric.replace(/\W/g, '-')}
            title={c.more.length ? t('history.chartTitle', { metric: tv('metric.', c.metric), first: c.first.label }) : tv('metric.', c.metric) + ' · ' + c.first.label}
            metric={c.metric}
            unit={c.unit}
            xs={c.xs}
            ys={c.first.ys}
            more={c.more}
            bands={c.bands}
            from={from / 1000}
            to={to / 1000}
            syncKey="history"
          />
        ))}
      </div>
      {state.entities.length > 0 && state.metrics.length > 0 && (
        <p>
          {state.entities.map((e) => (
            <button
              key={e.kind + e.id}
              type="button"
              class="btn btn-small"
              onClick={() => {
                setNote(t('audit.exporting'));
                api
                  .metricsExport({
                    kind: e.kind,
                    entity: e.id,
                    metric: state.metrics.join(','),
                    from: new Date(from).toISOString(),
                    to: new Date(to).toISOString(),
                    agg: state.agg,
                    step: state.step || undefined,
                    format: 'csv',
                  })
                  .then(
                    () => setNote(null),
                    (err: unknown) => setNote(errorText(err)),
                  );
              }}
            >
              {t('history.csv', { name: names.get(e.kind + ':' + e.id) ?? e.id })}
            </button>
          ))}{' '}
          {note && (
            <span class="muted" role="status">
              {note}
            </span>
          )}
        </p>
      )}
      <Top metric={state.metrics[0] ?? 'cpu.usage.average'} />
    </div>
  );
}
