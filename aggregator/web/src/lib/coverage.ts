// From the history API's coverage to the bands a chart shades: every
// stretch without data, with its cause. Steps without data are null in the
// series and drawn as gaps; the bands say why they are empty.
import type { CoverageSpan } from '../api/types';

/** The causes the API gives for a missing stretch, in the order a legend lists them. */
export const GAP_CAUSES = ['site_offline', 'spool_drop', 'collection_error', 'powered_off', 'beyond_retention', 'no_data'] as const;
export type GapCause = (typeof GAP_CAUSES)[number] | 'other';

/** A shaded band: [from, to) in milliseconds since the epoch, and why. */
export interface Band {
  from: number;
  to: number;
  cause: GapCause;
}

export function causeOf(c: string | undefined): GapCause {
  return (GAP_CAUSES as readonly string[]).includes(c ?? '') ? (c as GapCause) : 'other';
}

/**
 * gapBands turns a coverage list into bands: the missing spans, clipped to
 * [from, to) when given, adjacent spans of the same cause merged, empty
 * or malformed spans dropped, sorted by start.
 */
export function gapBands(coverage: readonly CoverageSpan[], from = -Infinity, to = Infinity): Band[] {
  const spans = coverage
    .filter((c) => c.state === 'missing')
    .map((c) => ({ from: Math.max(Date.parse(c.from), from), to: Math.min(Date.parse(c.to), to), cause: causeOf(c.cause) }))
    .filter((b) => Number.isFinite(b.from) && Number.isFinite(b.to) && b.to > b.from)
    .sort((a, b) => a.from - b.from);
  const out: Band[] = [];
  for (const b of spans) {
    const last = out[out.length - 1];
    if (last && last.cause === b.cause && b.from <= last.to) last.to = Math.max(last.to, b.to);
    else out.push({ ...b });
  }
  return out;
}

/**
 * chartBands are the bands of a chart of several series: a stretch is
 * shaded where every series is missing, with the cause of the first series
 * that is (charts here draw one metric, so this is that metric's coverage).
 */
export function chartBands(coverages: readonly (readonly CoverageSpan[])[], from?: number, to?: number): Band[] {
  if (coverages.length === 0) return [];
  const [first, ...rest] = coverages.map((c) => gapBands(c, from, to));
  let bands = first ?? [];
  for (const other of rest) bands = intersect(bands, other);
  return bands;
}

function intersect(a: Band[], b: Band[]): Band[] {
  const out: Band[] = [];
  for (const x of a) {
    for (const y of b) {
      const f = Math.max(x.from, y.from);
      const t = Math.min(x.to, y.to);
      if (t > f) out.push({ from: f, to: t, cause: x.cause });
    }
  }
  return out;
}

/** missingShare is the fraction of [from, to) the bands cover (0..1). */
export function missingShare(bands: readonly Band[], from: number, to: number): number {
  if (to <= from) return 0;
  let sum = 0;
  for (const b of bands) sum += Math.max(0, Math.min(b.to, to) - Math.max(b.from, from));
  return Math.min(1, sum / (to - from));
}
