import { useEffect, useState } from 'preact/hooks';
import { api, type AlertPreview } from '../api';
import { AlertsNav } from '../components/AlertsNav';
import { ActionNotice, Card, ErrorBox, ErrorDetail, Loading } from '../components/common';
import { locale, t } from '../i18n';
import { useAction } from '../lib/action';
import { AGGS, draftOf, emptyCondition, ENTITY_KINDS, newDraft, OPS, ruleOf, previewable, SEVERITIES, stateMetricsOf, type ConditionDraft, type FieldProblem, type RuleDraft } from '../lib/alerts';
import { formatDateTime, formatNumber } from '../lib/format';
import { useAsync } from '../lib/hooks';
import { can } from '../lib/me';
import { navigate } from '../lib/router';

function Problem({ field, problems }: { field: string; problems: FieldProblem[] }) {
  const p = problems.find((x) => x.field === field);
  return p ? (
    <span class="field-error" id={'err-' + field.replace(/[^a-z0-9]/gi, '-')} data-field={field}>
      {t(p.key)}
    </span>
  ) : null;
}

/** The rule editor: a rule's fields, a preview against stored data, save. */
export default function RuleEditor({ params }: { params: Record<string, string> }) {
  const id = params.id === 'new' ? '' : (params.id ?? '');
  const existing = useAsync((s) => (id ? api.rule(id, s) : Promise.resolve(null)), [id]);
  const catalog = useAsync((s) => api.metricCatalog(s), []);
  const channels = useAsync((s) => (can('alert:write') ? api.channels(s) : Promise.resolve({ items: [] })), []);
  const [d, setD] = useState<RuleDraft | null>(id ? null : newDraft());
  const [problems, setProblems] = useState<FieldProblem[]>([]);
  const [preview, setPreview] = useState<AlertPreview | null>(null);
  const act = useAction();
  const l = locale.value;
  useEffect(() => {
    if (existing.data) setD(draftOf(existing.data));
  }, [existing.data]);
  if (existing.error !== undefined) return <ErrorBox error={existing.error} onRetry={existing.reload} />;
  if (!d) return <Loading />;
  const set = (p: Partial<RuleDraft>) => setD({ ...d, ...p });
  const setCond = (i: number, p: Partial<ConditionDraft>) => set({ conditions: d.conditions.map((c, j) => (j === i ? { ...c, ...p } : c)) });
  const metrics = [...(catalog.data?.items ?? []).filter((m) => m.entity_kinds.includes(d.entity_kind)).map((m) => m.name), ...stateMetricsOf(d.entity_kind)];
  const invalid = (f: string) => problems.some((p) => p.field === f);

  function checked() {
    const r = ruleOf(d!);
    setProblems(r.problems);
    return r.problems.length === 0 ? r.rule : null;
  }
  async function runPreview() {
    const rule = checked();
    if (!rule) return;
    setPreview(null);
    await act.run('preview', async () => setPreview(await api.rulePreview(rule)));
  }
  async function save(e: Event) {
    e.preventDefault();
    const rule = checked();
    if (!rule) return;
    const ok = await act.run('save', async () => {
      if (id) await api.ruleUpdate(id, rule);
      else await api.ruleCreate(rule);
    });
    if (ok) navigate('/alerts/rules');
  }

  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{id ? t('rules.editTitle', { name: existing.data?.name ?? '' }) : t('rules.newTitle')}</h1>
      </div>
      <AlertsNav current="/alerts/rules" />
      <form class="rule-form" onSubmit={(e) => void save(e)} aria-label={t('rules.form')}>
        <div class="form-grid">
          <div class="filter">
            <label for="r-name">{t('rules.name')}</label>
            <input id="r-name" value={d.name} maxLength={200} aria-invalid={invalid('name')} onInput={(e) => set({ name: e.currentTarget.value })} />
            <Problem field="name" problems={problems} />
          </div>
          <div class="filter">
            <label for="r-kind">{t('rules.kind')}</label>
            <select id="r-kind" value={d.entity_kind} onChange={(e) => set({ entity_kind: e.currentTarget.value })}>
              {ENTITY_KINDS.map((k) => (
                <option key={k} value={k}>
                  {t('kind.' + k)}
                </option>
              ))}
            </select>
          </div>
          <div class="filter">
            <label for="r-sev">{t('alerts.col.severity')}</label>
            <select id="r-sev" value={d.severity} onChange={(e) => set({ severity: e.currentTarget.value })}>
              {SEVERITIES.map((s) => (
                <option key={s} value={s}>
                  {t('alerts.severity.' + s)}
                </option>
              ))}
            </select>
          </div>
          <div class="filter">
            <label for="r-match">{t('rules.match')}</label>
            <select id="r-match" value={d.match} onChange={(e) => set({ match: e.currentTarget.value })}>
              <option value="all">{t('rules.match.all')}</option>
              <option value="any">{t('rules.match.any')}</option>
            </select>
          </div>
          <div class="filter filter-check">
            <input id="r-enabled" type="checkbox" checked={d.enabled} onChange={(e) => set({ enabled: e.currentTarget.checked })} />
            <label for="r-enabled">{t('rules.enabled')}</label>
          </div>
        </div>
        <div class="filter">
          <label for="r-desc">{t('rules.description')}</label>
          <input id="r-desc" value={d.description} maxLength={1000} onInput={(e) => set({ description: e.currentTarget.value })} />
        </div>
        <fieldset class="conditions">
          <legend>{t('rules.conditions')}</legend>
          <datalist id="r-metrics">
            {metrics.map((m) => (
              <option key={m} value={m} />
            ))}
          </datalist>
          <Problem field="conditions" problems={problems} />
          {d.conditions.map((c, i) => (
            <div class="form-grid condition" key={i} data-condition={i}>
              <div class="filter">
                <label for={`c${i}-metric`}>{t('rules.metric')}</label>
                <input id={`c${i}-metric`} list="r-metrics" value={c.metric} aria-invalid={invalid(`conditions[${i}].metric`)} onInput={(e) => setCond(i, { metric: e.currentTarget.value })} />
                <Problem field={`conditions[${i}].metric`} problems={problems} />
              </div>
              <div class="filter">
                <label for={`c${i}-agg`}>{t('rules.agg')}</label>
                <select id={`c${i}-agg`} value={c.agg} onChange={(e) => setCond(i, { agg: e.currentTarget.value })}>
                  {AGGS.map((a) => (
                    <option key={a} value={a}>
                      {t('rules.agg.' + a)}
                    </option>
                  ))}
                </select>
              </div>
              <div class="filter">
                <label for={`c${i}-window`}>{t('rules.window')}</label>
                <input id={`c${i}-window`} value={c.window} size={6} aria-invalid={invalid(`conditions[${i}].window`)} onInput={(e) => setCond(i, { window: e.currentTarget.value })} />
                <Problem field={`conditions[${i}].window`} problems={problems} />
              </div>
              <div class="filter">
                <label for={`c${i}-op`}>{t('rules.op')}</label>
                <select id={`c${i}-op`} value={c.op} onChange={(e) => setCond(i, { op: e.currentTarget.value })}>
                  {OPS.map((o) => (
                    <option key={o} value={o}>
                      {o}
                    </option>
                  ))}
                </select>
              </div>
              <div class="filter">
                <label for={`c${i}-th`}>{t('rules.threshold')}</label>
                <input id={`c${i}-th`} inputMode="decimal" size={8} value={c.threshold} aria-invalid={invalid(`conditions[${i}].threshold`)} onInput={(e) => setCond(i, { threshold: e.currentTarget.value })} />
                <Problem field={`conditions[${i}].threshold`} problems={problems} />
              </div>
              <div class="filter">
                <label for={`c${i}-clear`}>{t('rules.clear')}</label>
                <input id={`c${i}-clear`} inputMode="decimal" size={8} value={c.clear} aria-invalid={invalid(`conditions[${i}].clear_threshold`)} onInput={(e) => setCond(i, { clear: e.currentTarget.value })} />
                <Problem field={`conditions[${i}].clear_threshold`} problems={problems} />
              </div>
              <div class="filter-actions">
                <button type="button" class="btn btn-small" onClick={() => set({ conditions: d.conditions.filter((_, j) => j !== i) })}>
                  {t('rules.removeCondition')}
                </button>
              </div>
            </div>
          ))}
          <button type="button" class="btn btn-small" onClick={() => set({ conditions: [...d.conditions, emptyCondition()] })}>
            {t('rules.addCondition')}
          </button>
        </fieldset>
        <div class="form-grid">
          {(['for', 'keep_firing_for', 'repeat_interval'] as const).map((f) => (
            <div class="filter" key={f}>
              <label for={'r-' + f}>{t('rules.' + f)}</label>
              <input id={'r-' + f} value={d[f]} size={8} placeholder={t('rules.durationHint')} aria-invalid={invalid(f)} onInput={(e) => set({ [f]: e.currentTarget.value })} />
              <Problem field={f} problems={problems} />
            </div>
          ))}
        </div>
        <div class="form-grid">
          {(['sites', 'entities', 'tags'] as const).map((f) => (
            <div class="filter" key={f}>
              <label for={'r-' + f}>{t('rules.scope.' + f)}</label>
              <input id={'r-' + f} value={d[f]} placeholder={t(f === 'entities' && d.entity_kind === 'vcenter' ? 'rules.listHint.vcenter' : 'rules.listHint')} onInput={(e) => set({ [f]: e.currentTarget.value })} />
            </div>
          ))}
        </div>
        <div class="filter">
          <label for="r-summary">{t('rules.summary')}</label>
          <input id="r-summary" value={d.summary} placeholder={t('rules.summaryHint')} onInput={(e) => set({ summary: e.currentTarget.value })} />
        </div>
        {(channels.data?.items.length ?? 0) > 0 && (
          <fieldset>
            <legend>{t('rules.channels')}</legend>
            {channels.data!.items.map((c) => (
              <span class="filter-check" key={c.id}>
                <input
                  id={'r-ch-' + c.id}
                  type="checkbox"
                  checked={d.channels.includes(c.id)}
                  onChange={(e) => set({ channels: e.currentTarget.checked ? [...d.channels, c.id] : d.channels.filter((x) => x !== c.id) })}
                />
                <label for={'r-ch-' + c.id}>{c.name}</label>
              </span>
            ))}
          </fieldset>
        )}
        <p class="filter-actions">
          <button
            type="button"
            class="btn"
            disabled={act.busy !== null || !previewable(d.entity_kind)}
            aria-describedby={previewable(d.entity_kind) ? undefined : 'r-no-preview'}
            onClick={() => void runPreview()}
            data-testid="rule-preview"
          >
            {t('rules.preview')}
          </button>
          {can('alert:write') && (
            <button type="submit" class="btn btn-primary" disabled={act.busy !== null}>
              {t('rules.save')}
            </button>
          )}
          {act.busy === 'preview' && <span role="status">{t('state.loading')}</span>}
        </p>
        {!previewable(d.entity_kind) && (
          <p class="muted" id="r-no-preview" data-testid="rule-no-preview">
            {t('rules.previewHeartbeat')}
          </p>
        )}
      </form>
      {act.error !== undefined ? <ErrorDetail error={act.error} /> : <ActionNotice error={undefined} done={act.done} />}
      {preview && (
        <Card title={t('rules.previewTitle')}>
          <p data-testid="preview-summary" data-fired={preview.fired}>
            {t('rules.previewSummary', {
              fired: formatNumber(preview.fired, l),
              entities: formatNumber(preview.entities_evaluated, l),
              samples: formatNumber(preview.samples, l),
              from: formatDateTime(preview.from, l),
              to: formatDateTime(preview.to, l),
            })}
            {preview.truncated && ' ' + t('rules.previewTruncated')}
          </p>
          {preview.items.length > 0 && (
            <table class="table mini" aria-label={t('rules.previewTitle')}>
              <thead>
                <tr>
                  <th scope="col">{t('alerts.col.entity')}</th>
                  <th scope="col">{t('alerts.col.site')}</th>
                  <th scope="col">{t('rules.previewFirings')}</th>
                </tr>
              </thead>
              <tbody>
                {preview.items.map((it) => (
                  <tr key={it.entity_id}>
                    <td>{it.entity_name || it.entity_id}</td>
                    <td>{it.site}</td>
                    <td>
                      {it.firings.map((f) => (
                        <div key={f.starts_at}>
                          {formatDateTime(f.starts_at, l)} – {f.ends_at ? formatDateTime(f.ends_at, l) : t('rules.stillFiring')} ({formatNumber(f.value, l, 2)})
                        </div>
                      ))}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Card>
      )}
    </div>
  );
}
