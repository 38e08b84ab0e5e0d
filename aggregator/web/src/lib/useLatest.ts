// useLatestValues keeps the VM list's latest values: the list tells it
// which rows are drawn, and it asks POST /metrics/query about those whose
// values are missing or stale, in batches of at most 100 VMs, a moment
// after scrolling stops, and again every minute for the rows in view.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api';
import { batches, LATEST_MAX_AGE_MS, LATEST_METRICS, LATEST_WINDOW_MS, latestOf, wanted, type LatestRow } from './latest';

/** How long the list must hold still before the rows in view are asked about. */
const SETTLE_MS = 150;

export interface LatestValues {
  /** The values known so far, by VM id (a failed ask leaves failed set). */
  rows: ReadonlyMap<string, LatestRow & { failed?: boolean }>;
  /** show says which VM ids are drawn now. */
  show: (ids: string[]) => void;
}

export function useLatestValues(): LatestValues {
  const cache = useRef(new Map<string, LatestRow & { failed?: boolean }>());
  const pending = useRef(new Set<string>());
  const visible = useRef<string[]>([]);
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const abort = useRef(new AbortController());
  const [, setVersion] = useState(0);

  const load = useCallback((maxAge = LATEST_MAX_AGE_MS) => {
    const now = Date.now();
    const ids = wanted(visible.current, cache.current, pending.current, now, maxAge);
    for (const group of batches(ids)) {
      for (const id of group) pending.current.add(id);
      api
        .metricsQuery(
          {
            entities: group.map((id) => ({ kind: 'vm', id })),
            metrics: [...LATEST_METRICS],
            instances: [''],
            from: new Date(now - LATEST_WINDOW_MS).toISOString(),
            to: new Date(now).toISOString(),
          },
          abort.current.signal,
        )
        .then(
          (res) => {
            const at = Date.now();
            for (const it of res.items) cache.current.set(it.id, it.found && it.history ? latestOf(it.history, at) : { fetched: at, values: {} });
          },
          () => {
            // Asked again when the rows are next in view after LATEST_MAX_AGE_MS.
            const at = Date.now();
            for (const id of group) cache.current.set(id, { fetched: at, values: {}, failed: true });
          },
        )
        .finally(() => {
          for (const id of group) pending.current.delete(id);
          if (!abort.current.signal.aborted) setVersion((v) => v + 1);
        });
    }
  }, []);

  const show = useCallback(
    (ids: string[]) => {
      visible.current = ids;
      clearTimeout(timer.current);
      timer.current = setTimeout(() => load(), SETTLE_MS);
    },
    [load],
  );

  useEffect(() => {
    // A little early, so that rows fetched a minute ago are due at this tick.
    const every = setInterval(() => document.visibilityState === 'visible' && load(LATEST_MAX_AGE_MS - 5_000), LATEST_MAX_AGE_MS);
    return () => {
      clearInterval(every);
      clearTimeout(timer.current);
      abort.current.abort();
    };
  }, [load]);

  return { rows: cache.current, show };
}
