import { useState } from 'preact/hooks';
import { api, type LoginRecord } from '../api';
import { Badge, ErrorBox, errorText, Loading } from '../components/common';
import { locale, t } from '../i18n';
import { formatDateTime } from '../lib/format';
import { useAsync } from '../lib/hooks';
import { searchFilters } from '../lib/filters';
import { navigate, search } from '../lib/router';

const RESULTS = ['success', 'failure'] as const;
const FILTERS = ['user', 'result', 'ip'] as const;
type Filters = Partial<Record<(typeof FILTERS)[number], string>>;

const { parse, toSearch } = searchFilters(FILTERS, 256);

/** The login log: every sign-in attempt, its result and reason; filters in the URL; CSV export. */
export default function LoginLog() {
  const filters = parse(search.value);
  const key = toSearch(filters);
  const [draft, setDraft] = useState(filters);
  const [more, setMore] = useState<{ key: string; items: LoginRecord[]; cursor: string } | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const first = useAsync((s) => api.loginLogs({ ...filters, limit: 100 }, s), [key]);
  const l = locale.value;
  const extra = more?.key === key ? more : null;
  const items = [...(first.data?.items ?? []), ...(extra?.items ?? [])];
  const cursor = extra ? extra.cursor : (first.data?.next_cursor ?? '');

  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{t('loginLog.title')}</h1>
      </div>
      <form
        class="filters"
        role="search"
        aria-label={t('loginLog.filters')}
        onSubmit={(e) => {
          e.preventDefault();
          navigate('/login-log' + toSearch(draft));
        }}
      >
        <div class="filter">
          <label for="ll-user">{t('loginLog.user')}</label>
          <input id="ll-user" value={draft.user ?? ''} onInput={(e) => setDraft({ ...draft, user: e.currentTarget.value })} />
        </div>
        <div class="filter">
          <label for="ll-result">{t('audit.filter.result')}</label>
          <select id="ll-result" value={draft.result ?? ''} onChange={(e) => setDraft({ ...draft, result: e.currentTarget.value })}>
            <option value="">{t('vms.filter.any')}</option>
            {RESULTS.map((r) => (
              <option key={r} value={r}>
                {t('loginLog.result.' + r)}
              </option>
            ))}
          </select>
        </div>
        <div class="filter">
          <label for="ll-ip">{t('audit.col.ip')}</label>
          <input id="ll-ip" value={draft.ip ?? ''} onInput={(e) => setDraft({ ...draft, ip: e.currentTarget.value })} />
        </div>
        <div class="filter-actions">
          <button type="submit" class="btn btn-primary">
            {t('action.apply')}
          </button>
          <button
            type="button"
            class="btn"
            onClick={() => {
              setNote(t('audit.exporting'));
              api.loginLogsExport(filters).then(
                () => setNote(null),
                (e: unknown) => setNote(errorText(e)),
              );
            }}
          >
            {t('audit.export')}
          </button>
          {note && (
            <span class="muted" role="status">
              {note}
            </span>
          )}
        </div>
      </form>
      {first.error !== undefined && <ErrorBox error={first.error} onRetry={first.reload} />}
      {!first.data && first.error === undefined && <Loading />}
      {first.data && (
        <table class="table" aria-label={t('loginLog.title')}>
          <thead>
            <tr>
              <th scope="col">{t('audit.col.time')}</th>
              <th scope="col">{t('loginLog.user')}</th>
              <th scope="col">{t('audit.col.result')}</th>
              <th scope="col">{t('loginLog.reason')}</th>
              <th scope="col">{t('audit.col.ip')}</th>
              <th scope="col">{t('loginLog.agent')}</th>
            </tr>
          </thead>
          <tbody>
            {items.map((r) => (
              <tr key={r.id} data-login={r.username} data-result={r.result}>
                <td>
                  <time dateTime={r.time}>{formatDateTime(r.time, l)}</time>
                </td>
                <td>{r.username}</td>
                <td>
                  <Badge tone={r.result === 'success' ? 'ok' : 'bad'}>{t('loginLog.result.' + r.result)}</Badge>
                </td>
                <td>{r.reason}</td>
                <td>{r.ip}</td>
                <td class="ua">{r.user_agent}</td>
              </tr>
            ))}
            {items.length === 0 && (
              <tr>
                <td colSpan={6} class="empty">
                  {t('loginLog.empty')}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
      {cursor && (
        <p>
          <button
            type="button"
            class="btn"
            onClick={() =>
              void api.loginLogs({ ...filters, limit: 100, cursor }).then((p) => setMore({ key, items: [...(extra?.items ?? []), ...p.items], cursor: p.next_cursor }))
            }
          >
            {t('audit.more')}
          </button>
        </p>
      )}
    </div>
  );
}
