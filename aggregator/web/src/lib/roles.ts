// Pure helpers of the user and role editors: the API's escalation refusal,
// the permission catalog as a tree by prefix, and a data scope's body.

/** What an AUTH_ESCALATION_DENIED answer says the caller lacks. */
export interface Escalation {
  missing: string[];
  scope: boolean;
  reason: string;
}

const REASONS = new Set(['rule_outside_scope', 'group_in_a_data_scope']);

/** escalationOf reads an escalation refusal (null for any other answer). */
export function escalationOf(code: string, data: Record<string, unknown> | null): Escalation | null {
  if (code !== 'AUTH_ESCALATION_DENIED') return null;
  const m = data?.missing_permissions;
  const r = typeof data?.reason === 'string' && REASONS.has(data.reason) ? data.reason : '';
  return { missing: Array.isArray(m) ? m.filter((x): x is string => typeof x === 'string') : [], scope: data?.scope_exceeded === true, reason: r };
}

/** A branch of the permission tree: the permissions sharing a prefix (before ':'). */
export interface PermissionBranch {
  prefix: string;
  permissions: string[];
}

/** permissionTree groups permissions by their prefix ("vm:read" under "vm"), both sorted. */
export function permissionTree(perms: string[]): PermissionBranch[] {
  const by = new Map<string, string[]>();
  for (const p of new Set(perms)) {
    const i = p.indexOf(':');
    const prefix = i < 0 ? p : p.slice(0, i);
    by.set(prefix, [...(by.get(prefix) ?? []), p]);
  }
  return [...by.keys()].sort().map((prefix) => ({ prefix, permissions: (by.get(prefix) ?? []).sort() }));
}

/** branchState is whether none, some or all of a branch is chosen (for its tri-state box). */
export function branchState(b: PermissionBranch, chosen: Set<string>): 'none' | 'some' | 'all' {
  const n = b.permissions.filter((p) => chosen.has(p)).length;
  return n === 0 ? 'none' : n === b.permissions.length ? 'all' : 'some';
}

/** toggleBranch chooses every permission of a branch, or none when all were. */
export function toggleBranch(b: PermissionBranch, chosen: Set<string>): Set<string> {
  const out = new Set(chosen);
  const all = branchState(b, chosen) === 'all';
  for (const p of b.permissions) {
    if (all) out.delete(p);
    else out.add(p);
  }
  return out;
}

/** scopeBody is the body of PUT /users/{id}/scope: both lists sorted; empty both means every site. */
export function scopeBody(sites: Set<string>, groups: Set<string>): { sites: string[]; vm_groups: string[] } {
  return { sites: [...sites].sort(), vm_groups: [...groups].sort() };
}

/** A role as the parent helpers need it. */
interface RoleLike {
  id: string;
  name: string;
  permissions: string[];
  effective_permissions?: string[];
}

/** parentChoices are the roles a role may inherit from: every other role, by name. */
export function parentChoices<R extends RoleLike>(roles: readonly R[], self: { id: string } | null): R[] {
  return roles.filter((r) => r.id !== self?.id).sort((a, b) => a.name.localeCompare(b.name));
}

/** inheritedPermissions are what the chosen parents give (their effective permissions). */
export function inheritedPermissions(roles: readonly RoleLike[], parents: ReadonlySet<string>): Set<string> {
  const out = new Set<string>();
  for (const r of roles) if (parents.has(r.name)) for (const p of r.effective_permissions ?? r.permissions) out.add(p);
  return out;
}
