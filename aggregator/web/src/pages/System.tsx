import { useEffect, useState } from 'preact/hooks';
import { api, type EnrollmentToken, type HealthStatus } from '../api';
import { PluginBadges } from '../components/AgentPlugins';
import { CollectionForm } from '../components/CollectionSettings';
import { ActionNotice, Badge, Card, ErrorBox, Loading } from '../components/common';
import { locale, t, tv } from '../i18n';
import { useAction } from '../lib/action';
import { formatBytes, formatDateTime, formatDuration, formatNumber, formatRelative } from '../lib/format';
import { useAsync, useNow } from '../lib/hooks';
import { can } from '../lib/me';

const healthTone = (s: HealthStatus) => (s === 'ok' ? 'ok' : s === 'degraded' ? 'warn' : 'bad');
const TIERS = ['raw', '5m', '1h', '1d'] as const;

function Health() {
  const h = useAsync((s) => api.health(s), [], 15_000);
  const l = locale.value;
  if (h.error !== undefined && !h.data) return <ErrorBox error={h.error} onRetry={h.reload} />;
  if (!h.data) return <Loading />;
  return (
    <section aria-labelledby="sys-health">
      <h2 class="section-title" id="sys-health">
        {t('system.health')} <Badge tone={healthTone(h.data.status)}>{tv('system.status.', h.data.status)}</Badge>
      </h2>
      <div class="cards" data-testid="health">
        {Object.entries(h.data.components).map(([name, c]) => (
          <Card key={name} title={tv('system.component.', name)}>
            <div data-component={name} data-status={c.status}>
              <Badge tone={healthTone(c.status)}>{tv('system.status.', c.status)}</Badge>
              <dl class="fields">
                {Object.entries(c)
                  .filter(([k, v]) => k !== 'status' && (typeof v === 'number' || typeof v === 'boolean' || (typeof v === 'string' && v)))
                  .map(([k, v]) => (
                    <div class="field" key={k}>
                      <dt>{tv('system.field.', k)}</dt>
                      <dd>
                        {typeof v === 'number'
                          ? k.endsWith('_bytes')
                            ? formatBytes(v, l)
                            : k.endsWith('_ms')
                              ? formatDuration(v, l)
                              : formatNumber(v, l)
                          : typeof v === 'boolean'
                            ? t(v ? 'system.value.true' : 'system.value.false')
                            : String(v)}
                      </dd>
                    </div>
                  ))}
              </dl>
              {(c.reasons ?? []).length > 0 && (
                <ul class="reasons">
                  {c.reasons!.map((r) => (
                    <li key={r}>{r}</li>
                  ))}
                </ul>
              )}
            </div>
          </Card>
        ))}
      </div>
    </section>
  );
}

