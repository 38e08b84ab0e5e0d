import { useState } from 'preact/hooks';
import { ApiError, login, sessionEnded } from '../api';
import { errorText } from '../components/common';
import { LanguagePicker } from '../components/LanguagePicker';
import { locale, t } from '../i18n';
import { formatDuration } from '../lib/format';

/**
 * loginError turns a failed login into what the operator reads. The API
 * answers a wrong password and a locked account alike (it never says
 * which), so the message names both; too many attempts carry the wait.
 */
export function loginError(e: unknown): string {
  if (!(e instanceof ApiError)) return errorText(e);
  switch (e.code) {
    case 'AUTH_INVALID_CREDENTIALS':
      return t('login.error.invalid');
    case 'AUTH_RATE_LIMITED': {
      const s = Number(e.data?.retry_after_seconds);
      return t('login.error.rateLimited', { wait: formatDuration((Number.isFinite(s) && s > 0 ? s : 60) * 1000, locale.value) });
    }
    case 'VALIDATION_FAILED':
      return t('login.error.missing');
  }
  return errorText(e);
}

/** Why the previous session ended, when it did not end by logging out. */
function endedText(code: string | null): string | null {
  switch (code) {
    case null:
      return null;
    case 'AUTH_REFRESH_REUSED':
      return t('login.ended.reused');
    default:
      return t('login.ended.expired');
  }
}

export function Login() {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const ended = endedText(sessionEnded.value);

  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(username.trim(), password);
    } catch (err) {
      setError(loginError(err));
      setPassword('');
    } finally {
      setBusy(false);
    }
  }

  return (
    <main class="login" id="main">
      <form class="login-card" onSubmit={submit} aria-labelledby="login-title" noValidate>
        <div class="login-head">
          <h1 id="login-title">{t('login.title')}</h1>
          <LanguagePicker id="lang-login" />
        </div>
        <p class="muted">{t('login.subtitle')}</p>
        {ended && !error && (
          <p class="notice notice-warn" role="status" data-testid="session-ended">
            {ended}
          </p>
        )}
        {error && (
          <p class="notice notice-error" role="alert" data-testid="login-error">
            {error}
          </p>
        )}
        <label for="login-user">{t('login.username')}</label>
        <input
          id="login-user"
          name="username"
          autocomplete="username"
          required
          value={username}
          onInput={(e) => setUsername(e.currentTarget.value)}
          autoFocus
        />
        <label for="login-password">{t('login.password')}</label>
        <input
          id="login-password"
          name="password"
          type="password"
          autocomplete="current-password"
          required
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
        />
        <button type="submit" class="btn btn-primary" disabled={busy || !username || !password}>
          {busy ? t('login.busy') : t('login.submit')}
        </button>
      </form>
    </main>
  );
}
