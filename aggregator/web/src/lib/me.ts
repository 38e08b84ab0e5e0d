// The signed-in user (GET /auth/me), for navigation and permission checks.
import { signal } from '@preact/signals';
import type { Me } from '../api';

export const me = signal<Me | null>(null);

export function can(permission: string): boolean {
  return me.value?.permissions.includes(permission) ?? false;
}
