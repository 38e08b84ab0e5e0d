import { useState } from 'preact/hooks';
import { api, type APITokenCreated } from '../api';
import { ActionNotice, Badge, Card, ErrorBox, Loading } from '../components/common';
import { locale, t } from '../i18n';
import { useAction } from '../lib/action';
import { formatDateTime } from '../lib/format';
import { useAsync } from '../lib/hooks';

const DAYS = ['30', '90', '365', ''] as const;

/** My API tokens (for automation): list, create (the secret shown once), revoke. */
export default function Tokens() {
  const list = useAsync((s) => api.apiTokens(s), []);
  const act = useAction();
  const [name, setName] = useState('');
  const [days, setDays] = useState<string>('90');
  const [created, setCreated] = useState<APITokenCreated | null>(null);
  const l = locale.value;

  async function create(e: Event) {
    e.preventDefault();
    const expires = days ? new Date(Date.now() + Number(days) * 86_400_000).toISOString() : undefined;
    const ok = await act.run('create', async () => setCreated(await api.apiTokenCreate({ name: name.trim(), expires_at: expires })));
    if (ok) {
      setName('');
      list.reload();
    }
  }

  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{t('tokens.title')}</h1>
      </div>
      <p class="muted">{t('tokens.intro')}</p>
      <form class="card form-card" onSubmit={(e) => void create(e)} aria-label={t('tokens.new')}>
        <h2 class="card-title">{t('tokens.new')}</h2>
        <div class="form-grid">
          <div class="filter">
            <label for="tk-name">{t('tokens.name')}</label>
            <input id="tk-name" required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </div>
          <div class="filter">
            <label for="tk-days">{t('tokens.expires')}</label>
            <select id="tk-days" value={days} onChange={(e) => setDays(e.currentTarget.value)}>
              {DAYS.map((d) => (
                <option key={d} value={d}>
                  {d ? t('tokens.days', { n: d }) : t('tokens.never')}
                </option>
              ))}
            </select>
          </div>
        </div>
        <p>
          <button type="submit" class="btn btn-primary" disabled={act.busy !== null}>
            {t('tokens.create')}
          </button>
        </p>
      </form>
      {created && (
        <Card title={t('tokens.createdTitle', { name: created.api_token.name })}>
          <p>{t('tokens.once')}</p>
          <label for="tk-secret" class="visually-hidden">
            {t('tokens.secret')}
          </label>
          <input id="tk-secret" class="mono secret" readOnly value={created.token} onFocus={(e) => e.currentTarget.select()} />
        </Card>
      )}
      <ActionNotice error={act.error} done={act.done} />
      {list.error !== undefined && <ErrorBox error={list.error} onRetry={list.reload} />}
      {!list.data && list.error === undefined && <Loading />}
      {list.data && (
        <table class="table" aria-label={t('tokens.title')}>
          <thead>
            <tr>
              <th scope="col">{t('tokens.name')}</th>
              <th scope="col">{t('tokens.prefix')}</th>
              <th scope="col">{t('tokens.created')}</th>
              <th scope="col">{t('tokens.expires')}</th>
              <th scope="col">{t('tokens.lastUsed')}</th>
              <th scope="col">{t('alerts.col.actions')}</th>
            </tr>
          </thead>
          <tbody>
            {(list.data.items ?? []).map((tk) => (
              <tr key={tk.id} data-token={tk.name}>
                <td>{tk.name}</td>
                <td>
                  <code>{tk.prefix}</code>
                </td>
                <td>{formatDateTime(tk.created_at, l)}</td>
                <td>{tk.expires_at ? formatDateTime(tk.expires_at, l) : t('tokens.never')}</td>
                <td>{tk.last_used_at ? formatDateTime(tk.last_used_at, l) : '–'}</td>
                <td>
                  {tk.revoked_at ? (
                    <Badge tone="muted">{t('tokens.revoked')}</Badge>
                  ) : (
                    <button
                      type="button"
                      class="btn btn-small"
                      disabled={act.busy !== null}
                      onClick={() => {
                        if (confirm(t('tokens.confirm', { name: tk.name }))) void act.run('revoke', async () => void (await api.apiTokenRevoke(tk.id))).then((ok) => ok && list.reload());
                      }}
                    >
                      {t('tokens.revoke')}
                    </button>
                  )}
                </td>
              </tr>
            ))}
            {(list.data.items ?? []).length === 0 && (
              <tr>
                <td colSpan={6} class="empty">
                  {t('tokens.empty')}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
    </div>
  );
}
