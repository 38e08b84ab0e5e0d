import { api } from '../api';
import { ActionNotice, Badge, ErrorBox, Loading } from '../components/common';
import { locale, t } from '../i18n';
import { useAction } from '../lib/action';
import { formatDateTime, formatRelative } from '../lib/format';
import { useAsync, useNow } from '../lib/hooks';
import { me } from '../lib/me';

/** Online users: every open session, and forced logout. */
export default function Sessions() {
  const list = useAsync((s) => api.sessions(s), [], 30_000);
  const act = useAction();
  const now = useNow();
  const l = locale.value;
  const mine = me.value?.session_id;
  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{t('sessions.title')}</h1>
        {list.data && <p class="muted">{t('sessions.count', { n: list.data.total })}</p>}
      </div>
      <ActionNotice error={act.error} done={act.done} />
      {list.error !== undefined && <ErrorBox error={list.error} onRetry={list.reload} />}
      {!list.data && list.error === undefined && <Loading />}
      {list.data && (
        <table class="table" aria-label={t('sessions.title')}>
          <thead>
            <tr>
              <th scope="col">{t('loginLog.user')}</th>
              <th scope="col">{t('sessions.since')}</th>
              <th scope="col">{t('sessions.lastSeen')}</th>
              <th scope="col">{t('sessions.expires')}</th>
              <th scope="col">{t('audit.col.ip')}</th>
              <th scope="col">{t('loginLog.agent')}</th>
              <th scope="col">{t('alerts.col.actions')}</th>
            </tr>
          </thead>
          <tbody>
            {list.data.items.map((s) => (
              <tr key={s.id} data-session={s.username}>
                <td>
                  {s.username} {s.id === mine && <Badge tone="info">{t('sessions.you')}</Badge>}
                </td>
                <td>{formatDateTime(s.created_at, l)}</td>
                <td>{formatRelative(s.last_seen_at, now, l)}</td>
                <td>{formatDateTime(s.expires_at, l)}</td>
                <td>{s.ip}</td>
                <td class="ua">{s.user_agent}</td>
                <td>
                  {s.id !== mine && (
                    <button
                      type="button"
                      class="btn btn-small"
                      disabled={act.busy !== null}
                      onClick={() => {
                        if (confirm(t('sessions.confirm', { user: s.username })))
                          void act
                            .run('revoke', async () => {
                              await api.sessionRevoke(s.id);
                              return t('sessions.revoked', { user: s.username });
                            })
                            .then((ok) => ok && list.reload());
                      }}
                    >
                      {t('sessions.revoke')}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
