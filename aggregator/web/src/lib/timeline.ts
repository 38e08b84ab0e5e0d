// The site timeline's geometry: each stretch of GET /sites/{id}/timeline
// as a share of the queried range, for the connectivity strip.
export interface Stretch {
  from: string;
  to: string | null;
}

export interface Placed {
  /** Left edge and width, in percent of the range, clipped to it. */
  left: number;
  width: number;
}

/**
 * place maps a stretch onto [from, to] (milliseconds). An open stretch
 * (to null) runs to the end; one wholly outside the range is null. A
 * stretch too short to see is given 0.3% so it is not lost.
 */
export function place(s: Stretch, from: number, to: number): Placed | null {
  const span = to - from;
  if (span <= 0) return null;
  const a = Math.max(from, Date.parse(s.from));
  const b = Math.min(to, s.to === null ? to : Date.parse(s.to));
  if (!(b >= a) || b < from || a > to) return null;
  const left = ((a - from) / span) * 100;
  return { left, width: Math.min(100 - left, Math.max(0.3, ((b - a) / span) * 100)) };
}

/** connectedShare is the part of [from, to] covered by the sessions, 0–1 (overlaps counted once). */
export function connectedShare(sessions: Stretch[], from: number, to: number): number {
  const xs = sessions
    .map((s) => [Math.max(from, Date.parse(s.from)), Math.min(to, s.to === null ? to : Date.parse(s.to))] as const)
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  let covered = 0;
  let end = from;
  for (const [a, b] of xs) {
    const s = Math.max(a, end);
    if (b > s) {
      covered += b - s;
      end = b;
    }
  }
  return to > from ? covered / (to - from) : 0;
}
