import { useState } from 'preact/hooks';
import { api, ApiError, type Role, type User } from '../api';
import { ActionNotice, Badge, ErrorBox, Loading } from '../components/common';
import { EditError } from '../components/Escalation';
import { RoleEditor } from '../components/RoleEditor';
import { UserCreate } from '../components/UserCreate';
import { UserScope } from '../components/UserScope';
import { locale, t } from '../i18n';
import { useAction } from '../lib/action';
import { formatNumber, formatRelative } from '../lib/format';
import { useAsync, useNow } from '../lib/hooks';
import { can, me } from '../lib/me';
import { lockState } from '../lib/users';

const PAGE = 100;

function Scope({ u, groupNames }: { u: User; groupNames: Map<string, string> }) {
  const sites = u.scope.sites ?? [];
  const groups = u.scope.vm_groups ?? [];
  if (sites.length === 0 && groups.length === 0) return <span class="muted">{t('users.scopeAll')}</span>;
  return (
    <ul class="chips">
      {sites.map((s) => (
        <li key={'s' + s} class="chip" data-scope={s}>
          {t('users.scopeSite', { name: s })}
        </li>
      ))}
      {groups.map((g) => (
        <li key={'g' + g} class="chip" data-scope={groupNames.get(g) ?? g}>
          {t('users.scopeGroup', { name: groupNames.get(g) ?? g })}
        </li>
      ))}
    </ul>
  );
}

