// The operator's side of a VM page: its user fields (PATCH /vms/{id}) and
// its static group membership (the member routes of /vm-groups).
import { useState } from 'preact/hooks';
import { api, ApiError, type VMDetail } from '../api';
import { ActionNotice, Card, ErrorBox } from './common';
import { t, tv } from '../i18n';
import { EditError } from './Escalation';
import { useAction } from '../lib/action';
import { useAsync } from '../lib/hooks';
import { membershipOf } from '../lib/vmgroups';
import { batchFailures, fieldOfRow, labelRows, vmPatchOf, type BatchItem, type LabelRow, type VMFieldsDraft } from '../lib/vmfields';

/** A message beside a field: the editor's own problem (a catalog key) or the API's (its message). */
interface Msg {
  field: string;
  text: string;
}

function FieldMsg({ field, msgs }: { field: string; msgs: Msg[] }) {
  const m = msgs.find((x) => x.field === field);
  return m ? (
    <span class="field-error" id={errID(field)} data-field={field}>
      {m.text}
    </span>
  ) : null;
}

const errID = (field: string): string => 'vme-err-' + field.replace(/[^a-z0-9]/gi, '-');
const invalid = (field: string, msgs: Msg[]) =>
  msgs.some((m) => m.field === field) ? { 'aria-invalid': true as const, 'aria-describedby': errID(field) } : {};

const draftOf = (vm: VMDetail): VMFieldsDraft => ({
  description: vm.description,
  owner: vm.owner,
  labels: [...labelRows(vm.labels), { key: '', value: '' }],
});

/** VMFieldsEditor edits a VM's description, owner and labels. */
export function VMFieldsEditor({ vm, onSaved }: { vm: VMDetail; onSaved: () => void }) {
  const [d, setD] = useState<VMFieldsDraft>(() => draftOf(vm));
  const [msgs, setMsgs] = useState<Msg[]>([]);
  const act = useAction();
  const setRow = (i: number, p: Partial<LabelRow>) => setD({ ...d, labels: d.labels.map((r, j) => (j === i ? { ...r, ...p } : r)) });

  const save = async (e: Event) => {
    e.preventDefault();
    const { patch, problems } = vmPatchOf(vm, d);
    setMsgs(problems.map((p) => ({ field: p.field, text: t(p.key) })));
    if (problems.length > 0) return;
    if (Object.keys(patch).length === 0) {
      act.clear();
      setMsgs([{ field: 'form', text: t('vmEdit.unchanged') }]);
      return;
    }
    await act.run('save', async () => {
      try {
        await api.vmPatch(vm.id, patch);
      } catch (err) {
        if (err instanceof ApiError) setMsgs(err.fields.map((f) => ({ field: fieldOfRow(f.field, d.labels), text: f.message })));
        throw err;
      }
      onSaved();
      return t('vmEdit.saved');
    });
  };

  return (
    <form class="card form-card vm-edit" onSubmit={(e) => void save(e)} aria-labelledby="vme-title" data-testid="vm-fields-form">
      <h2 class="card-title" id="vme-title">
        {t('vmEdit.title')}
      </h2>
      <div class="filter">
        <label for="vme-desc">{t('vm.description')}</label>
        <textarea id="vme-desc" rows={3} value={d.description} {...invalid('description', msgs)} onInput={(e) => setD({ ...d, description: e.currentTarget.value })} />
        <FieldMsg field="description" msgs={msgs} />
      </div>
      <div class="filter">
        <label for="vme-owner">{t('vm.owner')}</label>
        <input id="vme-owner" value={d.owner} {...invalid('owner', msgs)} onInput={(e) => setD({ ...d, owner: e.currentTarget.value })} />
        <FieldMsg field="owner" msgs={msgs} />
      </div>
      <fieldset>
        <legend>{t('vm.labels')}</legend>
        {d.labels.map((r, i) => {
          const f = 'labels[' + i + ']';
          return (
            <div class="form-grid label-row" key={i} data-label-row={i}>
              <div class="filter">
                <label for={'vme-lk-' + i}>{t('vmEdit.labelKey')}</label>
                <input id={'vme-lk-' + i} value={r.key} {...invalid(f, msgs)} onInput={(e) => setRow(i, { key: e.currentTarget.value })} />
              </div>
              <div class="filter">
                <label for={'vme-lv-' + i}>{t('vmEdit.labelValue')}</label>
                <input id={'vme-lv-' + i} value={r.value} onInput={(e) => setRow(i, { value: e.currentTarget.value })} />
              </div>
              <div class="filter">
                <button
                  type="button"
                  class="btn btn-small"
                  aria-label={t('vmEdit.labelRemove', { n: i + 1 })}
                  onClick={() => setD({ ...d, labels: d.labels.filter((_, j) => j !== i) })}
                >
                  {t('action.delete')}
                </button>
              </div>
              <FieldMsg field={f} msgs={msgs} />
            </div>
          );
        })}
        <FieldMsg field="labels" msgs={msgs} />
        <p>
          <button type="button" class="btn btn-small" data-testid="label-add" onClick={() => setD({ ...d, labels: [...d.labels, { key: '', value: '' }] })}>
            {t('vmEdit.labelAdd')}
          </button>
        </p>
      </fieldset>
      <FieldMsg field="form" msgs={msgs} />
      <p>
        <button type="submit" class="btn btn-primary" data-testid="vm-fields-save" disabled={act.busy !== null}>
          {t('vmEdit.save')}
        </button>
      </p>
      {act.error !== undefined ? <EditError error={act.error} /> : <ActionNotice error={undefined} done={act.done} />}
    </form>
  );
}

