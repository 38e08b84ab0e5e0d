// The form that creates a user (POST /users): name, email, display name,
// initial password and roles. The API checks the password policy and
// refuses roles the caller could not grant (an escalation, shown as such).
import { useState } from 'preact/hooks';
import { api, ApiError, type Role } from '../api';
import { t } from '../i18n';
import { useAction } from '../lib/action';
import { emptyUserDraft, userCreateOf, type UserDraft } from '../lib/users';
import { EditError } from './Escalation';

interface Msg {
  field: string;
  text: string;
}

/** UserCreate creates a user; onDone(true) after it was created. */
export function UserCreate({ roles, onDone }: { roles: Role[]; onDone: (saved: boolean) => void }) {
  const [d, setD] = useState<UserDraft>(emptyUserDraft);
  const [msgs, setMsgs] = useState<Msg[]>([]);
  const act = useAction();
  const set = <K extends keyof UserDraft>(k: K, v: UserDraft[K]) => setD((x) => ({ ...x, [k]: v }));
  const msg = (f: string) => msgs.find((m) => m.field === f || m.field.startsWith(f + '['));
  const inv = (f: string) => (msg(f) ? { 'aria-invalid': true as const, 'aria-describedby': 'uc-err-' + f } : {});
  const err = (f: string) => {
    const m = msg(f);
    return m ? (
      <span class="field-error" id={'uc-err-' + f} data-field={f}>
        {m.text}
      </span>
    ) : null;
  };
  const save = async (e: Event) => {
    e.preventDefault();
    const { body, problems } = userCreateOf(d);
    setMsgs(problems.map((p) => ({ field: p.field, text: t(p.key) })));
    if (problems.length > 0) return;
    const ok = await act.run('create', async () => {
      try {
        await api.userCreate(body);
      } catch (x) {
        if (x instanceof ApiError) setMsgs(x.fields.map((f) => ({ field: f.field, text: f.message })));
        throw x;
      }
    });
    if (ok) onDone(true);
  };
  const text = (f: 'username' | 'email' | 'display_name', label: string, extra: Record<string, unknown> = {}) => (
    <div class="filter">
      <label for={'uc-' + f}>{label}</label>
      <input id={'uc-' + f} value={d[f]} {...extra} {...inv(f)} onInput={(e) => set(f, e.currentTarget.value)} />
      {err(f)}
    </div>
  );
  return (
    <form class="card form-card" aria-labelledby="uc-title" noValidate onSubmit={(e) => void save(e)} data-testid="user-form">
      <h2 class="card-title" id="uc-title">
        {t('users.new')}
      </h2>
      <div class="form-grid">
        {text('username', t('users.col.username'), { autoComplete: 'off', maxLength: 64, required: true })}
        {text('email', t('users.col.email'), { type: 'email', autoComplete: 'off', maxLength: 254 })}
        {text('display_name', t('users.col.name'), { maxLength: 128 })}
        <div class="filter">
          <label for="uc-password">{t('users.form.password')}</label>
          <input
            id="uc-password"
            type="password"
            autoComplete="new-password"
            value={d.password}
            required
            {...inv('password')}
            onInput={(e) => set('password', e.currentTarget.value)}
          />
          {err('password')}
        </div>
      </div>
      <fieldset>
        <legend>{t('users.col.roles')}</legend>
        {roles.map((r) => (
          <label key={r.id} class="filter-check" for={'uc-role-' + r.name}>
            <input
              id={'uc-role-' + r.name}
              type="checkbox"
              data-role-pick={r.name}
              checked={d.roles.includes(r.name)}
              onChange={(e) => set('roles', e.currentTarget.checked ? [...d.roles, r.name] : d.roles.filter((x) => x !== r.name))}
            />
            {r.name}
          </label>
        ))}
        {err('roles')}
      </fieldset>
      <p>
        <button type="submit" class="btn btn-primary" data-testid="user-create" disabled={act.busy !== null}>
          {t('users.create')}
        </button>{' '}
        <button type="button" class="btn" onClick={() => onDone(false)}>
          {t('action.cancel')}
        </button>
      </p>
      {act.error !== undefined && <EditError error={act.error} />}
    </form>
  );
}
