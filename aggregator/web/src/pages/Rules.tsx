import { api } from '../api';
import { AlertsNav } from '../components/AlertsNav';
import { ActionNotice, Badge, ErrorBox, Loading } from '../components/common';
import { locale, t, tv } from '../i18n';
import { useAction } from '../lib/action';
import { formatDateTime } from '../lib/format';
import { useAsync } from '../lib/hooks';
import { can } from '../lib/me';
import { sevTone } from './Alerts';

/** The alert rules: enable, disable, edit, delete. */
export default function Rules() {
  const list = useAsync((s) => api.rules(s), []);
  const act = useAction();
  const l = locale.value;
  const writable = can('alert:write');
  const reloadOn = (ok: boolean) => ok && list.reload();
  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{t('rules.title')}</h1>
        {writable && (
          <a class="btn btn-primary" href="/alerts/rules/new">
            {t('rules.new')}
          </a>
        )}
      </div>
      <AlertsNav current="/alerts/rules" />
      <ActionNotice error={act.error} done={act.done} />
      {list.error !== undefined && <ErrorBox error={list.error} onRetry={list.reload} />}
      {!list.data && list.error === undefined && <Loading />}
      {list.data && (
        <table class="table" aria-label={t('rules.title')}>
          <thead>
            <tr>
              <th scope="col">{t('rules.name')}</th>
              <th scope="col">{t('rules.kind')}</th>
              <th scope="col">{t('alerts.col.severity')}</th>
              <th scope="col">{t('rules.conditions')}</th>
              <th scope="col">{t('rules.enabled')}</th>
              <th scope="col">{t('rules.updated')}</th>
              {writable && <th scope="col">{t('alerts.col.actions')}</th>}
            </tr>
          </thead>
          <tbody>
            {list.data.items.map((r) => (
              <tr key={r.id} data-rule={r.name}>
                <td>
                  <a href={'/alerts/rules/' + r.id}>{r.name}</a> {r.builtin && <Badge tone="muted">{t('rules.builtin')}</Badge>}
                </td>
                <td>{tv('kind.', r.entity_kind)}</td>
                <td>
                  <Badge tone={sevTone[r.severity as keyof typeof sevTone] ?? 'muted'}>{t('alerts.severity.' + r.severity)}</Badge>
                </td>
                <td>
                  {(r.conditions ?? []).map((c, i) => (
                    <code key={i} class="chip">
                      {`${t('rules.agg.' + (c.agg || 'last'))}(${tv('metric.', c.metric)}${c.window && c.window !== '0s' ? ', ' + c.window : ''}) ${c.op} ${c.threshold}`}
                    </code>
                  ))}
                </td>
                <td>{r.enabled ? <Badge tone="ok">{t('rules.on')}</Badge> : <Badge tone="muted">{t('rules.off')}</Badge>}</td>
                <td>{formatDateTime(r.updated_at, l)}</td>
                {writable && (
                  <td class="row-actions">
                    <button
                      type="button"
                      class="btn btn-small"
                      disabled={act.busy !== null}
                      onClick={() => void act.run('toggle', async () => void (await api.ruleEnable(r.id, !r.enabled))).then(reloadOn)}
                    >
                      {r.enabled ? t('rules.disable') : t('rules.enable')}
                    </button>{' '}
                    <button
                      type="button"
                      class="btn btn-small"
                      disabled={act.busy !== null}
                      onClick={() => {
                        if (confirm(t('rules.deleteConfirm', { name: r.name }))) void act.run('delete', async () => void (await api.ruleDelete(r.id))).then(reloadOn);
                      }}
                    >
                      {t('action.delete')}
                    </button>
                  </td>
                )}
              </tr>
            ))}
            {list.data.items.length === 0 && (
              <tr>
                <td colSpan={7} class="empty">
                  {t('rules.empty')}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
    </div>
  );
}
