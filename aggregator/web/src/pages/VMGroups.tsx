import { useState } from 'preact/hooks';
import { api, ApiError, type VMGroup } from '../api';
import { ActionNotice, ErrorBox, Loading } from '../components/common';
import { locale, t } from '../i18n';
import { EditError } from '../components/Escalation';
import { useAction } from '../lib/action';
import { formatNumber } from '../lib/format';
import { useAsync } from '../lib/hooks';
import { can } from '../lib/me';
import { emptyGroupDraft, groupDraftOf, groupInputOf, ruleText, type GroupDraft } from '../lib/vmgroups';

interface Msg {
  field: string;
  text: string;
}

const errID = (field: string): string => 'vg-err-' + field.replace(/[^a-z0-9]/gi, '-');

function FieldMsg({ field, msgs }: { field: string; msgs: Msg[] }) {
  const m = msgs.find((x) => x.field === field || x.field.startsWith(field + '.') || x.field.startsWith(field + '['));
  return m ? (
    <span class="field-error" id={errID(field)} data-field={field}>
      {m.text}
    </span>
  ) : null;
}

const TEXT_FIELDS = [
  ['site', 'groups.site'],
  ['name_glob', 'groups.nameGlob'],
  ['folder', 'groups.folder'],
  ['cluster', 'groups.cluster'],
  ['host', 'groups.host'],
] as const;

/** GroupForm creates a group or replaces one's name, description and rule. */
function GroupForm({ group, onDone }: { group: VMGroup | null; onDone: () => void }) {
  const [d, setD] = useState<GroupDraft>(() => (group ? groupDraftOf(group) : emptyGroupDraft()));
  const [msgs, setMsgs] = useState<Msg[]>([]);
  const act = useAction();
  const set = (p: Partial<GroupDraft>) => setD({ ...d, ...p });
  const inv = (field: string) =>
    msgs.some((m) => m.field === field || m.field.startsWith(field + '.') || m.field.startsWith(field + '['))
      ? { 'aria-invalid': true as const, 'aria-describedby': errID(field) }
      : {};
  const submit = async (e: Event) => {
    e.preventDefault();
    const { body, problems } = groupInputOf(d);
    setMsgs(problems.map((p) => ({ field: p.field, text: t(p.key) })));
    if (problems.length > 0) return;
    const ok = await act.run('save', async () => {
      try {
        if (group) await api.vmGroupUpdate(group.id, body);
        else await api.vmGroupCreate(body);
      } catch (err) {
        if (err instanceof ApiError) setMsgs(err.fields.map((f) => ({ field: f.field, text: f.message })));
        throw err;
      }
    });
    if (ok) onDone();
  };
  const title = group ? t('groups.edit', { name: group.name }) : t('groups.new');
  return (
    <form class="card form-card" onSubmit={(e) => void submit(e)} aria-labelledby="vg-form-title" data-testid="group-form">
      <h2 class="card-title" id="vg-form-title">
        {title}
      </h2>
      <div class="form-grid">
        <div class="filter">
          <label for="vg-name">{t('groups.name')}</label>
          <input id="vg-name" value={d.name} maxLength={128} {...inv('name')} onInput={(e) => set({ name: e.currentTarget.value })} />
          <FieldMsg field="name" msgs={msgs} />
        </div>
        <div class="filter">
          <label for="vg-desc">{t('groups.description')}</label>
          <input id="vg-desc" value={d.description} {...inv('description')} onInput={(e) => set({ description: e.currentTarget.value })} />
          <FieldMsg field="description" msgs={msgs} />
        </div>
      </div>
      <fieldset>
        <legend>{t('groups.rule')}</legend>
        <p class="muted">{t('groups.ruleHint')}</p>
        <div class="form-grid">
          {TEXT_FIELDS.map(([k, key]) => (
            <div class="filter" key={k}>
              <label for={'vg-' + k}>{t(key)}</label>
              <input id={'vg-' + k} value={d[k]} {...inv('rule.' + k)} onInput={(e) => set({ [k]: e.currentTarget.value })} />
              <FieldMsg field={'rule.' + k} msgs={msgs} />
            </div>
          ))}
          <div class="filter">
            <label for="vg-tags">{t('groups.tags')}</label>
            <textarea id="vg-tags" rows={2} value={d.tags} {...inv('rule.tags')} onInput={(e) => set({ tags: e.currentTarget.value })} />
            <FieldMsg field="rule.tags" msgs={msgs} />
          </div>
          <div class="filter">
            <label for="vg-labels">{t('groups.labels')}</label>
            <textarea id="vg-labels" rows={2} value={d.labels} {...inv('rule.labels')} onInput={(e) => set({ labels: e.currentTarget.value })} />
            <FieldMsg field="rule.labels" msgs={msgs} />
          </div>
        </div>
      </fieldset>
      <p>
        <button type="submit" class="btn btn-primary" data-testid="group-save" disabled={act.busy !== null}>
          {group ? t('groups.save') : t('groups.create')}
        </button>{' '}
        <button type="button" class="btn" onClick={onDone}>
          {t('action.cancel')}
        </button>
      </p>
      {act.error !== undefined ? <EditError error={act.error} /> : <ActionNotice error={undefined} done={act.done} />}
    </form>
  );
}

