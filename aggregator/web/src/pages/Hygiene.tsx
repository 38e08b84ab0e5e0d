import { useEffect, useState } from 'preact/hooks';
import { api, type HygieneFinding } from '../api';
import { Badge, ErrorDetail, Loading } from '../components/common';
import { locale, t, tv } from '../i18n';
import { formatDateTime, formatDuration, formatNumber } from '../lib/format';
import { useAsync } from '../lib/hooks';
import {
  durationMS,
  HYGIENE_KINDS,
  HYGIENE_PAGE_SIZE,
  hygieneQuery,
  hygieneSearch,
  parseHygiene,
  POWERED_OFF_FORS,
  severityTone,
  SNAPSHOT_AGES,
  type HygieneState,
} from '../lib/hygiene';
import { navigate, search } from '../lib/router';

function go(s: HygieneState) {
  navigate('/hygiene' + hygieneSearch(s));
}

/** choices are the offered thresholds, plus the URL's own when it is another. */
function choices(list: readonly string[], current: string): string[] {
  return list.includes(current) ? [...list] : [current, ...list];
}

function Detail({ f }: { f: HygieneFinding }) {
  const l = locale.value;
  switch (f.kind) {
    case 'old_snapshot':
      return <>{t('hygiene.detail.snapshots', { n: formatNumber(f.snapshot_count, l) })}</>;
    case 'tools_not_running':
      return (
        <>
          {f.tools_version_status === 'guestToolsNotInstalled'
            ? tv('toolsVersion.', f.tools_version_status)
            : tv('tools.', f.tools_running_status || 'guestToolsNotRunning')}
        </>
      );
    case 'tools_outdated':
      return (
        <>
          {tv('toolsVersion.', f.tools_version_status)}
          {f.tools_version && <span class="muted"> {t('hygiene.detail.version', { v: f.tools_version })}</span>}
        </>
      );
    default:
      return <>{tv('power.', f.vm.power_state)}</>;
  }
}

function Since({ f }: { f: HygieneFinding }) {
  const l = locale.value;
  if (!f.since) return <>–</>;
  const age = formatDuration((f.age_seconds ?? 0) * 1000, l);
  return (
    <span title={f.since_first_seen ? t('hygiene.firstSeenHint') : undefined}>
      <time dateTime={f.since}>{formatDateTime(f.since, l)}</time>{' '}
      <span class="muted">({f.since_first_seen ? t('hygiene.ageAtLeast', { age }) : age})</span>
    </span>
  );
}

