// A time-series chart on uPlot. Steps without data are null and drawn as
// gaps (never joined); the stretches the history API reports missing are
// shaded by cause, and listed under the chart for people who cannot see
// the canvas (each item carries the pixel it shades, for the e2e test).
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { locale, t } from '../i18n';
import type { Band, GapCause } from '../lib/coverage';
import { axisTimeFormat, formatDateTime, formatDuration, formatMetric, formatTime } from '../lib/format';
import { theme } from '../lib/theme';

export interface ChartProps {
  id: string;
  title: string;
  metric: string;
  unit: string;
  /** Seconds since the epoch, ascending. */
  xs: number[];
  ys: (number | null)[];
  bands: Band[];
  /** The queried range, seconds. */
  from: number;
  to: number;
  syncKey: string;
  height?: number;
  /** Further series on the same axes (compare), each in its own colour. */
  more?: { label: string; ys: (number | null)[] }[];
  /**
   * The min–max band around the line (rollups keep each step's min and
   * max): aligned with xs, null where a step has no data (no band there).
   */
  band?: { lo: (number | null)[]; hi: (number | null)[] };
}

/** Colours of the further series, after the chart's own line colour. */
const PALETTE = ['#d9480f', '#2b8a3e', '#862e9c', '#e67700', '#1864ab', '#c2255c', '#5f3dc4', '#0b7285', '#5c940d', '#a61e4d'];

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

interface Marker {
  band: Band;
  /** The band's left and right edges and a point inside it, in CSS pixels from the canvas' corner. */
  x0: number;
  x1: number;
  y: number;
}

const MAX_LISTED = 12;

