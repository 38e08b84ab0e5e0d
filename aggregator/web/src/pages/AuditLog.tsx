import { useState } from 'preact/hooks';
import { api, type AuditRecord } from '../api';
import { Badge, ErrorBox, errorText, Loading } from '../components/common';
import { locale, t } from '../i18n';
import { formatDateTime, formatNumber } from '../lib/format';
import { useAsync } from '../lib/hooks';
import { searchFilters } from '../lib/filters';
import { navigate, search } from '../lib/router';

const RESULTS = ['success', 'failure', 'denied'] as const;
const FILTERS = ['actor', 'action', 'result'] as const;
type Filters = Partial<Record<(typeof FILTERS)[number], string>>;

const { parse, toSearch } = searchFilters(FILTERS, 256, (k, v) => k !== 'result' || (RESULTS as readonly string[]).includes(v));

const tone = { success: 'ok', failure: 'warn', denied: 'bad' } as const;

function VerifyBadge() {
  const v = useAsync((s) => api.auditVerify(s), []);
  const l = locale.value;
  if (v.error !== undefined) return <Badge tone="muted">{t('audit.verifyFailed')}</Badge>;
  if (!v.data) return <Badge tone="muted">{t('audit.verifying')}</Badge>;
  return (
    <span data-testid="chain-badge" data-ok={String(v.data.ok)}>
      {v.data.ok ? (
        <Badge tone="ok">{t('audit.chainOK', { n: formatNumber(v.data.checked, l) })}</Badge>
      ) : (
        <Badge tone="bad">{t('audit.chainBroken', { id: formatNumber(v.data.broken_at ?? 0, l), reason: v.data.reason ?? '' })}</Badge>
      )}
    </span>
  );
}

export default function AuditLog() {
  const filters = parse(search.value);
  const key = toSearch(filters);
  const [more, setMore] = useState<{ key: string; items: AuditRecord[]; cursor: string } | null>(null);
  const [moreError, setMoreError] = useState<unknown>(undefined);
  const [exporting, setExporting] = useState<string | null>(null);
  const first = useAsync((s) => api.auditLogs({ ...filters, limit: 100 }, s), [key]);
  const [draft, setDraft] = useState(filters);
  const l = locale.value;
  const extra = more?.key === key ? more : null;
  const items = [...(first.data?.items ?? []), ...(extra?.items ?? [])];
  const cursor = extra ? extra.cursor : (first.data?.next_cursor ?? '');

  async function loadMore() {
    setMoreError(undefined);
    try {
      const p = await api.auditLogs({ ...filters, limit: 100, cursor });
      setMore({ key, items: [...(extra?.items ?? []), ...p.items], cursor: p.next_cursor });
    } catch (e) {
      setMoreError(e);
    }
  }

  async function exportCSV() {
    setExporting(t('audit.exporting'));
    try {
      await api.auditExport(filters);
      setExporting(null);
    } catch (e) {
      setExporting(errorText(e));
    }
  }

  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{t('audit.title')}</h1>
        <VerifyBadge />
      </div>
      <form
        class="filters"
        role="search"
        aria-label={t('audit.filters')}
        onSubmit={(e) => {
          e.preventDefault();
          navigate('/audit' + toSearch(draft));
        }}
      >
        <div class="filter">
          <label for="a-actor">{t('audit.filter.actor')}</label>
          <input id="a-actor" value={draft.actor ?? ''} onInput={(e) => setDraft({ ...draft, actor: e.currentTarget.value })} />
        </div>
        <div class="filter">
          <label for="a-action">{t('audit.filter.action')}</label>
          <input id="a-action" value={draft.action ?? ''} placeholder={t('audit.filter.actionHint')} onInput={(e) => setDraft({ ...draft, action: e.currentTarget.value })} />
        </div>
        <div class="filter">
          <label for="a-result">{t('audit.filter.result')}</label>
          <select id="a-result" value={draft.result ?? ''} onChange={(e) => setDraft({ ...draft, result: e.currentTarget.value })}>
            <option value="">{t('vms.filter.any')}</option>
            {RESULTS.map((r) => (
              <option key={r} value={r}>
                {t('audit.result.' + r)}
              </option>
            ))}
          </select>
        </div>
        <div class="filter-actions">
          <button type="submit" class="btn btn-primary">
            {t('action.apply')}
          </button>
          <button type="button" class="btn" onClick={() => void exportCSV()} data-testid="audit-export">
            {t('audit.export')}
          </button>
          {exporting && (
            <span class="muted" role="status">
              {exporting}
            </span>
          )}
        </div>
      </form>
      {first.error !== undefined && <ErrorBox error={first.error} onRetry={first.reload} />}
      {!first.data && !first.error && <Loading />}
      {first.data && (
        <table class="table" aria-label={t('audit.title')}>
          <thead>
            <tr>
              <th scope="col">{t('audit.col.time')}</th>
              <th scope="col">{t('audit.col.actor')}</th>
              <th scope="col">{t('audit.col.action')}</th>
              <th scope="col">{t('audit.col.resource')}</th>
              <th scope="col">{t('audit.col.result')}</th>
              <th scope="col">{t('audit.col.ip')}</th>
            </tr>
          </thead>
          <tbody>
            {items.map((r) => (
              <tr key={r.id} data-action={r.action}>
                <td>
                  <time dateTime={r.time}>{formatDateTime(r.time, l)}</time>
                </td>
                <td>{r.actor_name || r.actor_type}</td>
                <td>
                  <code>{r.action}</code>
                </td>
                <td>{[r.resource_type, r.resource_id].filter(Boolean).join(' ')}</td>
                <td>
                  <Badge tone={tone[r.result] ?? 'muted'}>{t('audit.result.' + r.result)}</Badge> <span class="muted">{r.status}</span>
                </td>
                <td>{r.ip}</td>
              </tr>
            ))}
            {items.length === 0 && (
              <tr>
                <td colSpan={6} class="empty">
                  {t('audit.empty')}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
      {moreError !== undefined && <ErrorBox error={moreError} />}
      {cursor && (
        <p>
          <button type="button" class="btn" onClick={() => void loadMore()}>
            {t('audit.more')}
          </button>
        </p>
      )}
    </div>
  );
}
