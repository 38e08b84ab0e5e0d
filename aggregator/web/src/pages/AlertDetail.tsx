import { useState } from 'preact/hooks';
import { api } from '../api';
import { AlertsNav } from '../components/AlertsNav';
import { ActionNotice, Badge, Card, ErrorBox, Fields, Loading } from '../components/common';
import { locale, t, tv } from '../i18n';
import { useAction } from '../lib/action';
import { alertAge } from '../lib/alerts';
import { formatDateTime, formatDuration, formatMetric } from '../lib/format';
import { useAsync, useNow } from '../lib/hooks';
import { can } from '../lib/me';
import { Marks, StateBadge, sevTone } from './Alerts';

/** An alert: what it is about, its timeline, its notifications; ack and resolve. */
export default function AlertDetail({ params }: { params: Record<string, string> }) {
  const id = Number(params.id);
  const d = useAsync((s) => api.alert(id, s), [id], 30_000);
  const act = useAction();
  const [comment, setComment] = useState('');
  const now = useNow();
  const l = locale.value;
  if (!Number.isSafeInteger(id) || id <= 0) return <ErrorBox error={new Error('id')} />;
  if (d.error !== undefined && !d.data) return <ErrorBox error={d.error} onRetry={d.reload} />;
  if (!d.data) return <Loading />;
  const a = d.data;
  const active = a.state !== 'resolved';
  const entityHref = a.entity_kind === 'vm' ? '/vms/' + encodeURIComponent(a.entity_id) : a.entity_kind === 'site' ? '/sites/' + encodeURIComponent(a.entity_id) : '';

  async function run(kind: 'ack' | 'resolve') {
    const ok = await act.run(kind, async () => {
      if (kind === 'ack') await api.alertAck(id, comment.trim());
      else await api.alertResolve(id, comment.trim());
      return kind === 'ack' ? t('alerts.acked.done') : t('alerts.resolved.done');
    });
    if (ok) {
      setComment('');
      d.reload();
    }
  }

  return (
    <div class="page page-wide" data-alert-detail={a.id}>
      <div class="page-head">
        <h1>{a.rule_name}</h1>
        <Badge tone={sevTone[a.severity as keyof typeof sevTone] ?? 'muted'}>{t('alerts.severity.' + a.severity)}</Badge> <StateBadge a={a} /> <Marks a={a} />
      </div>
      <AlertsNav current="" />
      {a.summary && <p>{a.summary}</p>}
      <div class="cards">
        <Card title={t('alerts.detail.about')}>
          <Fields
            rows={[
              [t('alerts.col.entity'), entityHref ? <a href={entityHref}>{a.entity_name || a.entity_id}</a> : a.entity_name || a.entity_id],
              [t('alerts.detail.kind'), tv('kind.', a.entity_kind)],
              [t('alerts.col.site'), a.site ? <a href={'/sites/' + encodeURIComponent(a.site)}>{a.site}</a> : ''],
              [t('alerts.col.value'), formatMetric(a.value, a.unit, l)],
              [t('alerts.detail.threshold'), formatMetric(a.threshold, a.unit, l)],
              [t('alerts.col.since'), formatDateTime(a.starts_at, l)],
              [t('alerts.detail.ended'), a.ends_at ? formatDateTime(a.ends_at, l) : ''],
              [t('alerts.col.duration'), formatDuration(alertAge(a, now), l)],
              [t('alerts.detail.learnt'), formatDateTime(a.created_at, l)],
              [t('alerts.detail.ackedBy'), a.acked ? `${a.acked_by} · ${a.acked_at ? formatDateTime(a.acked_at, l) : ''}` : ''],
              [t('alerts.detail.ackComment'), a.ack_comment],
              [t('alerts.detail.resolvedBy'), a.resolved_by],
            ]}
          />
        </Card>
        {can('alert:write') && active && (
          <Card title={t('alerts.detail.actions')}>
            <form
              onSubmit={(e) => {
                e.preventDefault();
                void run('ack');
              }}
            >
              <div class="filter">
                <label for="al-comment">{t('alerts.detail.comment')}</label>
                <textarea id="al-comment" rows={3} maxLength={2000} value={comment} onInput={(e) => setComment(e.currentTarget.value)} />
              </div>
              <p class="filter-actions">
                {!a.acked && (
                  <button type="submit" class="btn btn-primary" disabled={act.busy !== null} data-testid="alert-ack">
                    {t('alerts.ack')}
                  </button>
                )}
                <button type="button" class="btn" disabled={act.busy !== null} onClick={() => void run('resolve')} data-testid="alert-resolve">
                  {t('alerts.resolve')}
                </button>
              </p>
            </form>
            <ActionNotice error={act.error} done={act.done} />
          </Card>
        )}
      </div>
      <h2 class="section-title">{t('alerts.detail.timeline')}</h2>
      <ol class="timeline" data-testid="alert-timeline">
        {(a.timeline ?? []).map((e) => (
          <li key={e.id} data-kind={e.kind}>
            <time dateTime={e.at}>{formatDateTime(e.at, l)}</time> <strong>{tv('alerts.event.', e.kind)}</strong>
            {e.value !== null && <span> · {formatMetric(e.value, a.unit, l)}</span>}
            {e.actor && <span> · {e.actor}</span>}
            {e.late && (
              <span>
                {' '}
                <Badge tone="info">{t('alerts.mark.late')}</Badge> <span class="muted">{t('alerts.detail.arrived', { at: formatDateTime(e.recorded_at, l) })}</span>
              </span>
            )}
          </li>
        ))}
      </ol>
      <h2 class="section-title">{t('alerts.detail.notifications')}</h2>
      {(a.notifications ?? []).length === 0 ? (
        <p class="muted">{t('alerts.detail.noNotifications')}</p>
      ) : (
        <table class="table" aria-label={t('alerts.detail.notifications')}>
          <thead>
            <tr>
              <th scope="col">{t('alerts.detail.channel')}</th>
              <th scope="col">{t('alerts.detail.kind')}</th>
              <th scope="col">{t('alerts.col.state')}</th>
              <th scope="col">{t('alerts.detail.attempts')}</th>
              <th scope="col">{t('alerts.detail.lastError')}</th>
            </tr>
          </thead>
          <tbody>
            {(a.notifications ?? []).map((n) => (
              <tr key={n.id}>
                <td>{n.channel_name}</td>
                <td>{n.kind}</td>
                <td>
                  <Badge tone={n.state === 'delivered' ? 'ok' : n.state === 'failed' ? 'bad' : 'muted'}>{n.state}</Badge>
                </td>
                <td class="num">{(n.attempts ?? []).length}</td>
                <td>{[n.last_code, n.last_error].filter(Boolean).join(' ')}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
