// The role editor: a role's name and description, the roles it inherits
// from (parents), and its own permissions, chosen on the tree of
// GET /permissions grouped by prefix; what the parents already give is
// marked as inherited.
import { useLayoutEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, type Role } from '../api';
import { t } from '../i18n';
import { useAction } from '../lib/action';
import { useAsync } from '../lib/hooks';
import { branchState, inheritedPermissions, parentChoices, permissionTree, toggleBranch, type PermissionBranch } from '../lib/roles';
import { Loading, ErrorBox } from './common';
import { EditError } from './Escalation';

function BranchBox({ b, chosen, onChange }: { b: PermissionBranch; chosen: Set<string>; onChange: (s: Set<string>) => void }) {
  const ref = useRef<HTMLInputElement>(null);
  const state = branchState(b, chosen);
  useLayoutEffect(() => {
    if (ref.current) ref.current.indeterminate = state === 'some';
  }, [state]);
  return (
    <input
      ref={ref}
      id={'re-b-' + b.prefix}
      type="checkbox"
      data-branch={b.prefix}
      checked={state === 'all'}
      onChange={() => onChange(toggleBranch(b, chosen))}
    />
  );
}

/** RoleEditor creates a role (role null) or replaces one's fields, parents and permissions; roles are every role, for the parents. */
export function RoleEditor({ role, roles, onDone }: { role: Role | null; roles: Role[]; onDone: (saved: boolean) => void }) {
  const catalog = useAsync((s) => api.permissions(s), []);
  const [name, setName] = useState(role?.name ?? '');
  const [description, setDescription] = useState(role?.description ?? '');
  const [chosen, setChosen] = useState(() => new Set(role?.permissions ?? []));
  const [parents, setParents] = useState(() => new Set(role?.parents ?? []));
  const choices = parentChoices(roles, role);
  const inherited = inheritedPermissions(roles, parents);
  const act = useAction();
  const fieldErr = (f: string) => {
    const e = act.error instanceof ApiError ? act.error.fields.find((x) => x.field === f || x.field.startsWith(f + '[')) : undefined;
    return e ? (
      <span class="field-error" id={'re-err-' + f} data-field={f}>
        {e.message}
      </span>
    ) : null;
  };
  const inv = (f: string) =>
    act.error instanceof ApiError && act.error.fields.some((x) => x.field === f) ? { 'aria-invalid': true as const, 'aria-describedby': 're-err-' + f } : {};
  const tree = catalog.data ? permissionTree(catalog.data.items.flatMap((g) => g.permissions.map((p) => p.name))) : [];
  const save = async (e: Event) => {
    e.preventDefault();
    const permissions = [...chosen].sort();
    const ok = await act.run('role', async () => {
      if (!role) {
        await api.roleCreate({ name: name.trim(), description: description.trim(), parents: [...parents].sort(), permissions });
        return;
      }
      await api.roleUpdate(role.id, { name: name.trim(), description: description.trim(), parents: [...parents].sort() });
      await api.rolePermissions(role.id, permissions);
    });
    if (ok) onDone(true);
  };
  return (
    <form class="card form-card" aria-labelledby="re-title" onSubmit={(e) => void save(e)} data-testid="role-form">
      <h2 class="card-title" id="re-title">
        {role ? t('roles.edit', { name: role.name }) : t('roles.new')}
      </h2>
      <div class="form-grid">
        <div class="filter">
          <label for="re-name">{t('users.role.name')}</label>
          <input id="re-name" value={name} maxLength={63} {...inv('name')} onInput={(e) => setName(e.currentTarget.value)} />
          {fieldErr('name')}
        </div>
        <div class="filter">
          <label for="re-desc">{t('users.role.description')}</label>
          <input id="re-desc" value={description} maxLength={512} {...inv('description')} onInput={(e) => setDescription(e.currentTarget.value)} />
          {fieldErr('description')}
        </div>
      </div>
      <fieldset data-testid="role-parents">
        <legend>{t('roles.parents')}</legend>
        <p class="muted">{t('roles.parentsHint')}</p>
        {choices.map((r) => (
          <label key={r.id} class="filter-check" for={'re-parent-' + r.name}>
            <input
              id={'re-parent-' + r.name}
              type="checkbox"
              data-parent={r.name}
              checked={parents.has(r.name)}
              onChange={(e) => {
                const s = new Set(parents);
                if (e.currentTarget.checked) s.add(r.name);
                else s.delete(r.name);
                setParents(s);
              }}
            />
            {r.name}
          </label>
        ))}
        {fieldErr('parents')}
      </fieldset>
      {catalog.error !== undefined && <ErrorBox error={catalog.error} onRetry={catalog.reload} />}
      {!catalog.data && catalog.error === undefined && <Loading />}
      <ul class="perm-tree" aria-label={t('users.role.permissions')}>
        {tree.map((b) => (
          <li key={b.prefix} data-prefix={b.prefix}>
            <span class="filter-check">
              <BranchBox b={b} chosen={chosen} onChange={setChosen} />
              <label for={'re-b-' + b.prefix}>
                <code>{b.prefix}</code>
              </label>
            </span>
            <ul>
              {b.permissions.map((p) => (
                <li key={p}>
                  <label class="filter-check" for={'re-p-' + p.replace(/[^a-z0-9]/gi, '-')}>
                    <input
                      id={'re-p-' + p.replace(/[^a-z0-9]/gi, '-')}
                      type="checkbox"
                      data-permission={p}
                      checked={chosen.has(p)}
                      onChange={(e) => {
                        const s = new Set(chosen);
                        if (e.currentTarget.checked) s.add(p);
                        else s.delete(p);
                        setChosen(s);
                      }}
                    />
                    <code>{p}</code>
                    {inherited.has(p) && !chosen.has(p) && (
                      <span class="muted" data-inherited={p}>
                        {t('roles.inherited')}
                      </span>
                    )}
                  </label>
                </li>
              ))}
            </ul>
          </li>
        ))}
      </ul>
      {fieldErr('permissions')}
      <p>
        <button type="submit" class="btn btn-primary" data-testid="role-save" disabled={act.busy !== null}>
          {role ? t('roles.save') : t('roles.create')}
        </button>{' '}
        <button type="button" class="btn" onClick={() => onDone(false)}>
          {t('action.cancel')}
        </button>
      </p>
      {act.error !== undefined && <EditError error={act.error} />}
    </form>
  );
}
