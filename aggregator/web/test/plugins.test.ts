import { describe, expect, it } from 'vitest';
import type { AgentPlugin } from '../src/api';
import { pluginsNeedAttention, pluginTone } from '../src/lib/plugins';

const plugin = (p: Partial<AgentPlugin>): AgentPlugin => ({
  name: 'promexec',
  version: '1.0.0',
  state: 'running',
  restarts: 0,
  last_error: '',
  last_error_at: null,
  last_collect: '2026-12-03T10:00:00Z',
  collects: 10,
  failures: 0,
  samples: 100,
  ...p,
});

describe('collector plugins', () => {
  it('tones each plugin host state', () => {
    expect(pluginTone('running')).toBe('ok');
    expect(pluginTone('starting')).toBe('warn');
    expect(pluginTone('restarting')).toBe('warn');
    expect(pluginTone('refused')).toBe('bad');
    expect(pluginTone('stopped')).toBe('muted');
    expect(pluginTone('something-new')).toBe('muted');
  });
  it('counts plugins that are down or failing since their last collect', () => {
    expect(pluginsNeedAttention([])).toBe(0);
    expect(pluginsNeedAttention([plugin({})])).toBe(0);
    // An old error, collected fine since.
    expect(pluginsNeedAttention([plugin({ last_error: 'timeout', last_error_at: '2026-12-03T09:00:00Z' })])).toBe(0);
    // A fresh error.
    expect(pluginsNeedAttention([plugin({ last_error: 'timeout', last_error_at: '2026-12-03T11:00:00Z' })])).toBe(1);
    // Never collected, failing.
    expect(pluginsNeedAttention([plugin({ last_error: 'exec: not found', last_error_at: '2026-12-03T11:00:00Z', last_collect: null })])).toBe(1);
    expect(pluginsNeedAttention([plugin({ state: 'restarting' }), plugin({ state: 'refused' }), plugin({})])).toBe(2);
  });
});
