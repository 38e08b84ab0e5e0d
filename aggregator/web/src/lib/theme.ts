// Light, dark, or the system's choice, on <html data-theme>.
import { signal } from '@preact/signals';

export type Theme = 'auto' | 'light' | 'dark';
const KEY = 'vmpulse.theme';

function saved(): Theme {
  try {
    const t = localStorage.getItem(KEY);
    return t === 'light' || t === 'dark' ? t : 'auto';
  } catch {
    return 'auto';
  }
}

export const theme = signal<Theme>('auto');

export function applyTheme(t: Theme = saved()): void {
  theme.value = t;
  if (t === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
  try {
    if (t === 'auto') localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, t);
  } catch {
    // not remembered
  }
}

export function nextTheme(t: Theme): Theme {
  return t === 'auto' ? 'dark' : t === 'dark' ? 'light' : 'auto';
}
