// The realtime page's buffer: the samples of the live feed per entity and
// metric, kept for a window, ready for the charts; and which entities are
// paused because their site dropped.
import type { RealtimeSample } from '../api/types';

export const MAX_ENTITIES = 20;

export interface Line {
  /** Seconds since the epoch, ascending. */
  xs: number[];
  ys: (number | null)[];
  unit: string;
}

const key = (kind: string, id: string, metric: string) => kind + '\u0000' + id + '\u0000' + metric;

/**
 * Buffer keeps, per (entity, metric, whole-entity instance), the samples
 * of the last windowS seconds in time order. A sample older than the
 * newest kept one is placed in order; a repeated timestamp replaces.
 */
export class Buffer {
  private lines = new Map<string, { ts: number[]; vs: number[]; unit: string }>();
  /** The site of each entity, as its samples name it. */
  readonly sites = new Map<string, string>();
  constructor(readonly windowS: number) {}

  add(samples: readonly RealtimeSample[], nowS: number): void {
    for (const s of samples) {
      if (s.instance) continue;
      this.sites.set(s.kind + ':' + s.id, s.site);
      const k = key(s.kind, s.id, s.metric);
      let l = this.lines.get(k);
      if (!l) this.lines.set(k, (l = { ts: [], vs: [], unit: s.unit }));
      const t = Date.parse(s.ts) / 1000;
      let i = l.ts.length;
      while (i > 0 && l.ts[i - 1]! > t) i--;
      if (i > 0 && l.ts[i - 1] === t) l.vs[i - 1] = s.value;
      else {
        l.ts.splice(i, 0, t);
        l.vs.splice(i, 0, s.value);
      }
    }
    this.trim(nowS);
  }

  trim(nowS: number): void {
    const cut = nowS - this.windowS;
    for (const l of this.lines.values()) {
      let n = 0;
      while (n < l.ts.length && l.ts[n]! < cut) n++;
      if (n) {
        l.ts.splice(0, n);
        l.vs.splice(0, n);
      }
    }
  }

  /** line is one entity's metric; a step with no sample for more than gapS is broken with a null (drawn as a gap). */
  line(kind: string, id: string, metric: string, gapS = 60): Line {
    const l = this.lines.get(key(kind, id, metric));
    if (!l) return { xs: [], ys: [], unit: '' };
    const xs: number[] = [];
    const ys: (number | null)[] = [];
    for (let i = 0; i < l.ts.length; i++) {
      if (i > 0 && l.ts[i]! - l.ts[i - 1]! > gapS) {
        xs.push(l.ts[i - 1]! + 1);
        ys.push(null);
      }
      xs.push(l.ts[i]!);
      ys.push(l.vs[i]!);
    }
    return { xs, ys, unit: l.unit };
  }

  latest(kind: string, id: string, metric: string): { ts: number; value: number; unit: string } | null {
    const l = this.lines.get(key(kind, id, metric));
    if (!l || l.ts.length === 0) return null;
    return { ts: l.ts[l.ts.length - 1]!, value: l.vs[l.vs.length - 1]!, unit: l.unit };
  }
}

/**
 * align puts several lines on one time axis (the union of their
 * timestamps) for a chart that draws them together; a line without a
 * sample at a time has null there.
 */
export function align(lines: readonly Line[]): { xs: number[]; ys: (number | null)[][] } {
  const xs = [...new Set(lines.flatMap((l) => l.xs))].sort((a, b) => a - b);
  const ys = lines.map((l) => {
    const m = new Map<number, number | null>();
    l.xs.forEach((x, i) => m.set(x, l.ys[i] ?? null));
    return xs.map((x) => m.get(x) ?? null);
  });
  return { xs, ys };
}

/** pausedSites lists the sites of the watched entities that have no agent connected. */
export function pausedSites(entitySites: Iterable<string>, connected: ReadonlyMap<string, boolean>): string[] {
  const out = new Set<string>();
  for (const s of entitySites) if (connected.get(s) === false) out.add(s);
  return [...out].sort();
}
