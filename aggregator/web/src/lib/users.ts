// The user form's pure part: the body of POST /users from the form, the
// problems (named by the API's field names) that keep it from being sent,
// and whether a user is locked now.
import type { UserCreateBody } from '../api/types';
import type { FieldProblem } from './vmfields';
export type { UserCreateBody };

/** The form's state. */
export interface UserDraft {
  username: string;
  email: string;
  display_name: string;
  password: string;
  roles: string[];
}

export const emptyUserDraft = (): UserDraft => ({ username: '', email: '', display_name: '', password: '', roles: [] });

// As the API checks them (httpapi usernameRE, emailRE); the API has the
// last word, and its field errors are shown as they come.
const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$/;
const EMAIL = /^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$/;

/** userCreateOf is the body of the form, or the problems that keep it from being sent. */
export function userCreateOf(d: UserDraft): { body: UserCreateBody; problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  const username = d.username.trim();
  const email = d.email.trim();
  if (username === '') problems.push({ field: 'username', key: 'users.form.usernameRequired' });
  else if (!USERNAME.test(username)) problems.push({ field: 'username', key: 'users.form.usernameBad' });
  if (email !== '' && (email.length > 254 || !EMAIL.test(email))) problems.push({ field: 'email', key: 'users.form.emailBad' });
  if ([...d.display_name.trim()].length > 128) problems.push({ field: 'display_name', key: 'users.form.displayNameLong' });
  if (d.password === '') problems.push({ field: 'password', key: 'users.form.passwordRequired' });
  return {
    body: { username, email, display_name: d.display_name.trim(), password: d.password, roles: [...new Set(d.roles)].sort() },
    problems,
  };
}

/** lockState is how a user stands: locked by an administrator, locked out for a while (failed logins), or active. */
export function lockState(u: { locked: boolean; locked_until?: string }, now: Date): 'locked' | 'lockout' | 'active' {
  if (u.locked) return 'locked';
  if (u.locked_until && Date.parse(u.locked_until) > now.getTime()) return 'lockout';
  return 'active';
}
