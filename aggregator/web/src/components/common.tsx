import type { ComponentChildren } from 'preact';
import { ApiError, CODE_NETWORK } from '../api';
import { t } from '../i18n';

/** errorText is what an operator reads for a failed call: the API's own (localized) message, or ours. */
export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.code === CODE_NETWORK) return t('error.network');
    if (e.status === 403) return t('error.forbidden');
    return e.message || t('error.unknown');
  }
  return t('error.unknown');
}

export function ErrorBox({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  const code = error instanceof ApiError ? error.code : '';
  return (
    <div class="notice notice-error" role="alert" data-error-code={code}>
      <span>{errorText(error)}</span>
      {onRetry && (
        <button type="button" class="btn btn-small" onClick={onRetry}>
          {t('action.retry')}
        </button>
      )}
    </div>
  );
}

export function Loading({ label }: { label?: string }) {
  return (
    <div class="loading" role="status" aria-live="polite">
      {label ?? t('state.loading')}
    </div>
  );
}

export function Card({ title, children, class: cls }: { title: string; children: ComponentChildren; class?: string }) {
  return (
    <section class={'card ' + (cls ?? '')} aria-label={title}>
      <h2 class="card-title">{title}</h2>
      {children}
    </section>
  );
}

/** Fields is a definition list of label → value rows; empty values show a dash. */
export function Fields({ rows }: { rows: [string, ComponentChildren][] }) {
  return (
    <dl class="fields">
      {rows.map(([k, v]) => (
        <div class="field" key={k}>
          <dt>{k}</dt>
          <dd>{v === '' || v === null || v === undefined ? '–' : v}</dd>
        </div>
      ))}
    </dl>
  );
}

export function Badge({ tone, children }: { tone: 'ok' | 'warn' | 'bad' | 'muted' | 'info'; children: ComponentChildren }) {
  return <span class={'badge badge-' + tone}>{children}</span>;
}

/** ErrorDetail is ErrorBox plus the API's field errors, each naming its field. */
export function ErrorDetail({ error }: { error: unknown }) {
  const fields = error instanceof ApiError ? error.fields : [];
  return (
    <div class="notice notice-error" role="alert" data-error-code={error instanceof ApiError ? error.code : ''}>
      <span>{errorText(error)}</span>
      {fields.length > 0 && (
        <ul class="field-errors">
          {fields.map((f) => (
            <li key={f.field} data-field={f.field}>
              <code>{f.field}</code> {f.message}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** SubNav is a row of links between the pages of one module. */
export function SubNav({ label, items, current }: { label: string; items: [string, string][]; current: string }) {
  return (
    <nav class="subnav" aria-label={label}>
      {items.map(([href, text]) => (
        <a key={href} href={href} class="btn btn-small" aria-current={href === current ? 'page' : undefined}>
          {text}
        </a>
      ))}
    </nav>
  );
}

/** ActionNotice shows what the last action of a page did or why it failed. */
export function ActionNotice({ error, done }: { error: unknown; done: string | null }) {
  if (error !== undefined) return <ErrorDetail error={error} />;
  if (done)
    return (
      <div class="notice" role="status">
        {done}
      </div>
    );
  return null;
}
