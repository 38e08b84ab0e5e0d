// The System page's form for the collection settings pushed to agents
// (PUT /system/settings, group collection): the intervals and the counters
// per entity kind; an empty field leaves each agent's own configuration.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, type Settings } from '../api';
import { locale, t } from '../i18n';
import { useAction } from '../lib/action';
import { COUNTER_KINDS, collectionDraftOf, collectionInputOf, INTERVALS, type CollectionDraft } from '../lib/collection';
import { formatNumber } from '../lib/format';
import { ActionNotice } from './common';

/** CollectionForm edits the collection group of the settings s; onSaved after the API took a change. */
export function CollectionForm({ s, onSaved }: { s: Settings; onSaved: () => void }) {
  const cur = s.collection;
  const [d, setD] = useState<CollectionDraft>(() => collectionDraftOf(cur));
  useEffect(() => setD(collectionDraftOf(cur)), [cur]);
  const act = useAction();
  const l = locale.value;
  const fieldErr = (f: string) => {
    const e = act.error instanceof ApiError ? act.error.fields.find((x) => x.field === 'collection.' + f || x.field.startsWith('collection.' + f + '[') || x.field.startsWith('collection.' + f + '.')) : undefined;
    return e ? (
      <span class="field-error" id={'col-err-' + f} data-field={'collection.' + f}>
        {e.message}
      </span>
    ) : null;
  };
  const inv = (f: string) => (fieldErr(f) ? { 'aria-invalid': true as const, 'aria-describedby': 'col-err-' + f } : {});
  return (
    <form
      class="card form-card"
      aria-labelledby="col-title"
      data-testid="collection-form"
      onSubmit={(e) => {
        e.preventDefault();
        const body = collectionInputOf(d, cur);
        void act
          .run('collection', async () => {
            if (Object.keys(body).length === 0) return t('system.collection.unchanged');
            await api.settingsCollection(body);
            onSaved();
            return t('system.saved');
          });
      }}
    >
      <h2 class="card-title" id="col-title">
        {t('system.collection')}
      </h2>
      <p class="muted">
        {t('system.collection.hint')}{' '}
        <span data-testid="collection-revision" data-revision={cur?.revision ?? 0}>
          {cur && cur.revision > 0 ? t('system.collection.revision', { n: formatNumber(cur.revision, l) }) : t('system.collection.agentsOwn')}
        </span>
      </p>
      <div class="form-grid">
        {INTERVALS.map((f) => (
          <div class="filter" key={f}>
            <label for={'col-' + f}>{t('system.collection.' + f)}</label>
            <input
              id={'col-' + f}
              size={8}
              value={d[f]}
              placeholder={t('system.collection.agentDefault')}
              {...inv(f)}
              onInput={(e) => setD({ ...d, [f]: e.currentTarget.value })}
            />
            {fieldErr(f)}
          </div>
        ))}
      </div>
      <div class="form-grid">
        {COUNTER_KINDS.map((k) => (
          <div class="filter" key={k}>
            <label for={'col-counters-' + k}>{t('system.collection.counters', { kind: t('system.collection.kind.' + k) })}</label>
            <textarea
              id={'col-counters-' + k}
              rows={4}
              class="mono"
              value={d.counters[k] ?? ''}
              placeholder={t('system.collection.agentDefault')}
              {...inv('counters.' + k)}
              onInput={(e) => setD({ ...d, counters: { ...d.counters, [k]: e.currentTarget.value } })}
            />
            {fieldErr('counters.' + k)}
          </div>
        ))}
      </div>
      <p>
        <button type="submit" class="btn btn-primary" data-testid="collection-save" disabled={act.busy !== null}>
          {t('system.save')}
        </button>
      </p>
      <ActionNotice error={act.error} done={act.done} />
    </form>
  );
}