function Roles({ roles, reload }: { roles: Role[]; reload: () => void }) {
  const l = locale.value;
  const writable = can('role:write');
  const [editing, setEditing] = useState<Role | 'new' | null>(null);
  const act = useAction();
  return (
    <section class="card" aria-labelledby="roles-title">
      <h2 id="roles-title" class="card-title">
        {t('users.roles')}
      </h2>
      {writable && editing === null && (
        <p>
          <button type="button" class="btn btn-primary" data-testid="role-new" onClick={() => setEditing('new')}>
            {t('roles.new')}
          </button>
        </p>
      )}
      {editing !== null && (
        <RoleEditor
          key={editing === 'new' ? 'new' : editing.id}
          role={editing === 'new' ? null : editing}
          roles={roles}
          onDone={(saved) => {
            setEditing(null);
            if (saved) reload();
          }}
        />
      )}
      {act.error !== undefined ? <EditError error={act.error} /> : <ActionNotice error={undefined} done={act.done} />}
      <table class="table">
        <thead>
          <tr>
            <th scope="col">{t('users.role.name')}</th>
            <th scope="col">{t('users.role.description')}</th>
            <th scope="col">{t('roles.parents')}</th>
            <th scope="col" class="num">
              {t('users.role.permissions')}
            </th>
            <th scope="col" class="num">
              {t('users.role.users')}
            </th>
            {writable && <th scope="col">{t('alerts.col.actions')}</th>}
          </tr>
        </thead>
        <tbody>
          {roles.map((r) => (
            <tr key={r.id} data-role={r.name}>
              <th scope="row">
                {r.name} {r.builtin && <Badge tone="muted">{t('users.role.builtin')}</Badge>}
              </th>
              <td>{r.description}</td>
              <td data-parents={r.parents.join(' ')}>{r.parents.length ? r.parents.join(', ') : '–'}</td>
              <td class="num" title={(r.effective_permissions ?? r.permissions).join(', ')}>
                {formatNumber((r.effective_permissions ?? r.permissions).length, l)}
              </td>
              <td class="num">{formatNumber(r.users ?? 0, l)}</td>
              {writable && (
                <td>
                  {!r.builtin && (
                    <>
                      <button type="button" class="btn btn-small" data-role-edit={r.name} aria-label={t('roles.edit', { name: r.name })} onClick={() => setEditing(r)}>
                        {t('groups.editShort')}
                      </button>{' '}
                      <button
                        type="button"
                        class="btn btn-small"
                        data-role-delete={r.name}
                        aria-label={t('roles.delete', { name: r.name })}
                        disabled={act.busy !== null}
                        onClick={() => {
                          if (confirm(t('roles.deleteConfirm', { name: r.name })))
                            void act.run('delete', async () => {
                              await api.roleDelete(r.id);
                              reload();
                              return t('roles.deleted', { name: r.name });
                            });
                        }}
                      >
                        {t('action.delete')}
                      </button>
                    </>
                  )}
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export default function Users() {
  const [page, setPage] = useState(1);
  const users = useAsync((s) => api.users({ page, page_size: PAGE, sort: 'username' }, s), [page]);
  const roles = useAsync((s) => (can('role:read') ? api.roles(s).then((r) => r.items) : Promise.resolve(null)), []);
  const groupList = useAsync(
    (s) =>
      api.vmGroups(s).then(
        (g) => g.items,
        (e: unknown) => (e instanceof ApiError && e.status === 403 ? [] : Promise.reject(e)),
      ),
    [],
  );
  const groups = { data: groupList.data ? new Map(groupList.data.map((x) => [x.id, x.name])) : undefined };
  const scopeWritable = can('user:write');
  const sites = useAsync((s) => (scopeWritable ? api.sites(s).then((p) => p.items.map((x) => x.name)) : Promise.resolve([])), []);
  const [scoping, setScoping] = useState<User | null>(null);
  const [creating, setCreating] = useState(false);
  const act = useAction();
  const now = useNow();
  const lock = (u: User, on: boolean) => {
    if (on && !confirm(t('users.lockConfirm', { name: u.username }))) return;
    void act.run('lock', async () => {
      await api.userLock(u.id, on);
      users.reload();
      return t(on ? 'users.lockedDone' : 'users.unlockedDone', { name: u.username });
    });
  };
  const l = locale.value;
  const d = users.data;
  const pages = d ? Math.max(1, Math.ceil(d.total / PAGE)) : 1;
  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{t('users.title')}</h1>
        {d && <p class="muted">{t('users.total', { n: formatNumber(d.total, l) })}</p>}
      </div>
      {scopeWritable && !creating && (
        <p>
          <button type="button" class="btn btn-primary" data-testid="user-new" onClick={() => setCreating(true)}>
            {t('users.new')}
          </button>
        </p>
      )}
      {creating && (
        <UserCreate
          roles={roles.data ?? []}
          onDone={(saved) => {
            setCreating(false);
            if (saved) users.reload();
          }}
        />
      )}
      {act.error !== undefined ? <EditError error={act.error} /> : <ActionNotice error={undefined} done={act.done} />}
      {scoping && (
        <UserScope
          key={scoping.id}
          user={scoping}
          sites={sites.data ?? []}
          groups={groupList.data ?? []}
          onDone={(saved) => {
            setScoping(null);
            if (saved) users.reload();
          }}
        />
      )}
      {users.error !== undefined && <ErrorBox error={users.error} onRetry={users.reload} />}
      {!d && !users.error && <Loading />}
      {d && (
        <table class="table" aria-label={t('users.title')}>
          <thead>
            <tr>
              <th scope="col">{t('users.col.username')}</th>
              <th scope="col">{t('users.col.name')}</th>
              <th scope="col">{t('users.col.email')}</th>
              <th scope="col">{t('users.col.roles')}</th>
              <th scope="col">{t('users.col.scope')}</th>
              <th scope="col">{t('users.col.status')}</th>
              <th scope="col">{t('users.col.lastLogin')}</th>
            </tr>
          </thead>
          <tbody>
            {d.items.map((u) => (
              <tr key={u.id} data-user={u.username}>
                <th scope="row">{u.username}</th>
                <td>{u.display_name || '–'}</td>
                <td>{u.email}</td>
                <td>
                  <ul class="chips">
                    {u.roles.map((r) => (
                      <li key={r} class="chip">
                        {r}
                      </li>
                    ))}
                  </ul>
                </td>
                <td>
                  <Scope u={u} groupNames={groups.data ?? new Map()} />
                  {scopeWritable && (
                    <button type="button" class="btn btn-small" data-scope-edit={u.username} aria-label={t('scope.edit', { name: u.username })} onClick={() => setScoping(u)}>
                      {t('groups.editShort')}
                    </button>
                  )}
                </td>
                <td data-lock-state={lockState(u, now)}>
                  {lockState(u, now) === 'locked' ? (
                    <Badge tone="bad">{t('users.locked')}</Badge>
                  ) : lockState(u, now) === 'lockout' ? (
                    <Badge tone="warn">{t('users.lockedUntil', { when: formatRelative(u.locked_until!, now, l) })}</Badge>
                  ) : (
                    <Badge tone="ok">{t('users.active')}</Badge>
                  )}{' '}
                  {scopeWritable && u.id !== me.value?.id && (
                    <button
                      type="button"
                      class="btn btn-small"
                      data-lock={u.username}
                      disabled={act.busy !== null}
                      aria-label={t(lockState(u, now) === 'active' ? 'users.lock' : 'users.unlock', { name: u.username })}
                      onClick={() => lock(u, lockState(u, now) === 'active')}
                    >
                      {t(lockState(u, now) === 'active' ? 'users.lockShort' : 'users.unlockShort')}
                    </button>
                  )}
                </td>
                <td>{u.last_login_at ? <time dateTime={u.last_login_at}>{formatRelative(u.last_login_at, now, l)}</time> : t('users.never')}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {d && pages > 1 && (
        <nav class="pager" aria-label={t('pager.label')}>
          <button type="button" class="btn" disabled={page <= 1} onClick={() => setPage(page - 1)}>
            {t('pager.prev')}
          </button>
          <span>{t('pager.pageOf', { page: formatNumber(page, l), pages: formatNumber(pages, l) })}</span>
          <button type="button" class="btn" disabled={page >= pages} onClick={() => setPage(page + 1)}>
            {t('pager.next')}
          </button>
        </nav>
      )}
      {roles.error !== undefined && <ErrorBox error={roles.error} onRetry={roles.reload} />}
      {roles.data && <Roles roles={roles.data} reload={roles.reload} />}
    </div>
  );
}