/** VMGroupsEditor adds the VM to a group and removes it from one, showing what the API did. */
export function VMGroupsEditor({ vm, onChanged }: { vm: VMDetail; onChanged: () => void }) {
  const groups = useAsync((s) => api.vmGroups(s), []);
  const [pick, setPick] = useState('');
  const [failed, setFailed] = useState<{ id: string; code: string }[]>([]);
  const act = useAction();
  const member = new Set(vm.groups.map((g) => g.id));
  const others = (groups.data?.items ?? []).filter((g) => !member.has(g.id));

  const change = (group: string, add: boolean) =>
    act.run(add ? 'add' : 'remove:' + group, async () => {
      const res = await api.vmGroupMembers(group, [vm.id], add);
      const f = batchFailures(res.items as BatchItem[]);
      setFailed(f);
      onChanged();
      if (f.length > 0) return t('vmEdit.groupNotDone');
      setPick('');
      return t(add ? 'vmEdit.groupAdded' : 'vmEdit.groupRemoved');
    });

  return (
    <Card title={t('vmEdit.groups')} class="vm-groups-edit">
      <ul class="chips" data-testid="vm-groups">
        {vm.groups.map((g) => {
          const m = membershipOf(g);
          return (
            <li key={g.id} class="chip" data-group={g.id} data-membership={m}>
              {g.name || g.id} <span class="muted">{t('vmEdit.member.' + m)} </span>
              {m !== 'rule' && (
                <button
                  type="button"
                  class="btn btn-small"
                  data-group-remove={g.id}
                  aria-label={t('vmEdit.groupRemove', { name: g.name || g.id })}
                  disabled={act.busy !== null}
                  onClick={() => void change(g.id, false)}
                >
                  {t('vmEdit.remove')}
                </button>
              )}
            </li>
          );
        })}
      </ul>
      {vm.groups.length === 0 && <p class="muted">{t('vmEdit.noGroups')}</p>}
      {groups.error !== undefined && <ErrorBox error={groups.error} onRetry={groups.reload} />}
      {groups.data && (
        <form
          class="form-grid"
          aria-label={t('vmEdit.groupAdd')}
          onSubmit={(e) => {
            e.preventDefault();
            if (pick) void change(pick, true);
          }}
        >
          <div class="filter">
            <label for="vme-group">{t('vmEdit.group')}</label>
            <select id="vme-group" value={pick} onChange={(e) => setPick(e.currentTarget.value)}>
              <option value="">{t('vmEdit.groupPick')}</option>
              {others.map((g) => (
                <option key={g.id} value={g.id}>
                  {g.name}
                </option>
              ))}
            </select>
          </div>
          <div class="filter">
            <button type="submit" class="btn btn-small" data-testid="vm-group-add" disabled={!pick || act.busy !== null}>
              {t('vmEdit.groupAdd')}
            </button>
          </div>
        </form>
      )}
      {act.error !== undefined ? <EditError error={act.error} /> : <ActionNotice error={undefined} done={act.done} />}
      {failed.length > 0 && (
        <ul class="field-errors" data-testid="vm-group-failures">
          {failed.map((f) => (
            <li key={f.id} data-code={f.code}>
              <code>{f.id}</code> {tv('vmEdit.code.', f.code)}
            </li>
          ))}
        </ul>
      )}
    </Card>
  );
}
