import { describe, expect, it } from 'vitest';
import { branchState, escalationOf, permissionTree, scopeBody, toggleBranch } from '../src/lib/roles';

describe('escalation', () => {
  it('reads what the caller lacks', () => {
    expect(escalationOf('AUTH_ESCALATION_DENIED', { missing_permissions: ['user:write', 7], scope_exceeded: true })).toEqual({
      missing: ['user:write'],
      scope: true,
      reason: '',
    });
    expect(escalationOf('AUTH_ESCALATION_DENIED', { reason: 'rule_outside_scope' })).toEqual({ missing: [], scope: false, reason: 'rule_outside_scope' });
    expect(escalationOf('AUTH_ESCALATION_DENIED', { reason: 'made-up' })?.reason).toBe('');
    expect(escalationOf('AUTH_ESCALATION_DENIED', null)).toEqual({ missing: [], scope: false, reason: '' });
    expect(escalationOf('AUTH_FORBIDDEN', { missing_permissions: ['x'] })).toBeNull();
  });
});

describe('permission tree', () => {
  const tree = permissionTree(['vm:write', 'alert:read', 'vm:read', 'vm:read', 'system:read', 'alert:write']);
  it('groups by prefix, sorted', () => {
    expect(tree).toEqual([
      { prefix: 'alert', permissions: ['alert:read', 'alert:write'] },
      { prefix: 'system', permissions: ['system:read'] },
      { prefix: 'vm', permissions: ['vm:read', 'vm:write'] },
    ]);
  });
  it('toggles a branch as a whole', () => {
    const vm = tree[2]!;
    expect(branchState(vm, new Set())).toBe('none');
    expect(branchState(vm, new Set(['vm:read']))).toBe('some');
    const all = toggleBranch(vm, new Set(['vm:read', 'alert:read']));
    expect([...all].sort()).toEqual(['alert:read', 'vm:read', 'vm:write']);
    expect(branchState(vm, all)).toBe('all');
    expect([...toggleBranch(vm, all)]).toEqual(['alert:read']);
  });
});

describe('scope body', () => {
  it('sends both lists sorted', () => {
    expect(scopeBody(new Set(['dc-west', 'dc-east']), new Set())).toEqual({ sites: ['dc-east', 'dc-west'], vm_groups: [] });
  });
});
