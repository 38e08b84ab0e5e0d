import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, type VM, type VMGroup } from '../api';
import { Badge, ErrorBox, Loading } from '../components/common';
import { VMBatch } from '../components/VMBatch';
import { VirtualRows } from '../components/VirtualRows';
import { locale, t, tv } from '../i18n';
import { formatDateTime, formatMemoryMB, formatMetric, formatNumber } from '../lib/format';
import { LATEST_METRICS, type LatestMetric, type LatestRow } from '../lib/latest';
import { useLatestValues } from '../lib/useLatest';
import { useAsync } from '../lib/hooks';
import { can } from '../lib/me';
import {
  PAGE_SIZES,
  parseVMList,
  POWER_STATES,
  toggleSort,
  TOOLS_STATES,
  VM_FILTERS,
  vmListQuery,
  vmListSearch,
  type VMFilterKey,
  type VMListState,
} from '../lib/filters';
import { navigate, search } from '../lib/router';

const ROW_HEIGHT = 36;

export function powerTone(p: string): 'ok' | 'muted' | 'warn' {
  return p === 'poweredOn' ? 'ok' : p === 'suspended' ? 'warn' : 'muted';
}

function go(s: VMListState, replace = false) {
  navigate('/vms' + vmListSearch(s), { replace });
}

const TEXT_FILTERS: VMFilterKey[] = ['datacenter', 'cluster', 'host', 'tag'];

