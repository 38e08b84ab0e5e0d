// A small router over the History API: the path and query are signals,
// links are intercepted, and routes match "/vms/:id" patterns.
import { signal } from '@preact/signals';

const here = () => (typeof location === 'undefined' ? { pathname: '/', search: '' } : location);

export const path = signal(here().pathname);
export const search = signal(here().search);

/** navigate moves to href (same origin) and updates the signals. */
export function navigate(href: string, opts: { replace?: boolean } = {}): void {
  const url = new URL(href, location.href);
  if (url.origin !== location.origin) return;
  const target = url.pathname + url.search;
  if (target !== location.pathname + location.search) {
    if (opts.replace) history.replaceState(null, '', target);
    else history.pushState(null, '', target);
  }
  path.value = url.pathname;
  search.value = url.search;
  if (!opts.replace) window.scrollTo(0, 0);
}

/** startRouter follows back/forward and intercepts same-origin link clicks. */
export function startRouter(): void {
  addEventListener('popstate', () => {
    path.value = location.pathname;
    search.value = location.search;
  });
  document.addEventListener('click', (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = (e.target as Element | null)?.closest?.('a');
    if (!a || a.target || a.hasAttribute('download') || a.origin !== location.origin) return;
    if (a.pathname.startsWith('/api/')) return;
    e.preventDefault();
    navigate(a.href);
  });
}

/**
 * match tests a path against a pattern with :name segments and returns
 * the decoded parameters, or null.
 */
export function match(pattern: string, p: string): Record<string, string> | null {
  const ps = pattern.split('/').filter(Boolean);
  const xs = p.split('/').filter(Boolean);
  if (ps.length !== xs.length) return null;
  const out: Record<string, string> = {};
  for (let i = 0; i < ps.length; i++) {
    const want = ps[i]!;
    const got = xs[i]!;
    if (want.startsWith(':')) {
      try {
        out[want.slice(1)] = decodeURIComponent(got);
      } catch {
        return null;
      }
    } else if (want !== got) return null;
  }
  return out;
}