/** Hygiene: old snapshots, VMware Tools not running or outdated, VMs powered off for long; filters in the URL. */
export default function Hygiene() {
  const state = parseHygiene(search.value);
  const key = hygieneSearch(state);
  const rep = useAsync((s) => api.hygiene(hygieneQuery(state), s), [key], 300_000);
  const sites = useAsync((s) => api.sites(s).then((p) => p.items.map((x) => x.name)), []);
  const [q, setQ] = useState(state.q);
  useEffect(() => setQ(state.q), [search.value]);
  const l = locale.value;
  const d = rep.data;
  const pages = d ? Math.max(1, Math.ceil(d.total / HYGIENE_PAGE_SIZE)) : 1;
  const siteList = sites.data ?? [];
  const total = d ? Object.values(d.counts).reduce((a, b) => a + b, 0) : 0;
  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{t('hygiene.title')}</h1>
      </div>
      <p class="muted">{t('hygiene.hint')}</p>
      <nav class="subnav" aria-label={t('hygiene.kinds')}>
        <a href={'/hygiene' + hygieneSearch({ ...state, kind: '', page: 1 })} class="btn btn-small" aria-current={state.kind === '' ? 'page' : undefined}>
          {t('hygiene.all')} {d && <span data-count="all">({formatNumber(total, l)})</span>}
        </a>
        {HYGIENE_KINDS.map((k) => (
          <a
            key={k}
            href={'/hygiene' + hygieneSearch({ ...state, kind: k, page: 1 })}
            class="btn btn-small"
            aria-current={state.kind === k ? 'page' : undefined}
          >
            {t('hygiene.kind.' + k)} {d && <span data-count={k}>({formatNumber(d.counts[k] ?? 0, l)})</span>}
          </a>
        ))}
      </nav>
      <form
        class="filters"
        role="search"
        aria-label={t('hygiene.filters')}
        onSubmit={(e) => {
          e.preventDefault();
          go({ ...state, q: q.trim(), page: 1 });
        }}
      >
        <div class="filter filter-q">
          <label for="hy-q">{t('hygiene.filter.q')}</label>
          <input id="hy-q" type="search" maxLength={200} value={q} onInput={(e) => setQ(e.currentTarget.value)} />
        </div>
        <div class="filter">
          <label for="hy-site">{t('vms.filter.site')}</label>
          <select id="hy-site" value={state.site} onChange={(e) => go({ ...state, site: e.currentTarget.value, page: 1 })}>
            <option value="">{t('vms.filter.any')}</option>
            {(state.site && !siteList.includes(state.site) ? [state.site, ...siteList] : siteList).map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </div>
        <div class="filter">
          <label for="hy-snap">{t('hygiene.filter.snapshotAge')}</label>
          <select id="hy-snap" value={state.snapshotAge} onChange={(e) => go({ ...state, snapshotAge: e.currentTarget.value, page: 1 })}>
            {choices(SNAPSHOT_AGES, state.snapshotAge).map((v) => (
              <option key={v} value={v}>
                {formatDuration(durationMS(v) ?? 0, l)}
              </option>
            ))}
          </select>
        </div>
        <div class="filter">
          <label for="hy-off">{t('hygiene.filter.poweredOffFor')}</label>
          <select id="hy-off" value={state.poweredOffFor} onChange={(e) => go({ ...state, poweredOffFor: e.currentTarget.value, page: 1 })}>
            {choices(POWERED_OFF_FORS, state.poweredOffFor).map((v) => (
              <option key={v} value={v}>
                {formatDuration(durationMS(v) ?? 0, l)}
              </option>
            ))}
          </select>
        </div>
        <div class="filter-actions">
          <button type="submit" class="btn btn-primary">
            {t('action.apply')}
          </button>
        </div>
      </form>
      {rep.error !== undefined && <ErrorDetail error={rep.error} />}
      {!d && rep.error === undefined && <Loading />}
      {d && (
        <table class="table" aria-label={t('hygiene.title')}>
          <thead>
            <tr>
              <th scope="col">{t('alerts.col.severity')}</th>
              <th scope="col">{t('hygiene.col.finding')}</th>
              <th scope="col">{t('hygiene.col.vm')}</th>
              <th scope="col">{t('vm.site')}</th>
              <th scope="col">{t('vm.cluster')}</th>
              <th scope="col">{t('vm.host')}</th>
              <th scope="col">{t('hygiene.col.detail')}</th>
              <th scope="col">{t('hygiene.col.since')}</th>
            </tr>
          </thead>
          <tbody>
            {d.items.map((f) => (
              <tr key={f.kind + f.vm.id} data-finding={f.kind} data-vm={f.vm.name}>
                <td>
                  <Badge tone={severityTone(f.severity)}>{t('alerts.severity.' + f.severity)}</Badge>
                </td>
                <td>{t('hygiene.kind.' + f.kind)}</td>
                <td>
                  <a href={'/vms/' + encodeURIComponent(f.vm.id)}>{f.vm.name}</a>
                </td>
                <td>
                  <a href={'/sites/' + encodeURIComponent(f.vm.site)}>{f.vm.site}</a>
                </td>
                <td>{f.vm.cluster?.name || '–'}</td>
                <td>{f.vm.host?.name || '–'}</td>
                <td>
                  <Detail f={f} />
                </td>
                <td>
                  <Since f={f} />
                </td>
              </tr>
            ))}
            {d.items.length === 0 && (
              <tr>
                <td colSpan={8} class="empty">
                  {t('hygiene.empty')}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
      {d && pages > 1 && (
        <nav class="pager" aria-label={t('pager.label')}>
          <button type="button" class="btn" disabled={state.page <= 1} onClick={() => go({ ...state, page: state.page - 1 })}>
            {t('pager.prev')}
          </button>
          <span>{t('pager.pageOf', { page: formatNumber(state.page, l), pages: formatNumber(pages, l) })}</span>
          <button type="button" class="btn" disabled={state.page >= pages} onClick={() => go({ ...state, page: state.page + 1 })}>
            {t('pager.next')}
          </button>
        </nav>
      )}
    </div>
  );
}
