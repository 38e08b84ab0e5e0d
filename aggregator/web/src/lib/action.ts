import { useState } from 'preact/hooks';

/** An action's state: which one runs, its error, and what it reported. */
export interface Action {
  busy: string | null;
  error: unknown;
  done: string | null;
  /** run does fn under name; then on success (with its message) or error. */
  run: (name: string, fn: () => Promise<string | void>) => Promise<boolean>;
  clear: () => void;
}

/** useAction runs a page's writes one at a time and keeps their outcome. */
export function useAction(): Action {
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(undefined);
  const [done, setDone] = useState<string | null>(null);
  return {
    busy,
    error,
    done,
    run: async (name, fn) => {
      setBusy(name);
      setError(undefined);
      setDone(null);
      try {
        const msg = await fn();
        setDone(msg ?? null);
        return true;
      } catch (e) {
        setError(e);
        return false;
      } finally {
        setBusy(null);
      }
    },
    clear: () => {
      setError(undefined);
      setDone(null);
    },
  };
}
