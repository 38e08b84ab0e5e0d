import { useState } from 'preact/hooks';
import { api, type Backup } from '../api';
import { ActionNotice, Badge, Card, ErrorBox, Fields, Loading } from '../components/common';
import { locale, t } from '../i18n';
import { useAction } from '../lib/action';
import { formatBytes, formatDateTime, formatDuration } from '../lib/format';
import { useAsync } from '../lib/hooks';

const statusTone = { done: 'ok', running: 'info', failed: 'bad' } as const;

/** Restore asks for the backup's file name, typed, before it restores anything. */
function RestoreForm({ b, onDone, onCancel }: { b: Backup; onDone: () => void; onCancel: () => void }) {
  const [typed, setTyped] = useState('');
  const act = useAction();
  const ok = typed === b.file;
  return (
    <form
      class="card form-card restore"
      aria-label={t('backups.restoreTitle')}
      onSubmit={(e) => {
        e.preventDefault();
        if (ok) void act.run('restore', async () => void (await api.backupRestore(b.id))).then((done) => done && onDone());
      }}
    >
      <h2 class="card-title">{t('backups.restoreTitle')}</h2>
      <p class="notice notice-warn">{t('backups.restoreWarn')}</p>
      <div class="filter">
        <label for="bk-confirm">{t('backups.typeName', { name: b.file })}</label>
        <input id="bk-confirm" autoComplete="off" value={typed} onInput={(e) => setTyped(e.currentTarget.value)} data-testid="restore-confirm" />
      </div>
      <p class="filter-actions">
        <button type="submit" class="btn btn-primary" disabled={!ok || act.busy !== null} data-testid="restore-submit">
          {t('backups.restore')}
        </button>
        <button type="button" class="btn" onClick={onCancel}>
          {t('action.cancel')}
        </button>
      </p>
      <ActionNotice error={act.error} done={act.done} />
    </form>
  );
}

