// The VM list's batch actions (POST /vms/batch) on the selected rows, with
// what the API did for each VM.
import { useState } from 'preact/hooks';
import { api, ApiError, type VMGroup } from '../api';
import { ActionNotice } from './common';
import { t, tv } from '../i18n';
import { EditError } from './Escalation';
import { useAction } from '../lib/action';
import { batchFailures } from '../lib/vmfields';
import { BATCH_ACTIONS, batchBodyOf, type BatchAction } from '../lib/vmgroups';

interface Msg {
  field: string;
  text: string;
}

/** VMBatch applies one action to the selected VMs (id → name) and lists the VMs it did not change. */
export function VMBatch({ selected, groups, onDone }: { selected: Map<string, string>; groups: VMGroup[]; onDone: () => void }) {
  const [action, setAction] = useState<BatchAction>('add_to_group');
  const [group, setGroup] = useState('');
  const [labels, setLabels] = useState('');
  const [confirmed, setConfirmed] = useState(false);
  const [msgs, setMsgs] = useState<Msg[]>([]);
  const [failed, setFailed] = useState<{ id: string; code: string }[]>([]);
  const act = useAction();
  const msg = (f: string) => msgs.find((m) => m.field === f || m.field.startsWith(f + '.') || m.field.startsWith(f + '['));
  const inv = (f: string) => (msg(f) ? { 'aria-invalid': true as const, 'aria-describedby': 'vb-err-' + f } : {});
  const err = (f: string) => {
    const m = msg(f);
    return m ? (
      <span class="field-error" id={'vb-err-' + f} data-field={f}>
        {m.text}
      </span>
    ) : null;
  };

  const apply = async (e: Event) => {
    e.preventDefault();
    const { body, problems } = batchBodyOf([...selected.keys()], action, group, labels, confirmed);
    setMsgs(problems.map((p) => ({ field: p.field, text: t(p.key) })));
    setFailed([]);
    if (problems.length > 0) return;
    await act.run('batch', async () => {
      try {
        const res = await api.vmBatch(body);
        setFailed(batchFailures(res.items));
        setConfirmed(false);
        onDone();
        return t('batch.result', { done: res.done, failed: res.failed });
      } catch (err) {
        if (err instanceof ApiError) setMsgs(err.fields.map((f) => ({ field: f.field, text: f.message })));
        throw err;
      }
    });
  };

  return (
    <form class="card form-card" aria-labelledby="vb-title" onSubmit={(e) => void apply(e)} data-testid="vm-batch">
      <h2 class="card-title" id="vb-title">
        {t('batch.title', { n: selected.size })}
      </h2>
      <div class="form-grid">
        <div class="filter">
          <label for="vb-action">{t('batch.action')}</label>
          <select id="vb-action" value={action} onChange={(e) => setAction(e.currentTarget.value as BatchAction)}>
            {BATCH_ACTIONS.map((a) => (
              <option key={a} value={a}>
                {t('batch.action.' + a)}
              </option>
            ))}
          </select>
        </div>
        {action === 'forget' ? (
          <div class="filter">
            <p class="muted" id="vb-forget-note">
              {t('batch.forgetNote')}
            </p>
            <label class="filter-check" for="vb-confirm">
              <input
                id="vb-confirm"
                type="checkbox"
                checked={confirmed}
                aria-describedby="vb-forget-note"
                {...inv('confirm')}
                onChange={(e) => setConfirmed(e.currentTarget.checked)}
              />
              {t('batch.forgetConfirm', { n: selected.size })}
            </label>
            {err('confirm')}
          </div>
        ) : action === 'set_labels' ? (
          <div class="filter">
            <label for="vb-labels">{t('batch.labels')}</label>
            <textarea id="vb-labels" rows={2} value={labels} {...inv('labels')} onInput={(e) => setLabels(e.currentTarget.value)} />
            {err('labels')}
          </div>
        ) : (
          <div class="filter">
            <label for="vb-group">{t('vmEdit.group')}</label>
            <select id="vb-group" value={group} {...inv('group')} onChange={(e) => setGroup(e.currentTarget.value)}>
              <option value="">{t('vmEdit.groupPick')}</option>
              {groups.map((g) => (
                <option key={g.id} value={g.id}>
                  {g.name}
                </option>
              ))}
            </select>
            {err('group')}
          </div>
        )}
        <div class="filter">
          <button type="submit" class="btn btn-primary" data-testid="vm-batch-apply" disabled={act.busy !== null}>
            {t('action.apply')}
          </button>
        </div>
      </div>
      {err('vms')}
      {act.error !== undefined ? <EditError error={act.error} /> : <ActionNotice error={undefined} done={act.done} />}
      {failed.length > 0 && (
        <ul class="field-errors" data-testid="vm-batch-failures">
          {failed.map((f) => (
            <li key={f.id} data-vm-failed={f.id} data-code={f.code}>
              {selected.get(f.id) ?? f.id}: {tv('vmEdit.code.', f.code)}
            </li>
          ))}
        </ul>
      )}
    </form>
  );
}
