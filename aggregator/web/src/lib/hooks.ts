import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

export interface Async<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/**
 * useAsync runs load when deps change (aborting the previous run) and,
 * when every is set, again every that many milliseconds while the page
 * is visible. The last good data stays shown while a reload runs.
 */
export function useAsync<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[], every?: number): Async<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    const ac = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    loadRef.current(ac.signal).then(
      (data) => !ac.signal.aborted && setState({ data, loading: false }),
      (error: unknown) => !ac.signal.aborted && setState((s) => ({ data: s.data, error, loading: false })),
    );
    return () => ac.abort();
  }, [...deps, tick]);
  useEffect(() => {
    if (!every) return;
    const id = setInterval(() => document.visibilityState === 'visible' && setTick((n) => n + 1), every);
    return () => clearInterval(id);
  }, [every]);
  const reload = useCallback(() => setTick((n) => n + 1), []);
  return { data: state.data, error: state.error, loading: state.loading, reload };
}

/** useNow is the current time, updated every ms milliseconds (for "5 minutes ago"). */
export function useNow(ms = 15_000): Date {
  const [now, setNow] = useState(() => new Date());
  useEffect(() => {
    const id = setInterval(() => setNow(new Date()), ms);
    return () => clearInterval(id);
  }, [ms]);
  return now;
}
