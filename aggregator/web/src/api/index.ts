// The API calls the pages make. Each is a thin, typed wrapper over
// client.request; nothing else in the console reaches the network.
import { download, request, type Query } from './client';
import type {
  Agent,
  AuditRecord,
  CursorPage,
  HistoryAnswer,
  Me,
  Page,
  RealtimeOverview,
  Role,
  Site,
  User,
  VerifyResult,
  VM,
  VMDetail,
  VMGroup,
  VMStats,
} from './types';

export { ApiError, login, logout, restore, session, sessionEnded, CODE_NETWORK } from './client';
export type * from './types';

/** pathID escapes an object id ("<source>:<moref>") for a path segment. */
export const pathID = (id: string): string => encodeURIComponent(id);

export const api = {
  me: (signal?: AbortSignal) => request<Me>('GET', '/auth/me', { signal }),
  sites: (signal?: AbortSignal) => request<Page<Site>>('GET', '/sites', { query: { page_size: 500 }, signal }),
  agents: (signal?: AbortSignal) => request<Page<Agent>>('GET', '/agents', { query: { page_size: 500 }, signal }),
  realtimeOverview: (signal?: AbortSignal) => request<RealtimeOverview>('GET', '/realtime/overview', { query: { limit: 10 }, signal }),
  vmStats: (q: Query = {}, signal?: AbortSignal) => request<VMStats>('GET', '/vms/stats', { query: q, signal }),
  vms: (q: Query, signal?: AbortSignal) => request<Page<VM>>('GET', '/vms', { query: q, signal }),
  vm: (id: string, signal?: AbortSignal) => request<VMDetail>('GET', '/vms/' + pathID(id), { signal }),
  vmMetrics: (id: string, q: Query, signal?: AbortSignal) =>
    request<HistoryAnswer>('GET', '/vms/' + pathID(id) + '/metrics', { query: q, signal }),
  vmGroups: (signal?: AbortSignal) => request<{ items: VMGroup[] }>('GET', '/vm-groups', { signal }),
  users: (q: Query, signal?: AbortSignal) => request<Page<User>>('GET', '/users', { query: q, signal }),
  roles: (signal?: AbortSignal) => request<{ items: Role[] }>('GET', '/roles', { signal }),
  auditLogs: (q: Query, signal?: AbortSignal) => request<CursorPage<AuditRecord>>('GET', '/audit-logs', { query: q, signal }),
  auditVerify: (signal?: AbortSignal) => request<VerifyResult>('GET', '/audit-logs/verify', { signal }),
  auditExport: (q: Query) => download('/audit-logs/export', q, 'vmpulse-audit-log.csv'),
};
