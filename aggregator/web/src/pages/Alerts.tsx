import { useState } from 'preact/hooks';
import { api, type Alert } from '../api';
import { AlertsNav } from '../components/AlertsNav';
import { ActionNotice, Badge, ErrorBox, Loading } from '../components/common';
import { locale, t } from '../i18n';
import { useAction } from '../lib/action';
import { alertAge, SEVERITIES, sortProblems } from '../lib/alerts';
import { formatDateTime, formatDuration, formatMetric } from '../lib/format';
import { useAsync, useNow } from '../lib/hooks';
import { can } from '../lib/me';
import { searchFilters } from '../lib/filters';
import { navigate, path, search } from '../lib/router';

export const sevTone = { critical: 'bad', warning: 'warn', info: 'info' } as const;

/** StateBadge says firing, stale (unknown: no data or the site offline) or resolved. */
export function StateBadge({ a }: { a: Alert }) {
  if (a.state === 'firing') return <Badge tone="bad">{t('alerts.state.firing')}</Badge>;
  if (a.state === 'unknown')
    return (
      <span title={t('alerts.staleHint')}>
        <Badge tone="muted">{t('alerts.state.unknown')}</Badge>
      </span>
    );
  return <Badge tone="ok">{t('alerts.state.resolved')}</Badge>;
}

/** Marks are the small flags of an alert: late, silenced, acknowledged. */
export function Marks({ a }: { a: Alert }) {
  return (
    <>
      {a.late && (
        <span title={t('alerts.lateHint')} data-mark="late">
          <Badge tone="info">{t('alerts.mark.late')}</Badge>
        </span>
      )}{' '}
      {a.silenced && <Badge tone="muted">{t('alerts.mark.silenced')}</Badge>}{' '}
      {a.acked && (
        <span data-mark="acked" title={a.acked_by}>
          <Badge tone="ok">{t('alerts.mark.acked')}</Badge>
        </span>
      )}
    </>
  );
}

const FILTERS = ['severity', 'site', 'acked', 'q'] as const;
type Filters = Partial<Record<(typeof FILTERS)[number], string>>;

const { parse, toSearch } = searchFilters(FILTERS, 200);

