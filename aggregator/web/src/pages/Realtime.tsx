import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, realtimeSocket, type RealtimeSample } from '../api';
import { Chart } from '../components/Chart';
import { ErrorBox, Loading } from '../components/common';
import { locale, t, tv } from '../i18n';
import { compareSearch, parseCompare } from '../lib/compare';
import { formatMetric, formatTime } from '../lib/format';
import { useAsync } from '../lib/hooks';
import { align, Buffer, MAX_ENTITIES, pausedSites } from '../lib/realtime';
import { search } from '../lib/router';

const WINDOW_S = 15 * 60;
const DEFAULT_METRICS = ['cpu.usage.average', 'mem.usage.average'];

type Conn = 'connecting' | 'live' | 'closed';

/** Realtime: up to 20 entities × metrics over the WebSocket, paused (and saying so) while a site is offline. */
export default function Realtime() {
  const st = parseCompare(search.value);
  const entities = st.entities.slice(0, MAX_ENTITIES);
  const metrics = st.metrics.length ? st.metrics : DEFAULT_METRICS;
  const key = compareSearch({ ...st, entities, metrics });
  const buf = useRef(new Buffer(WINDOW_S));
  const [tick, setTick] = useState(0);
  const [conn, setConn] = useState<Conn>('connecting');
  const [err, setErr] = useState<string | null>(null);
  const [paused, setPaused] = useState(false);
  const sites = useAsync((s) => api.sites(s), [], 10_000);
  const l = locale.value;

  // Seed the charts with the last 15 minutes of history (and learn each entity's site).
  const seed = useAsync(
    async (s) => {
      buf.current = new Buffer(WINDOW_S);
      if (!entities.length) return 0;
      const to = new Date();
      const res = await api.metricsQuery({ entities, metrics, from: new Date(to.getTime() - WINDOW_S * 1000).toISOString(), to: to.toISOString() }, s);
      const samples: RealtimeSample[] = [];
      for (const it of res.items) {
        const h = it.history;
        if (!h) continue;
        buf.current.sites.set(it.kind + ':' + it.id, h.site);
        for (const se of h.series) {
          if (se.instance) continue;
          se.values.forEach((v, i) => {
            if (v !== null) samples.push({ kind: it.kind, id: it.id, site: h.site, instance: '', metric: se.metric, unit: se.unit, ts: h.timestamps[i]!, value: v });
          });
        }
      }
      buf.current.add(samples, Date.now() / 1000);
      setTick((n) => n + 1);
      return samples.length;
    },
    [key],
  );

  useEffect(() => {
    if (!entities.length) return;
    let ws: WebSocket | null = null;
    let stopped = false;
    let reauth: ReturnType<typeof setInterval> | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;
    const open = async () => {
      setConn('connecting');
      try {
        const sock = await realtimeSocket();
        if (stopped) return sock.ws.close();
        ws = sock.ws;
        ws.onopen = () => {
          setConn('live');
          setErr(null);
          ws!.send(JSON.stringify({ type: 'subscribe', id: 'page', entities, metrics }));
          reauth = setInterval(() => void sock.authMessage().then((m) => ws?.readyState === WebSocket.OPEN && ws.send(m)), 4 * 60_000);
        };
        ws.onmessage = (ev) => {
          let msg: { type?: string; samples?: RealtimeSample[]; message?: string; code?: string };
          try {
            msg = JSON.parse(String(ev.data));
          } catch {
            return;
          }
          if (msg.type === 'samples' && msg.samples) {
            buf.current.add(msg.samples, Date.now() / 1000);
            setTick((n) => n + 1);
          } else if (msg.type === 'error') setErr(msg.message || msg.code || '');
        };
        ws.onclose = () => {
          clearInterval(reauth);
          setConn('closed');
          if (!stopped) retry = setTimeout(() => void open(), 3000);
        };
      } catch (e) {
        setConn('closed');
        setErr(String(e));
        if (!stopped) retry = setTimeout(() => void open(), 5000);
      }
    };
    void open();
    return () => {
      stopped = true;
      clearInterval(reauth);
      clearTimeout(retry);
      ws?.close();
    };
  }, [key]);

  const connected = new Map((sites.data?.items ?? []).map((s) => [s.name, s.agents_connected > 0]));
  const offline = pausedSites(buf.current.sites.values(), connected);
  const charts = useMemo(
    () =>
      metrics.map((m) => {
        const lines = entities.map((e) => ({ e, line: buf.current.line(e.kind, e.id, m) }));
        const { xs, ys } = align(lines.map((x) => x.line));
        return { metric: m, xs, ys, unit: lines.find((x) => x.line.unit)?.line.unit ?? '' };
      }),
    [paused ? -1 : tick, key],
  );
  const now = Date.now() / 1000;
  const label = (i: number) => {
    const e = entities[i]!;
    return e.id.slice(e.id.indexOf(':') + 1);
  };

  if (!entities.length)
    return (
      <div class="page page-wide">
        <h1>{t('realtime.title')}</h1>
        <p class="muted">{t('realtime.none')}</p>
        <p>
          <a href={'/history' + key}>{t('realtime.pick')}</a>
        </p>
      </div>
    );
  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{t('realtime.title')}</h1>
        <span role="status" data-conn={conn} class={'badge badge-' + (conn === 'live' ? 'ok' : 'muted')}>
          {t('realtime.conn.' + conn)}
        </span>
        <button type="button" class="btn btn-small" onClick={() => setPaused(!paused)} aria-pressed={paused}>
          {paused ? t('realtime.resume') : t('realtime.pause')}
        </button>
        <a class="btn btn-small" href={'/history' + key}>
          {t('realtime.toHistory')}
        </a>
      </div>
      {offline.length > 0 && (
        <p class="notice notice-warn" role="status" data-testid="realtime-paused" data-sites={offline.join(' ')}>
          {t('realtime.sitePaused', { sites: offline.join(', ') })}
        </p>
      )}
      {err && <p class="notice notice-error">{err}</p>}
      {seed.error !== undefined && <ErrorBox error={seed.error} onRetry={seed.reload} />}
      {seed.loading && !seed.data && <Loading />}
      <div class="charts">
        {charts.map((c) =>
          c.xs.length === 0 ? (
            <p key={c.metric} class="muted">
              {t('realtime.waiting', { metric: tv('metric.', c.metric) })}
            </p>
          ) : (
            <Chart
              key={c.metric + l}
              id={'rt-' + c.metric.replace(/\W/g, '-')}
              title={tv('metric.', c.metric)}
              metric={c.metric}
              unit={c.unit}
              xs={c.xs}
              ys={c.ys[0]!}
              more={c.ys.slice(1).map((ys, i) => ({ label: label(i + 1), ys }))}
              bands={[]}
              from={now - WINDOW_S}
              to={now}
              syncKey="realtime"
            />
          ),
        )}
      </div>
      <table class="table" aria-label={t('realtime.latest')}>
        <thead>
          <tr>
            <th scope="col">{t('alerts.col.entity')}</th>
            <th scope="col">{t('alerts.col.site')}</th>
            {metrics.map((m) => (
              <th scope="col" key={m}>
                {tv('metric.', m)}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {entities.map((e) => {
            const site = buf.current.sites.get(e.kind + ':' + e.id) ?? '';
            return (
              <tr key={e.kind + e.id} data-rt-entity={e.id} data-paused={String(offline.includes(site))}>
                <td>
                  {t('kind.' + e.kind)} · {e.id}
                </td>
                <td>{site}</td>
                {metrics.map((m) => {
                  const v = buf.current.latest(e.kind, e.id, m);
                  return (
                    <td key={m} class="num">
                      {v ? `${formatMetric(v.value, v.unit, l)} · ${formatTime(new Date(v.ts * 1000), l, true)}` : '–'}
                    </td>
                  );
                })}
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
