// The console's messages. Every string a person reads comes from one of the
// three catalogs (en.json, zh-CN.json, ja-JP.json); their keys are the same
// (test/i18n.test.ts checks it). English is in the initial bundle; the other
// two load on demand.
import { signal } from '@preact/signals';
import en from './en.json';

export type Catalog = Record<string, string>;
export const LOCALES = ['en', 'zh-CN', 'ja-JP'] as const;
export type Locale = (typeof LOCALES)[number];

const loaders: Record<Locale, () => Promise<Catalog>> = {
  en: async () => en,
  'zh-CN': async () => (await import('./zh-CN.json')).default,
  'ja-JP': async () => (await import('./ja-JP.json')).default,
};

const STORAGE_KEY = 'vmpulse.locale';

/** pickLocale chooses the catalog for a list of BCP 47 preferences. */
export function pickLocale(preferred: readonly string[]): Locale {
  for (const p of preferred) {
    const l = p.toLowerCase();
    const exact = LOCALES.find((x) => x.toLowerCase() === l);
    if (exact) return exact;
    if (l.startsWith('zh')) return 'zh-CN';
    if (l.startsWith('ja')) return 'ja-JP';
    if (l.startsWith('en')) return 'en';
  }
  return 'en';
}

function initialLocale(): Locale {
  try {
    const saved = localStorage.getItem(STORAGE_KEY);
    if (saved && (LOCALES as readonly string[]).includes(saved)) return saved as Locale;
  } catch {
    // storage may be disabled; fall through to the browser's languages
  }
  return typeof navigator === 'undefined' ? 'en' : pickLocale(navigator.languages ?? [navigator.language]);
}

export const locale = signal<Locale>('en');
const catalog = signal<Catalog>(en);
const missing = new Set<string>();

/**
 * format fills {name} placeholders of a message. A placeholder without a
 * value stays as written, so a mistake shows instead of vanishing.
 */
export function format(msg: string, params?: Record<string, string | number>): string {
  if (!params) return msg;
  return msg.replace(/\{(\w+)\}/g, (m, k: string) => (k in params ? String(params[k]) : m));
}

/**
 * t translates key in the current locale. A key the catalog lacks falls
 * back to English and is recorded on <html data-i18n-missing> (the
 * end-to-end test looks for it); a key no catalog has shows as itself.
 */
export function t(key: string, params?: Record<string, string | number>): string {
  const msg = catalog.value[key];
  if (msg !== undefined) return format(msg, params);
  if (!missing.has(key)) {
    missing.add(key);
    if (typeof document !== 'undefined') document.documentElement.dataset.i18nMissing = [...missing].join(' ');
  }
  const fallback = (en as Catalog)[key];
  return fallback === undefined ? key : format(fallback, params);
}

/**
 * tv translates a value the API sends (a vSphere state such as
 * "guestToolsCurrent") under prefix, and shows the value itself when the
 * catalogs do not know it: vSphere may grow states this console predates.
 */
export function tv(prefix: string, value: string): string {
  return prefix + value in (en as Catalog) ? t(prefix + value) : value;
}

/** setLocale loads a catalog and switches the whole console to it. */
export async function setLocale(l: Locale): Promise<void> {
  const c = await loaders[l]();
  catalog.value = c;
  locale.value = l;
  missing.clear();
  if (typeof document !== 'undefined') {
    document.documentElement.lang = l;
    delete document.documentElement.dataset.i18nMissing;
    document.title = c['app.title'] ?? 'vmpulse';
  }
  try {
    localStorage.setItem(STORAGE_KEY, l);
  } catch {
    // not remembered; the choice still holds for this page
  }
}

/** initLocale applies the saved or browser locale before the first render. */
export async function initLocale(): Promise<void> {
  await setLocale(initialLocale());
}