/** Data backups: list, create, download, delete, restore (after typing the name), the schedule and the last restore. */
export default function Backups() {
  const list = useAsync((s) => api.backups(s), [], 10_000);
  const sched = useAsync((s) => api.backupSchedule(s), []);
  const rs = useAsync((s) => api.restoreStatus(s), [], 10_000);
  const act = useAction();
  const [kind, setKind] = useState('config');
  const [note, setNote] = useState('');
  const [restoring, setRestoring] = useState<Backup | null>(null);
  const l = locale.value;
  const r = rs.data?.restore;

  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{t('backups.title')}</h1>
      </div>
      {rs.data?.maintenance.active && <p class="notice notice-warn">{t('backups.maintenance')}</p>}
      <div class="cards">
        <form
          class="card form-card"
          aria-label={t('backups.new')}
          onSubmit={(e) => {
            e.preventDefault();
            void act.run('create', async () => void (await api.backupCreate({ kind, note: note.trim() }))).then((ok) => ok && (setNote(''), list.reload()));
          }}
        >
          <h2 class="card-title">{t('backups.new')}</h2>
          <div class="filter">
            <label for="bk-kind">{t('backups.kind')}</label>
            <select id="bk-kind" value={kind} onChange={(e) => setKind(e.currentTarget.value)}>
              <option value="config">{t('backups.kind.config')}</option>
              <option value="metrics">{t('backups.kind.metrics')}</option>
            </select>
          </div>
          <div class="filter">
            <label for="bk-note">{t('backups.note')}</label>
            <input id="bk-note" maxLength={500} value={note} onInput={(e) => setNote(e.currentTarget.value)} />
          </div>
          <p>
            <button type="submit" class="btn btn-primary" disabled={act.busy !== null}>
              {t('backups.create')}
            </button>
          </p>
        </form>
        {sched.data && (
          <Card title={t('backups.schedule')}>
            <Fields
              rows={[
                [t('rules.enabled'), sched.data.enabled ? t('rules.on') : t('rules.off')],
                [t('backups.cron'), <code>{sched.data.cron}</code>],
                [t('backups.kind'), t('backups.kind.' + sched.data.kind)],
                [t('backups.keep'), t('backups.keepValue', { n: sched.data.keep_last, days: sched.data.keep_days })],
                [t('backups.next'), sched.data.next_run_at ? formatDateTime(sched.data.next_run_at, l) : ''],
              ]}
            />
          </Card>
        )}
        {r && (
          <Card title={t('backups.lastRestore')}>
            <Fields
              rows={[
                [t('backups.phase'), <span data-phase={r.phase}>{t('backups.phase.' + r.phase)}</span>],
                [t('backups.started'), formatDateTime(r.started_at, l)],
                [t('backups.progress'), r.bytes_total > 0 ? `${formatBytes(r.bytes_done, l)} / ${formatBytes(r.bytes_total, l)}` : ''],
                [t('backups.eta'), r.eta_seconds !== null ? formatDuration(r.eta_seconds * 1000, l) : ''],
                [t('backups.error'), [r.error_code, r.error].filter(Boolean).join(' ')],
              ]}
            />
          </Card>
        )}
      </div>
      {restoring && (
        <RestoreForm
          b={restoring}
          onCancel={() => setRestoring(null)}
          onDone={() => {
            setRestoring(null);
            rs.reload();
          }}
        />
      )}
      <ActionNotice error={act.error} done={act.done} />
      {list.error !== undefined && <ErrorBox error={list.error} onRetry={list.reload} />}
      {!list.data && list.error === undefined && <Loading />}
      {list.data && (
        <table class="table" aria-label={t('backups.title')}>
          <thead>
            <tr>
              <th scope="col">{t('backups.file')}</th>
              <th scope="col">{t('backups.kind')}</th>
              <th scope="col">{t('alerts.col.state')}</th>
              <th scope="col">{t('backups.size')}</th>
              <th scope="col">{t('backups.started')}</th>
              <th scope="col">{t('backups.by')}</th>
              <th scope="col">{t('alerts.col.actions')}</th>
            </tr>
          </thead>
          <tbody>
            {list.data.items.map((b) => (
              <tr key={b.id} data-backup={b.file} data-status={b.status}>
                <td>
                  <code>{b.file}</code>
                  {b.note && <div class="muted">{b.note}</div>}
                </td>
                <td>{t('backups.kind.' + b.kind)}</td>
                <td>
                  <Badge tone={statusTone[b.status as keyof typeof statusTone] ?? 'muted'}>{t('backups.status.' + b.status)}</Badge>
                  {b.error_code && <div class="muted">{b.error_code}</div>}
                </td>
                <td class="num">{formatBytes(b.status === 'running' ? b.bytes_done : b.size_bytes, l)}</td>
                <td>{formatDateTime(b.started_at, l)}</td>
                <td>{b.created_by || b.trigger}</td>
                <td class="row-actions">
                  {b.status === 'done' && (
                    <>
                      <button type="button" class="btn btn-small" onClick={() => void act.run('download', () => api.backupDownload(b))}>
                        {t('backups.download')}
                      </button>{' '}
                      <button type="button" class="btn btn-small" onClick={() => setRestoring(b)} data-restore={b.file}>
                        {t('backups.restore')}
                      </button>{' '}
                    </>
                  )}
                  {b.status !== 'running' && (
                    <button
                      type="button"
                      class="btn btn-small"
                      disabled={act.busy !== null}
                      onClick={() => {
                        if (confirm(t('backups.deleteConfirm', { name: b.file }))) void act.run('delete', async () => void (await api.backupDelete(b.id))).then((ok) => ok && list.reload());
                      }}
                    >
                      {t('action.delete')}
                    </button>
                  )}
                </td>
              </tr>
            ))}
            {list.data.items.length === 0 && (
              <tr>
                <td colSpan={7} class="empty">
                  {t('backups.empty')}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
    </div>
  );
}