/** The problems list (active alerts) and, at /alerts/history, every alert. */
export default function Alerts() {
  const history = path.value === '/alerts/history';
  const base = history ? '/alerts/history' : '/alerts';
  const filters = parse(search.value);
  const key = toSearch(filters);
  const [draft, setDraft] = useState(filters);
  const list = useAsync(
    (s) => api.alerts({ ...filters, state: history ? 'all' : 'active', page_size: 500, sort: history ? '-starts_at' : undefined }, s),
    [key, history],
    30_000,
  );
  const stats = useAsync((s) => api.alertStats(s), [], 30_000);
  const act = useAction();
  const now = useNow();
  const l = locale.value;
  const writable = can('alert:write');
  const items = list.data ? (history ? list.data.items : sortProblems(list.data.items)) : [];

  async function ack(a: Alert) {
    if (await act.run('ack' + a.id, async () => void (await api.alertAck(a.id, '')))) list.reload();
  }

  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{history ? t('alerts.historyTitle') : t('alerts.title')}</h1>
        {stats.data && (
          <p class="muted" data-testid="alert-stats">
            {t('alerts.stats', {
              firing: stats.data.active.firing ?? 0,
              unknown: stats.data.active.unknown ?? 0,
              acked: stats.data.acked,
              late: stats.data.late,
            })}
          </p>
        )}
      </div>
      <AlertsNav current={base} />
      <form
        class="filters"
        role="search"
        aria-label={t('alerts.filters')}
        onSubmit={(e) => {
          e.preventDefault();
          navigate(base + toSearch(draft));
        }}
      >
        <div class="filter">
          <label for="al-sev">{t('alerts.col.severity')}</label>
          <select id="al-sev" value={draft.severity ?? ''} onChange={(e) => setDraft({ ...draft, severity: e.currentTarget.value })}>
            <option value="">{t('vms.filter.any')}</option>
            {SEVERITIES.map((s) => (
              <option key={s} value={s}>
                {t('alerts.severity.' + s)}
              </option>
            ))}
          </select>
        </div>
        <div class="filter">
          <label for="al-site">{t('alerts.col.site')}</label>
          <input id="al-site" value={draft.site ?? ''} onInput={(e) => setDraft({ ...draft, site: e.currentTarget.value })} />
        </div>
        <div class="filter">
          <label for="al-acked">{t('alerts.col.ack')}</label>
          <select id="al-acked" value={draft.acked ?? ''} onChange={(e) => setDraft({ ...draft, acked: e.currentTarget.value })}>
            <option value="">{t('vms.filter.any')}</option>
            <option value="true">{t('alerts.acked.true')}</option>
            <option value="false">{t('alerts.acked.false')}</option>
          </select>
        </div>
        <div class="filter filter-q">
          <label for="al-q">{t('alerts.filter.q')}</label>
          <input id="al-q" type="search" value={draft.q ?? ''} onInput={(e) => setDraft({ ...draft, q: e.currentTarget.value })} />
        </div>
        <div class="filter-actions">
          <button type="submit" class="btn btn-primary">
            {t('action.apply')}
          </button>
        </div>
      </form>
      <ActionNotice error={act.error} done={act.done} />
      {list.error !== undefined && <ErrorBox error={list.error} onRetry={list.reload} />}
      {!list.data && list.error === undefined && <Loading />}
      {list.data && (
        <table class="table" aria-label={history ? t('alerts.historyTitle') : t('alerts.title')} data-testid="alert-list">
          <thead>
            <tr>
              <th scope="col">{t('alerts.col.severity')}</th>
              <th scope="col">{t('alerts.col.state')}</th>
              <th scope="col">{t('alerts.col.rule')}</th>
              <th scope="col">{t('alerts.col.entity')}</th>
              <th scope="col">{t('alerts.col.site')}</th>
              <th scope="col">{t('alerts.col.since')}</th>
              <th scope="col">{t('alerts.col.duration')}</th>
              <th scope="col">{t('alerts.col.value')}</th>
              <th scope="col">{t('alerts.col.marks')}</th>
              {writable && !history && <th scope="col">{t('alerts.col.actions')}</th>}
            </tr>
          </thead>
          <tbody>
            {items.map((a) => (
              <tr key={a.id} data-alert={a.id} data-state={a.state} data-acked={String(a.acked)}>
                <td>
                  <Badge tone={sevTone[a.severity as keyof typeof sevTone] ?? 'muted'}>{t('alerts.severity.' + a.severity)}</Badge>
                </td>
                <td>
                  <StateBadge a={a} />
                </td>
                <td>
                  <a href={'/alerts/' + a.id}>{a.rule_name}</a>
                </td>
                <td>{a.entity_name || a.entity_id}</td>
                <td>{a.site}</td>
                <td>
                  <time dateTime={a.starts_at}>{formatDateTime(a.starts_at, l)}</time>
                </td>
                <td>{formatDuration(alertAge(a, now), l)}</td>
                <td class="num">{formatMetric(a.value, a.unit, l)}</td>
                <td>
                  <Marks a={a} />
                </td>
                {writable && !history && (
                  <td>
                    {!a.acked && (
                      <button type="button" class="btn btn-small" disabled={act.busy !== null} onClick={() => void ack(a)} data-ack={a.id}>
                        {t('alerts.ack')}
                      </button>
                    )}
                  </td>
                )}
              </tr>
            ))}
            {items.length === 0 && (
              <tr>
                <td colSpan={10} class="empty">
                  {history ? t('alerts.emptyHistory') : t('alerts.empty')}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
    </div>
  );
}
