// Collector plugins of an agent, as GET /agents reports them from the
// agent's last heartbeat.
import type { AgentPlugin } from '../api';

export type PluginTone = 'ok' | 'warn' | 'bad' | 'muted';

/** pluginTone is the badge tone of a plugin host state. */
export function pluginTone(state: string): PluginTone {
  switch (state) {
    case 'running':
      return 'ok';
    case 'starting':
    case 'restarting':
      return 'warn';
    case 'refused':
      return 'bad';
    default:
      return 'muted';
  }
}

/**
 * pluginsNeedAttention counts the plugins an operator should look at: not
 * running, or whose last error is newer than their last successful collect.
 */
export function pluginsNeedAttention(plugins: readonly AgentPlugin[]): number {
  return plugins.filter((p) => {
    if (p.state !== 'running') return true;
    if (!p.last_error || !p.last_error_at) return false;
    return !p.last_collect || Date.parse(p.last_error_at) > Date.parse(p.last_collect);
  }).length;
}
