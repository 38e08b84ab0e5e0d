import type { AgentPlugin } from '../api';
import { locale, t, tv } from '../i18n';
import { formatNumber, formatRelative } from '../lib/format';
import { pluginTone } from '../lib/plugins';
import { Badge } from './common';

/** PluginBadges is the compact form: one badge per plugin, its state; the last error as a title. */
export function PluginBadges({ plugins }: { plugins: readonly AgentPlugin[] | null | undefined }) {
  if (!plugins?.length) return <span class="muted">{t('plugins.none')}</span>;
  return (
    <ul class="chips">
      {plugins.map((p) => (
        <li key={p.name} data-plugin={p.name} data-plugin-state={p.state} title={p.last_error || undefined}>
          <Badge tone={pluginTone(p.state)}>
            {p.name} · {tv('plugins.state.', p.state)}
          </Badge>
          {p.restarts > 0 && <span class="muted"> {t('plugins.restartsN', { n: formatNumber(p.restarts, locale.value) })}</span>}
        </li>
      ))}
    </ul>
  );
}

/** PluginTable is the full form: version, state, restarts, collects, last collect and last error of each plugin. */
export function PluginTable({ plugins, now, caption }: { plugins: readonly AgentPlugin[] | null | undefined; now: Date; caption: string }) {
  const l = locale.value;
  if (!plugins?.length) return <p class="muted">{t('plugins.none')}</p>;
  return (
    <table class="mini">
      <caption>{caption}</caption>
      <thead>
        <tr>
          <th scope="col">{t('plugins.name')}</th>
          <th scope="col">{t('alerts.col.state')}</th>
          <th scope="col" class="num">
            {t('plugins.restarts')}
          </th>
          <th scope="col" class="num">
            {t('plugins.collects')}
          </th>
          <th scope="col">{t('plugins.lastCollect')}</th>
          <th scope="col">{t('plugins.lastError')}</th>
        </tr>
      </thead>
      <tbody>
        {plugins.map((p) => (
          <tr key={p.name} data-plugin={p.name} data-plugin-state={p.state}>
            <td>
              {p.name} <span class="muted">{p.version}</span>
            </td>
            <td>
              <Badge tone={pluginTone(p.state)}>{tv('plugins.state.', p.state)}</Badge>
            </td>
            <td class="num">{formatNumber(p.restarts, l)}</td>
            <td class="num">
              {formatNumber(p.collects, l)}
              {p.failures > 0 && <span class="muted"> {t('plugins.failuresN', { n: formatNumber(p.failures, l) })}</span>}
            </td>
            <td>{p.last_collect ? formatRelative(p.last_collect, now, l) : t('site.never')}</td>
            <td>
              {p.last_error ? (
                <>
                  {p.last_error}
                  {p.last_error_at && <span class="muted"> ({formatRelative(p.last_error_at, now, l)})</span>}
                </>
              ) : (
                '–'
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