/** The VM groups page: the groups in the caller's scope, their rule and members; create, edit, delete. */
export default function VMGroups() {
  const list = useAsync((s) => api.vmGroups(s), []);
  const [editing, setEditing] = useState<VMGroup | 'new' | null>(null);
  const act = useAction();
  const writable = can('vm:write');
  const l = locale.value;
  const done = () => {
    setEditing(null);
    list.reload();
  };
  return (
    <div class="page page-wide">
      <p class="crumbs">
        <a href="/vms">{t('nav.vms')}</a>
      </p>
      <div class="page-head">
        <h1>{t('groups.title')}</h1>
        {writable && editing === null && (
          <button type="button" class="btn btn-primary" data-testid="group-new" onClick={() => setEditing('new')}>
            {t('groups.new')}
          </button>
        )}
      </div>
      {editing !== null && <GroupForm key={editing === 'new' ? 'new' : editing.id} group={editing === 'new' ? null : editing} onDone={done} />}
      {act.error !== undefined ? <EditError error={act.error} /> : <ActionNotice error={undefined} done={act.done} />}
      {list.error !== undefined && <ErrorBox error={list.error} onRetry={list.reload} />}
      {!list.data && list.error === undefined && <Loading />}
      {list.data && (
        <table class="table" aria-label={t('groups.title')}>
          <thead>
            <tr>
              <th scope="col">{t('groups.name')}</th>
              <th scope="col">{t('groups.description')}</th>
              <th scope="col">{t('groups.rule')}</th>
              <th scope="col" class="num">
                {t('groups.static')}
              </th>
              <th scope="col" class="num">
                {t('groups.members')}
              </th>
              {writable && <th scope="col">{t('alerts.col.actions')}</th>}
            </tr>
          </thead>
          <tbody>
            {list.data.items.map((g) => (
              <tr key={g.id} data-vm-group={g.name} data-id={g.id}>
                <td>{g.name}</td>
                <td>{g.description}</td>
                <td>
                  <code>{ruleText(g.rule)}</code>
                </td>
                <td class="num">{formatNumber(g.static_members ?? 0, l)}</td>
                <td class="num">
                  <a href={'/vms?group=' + encodeURIComponent(g.id)} data-members={g.members ?? 0} aria-label={t('groups.membersOf', { name: g.name, n: g.members ?? 0 })}>
                    {formatNumber(g.members ?? 0, l)}
                  </a>
                </td>
                {writable && (
                  <td>
                    <button type="button" class="btn btn-small" data-group-edit={g.id} onClick={() => setEditing(g)} aria-label={t('groups.edit', { name: g.name })}>
                      {t('groups.editShort')}
                    </button>{' '}
                    <button
                      type="button"
                      class="btn btn-small"
                      data-group-delete={g.id}
                      aria-label={t('groups.delete', { name: g.name })}
                      disabled={act.busy !== null}
                      onClick={() => {
                        if (confirm(t('groups.deleteConfirm', { name: g.name })))
                          void act.run('delete', async () => {
                            await api.vmGroupDelete(g.id);
                            list.reload();
                            return t('groups.deleted', { name: g.name });
                          });
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
                <td colSpan={writable ? 6 : 5} class="empty">
                  {t('groups.empty')}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
    </div>
  );
}
