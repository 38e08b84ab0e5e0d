import { ApiError } from '../api';
import { t } from '../i18n';
import { escalationOf } from '../lib/roles';
import { ErrorDetail } from './common';

/** EditError is the API's refusal of a change: its field errors, and for an escalation what the caller lacks. */
export function EditError({ error }: { error: unknown }) {
  const esc = error instanceof ApiError ? escalationOf(error.code, error.data) : null;
  return (
    <>
      <ErrorDetail error={error} />
      {esc && (
        <div class="notice notice-error" data-testid="escalation">
          {esc.missing.length > 0 && (
            <p>
              {t('escalation.missing')}{' '}
              {esc.missing.map((p) => (
                <code key={p} class="chip" data-missing={p}>
                  {p}
                </code>
              ))}
            </p>
          )}
          {esc.scope && <p data-scope-exceeded="true">{t('escalation.scope')}</p>}
          {esc.reason && <p data-reason={esc.reason}>{t('escalation.reason.' + esc.reason)}</p>}
        </div>
      )}
    </>
  );
}