function Jobs() {
  const jobs = useAsync((s) => api.jobs(s), [], 15_000);
  const act = useAction();
  const now = useNow();
  const l = locale.value;
  return (
    <section aria-labelledby="sys-jobs">
      <h2 class="section-title" id="sys-jobs">
        {t('system.jobs')}
      </h2>
      <ActionNotice error={act.error} done={act.done} />
      {jobs.error !== undefined && <ErrorBox error={jobs.error} onRetry={jobs.reload} />}
      {jobs.data && (
        <table class="table" aria-label={t('system.jobs')}>
          <thead>
            <tr>
              <th scope="col">{t('system.job')}</th>
              <th scope="col">{t('system.schedule')}</th>
              <th scope="col">{t('alerts.col.state')}</th>
              <th scope="col">{t('system.lastRun')}</th>
              <th scope="col">{t('system.result')}</th>
              <th scope="col">{t('system.nextRun')}</th>
              {can('system:write') && <th scope="col">{t('alerts.col.actions')}</th>}
            </tr>
          </thead>
          <tbody>
            {jobs.data.items.map((j) => (
              <tr key={j.name} data-job={j.name}>
                <td>
                  <code>{j.name}</code>
                  <div class="muted">{j.description}</div>
                </td>
                <td>
                  <code>{j.schedule || '–'}</code>
                </td>
                <td>{tv('system.jobState.', j.state)}</td>
                <td>
                  {j.last_started_at ? formatRelative(j.last_started_at, now, l) : t('site.never')}
                  {j.last_duration_ms !== null && <span class="muted"> · {formatDuration(j.last_duration_ms, l)}</span>}
                </td>
                <td>
                  {j.last_result && <Badge tone={j.last_result === 'ok' ? 'ok' : 'bad'}>{tv('system.jobResult.', j.last_result)}</Badge>}
                  {j.last_error && <div class="muted">{j.last_error}</div>}
                </td>
                <td>{j.next_run_at ? formatDateTime(j.next_run_at, l) : '–'}</td>
                {can('system:write') && (
                  <td>
                    <button
                      type="button"
                      class="btn btn-small"
                      disabled={act.busy !== null || j.state === 'running' || j.run_requested_at !== null}
                      onClick={() =>
                        void act
                          .run('run', async () => {
                            await api.jobRun(j.name);
                            return t('system.runRequested', { job: j.name });
                          })
                          .then((ok) => ok && jobs.reload())
                      }
                    >
                      {t('system.runNow')}
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Plugins() {
  const p = useAsync((s) => api.plugins(s), [], 30_000);
  const l = locale.value;
  const items = p.data?.items ?? [];
  return (
    <section aria-labelledby="sys-plugins">
      <h2 class="section-title" id="sys-plugins">
        {t('system.plugins')}
      </h2>
      {p.error !== undefined && <ErrorBox error={p.error} onRetry={p.reload} />}
      {p.data && items.length === 0 && <p class="muted">{p.data.configured ? t('system.noPlugins') : t('system.pluginsOff')}</p>}
      {items.length > 0 && (
        <table class="table" aria-label={t('system.plugins')}>
          <thead>
            <tr>
              <th scope="col">{t('system.plugin')}</th>
              <th scope="col">{t('system.version')}</th>
              <th scope="col">{t('alerts.col.state')}</th>
              <th scope="col">{t('system.calls')}</th>
              <th scope="col">{t('system.restarts')}</th>
              <th scope="col">{t('backups.error')}</th>
            </tr>
          </thead>
          <tbody>
            {items.map((x) => (
              <tr key={x.name} data-plugin={x.name}>
                <td>
                  {x.name} <span class="muted">{(x.kinds ?? []).join(', ')}</span>
                </td>
                <td>{x.version}</td>
                <td>
                  <Badge tone={x.state === 'running' ? 'ok' : 'warn'}>{tv('system.pluginState.', x.state)}</Badge>
                </td>
                <td class="num">{t('system.callsValue', { n: formatNumber(x.calls, l), errors: formatNumber(x.errors, l) })}</td>
                <td class="num">{formatNumber(x.restarts, l)}</td>
                <td>{x.last_error}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function SettingsForm() {
  const s = useAsync((sig) => api.settings(sig), []);
  const act = useAction();
  const [draft, setDraft] = useState<Record<string, string>>({});
  useEffect(() => {
    if (s.data) setDraft({ ...s.data.retention });
  }, [s.data]);
  if (s.error !== undefined) return <ErrorBox error={s.error} onRetry={s.reload} />;
  if (!s.data) return <Loading />;
  return (
    <form
      class="card form-card"
      aria-label={t('system.retention')}
      onSubmit={(e) => {
        e.preventDefault();
        void act
          .run('save', async () => {
            await api.settingsPut(draft);
            return t('system.saved');
          })
          .then((ok) => ok && s.reload());
      }}
    >
      <h2 class="card-title">{t('system.retention')}</h2>
      <p class="muted">{t('system.retentionHint')}</p>
      <div class="form-grid">
        {TIERS.map((k) => (
          <div class="filter" key={k}>
            <label for={'ret-' + k}>{t('system.tier.' + k)}</label>
            <input id={'ret-' + k} size={8} value={draft[k] ?? ''} onInput={(e) => setDraft({ ...draft, [k]: e.currentTarget.value })} />
          </div>
        ))}
      </div>
      <p>
        <button type="submit" class="btn btn-primary" disabled={act.busy !== null}>
          {t('system.save')}
        </button>
      </p>
      <ActionNotice error={act.error} done={act.done} />
    </form>
  );
}

/** CollectionSettingsCard loads the settings for the collection form (an API without the group shows none). */
function CollectionSettingsCard() {
  const s = useAsync((sig) => api.settings(sig), []);
  if (s.error !== undefined) return <ErrorBox error={s.error} onRetry={s.reload} />;
  if (!s.data) return <Loading />;
  return s.data.collection ? <CollectionForm s={s.data} onSaved={s.reload} /> : null;
}

function Agents() {
  const list = useAsync((s) => api.agents(s), [], 15_000);
  const act = useAction();
  const [site, setSite] = useState('');
  const [ttl, setTTL] = useState('24h');
  const [token, setToken] = useState<EnrollmentToken | null>(null);
  const now = useNow();
  const l = locale.value;
  const writable = can('system:write');
  return (
    <section aria-labelledby="sys-agents">
      <h2 class="section-title" id="sys-agents">
        {t('system.agents')}
      </h2>
      <ActionNotice error={act.error} done={act.done} />
      {list.error !== undefined && <ErrorBox error={list.error} onRetry={list.reload} />}
      {list.data && (
        <table class="table" aria-label={t('system.agents')}>
          <thead>
            <tr>
              <th scope="col">{t('system.agent')}</th>
              <th scope="col">{t('alerts.col.site')}</th>
              <th scope="col">{t('system.version')}</th>
              <th scope="col">{t('alerts.col.state')}</th>
              <th scope="col">{t('site.lastSeen')}</th>
              <th scope="col">{t('siteDetail.cert')}</th>
              <th scope="col">{t('plugins.collectors')}</th>
              {writable && <th scope="col">{t('alerts.col.actions')}</th>}
            </tr>
          </thead>
          <tbody>
            {list.data.items.map((a) => (
              <tr key={a.id} data-agent={a.name}>
                <td>{a.name}</td>
                <td>
                  <a href={'/sites/' + encodeURIComponent(a.site)}>{a.site}</a>
                </td>
                <td>{a.version}</td>
                <td>
                  <Badge tone={a.connected ? 'ok' : a.state === 'revoked' ? 'muted' : 'bad'}>{t('agent.state.' + a.state)}</Badge>
                </td>
                <td>{a.last_seen ? formatRelative(a.last_seen, now, l) : t('site.never')}</td>
                <td>{formatDateTime(a.cert_not_after, l)}</td>
                <td>
                  <PluginBadges plugins={a.plugins} />
                </td>
                {writable && (
                  <td>
                    {a.state !== 'revoked' && (
                      <button
                        type="button"
                        class="btn btn-small"
                        disabled={act.busy !== null}
                        onClick={() => {
                          if (confirm(t('system.revokeConfirm', { name: a.name }))) void act.run('revoke', async () => void (await api.agentRevoke(a.id))).then((ok) => ok && list.reload());
                        }}
                      >
                        {t('system.revoke')}
                      </button>
                    )}
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {writable && (
        <form
          class="card form-card"
          aria-label={t('system.enroll')}
          onSubmit={(e) => {
            e.preventDefault();
            void act.run('enroll', async () => setToken(await api.enrollmentToken(site.trim(), ttl.trim())));
          }}
        >
          <h2 class="card-title">{t('system.enroll')}</h2>
          <div class="form-grid">
            <div class="filter">
              <label for="en-site">{t('alerts.col.site')}</label>
              <input id="en-site" required value={site} onInput={(e) => setSite(e.currentTarget.value)} />
            </div>
            <div class="filter">
              <label for="en-ttl">{t('system.ttl')}</label>
              <input id="en-ttl" size={6} value={ttl} onInput={(e) => setTTL(e.currentTarget.value)} />
            </div>
          </div>
          <p>
            <button type="submit" class="btn btn-primary" disabled={act.busy !== null}>
              {t('system.createToken')}
            </button>
          </p>
          {token && (
            <div>
              <p>{t('system.tokenOnce', { site: token.site, when: formatDateTime(token.expires_at, l) })}</p>
              <label for="en-token" class="visually-hidden">
                {t('tokens.secret')}
              </label>
              <input id="en-token" class="mono secret" readOnly value={token.token} onFocus={(e) => e.currentTarget.select()} />
            </div>
          )}
        </form>
      )}
    </section>
  );
}

/** System: health, jobs with run-now, plugins, settings, agents and enrollment tokens. */
export default function System() {
  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{t('system.title')}</h1>
      </div>
      <Health />
      <Jobs />
      <Plugins />
      {can('system:write') && <SettingsForm />}
      {can('system:write') && <CollectionSettingsCard />}
      <Agents />
    </div>
  );
}