export function Chart(p: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const bandsRef = useRef(p.bands);
  bandsRef.current = p.bands;
  const [markers, setMarkers] = useState<Marker[]>([]);
  const l = locale.value;
  const th = theme.value;

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const fmtTick = axisTimeFormat((p.to - p.from) * 1000, l);
    const drawBands = (u: uPlot) => {
      const ctx = u.ctx;
      const { top, height } = u.bbox;
      ctx.save();
      for (const b of bandsRef.current) {
        const x0 = u.valToPos(b.from / 1000, 'x', true);
        const x1 = u.valToPos(b.to / 1000, 'x', true);
        ctx.fillStyle = cssVar('--gap-' + b.cause) || cssVar('--gap-other');
        ctx.fillRect(x0, top, Math.max(1, x1 - x0), height);
      }
      ctx.restore();
    };
    const place = (u: uPlot) => {
      const ratio = uPlot.pxRatio;
      const left = u.bbox.left / ratio;
      const right = left + u.bbox.width / ratio;
      const clip = (x: number) => Math.min(right, Math.max(left, x));
      setMarkers(
        bandsRef.current.map((b) => ({
          band: b,
          x0: clip(left + u.valToPos(b.from / 1000, 'x')),
          x1: clip(left + u.valToPos(b.to / 1000, 'x')),
          y: u.bbox.top / ratio + u.bbox.height / ratio / 4,
        })),
      );
    };
    const opts: uPlot.Options = {
      width: el.clientWidth || 600,
      height: p.height ?? 200,
      cursor: { sync: { key: p.syncKey }, drag: { x: false, y: false } },
      legend: { show: true },
      scales: {
        x: { time: true, min: p.from, max: p.to },
        y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      series: [
        { label: t('chart.time'), value: (_u, v) => (v === null ? '–' : formatDateTime(new Date(v * 1000), l)) },
        {
          label: p.title,
          stroke: cssVar('--chart-line'),
          fill: p.band ? undefined : cssVar('--chart-fill'),
          width: 1.5,
          spanGaps: false,
          value: (_u, v) => formatMetric(v, p.unit, l),
        },
        ...(p.more ?? []).map((m, i) => ({
          label: m.label,
          stroke: PALETTE[i % PALETTE.length],
          width: 1.25,
          spanGaps: false,
          value: (_u: uPlot, v: number | null) => formatMetric(v, p.unit, l),
        })),
        ...(p.band
          ? [
              { label: t('chart.max'), stroke: cssVar('--chart-band-edge'), width: 0.75, spanGaps: false, points: { show: false }, value: (_u: uPlot, v: number | null) => formatMetric(v, p.unit, l) },
              { label: t('chart.min'), stroke: cssVar('--chart-band-edge'), width: 0.75, spanGaps: false, points: { show: false }, value: (_u: uPlot, v: number | null) => formatMetric(v, p.unit, l) },
            ]
          : []),
      ],
      // The band fills between max (above) and min (below).
      bands: p.band ? [{ series: [2 + (p.more?.length ?? 0), 3 + (p.more?.length ?? 0)], fill: cssVar('--chart-band') }] : undefined,
      axes: [
        {
          stroke: cssVar('--muted'),
          grid: { stroke: cssVar('--grid'), width: 1 },
          ticks: { stroke: cssVar('--grid') },
          values: (_u, splits) => splits.map((s) => fmtTick.format(new Date(s * 1000))),
          space: 70,
        },
        {
          stroke: cssVar('--muted'),
          grid: { stroke: cssVar('--grid'), width: 1 },
          ticks: { stroke: cssVar('--grid') },
          size: 76,
          values: (_u, splits) => splits.map((v) => formatMetric(v, p.unit, l)),
        },
      ],
      hooks: { drawClear: [drawBands], draw: [place] },
    };
    // How long the first draw took (construction to the end of the first
    // draw hook), on the element for the console benchmark to read.
    const t0 = performance.now();
    delete el.dataset.drawMs;
    opts.hooks!.draw!.push(() => {
      if (el.dataset.drawMs === undefined) el.dataset.drawMs = (performance.now() - t0).toFixed(1);
    });
    const band = p.band ? [p.band.hi, p.band.lo] : [];
    const u = new uPlot(opts, [p.xs, p.ys, ...(p.more ?? []).map((m) => m.ys), ...band] as uPlot.AlignedData, el);
    plot.current = u;
    const ro = new ResizeObserver(() => {
      const w = el.clientWidth;
      if (w > 0 && w !== u.width) u.setSize({ width: w, height: u.height });
    });
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [p.xs, p.ys, p.more, p.band, p.bands, p.from, p.to, p.unit, l, th]);

  const causes = [...new Set(p.bands.map((b) => b.cause))];
  const listed = [...markers].sort((a, b) => b.band.to - b.band.from - (a.band.to - a.band.from)).slice(0, MAX_LISTED).sort((a, b) => a.band.from - b.band.from);
  const seconds = p.to - p.from <= 3600;
  return (
    <figure class="chart" data-metric={p.metric} data-band={p.band ? p.band.hi.filter((v) => v !== null).length : undefined} data-points={[p.ys, ...(p.more ?? []).map((m) => m.ys)].reduce((n, ys) => n + ys.filter((v) => v !== null).length, 0)} aria-labelledby={p.id + '-title'}>
      <figcaption id={p.id + '-title'} class="chart-title">
        {p.title}
      </figcaption>
      <div ref={box} class="chart-canvas" role="img" aria-label={t('chart.aria', { title: p.title, gaps: p.bands.length })} />
      {causes.length > 0 && (
        <div class="chart-gaps">
          <ul class="gap-legend" aria-label={t('chart.gapLegend')}>
            {causes.map((c: GapCause) => (
              <li key={c}>
                <span class={'swatch gap-' + c} aria-hidden="true" />
                {t('gap.cause.' + c)}
              </li>
            ))}
          </ul>
          <details>
            <summary>{t('chart.gaps', { n: p.bands.length })}</summary>
            <ul class="gap-list">
              {listed.map((m) => (
                <li key={m.band.from} data-cause={m.band.cause} data-x0={m.x0.toFixed(1)} data-x1={m.x1.toFixed(1)} data-y={m.y.toFixed(1)}>
                  <span class={'swatch gap-' + m.band.cause} aria-hidden="true" />
                  {t('chart.gapItem', {
                    cause: t('gap.cause.' + m.band.cause),
                    from: formatTime(new Date(m.band.from), l, seconds),
                    to: formatTime(new Date(m.band.to), l, seconds),
                    length: formatDuration(m.band.to - m.band.from, l),
                  })}
                </li>
              ))}
              {p.bands.length > MAX_LISTED && <li class="muted">{t('chart.moreGaps', { n: p.bands.length - MAX_LISTED })}</li>}
            </ul>
          </details>
        </div>
      )}
    </figure>
  );
}
