import { useState } from 'preact/hooks';
import { api, ApiError, type Role, type User } from '../api';
import { Badge, ErrorBox, Loading } from '../components/common';
import { locale, t } from '../i18n';
import { formatNumber, formatRelative } from '../lib/format';
import { useAsync, useNow } from '../lib/hooks';
import { can } from '../lib/me';

const PAGE = 100;

function Scope({ u, groupNames }: { u: User; groupNames: Map<string, string> }) {
  const sites = u.scope.sites ?? [];
  const groups = u.scope.vm_groups ?? [];
  if (sites.length === 0 && groups.length === 0) return <span class="muted">{t('users.scopeAll')}</span>;
  return (
    <ul class="chips">
      {sites.map((s) => (
        <li key={'s' + s} class="chip">
          {t('users.scopeSite', { name: s })}
        </li>
      ))}
      {groups.map((g) => (
        <li key={'g' + g} class="chip">
          {t('users.scopeGroup', { name: groupNames.get(g) ?? g })}
        </li>
      ))}
    </ul>
  );
}

function Roles({ roles }: { roles: Role[] }) {
  const l = locale.value;
  return (
    <section class="card" aria-labelledby="roles-title">
      <h2 id="roles-title" class="card-title">
        {t('users.roles')}
      </h2>
      <table class="table">
        <thead>
          <tr>
            <th scope="col">{t('users.role.name')}</th>
            <th scope="col">{t('users.role.description')}</th>
            <th scope="col" class="num">
              {t('users.role.permissions')}
            </th>
            <th scope="col" class="num">
              {t('users.role.users')}
            </th>
          </tr>
        </thead>
        <tbody>
          {roles.map((r) => (
            <tr key={r.id} data-role={r.name}>
              <th scope="row">
                {r.name} {r.builtin && <Badge tone="muted">{t('users.role.builtin')}</Badge>}
              </th>
              <td>{r.description}</td>
              <td class="num" title={(r.effective_permissions ?? r.permissions).join(', ')}>
                {formatNumber((r.effective_permissions ?? r.permissions).length, l)}
              </td>
              <td class="num">{formatNumber(r.users ?? 0, l)}</td>
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
  const groups = useAsync(
    (s) =>
      api.vmGroups(s).then(
        (g) => new Map(g.items.map((x) => [x.id, x.name])),
        (e: unknown) => (e instanceof ApiError && e.status === 403 ? new Map<string, string>() : Promise.reject(e)),
      ),
    [],
  );
  const now = useNow();
  const l = locale.value;
  const d = users.data;
  const pages = d ? Math.max(1, Math.ceil(d.total / PAGE)) : 1;
  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{t('users.title')}</h1>
        {d && <p class="muted">{t('users.total', { n: formatNumber(d.total, l) })}</p>}
      </div>
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
                </td>
                <td>
                  {u.locked ? (
                    <Badge tone="bad">{t('users.locked')}</Badge>
                  ) : u.locked_until && Date.parse(u.locked_until) > now.getTime() ? (
                    <Badge tone="warn">{t('users.lockedUntil', { when: formatRelative(u.locked_until, now, l) })}</Badge>
                  ) : (
                    <Badge tone="ok">{t('users.active')}</Badge>
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
      {roles.data && <Roles roles={roles.data} />}
    </div>
  );
}
