import { useMemo } from 'preact/hooks';
import { api } from '../api';
import { locale, t, tv } from '../i18n';
import { chartBands } from '../lib/coverage';
import { RANGES, type RangeKey } from '../lib/filters';
import { useAsync } from '../lib/hooks';
import { Chart } from './Chart';
import { ErrorBox, Loading } from './common';

/** EntityCharts draws one chart per metric of a host, cluster or datastore over a range. */
export function EntityCharts({ kind, id, name, metrics, range }: { kind: string; id: string; name: string; metrics: string[]; range: RangeKey }) {
  const to = useMemo(() => Math.floor(Date.now() / 60_000) * 60_000 + 60_000, [kind, id, range]);
  const from = to - RANGES[range];
  const hist = useAsync(
    (s) => api.entityMetrics(kind, id, { metric: metrics.join(','), instance: [''], from: new Date(from).toISOString(), to: new Date(to).toISOString() }, s),
    [kind, id, from, to, metrics.join(',')],
  );
  const l = locale.value;
  const h = hist.data;
  const charts = useMemo(() => {
    if (!h) return [];
    const xs = h.timestamps.map((ts) => Date.parse(ts) / 1000);
    return metrics.map((m) => {
      const s = h.series.find((x) => x.metric === m && x.instance === '') ?? h.series.find((x) => x.metric === m);
      return { metric: m, xs, ys: s?.values ?? xs.map(() => null), unit: s?.unit ?? '', bands: chartBands([s?.coverage ?? h.coverage], from, to) };
    });
  }, [h, from, to]);
  if (hist.error !== undefined) return <ErrorBox error={hist.error} onRetry={hist.reload} />;
  if (!h) return <Loading />;
  return (
    <div class="charts" data-entity-charts={id}>
      {charts.map((c) => (
        <Chart
          key={c.metric + l}
          id={'ec-' + c.metric.replace(/\W/g, '-')}
          title={t('entity.chartTitle', { name, metric: tv('metric.', c.metric) })}
          metric={c.metric}
          unit={c.unit}
          xs={c.xs}
          ys={c.ys}
          bands={c.bands}
          from={from / 1000}
          to={to / 1000}
          syncKey={'entity:' + id}
        />
      ))}
    </div>
  );
}
