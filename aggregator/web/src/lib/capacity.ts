// Capacity maths for the datastore and host pages: growth by least
// squares over the history's points (nulls, the gaps, are left out, never
// filled), days until a datastore is full, and heat-grid shades.

/**
 * slopePerDay fits used = a + b·t over the points that have a value and
 * returns b in units per day, or null with fewer than 3 points or less
 * than a day between the first and the last.
 */
export function slopePerDay(tsMS: number[], ys: (number | null)[]): number | null {
  let n = 0;
  let sx = 0;
  let sy = 0;
  let sxx = 0;
  let sxy = 0;
  let first = Infinity;
  let last = -Infinity;
  for (let i = 0; i < tsMS.length; i++) {
    const y = ys[i];
    if (y === null || y === undefined || !Number.isFinite(y)) continue;
    const x = tsMS[i]! / 86_400_000;
    n++;
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
    first = Math.min(first, x);
    last = Math.max(last, x);
  }
  if (n < 3 || last - first < 1) return null;
  const den = n * sxx - sx * sx;
  if (den === 0) return null;
  return (n * sxy - sx * sy) / den;
}

/**
 * daysToFull is how many days the free space lasts at the growth rate
 * (same unit per day): null when it does not grow (or there is no rate),
 * 0 when already full.
 */
export function daysToFull(free: number | null, growthPerDay: number | null): number | null {
  if (free === null || growthPerDay === null || !(growthPerDay > 0)) return null;
  if (free <= 0) return 0;
  return free / growthPerDay;
}

/** readyPercent turns CPU ready (ms summed over a 20 s sample) into percent of the cores' time. */
export function readyPercent(readyMS: number, cores: number, intervalS = 20): number {
  if (!(cores > 0)) return 0;
  return (readyMS / (intervalS * 1000 * cores)) * 100;
}

/**
 * heatLevel places a value on a 0–4 scale between the ok and bad marks
 * (levels 0 and 4), for the heat grid's shade; the value itself is always
 * printed in the cell as well.
 */
export function heatLevel(v: number | null | undefined, ok: number, bad: number): number {
  if (v === null || v === undefined || !Number.isFinite(v)) return -1;
  if (v <= ok) return 0;
  if (v >= bad) return 4;
  return 1 + Math.min(2, Math.floor(((v - ok) / (bad - ok)) * 3));
}
