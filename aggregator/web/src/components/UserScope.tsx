// The data-scope editor of a user (PUT /users/{id}/scope): the sites and
// VM groups it may see; none of either means every site.
import { useState } from 'preact/hooks';
import { api, type User, type VMGroup } from '../api';
import { t } from '../i18n';
import { useAction } from '../lib/action';
import { scopeBody } from '../lib/roles';
import { EditError } from './Escalation';

export function UserScope({ user, sites, groups, onDone }: { user: User; sites: string[]; groups: VMGroup[]; onDone: (saved: boolean) => void }) {
  const [s, setS] = useState(() => new Set(user.scope.sites ?? []));
  const [g, setG] = useState(() => new Set(user.scope.vm_groups ?? []));
  const act = useAction();
  const flip = (set: Set<string>, v: string, on: boolean) => {
    const out = new Set(set);
    if (on) out.add(v);
    else out.delete(v);
    return out;
  };
  const save = async (e: Event) => {
    e.preventDefault();
    if (await act.run('scope', async () => void (await api.userScope(user.id, scopeBody(s, g))))) onDone(true);
  };
  return (
    <form class="card form-card" aria-labelledby="us-title" onSubmit={(e) => void save(e)} data-testid="scope-form">
      <h2 class="card-title" id="us-title">
        {t('scope.title', { name: user.username })}
      </h2>
      <p class="muted">{t('scope.hint')}</p>
      <fieldset>
        <legend>{t('scope.sites')}</legend>
        {sites.map((x, i) => (
          <label key={x} class="filter-check" for={'us-s-' + i}>
            <input id={'us-s-' + i} type="checkbox" data-scope-site={x} checked={s.has(x)} onChange={(e) => setS(flip(s, x, e.currentTarget.checked))} />
            {x}
          </label>
        ))}
      </fieldset>
      <fieldset>
        <legend>{t('scope.groups')}</legend>
        {groups.length === 0 && <p class="muted">{t('groups.empty')}</p>}
        {groups.map((x, i) => (
          <label key={x.id} class="filter-check" for={'us-g-' + i}>
            <input id={'us-g-' + i} type="checkbox" data-scope-group={x.id} checked={g.has(x.id)} onChange={(e) => setG(flip(g, x.id, e.currentTarget.checked))} />
            {x.name}
          </label>
        ))}
      </fieldset>
      <p>
        <button type="submit" class="btn btn-primary" data-testid="scope-save" disabled={act.busy !== null}>
          {t('scope.save')}
        </button>{' '}
        <button type="button" class="btn" onClick={() => onDone(false)}>
          {t('action.cancel')}
        </button>
      </p>
      {act.error !== undefined && <EditError error={act.error} />}
    </form>
  );
}
