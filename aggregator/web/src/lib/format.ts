// Formatters over Intl: numbers, sizes, rates, durations, dates. Each takes
// the locale, so they are pure and tested (test/format.test.ts).

const nf = new Map<string, Intl.NumberFormat>();
function numberFormat(locale: string, opts: Intl.NumberFormatOptions): Intl.NumberFormat {
  const key = locale + JSON.stringify(opts);
  let f = nf.get(key);
  if (!f) {
    f = new Intl.NumberFormat(locale, opts);
    nf.set(key, f);
  }
  return f;
}

// Intl formatters are costly to build (a tile of the overview formats a
// dozen values): each is built once per locale and options.
const cache = new Map<string, unknown>();
function cached<T>(key: string, make: () => T): T {
  let f = cache.get(key) as T | undefined;
  if (f === undefined) {
    f = make();
    cache.set(key, f);
  }
  return f;
}

/** formatNumber is a plain number with at most maxFrac decimals. */
export function formatNumber(n: number, locale: string, maxFrac = 1): string {
  return numberFormat(locale, { maximumFractionDigits: maxFrac }).format(n);
}

/** formatPercent shows a value already in percent (42.5 → "42.5%"). */
export function formatPercent(pct: number, locale: string): string {
  return numberFormat(locale, { style: 'percent', maximumFractionDigits: 1 }).format(pct / 100);
}

const byteUnits = ['byte', 'kilobyte', 'megabyte', 'gigabyte', 'terabyte', 'petabyte'] as const;

/** scaled picks the decimal (SI) unit that keeps n below 1000. */
function scaled(n: number): [number, number] {
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1000 && i < byteUnits.length - 1) {
    v /= 1000;
    i++;
  }
  return [Math.sign(n) * v, i];
}

/** formatBytes is a size in SI units (1 kB = 1000 B), as vSphere reports them. */
export function formatBytes(n: number, locale: string): string {
  const [v, i] = scaled(n);
  return numberFormat(locale, { style: 'unit', unit: byteUnits[i], unitDisplay: 'short', maximumFractionDigits: v < 10 && i > 0 ? 1 : 0 }).format(v);
}

/** formatByteRate is bytes per second. */
export function formatByteRate(bytesPerSec: number, locale: string): string {
  const [v, i] = scaled(bytesPerSec);
  return numberFormat(locale, {
    style: 'unit',
    unit: byteUnits[i] + '-per-second',
    unitDisplay: 'short',
    maximumFractionDigits: v < 10 && i > 0 ? 1 : 0,
  }).format(v);
}

const durationUnits = [
  ['day', 86_400_000],
  ['hour', 3_600_000],
  ['minute', 60_000],
  ['second', 1000],
] as const;

/**
 * formatDuration shows a duration in its two largest units ("2 hr, 5 min");
 * under a second it is shown in milliseconds.
 */
export function formatDuration(ms: number, locale: string): string {
  const abs = Math.abs(ms);
  if (abs < 1000) return numberFormat(locale, { style: 'unit', unit: 'millisecond', unitDisplay: 'short', maximumFractionDigits: 0 }).format(ms);
  const parts: string[] = [];
  let rest = abs;
  let taken = 0;
  for (const [unit, size] of durationUnits) {
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (taken === 0 && n === 0) continue;
    if (n > 0) parts.push(numberFormat(locale, { style: 'unit', unit, unitDisplay: 'short' }).format(n));
    if (++taken === 2) break;
  }
  return cached('list' + locale, () => new Intl.ListFormat(locale, { type: 'unit', style: 'narrow' })).format(parts);
}

const relUnits = [
  ['year', 365 * 86_400_000],
  ['month', 30 * 86_400_000],
  ['week', 7 * 86_400_000],
  ['day', 86_400_000],
  ['hour', 3_600_000],
  ['minute', 60_000],
  ['second', 1000],
] as const;

/** formatRelative says when a time was relative to now ("5 minutes ago"). */
export function formatRelative(t: Date | string, now: Date, locale: string): string {
  const d = (typeof t === 'string' ? Date.parse(t) : t.getTime()) - now.getTime();
  const rtf = cached('rel' + locale, () => new Intl.RelativeTimeFormat(locale, { numeric: 'auto' }));
  for (const [unit, size] of relUnits) {
    if (Math.abs(d) >= size || unit === 'second') return rtf.format(Math.round(d / size), unit);
  }
  return rtf.format(0, 'second');
}

/** formatDateTime is a date and time in the locale's style and the browser's zone. */
export function formatDateTime(t: Date | string, locale: string, timeZone?: string): string {
  return cached('dt' + locale + (timeZone ?? ''), () => new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short', timeZone })).format(
    typeof t === 'string' ? new Date(t) : t,
  );
}

/** formatTime is a time of day, with seconds when short ranges need them. */
export function formatTime(t: Date, locale: string, seconds = false, timeZone?: string): string {
  return cached('tm' + locale + seconds + (timeZone ?? ''), () =>
    new Intl.DateTimeFormat(locale, { hour: '2-digit', minute: '2-digit', second: seconds ? '2-digit' : undefined, timeZone }),
  ).format(t);
}

/** formatMetric shows a metric value in its unit as the history API gives it. */
export function formatMetric(v: number | null | undefined, unit: string, locale: string): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  switch (unit) {
    case '%':
      return formatPercent(v, locale);
    case 'KBps':
      return formatByteRate(v * 1000, locale);
    case 'KB':
      return formatBytes(v * 1000, locale);
    case 'MB':
      return formatBytes(v * 1_000_000, locale);
    case 'ms':
      return numberFormat(locale, { style: 'unit', unit: 'millisecond', unitDisplay: 'short', maximumFractionDigits: 1 }).format(v);
    case 'MHz':
      return numberFormat(locale, { maximumFractionDigits: 0 }).format(v) + ' MHz';
    case 's':
      return formatDuration(v * 1000, locale);
    default:
      return formatNumber(v, locale) + (unit && unit !== 'num' ? ' ' + unit : '');
  }
}

/** formatMemoryMB shows vSphere's memory sizes (MiB, which vSphere labels MB) as GB or MB. */
export function formatMemoryMB(mb: number, locale: string): string {
  if (mb >= 1024) return numberFormat(locale, { style: 'unit', unit: 'gigabyte', unitDisplay: 'short', maximumFractionDigits: 1 }).format(mb / 1024);
  return numberFormat(locale, { style: 'unit', unit: 'megabyte', unitDisplay: 'short', maximumFractionDigits: 0 }).format(mb);
}

/**
 * axisTimeFormat picks how a time axis labels its ticks for a range:
 * times of day up to two days, dates beyond.
 */
export function axisTimeFormat(rangeMS: number, locale: string, timeZone?: string): Intl.DateTimeFormat {
  if (rangeMS <= 2 * 86_400_000) return new Intl.DateTimeFormat(locale, { hour: '2-digit', minute: '2-digit', timeZone });
  return new Intl.DateTimeFormat(locale, { month: 'short', day: 'numeric', timeZone });
}
