import { useState } from 'preact/hooks';
import { api, type ChannelTestResult } from '../api';
import { AlertsNav } from '../components/AlertsNav';
import { ActionNotice, Badge, ErrorBox, Loading } from '../components/common';
import { LOCALES, t } from '../i18n';
import { useAction } from '../lib/action';
import { useAsync } from '../lib/hooks';

const TYPES = ['webhook', 'email', 'dingtalk', 'wecom', 'feishu'] as const;

/** parseObject reads a JSON object typed into a form, or says it is not one. */
function parseObject(text: string): Record<string, unknown> | null {
  if (!text.trim()) return {};
  try {
    const v: unknown = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** Notification channels: the list, a new one, delete, and the test button. */
export default function Channels() {
  const list = useAsync((s) => api.channels(s), []);
  const act = useAction();
  const [tested, setTested] = useState<Record<string, ChannelTestResult>>({});
  const [name, setName] = useState('');
  const [type, setType] = useState<string>('webhook');
  const [config, setConfig] = useState('{"url": ""}');
  const [secrets, setSecrets] = useState('');
  const [loc, setLoc] = useState('en');
  const [bad, setBad] = useState<string | null>(null);

  async function create(e: Event) {
    e.preventDefault();
    const c = parseObject(config);
    const s = parseObject(secrets);
    setBad(c === null ? 'config' : s === null ? 'secrets' : null);
    if (c === null || s === null) return;
    const ok = await act.run('create', async () => {
      await api.channelCreate({ name: name.trim(), type, config: c, secrets: s as Record<string, string>, locale: loc, enabled: true });
      return t('channels.created');
    });
    if (ok) {
      setName('');
      setSecrets('');
      list.reload();
    }
  }

  async function test(id: string) {
    await act.run('test', async () => {
      const r = await api.channelTest(id);
      setTested((x) => ({ ...x, [id]: r }));
    });
  }

  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{t('channels.title')}</h1>
      </div>
      <AlertsNav current="/alerts/channels" />
      <ActionNotice error={act.error} done={act.done} />
      {list.error !== undefined && <ErrorBox error={list.error} onRetry={list.reload} />}
      {!list.data && list.error === undefined && <Loading />}
      {list.data && (
        <table class="table" aria-label={t('channels.title')}>
          <thead>
            <tr>
              <th scope="col">{t('channels.name')}</th>
              <th scope="col">{t('channels.type')}</th>
              <th scope="col">{t('channels.secrets')}</th>
              <th scope="col">{t('rules.enabled')}</th>
              <th scope="col">{t('channels.lastTest')}</th>
              <th scope="col">{t('alerts.col.actions')}</th>
            </tr>
          </thead>
          <tbody>
            {list.data.items.map((c) => {
              const r = tested[c.id];
              return (
                <tr key={c.id} data-channel={c.name}>
                  <td>{c.name}</td>
                  <td>
                    <code>{c.type}</code>
                  </td>
                  <td>{(c.secret_keys ?? []).join(', ')}</td>
                  <td>{c.enabled ? <Badge tone="ok">{t('rules.on')}</Badge> : <Badge tone="muted">{t('rules.off')}</Badge>}</td>
                  <td data-outcome={r?.outcome ?? ''}>
                    {r && (
                      <>
                        <Badge tone={r.outcome === 'delivered' ? 'ok' : 'bad'}>{t('channels.outcome.' + r.outcome)}</Badge>{' '}
                        <span class="muted">{[r.code, r.message, r.error].filter(Boolean).join(' · ')}</span>
                      </>
                    )}
                  </td>
                  <td class="row-actions">
                    <button type="button" class="btn btn-small" disabled={act.busy !== null} onClick={() => void test(c.id)} data-test-channel={c.name}>
                      {t('channels.test')}
                    </button>{' '}
                    <button
                      type="button"
                      class="btn btn-small"
                      disabled={act.busy !== null}
                      onClick={() => {
                        if (confirm(t('channels.deleteConfirm', { name: c.name }))) void act.run('delete', async () => void (await api.channelDelete(c.id))).then((ok) => ok && list.reload());
                      }}
                    >
                      {t('action.delete')}
                    </button>
                  </td>
                </tr>
              );
            })}
            {list.data.items.length === 0 && (
              <tr>
                <td colSpan={6} class="empty">
                  {t('channels.empty')}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
      <form class="card form-card" onSubmit={(e) => void create(e)} aria-label={t('channels.new')}>
        <h2 class="card-title">{t('channels.new')}</h2>
        <div class="form-grid">
          <div class="filter">
            <label for="ch-name">{t('channels.name')}</label>
            <input id="ch-name" value={name} required maxLength={200} onInput={(e) => setName(e.currentTarget.value)} />
          </div>
          <div class="filter">
            <label for="ch-type">{t('channels.type')}</label>
            <select id="ch-type" value={type} onChange={(e) => setType(e.currentTarget.value)}>
              {TYPES.map((x) => (
                <option key={x} value={x}>
                  {x}
                </option>
              ))}
            </select>
          </div>
          <div class="filter">
            <label for="ch-locale">{t('lang.label')}</label>
            <select id="ch-locale" value={loc} onChange={(e) => setLoc(e.currentTarget.value)}>
              {LOCALES.map((x) => (
                <option key={x} value={x}>
                  {t('lang.' + x)}
                </option>
              ))}
            </select>
          </div>
        </div>
        <div class="filter">
          <label for="ch-config">{t('channels.config')}</label>
          <textarea id="ch-config" rows={3} class="mono" value={config} aria-invalid={bad === 'config'} onInput={(e) => setConfig(e.currentTarget.value)} />
          {bad === 'config' && <span class="field-error">{t('channels.notJSON')}</span>}
        </div>
        <div class="filter">
          <label for="ch-secrets">{t('channels.secrets')}</label>
          <textarea id="ch-secrets" rows={2} class="mono" value={secrets} placeholder={t('channels.secretsHint')} aria-invalid={bad === 'secrets'} onInput={(e) => setSecrets(e.currentTarget.value)} />
          {bad === 'secrets' && <span class="field-error">{t('channels.notJSON')}</span>}
        </div>
        <p>
          <button type="submit" class="btn btn-primary" disabled={act.busy !== null}>
            {t('channels.create')}
          </button>
        </p>
      </form>
    </div>
  );
}