function Filters({ state, sites, groups }: { state: VMListState; sites: string[]; groups: VMGroup[] | null }) {
  const [draft, setDraft] = useState(state.filters);
  useEffect(() => setDraft(state.filters), [search.value]);
  const apply = (f: VMListState['filters']) => go({ ...state, filters: f, page: 1 });
  const set = (k: VMFilterKey, v: string) => setDraft((d) => ({ ...d, [k]: v }));
  const select = (k: VMFilterKey, v: string) => apply({ ...draft, [k]: v });
  return (
    <form
      class="filters"
      role="search"
      aria-label={t('vms.filters')}
      onSubmit={(e) => {
        e.preventDefault();
        apply(draft);
      }}
    >
      <div class="filter filter-q">
        <label for="f-q">{t('vms.filter.q')}</label>
        <input id="f-q" type="search" value={draft.q ?? ''} placeholder={t('vms.filter.qHint')} onInput={(e) => set('q', e.currentTarget.value)} />
      </div>
      <div class="filter">
        <label for="f-site">{t('vms.filter.site')}</label>
        <select id="f-site" value={draft.site ?? ''} onChange={(e) => select('site', e.currentTarget.value)}>
          <option value="">{t('vms.filter.any')}</option>
          {(draft.site && !sites.includes(draft.site) ? [draft.site, ...sites] : sites).map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
      </div>
      <div class="filter">
        <label for="f-power">{t('vms.filter.power_state')}</label>
        <select id="f-power" value={draft.power_state ?? ''} onChange={(e) => select('power_state', e.currentTarget.value)}>
          <option value="">{t('vms.filter.any')}</option>
          {POWER_STATES.map((p) => (
            <option key={p} value={p}>
              {tv('power.', p)}
            </option>
          ))}
        </select>
      </div>
      <div class="filter">
        <label for="f-tools">{t('vms.filter.tools_status')}</label>
        <select id="f-tools" value={draft.tools_status ?? ''} onChange={(e) => select('tools_status', e.currentTarget.value)}>
          <option value="">{t('vms.filter.any')}</option>
          {TOOLS_STATES.map((p) => (
            <option key={p} value={p}>
              {tv('tools.', p)}
            </option>
          ))}
        </select>
      </div>
      {groups && (
        <div class="filter">
          <label for="f-group">{t('vms.filter.group')}</label>
          <select id="f-group" value={draft.group ?? ''} onChange={(e) => select('group', e.currentTarget.value)}>
            <option value="">{t('vms.filter.any')}</option>
            {groups.map((g) => (
              <option key={g.id} value={g.id}>
                {g.name}
              </option>
            ))}
          </select>
        </div>
      )}
      {TEXT_FILTERS.map((k) => (
        <div class="filter" key={k}>
          <label for={'f-' + k}>{t('vms.filter.' + k)}</label>
          <input id={'f-' + k} value={draft[k] ?? ''} onInput={(e) => set(k, e.currentTarget.value)} />
        </div>
      ))}
      <div class="filter-actions">
        <button type="submit" class="btn btn-primary">
          {t('action.apply')}
        </button>
        <button type="button" class="btn" onClick={() => apply({})} disabled={VM_FILTERS.every((k) => !state.filters[k])}>
          {t('action.clear')}
        </button>
      </div>
    </form>
  );
}

const COLUMNS: { key: string; sort?: string; cls?: string }[] = [
  { key: 'name', sort: 'name', cls: 'col-name' },
  { key: 'power', sort: 'power_state' },
  { key: 'tools' },
  { key: 'site', sort: 'site' },
  { key: 'cluster' },
  { key: 'host' },
  { key: 'guest' },
  { key: 'cpu', sort: 'num_cpu', cls: 'num' },
  { key: 'memory', sort: 'memory_mb', cls: 'num' },
  { key: 'snapshots', cls: 'num' },
  { key: 'cpuNow', cls: 'num' },
  { key: 'readyNow', cls: 'num' },
  { key: 'memNow', cls: 'num' },
];

/** LatestCell is one metric's newest value in the last 15 minutes: "…" while asked, "–" when there is none. */
function LatestCell({ row, metric }: { row: (LatestRow & { failed?: boolean }) | undefined; metric: LatestMetric }) {
  const l = locale.value;
  const v = row?.values[metric];
  return (
    <span role="cell" class="num" data-latest={metric} title={v ? formatDateTime(new Date(v.ts), l) : row?.failed ? t('vms.latestFailed') : undefined}>
      {v ? formatMetric(v.value, v.unit, l) : row ? '–' : '…'}
    </span>
  );
}

/** sortDir is how the list is sorted by a column, for its header's aria-sort. */
function sortDir(col: (typeof COLUMNS)[number], state: VMListState): 'ascending' | 'descending' | undefined {
  if (!col.sort) return undefined;
  return state.sort === col.sort ? 'ascending' : state.sort === '-' + col.sort ? 'descending' : undefined;
}

function SortHeader({ col, state }: { col: (typeof COLUMNS)[number]; state: VMListState }) {
  const label = t('vms.col.' + col.key);
  if (!col.sort) return <span>{label}</span>;
  const dir = sortDir(col, state);
  return (
    <button type="button" class="sort" onClick={() => go({ ...state, sort: toggleSort(state.sort, col.sort!), page: 1 })}>
      {label}
      <span aria-hidden="true">{dir === 'ascending' ? ' ▲' : dir === 'descending' ? ' ▼' : ''}</span>
    </button>
  );
}

/** Selection is the checked rows (id → name) when the caller may run batch actions. */
interface Selection {
  has: (id: string) => boolean;
  toggle: (vm: VM, on: boolean) => void;
}

function Row({ vm, sel, latest }: { vm: VM; sel: Selection | null; latest: (LatestRow & { failed?: boolean }) | undefined }) {
  const l = locale.value;
  return (
    <div class="vrow" role="row" data-vm={vm.id}>
      {sel && (
        <span role="cell" class="col-check">
          <input
            type="checkbox"
            checked={sel.has(vm.id)}
            aria-label={t('batch.select', { name: vm.name })}
            data-select={vm.id}
            onChange={(e) => sel.toggle(vm, e.currentTarget.checked)}
          />
        </span>
      )}
      <span role="cell" class="col-name">
        <a href={'/vms/' + encodeURIComponent(vm.id)}>{vm.name}</a>
      </span>
      <span role="cell">
        <Badge tone={powerTone(vm.power_state)}>{vm.power_state ? tv('power.', vm.power_state) : '–'}</Badge>
      </span>
      <span role="cell">{vm.tools_running_status ? tv('tools.', vm.tools_running_status) : '–'}</span>
      <span role="cell">{vm.site}</span>
      <span role="cell">{vm.cluster?.name ?? '–'}</span>
      <span role="cell">{vm.host?.name ?? '–'}</span>
      <span role="cell" title={vm.guest_os}>
        {vm.guest_hostname || vm.guest_ips[0] || '–'}
      </span>
      <span role="cell" class="num">
        {vm.num_cpu ?? '–'}
      </span>
      <span role="cell" class="num">
        {vm.memory_mb === null ? '–' : formatMemoryMB(vm.memory_mb, l)}
      </span>
      <span role="cell" class="num">
        {formatNumber(vm.snapshot_count, l)}
      </span>
      {LATEST_METRICS.map((m) => (
        <LatestCell key={m} row={latest} metric={m} />
      ))}
    </div>
  );
}

export default function VMList() {
  const state = parseVMList(search.value);
  const key = JSON.stringify(vmListQuery(state));
  const list = useAsync((s) => api.vms(vmListQuery(state), s), [key]);
  const sites = useAsync((s) => api.sites(s).then((p) => p.items.map((x) => x.name)), []);
  const groups = useAsync(
    (s) =>
      api.vmGroups(s).then(
        (g) => g.items,
        (e: unknown) => (e instanceof ApiError && e.status === 403 ? null : Promise.reject(e)),
      ),
    [],
  );
  const l = locale.value;
  const data = list.data;
  const latest = useLatestValues();
  const [selected, setSelected] = useState<Map<string, string>>(new Map());
  const sel: Selection | null = can('vm:write')
    ? {
        has: (id) => selected.has(id),
        toggle: (vm, on) => {
          const m = new Map(selected);
          if (on) m.set(vm.id, vm.name);
          else m.delete(vm.id);
          setSelected(m);
        },
      }
    : null;
  const allOnPage = !!data && data.items.length > 0 && data.items.every((v) => selected.has(v.id));
  const pages = data ? Math.max(1, Math.ceil(data.total / state.pageSize)) : 1;
  return (
    <div class="page page-wide">
      <div class="page-head">
        <h1>{t('vms.title')}</h1>
        {data && <p class="muted" data-testid="vm-total">{t('vms.total', { n: formatNumber(data.total, l) })}</p>}
      </div>
      <p class="muted">{t('vms.latestHint')}</p>
      <Filters state={state} sites={sites.data ?? []} groups={groups.data ?? null} />
      {list.error !== undefined && <ErrorBox error={list.error} onRetry={list.reload} />}
      {!data && !list.error && <Loading />}
      {sel && selected.size > 0 && <VMBatch selected={selected} groups={groups.data ?? []} onDone={list.reload} />}
      {data && (
        <div class={'vtable' + (sel ? ' selectable' : '')} role="table" aria-label={t('vms.title')} aria-rowcount={data.items.length} aria-busy={list.loading}>
          <div class="vrow vhead" role="row">
            {sel && (
              <span role="columnheader" class="col-check">
                <input
                  type="checkbox"
                  checked={allOnPage}
                  aria-label={t('batch.selectPage')}
                  data-testid="select-page"
                  onChange={(e) => {
                    const m = new Map(selected);
                    for (const v of data.items) {
                      if (e.currentTarget.checked) m.set(v.id, v.name);
                      else m.delete(v.id);
                    }
                    setSelected(m);
                  }}
                />
              </span>
            )}
            {COLUMNS.map((c) => (
              <span role="columnheader" key={c.key} class={c.cls} aria-sort={sortDir(c, state)}>
                <SortHeader col={c} state={state} />
              </span>
            ))}
          </div>
          {data.items.length === 0 ? (
            <p class="empty">{t('vms.empty')}</p>
          ) : (
            <VirtualRows items={data.items} rowHeight={ROW_HEIGHT} height={Math.min(data.items.length * ROW_HEIGHT, 640)} label={t('vms.rows')} render={(vm) => <Row key={vm.id} vm={vm} sel={sel} latest={latest.rows.get(vm.id)} />}
              onRange={(first, last) => latest.show(data.items.slice(first, last).map((v) => v.id))}
            />
          )}
        </div>
      )}
      {data && (
        <nav class="pager" aria-label={t('pager.label')}>
          <button type="button" class="btn" disabled={state.page <= 1} onClick={() => go({ ...state, page: state.page - 1 })}>
            {t('pager.prev')}
          </button>
          <span>{t('pager.pageOf', { page: formatNumber(state.page, l), pages: formatNumber(pages, l) })}</span>
          <button type="button" class="btn" disabled={state.page >= pages} onClick={() => go({ ...state, page: state.page + 1 })}>
            {t('pager.next')}
          </button>
          <label for="page-size">{t('pager.size')}</label>
          <select id="page-size" value={String(state.pageSize)} onChange={(e) => go({ ...state, pageSize: Number(e.currentTarget.value), page: 1 })}>
            {PAGE_SIZES.map((n) => (
              <option key={n} value={String(n)}>
                {formatNumber(n, l)}
              </option>
            ))}
          </select>
        </nav>
      )}
    </div>
  );
}
