import { describe, expect, it } from 'vitest';
import { inheritedPermissions, parentChoices } from '../src/lib/roles';
import { emptyUserDraft, lockState, userCreateOf } from '../src/lib/users';

describe('the new-user form', () => {
  it('names every missing or malformed field as the API does', () => {
    expect(userCreateOf(emptyUserDraft()).problems).toEqual([
      { field: 'username', key: 'users.form.usernameRequired' },
      { field: 'password', key: 'users.form.passwordRequired' },
    ]);
    const bad = userCreateOf({ username: '-x', email: 'nope', display_name: 'x'.repeat(129), password: 'p', roles: [] });
    expect(bad.problems.map((p) => p.field)).toEqual(['username', 'email', 'display_name']);
  });
  it('trims, leaves the password as typed, and sorts roles once each', () => {
    const r = userCreateOf({ username: ' ada ', email: ' ada@example.com ', display_name: ' Ada ', password: ' pw with spaces ', roles: ['viewer', 'auditor', 'viewer'] });
    expect(r).toEqual({
      body: { username: 'ada', email: 'ada@example.com', display_name: 'Ada', password: ' pw with spaces ', roles: ['auditor', 'viewer'] },
      problems: [],
    });
    expect(userCreateOf({ ...emptyUserDraft(), username: 'ab', password: 'x' }).problems).toEqual([]);
  });
  it('tells an administrator lock from a failed-login lockout', () => {
    const now = new Date('2026-01-01T00:00:00Z');
    expect(lockState({ locked: true }, now)).toBe('locked');
    expect(lockState({ locked: false, locked_until: '2026-01-01T00:05:00Z' }, now)).toBe('lockout');
    expect(lockState({ locked: false, locked_until: '2025-12-31T23:55:00Z' }, now)).toBe('active');
    expect(lockState({ locked: false }, now)).toBe('active');
  });
});

describe('role parents', () => {
  const roles = [
    { id: '3', name: 'viewer', permissions: ['vm:read'], effective_permissions: ['vm:read'] },
    { id: '1', name: 'ops', permissions: ['alert:ack'], effective_permissions: ['alert:ack', 'vm:read'] },
    { id: '2', name: 'mine', permissions: [] },
  ];
  it('offers every other role, by name', () => {
    expect(parentChoices(roles, { id: '2' }).map((r) => r.name)).toEqual(['ops', 'viewer']);
    expect(parentChoices(roles, null).map((r) => r.name)).toEqual(['mine', 'ops', 'viewer']);
  });
  it('inherits the parents’ effective permissions', () => {
    expect([...inheritedPermissions(roles, new Set(['ops']))].sort()).toEqual(['alert:ack', 'vm:read']);
    expect(inheritedPermissions(roles, new Set()).size).toBe(0);
  });
});
