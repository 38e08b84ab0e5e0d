import { LOCALES, locale, setLocale, t, type Locale } from '../i18n';

/** Each language is named in itself, so anyone can find theirs. */
const NATIVE_KEY: Record<Locale, string> = { en: 'lang.en', 'zh-CN': 'lang.zh-CN', 'ja-JP': 'lang.ja-JP' };

export function LanguagePicker({ id }: { id: string }) {
  return (
    <span class="lang-picker">
      <label for={id} class="visually-hidden">
        {t('lang.label')}
      </label>
      <select id={id} value={locale.value} onChange={(e) => void setLocale((e.currentTarget as HTMLSelectElement).value as Locale)}>
        {LOCALES.map((l) => (
          <option key={l} value={l} lang={l}>
            {t(NATIVE_KEY[l])}
          </option>
        ))}
      </select>
    </span>
  );
}
