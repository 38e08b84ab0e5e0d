import { useState } from 'preact/hooks';
import { api } from '../api';
import { AlertsNav } from '../components/AlertsNav';
import { ActionNotice, Badge, ErrorBox, Loading } from '../components/common';
import { locale, t } from '../i18n';
import { useAction } from '../lib/action';
import { matcherText, parseMatchers } from '../lib/alerts';
import { formatDateTime } from '../lib/format';
import { useAsync } from '../lib/hooks';
import { can } from '../lib/me';

const HOURS = [1, 2, 4, 8, 24, 72, 168] as const;

/** Silences: the list (active, pending, recently ended), a new one, expire. */
export default function Silences() {
  const list = useAsync((s) => api.silences(s), [], 60_000);
  const act = useAction();
  const [matchers, setMatchers] = useState('');
  const [hours, setHours] = useState('2');
  const [comment, setComment] = useState('');
  const [bad, setBad] = useState(false);
  const l = locale.value;
  const writable = can('alert:write');

  async function create(e: Event) {
    e.preventDefault();
    const m = parseMatchers(matchers);
    setBad(m.bad >= 0);
    if (m.bad >= 0) return;
    const ends = new Date(Date.now() + Number(hours) * 3_600_000).toISOString();
    const ok = await act.run('create', async () => {
      await api.silenceCreate({ matchers: m.matchers, ends_at: ends, comment: comment.trim() });
      return t('silences.created');
    });
    if (ok) {
      setMatchers('');
      setComment('');
      list.reload();
    }
  }

  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{t('silences.title')}</h1>
      </div>
      <AlertsNav current="/alerts/silences" />
      {writable && (
        <form class="card form-card" onSubmit={(e) => void create(e)} aria-label={t('silences.new')}>
          <h2 class="card-title">{t('silences.new')}</h2>
          <div class="filter">
            <label for="si-m">{t('silences.matchers')}</label>
            <textarea
              id="si-m"
              rows={2}
              value={matchers}
              placeholder={t('silences.matchersHint')}
              aria-invalid={bad}
              aria-describedby={bad ? 'si-m-err' : undefined}
              onInput={(e) => setMatchers(e.currentTarget.value)}
            />
            {bad && (
              <span id="si-m-err" class="field-error">
                {t('silences.matchersBad')}
              </span>
            )}
          </div>
          <div class="filter">
            <label for="si-h">{t('silences.duration')}</label>
            <select id="si-h" value={hours} onChange={(e) => setHours(e.currentTarget.value)}>
              {HOURS.map((h) => (
                <option key={h} value={String(h)}>
                  {t('silences.hours', { n: h })}
                </option>
              ))}
            </select>
          </div>
          <div class="filter">
            <label for="si-c">{t('silences.comment')}</label>
            <input id="si-c" value={comment} maxLength={500} onInput={(e) => setComment(e.currentTarget.value)} />
          </div>
          <p>
            <button type="submit" class="btn btn-primary" disabled={act.busy !== null}>
              {t('silences.create')}
            </button>
          </p>
        </form>
      )}
      <ActionNotice error={act.error} done={act.done} />
      {list.error !== undefined && <ErrorBox error={list.error} onRetry={list.reload} />}
      {!list.data && list.error === undefined && <Loading />}
      {list.data && (
        <table class="table" aria-label={t('silences.title')}>
          <thead>
            <tr>
              <th scope="col">{t('silences.matchers')}</th>
              <th scope="col">{t('alerts.col.state')}</th>
              <th scope="col">{t('silences.starts')}</th>
              <th scope="col">{t('silences.ends')}</th>
              <th scope="col">{t('silences.comment')}</th>
              <th scope="col">{t('silences.by')}</th>
              {writable && <th scope="col">{t('alerts.col.actions')}</th>}
            </tr>
          </thead>
          <tbody>
            {list.data.items.map((s) => (
              <tr key={s.id} data-silence={s.id} data-state={s.state}>
                <td>
                  {s.matchers.map((m) => (
                    <code key={matcherText(m)} class="chip">
                      {matcherText(m)}
                    </code>
                  ))}
                </td>
                <td>
                  <Badge tone={s.state === 'active' ? 'warn' : 'muted'}>{t('silences.state.' + s.state)}</Badge>
                </td>
                <td>{formatDateTime(s.starts_at, l)}</td>
                <td>{formatDateTime(s.expired_at ?? s.ends_at, l)}</td>
                <td>{s.comment}</td>
                <td>{s.created_by}</td>
                {writable && (
                  <td>
                    {s.state !== 'expired' && (
                      <button
                        type="button"
                        class="btn btn-small"
                        disabled={act.busy !== null}
                        onClick={() => void act.run('expire', async () => void (await api.silenceExpire(s.id))).then((ok) => ok && list.reload())}
                      >
                        {t('silences.expire')}
                      </button>
                    )}
                  </td>
                )}
              </tr>
            ))}
            {list.data.items.length === 0 && (
              <tr>
                <td colSpan={7} class="empty">
                  {t('silences.empty')}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
    </div>
  );
}
