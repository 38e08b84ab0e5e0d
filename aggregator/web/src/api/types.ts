// Shapes of the API's answers this console reads (see GET /api/v1/openapi.json).

export interface Page<T> {
  items: T[];
  total: number;
  page: number;
  page_size: number;
}

export interface CursorPage<T> {
  items: T[];
  next_cursor: string;
}

export interface Me {
  id: string;
  username: string;
  email: string;
  display_name: string;
  roles: string[];
  permissions: string[];
  scope: { sites: string[]; vm_groups: string[]; unrestricted: boolean };
  session_id?: string;
}

export interface Site {
  name: string;
  description: string;
  created_at: string;
  vms: number;
  hosts: number;
  sources: string[];
  agents: number;
  agents_connected: number;
}

export interface Agent {
  id: string;
  name: string;
  site: string;
  version: string;
  state: 'connected' | 'disconnected' | 'revoked';
  connected: boolean;
  remote_addr: string;
  enrolled_at: string;
  first_seen: string | null;
  last_seen: string | null;
  spool_depth: number;
  spool_bytes: number;
  oldest_unsent_ms: number;
  collection_lag_ms: number;
  dropped_batches: number;
  cert_not_after: string;
  revoked_at: string | null;
}

export interface VMStats {
  total: number;
  by_power_state: Record<string, number>;
  by_tools_status: Record<string, number>;
  by_site: Record<string, number>;
  by_cluster: { id: string; name: string; site: string; vms: number }[];
}

export interface Ref {
  id: string;
  name: string;
}

export interface VM {
  id: string;
  site: string;
  source: string;
  moref: string;
  name: string;
  path: string;
  datacenter: string;
  tags: string[];
  first_seen: string;
  observed_at: string;
  updated_at: string;
  power_state: string;
  connection_state: string;
  tools_running_status: string;
  tools_version_status: string;
  guest_hostname: string;
  guest_ips: string[];
  guest_os: string;
  num_cpu: number | null;
  memory_mb: number | null;
  template: boolean;
  host: Ref | null;
  cluster: Ref | null;
  snapshot_count: number;
}

export interface VMDetail extends VM {
  resource_pool: Ref | null;
  datastores: Ref[];
  guest_disks: { path: string; capacity: number | null; free: number | null }[];
  tools_version: string;
  snapshot_oldest: string | null;
  custom_attributes: Record<string, string>;
  uuid: string;
  instance_uuid: string;
  annotation: string;
  latest: { metric: string; instance: string; unit: string; value: number; ts: string }[];
  description: string;
  owner: string;
  labels: Record<string, string>;
  groups: Ref[];
}

export interface VMGroup {
  id: string;
  name: string;
  description?: string;
}

/** A stretch of a series' range with data, or without it and why. */
export interface CoverageSpan {
  from: string;
  to: string;
  state: 'data' | 'missing';
  cause?: string;
  detail?: string;
}

export interface HistorySeries {
  metric: string;
  instance: string;
  unit: string;
  /** Aligned with HistoryAnswer.timestamps; null where a step has no data. */
  values: (number | null)[];
  coverage: CoverageSpan[];
}

export interface HistoryAnswer {
  entity: Ref;
  kind: string;
  site: string;
  from: string;
  to: string;
  step: string;
  resolution: string;
  agg: string;
  coarsened: boolean;
  timestamps: string[];
  series: HistorySeries[];
  coverage: CoverageSpan[];
}

export interface User {
  id: string;
  username: string;
  email: string;
  display_name: string;
  roles: string[];
  locked: boolean;
  locked_until?: string;
  failed_logins: number;
  scope: { sites: string[] | null; vm_groups: string[] | null };
  last_login_at?: string;
  created_at: string;
  updated_at: string;
}

export interface Role {
  id: string;
  name: string;
  description: string;
  builtin: boolean;
  parents: string[];
  permissions: string[];
  effective_permissions?: string[];
  users?: number;
}

export interface AuditRecord {
  id: number;
  time: string;
  source: string;
  actor_type: string;
  actor_id: string;
  actor_name: string;
  action: string;
  resource_type: string;
  resource_id: string;
  summary: unknown;
  result: 'success' | 'failure' | 'denied';
  status: number;
  ip: string;
  user_agent: string;
  request_id: string;
  latency_us: number;
}

export interface VerifyResult {
  ok: boolean;
  checked: number;
  head_seq: number;
  broken_at?: number;
  reason?: string;
}

/** One VM of a top list of GET /realtime/overview. */
export interface OverviewTopItem {
  id: string;
  name: string;
  site: string;
  unit: string;
  value: number;
  ready_percent?: number;
}

/** One site of GET /realtime/overview: health, backlog, and how fast it drains. */
export interface OverviewSite {
  site: string;
  connected: boolean;
  agents: number;
  agents_connected: number;
  last_seen: string | null;
  collection_lag_seconds: number;
  backlog: { batches: number; bytes: number; oldest_unsent_seconds: number };
  drain: {
    window_seconds: number;
    acked_per_second: number;
    backlog_per_second: number;
    state: 'offline' | 'caught_up' | 'draining' | 'stalled' | string;
    eta_seconds: number | null;
  };
  dropped_batches: number;
}

export interface RealtimeOverview {
  at: string;
  vms: { total: number; by_power_state: Record<string, number>; by_tools_status: Record<string, number> };
  hosts: { total: number; by_connection_state: Record<string, number> };
  top: {
    window_seconds: number;
    cpu_usage: OverviewTopItem[];
    cpu_ready: OverviewTopItem[];
    memory_balloon: OverviewTopItem[];
    disk_latency: OverviewTopItem[];
  };
  sites: OverviewSite[];
}
