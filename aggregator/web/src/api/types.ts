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
  /** The agent's collector plugins at its last heartbeat. */
  plugins?: AgentPlugin[] | null;
  /** The spool's quota (spool.max_bytes); null when the agent does not report it. */
  spool_max_bytes?: number | null;
  /** The reachability of each vCenter/ESXi endpoint the agent polls, at its last heartbeat. */
  vcenters?: AgentVCenter[] | null;
}

/** One vCenter/ESXi endpoint an agent polls (GET /agents). */
export interface AgentVCenter {
  source: string;
  reachable: boolean;
  since: string | null;
  last_ok: string | null;
  last_error: string;
}

/** One collector plugin of an agent (GET /agents). */
export interface AgentPlugin {
  name: string;
  version: string;
  /** starting, running, restarting, refused or stopped. */
  state: string;
  restarts: number;
  last_error: string;
  last_error_at: string | null;
  last_collect: string | null;
  collects: number;
  failures: number;
  samples: number;
}

/** One finding of GET /vms/hygiene. */
export interface HygieneFinding {
  kind: 'old_snapshot' | 'tools_not_running' | 'tools_outdated' | 'powered_off' | string;
  severity: 'warning' | 'info' | string;
  vm: { id: string; name: string; site: string; datacenter: string; power_state: string; host: Ref | null; cluster: Ref | null };
  since: string | null;
  since_first_seen: boolean;
  age_seconds: number | null;
  snapshot_count: number;
  snapshot_oldest: string | null;
  tools_running_status: string;
  tools_version_status: string;
  tools_version: string;
}

export interface HygieneReport extends Page<HygieneFinding> {
  counts: Record<string, number>;
  evaluated_at: string;
  rules: { snapshot_age_seconds: number; powered_off_for_seconds: number; tools_outdated: string[] };
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
  groups: VMGroupRef[];
}

/** A group of GET /vms/{id}: how the VM is a member (by hand, by the group's rule, or both). */
export interface VMGroupRef extends Ref {
  static: boolean;
  by_rule: boolean;
}

export interface VMGroup {
  id: string;
  name: string;
  description?: string;
  rule?: GroupRule | null;
  static_members?: number;
  members?: number;
  created_at?: string;
  updated_at?: string;
  created_by?: string;
}

/** A VM group's rule: every field optional, all of those given must match. */
export interface GroupRule {
  site?: string;
  name_glob?: string;
  folder?: string;
  tags?: string[];
  cluster?: string;
  host?: string;
  labels?: Record<string, string>;
}

/** The body of POST /vm-groups and PUT /vm-groups/{id}. */
export interface VMGroupInput {
  name: string;
  description: string;
  rule: GroupRule;
}

/** The batch actions of POST /vms/batch the console offers (forget is not offered). */
export type BatchAction = 'add_to_group' | 'remove_from_group' | 'set_labels' | 'forget';

/** The body of POST /vms/batch. */
export interface VMBatchBody {
  vms: string[];
  action: BatchAction;
  group?: string;
  labels?: Record<string, string>;
}

/** The body of PATCH /vms/{id}: only the fields to change; labels replace the set. */
export interface VMPatch {
  description?: string;
  owner?: string;
  labels?: Record<string, string>;
}

/** The answer of POST /vms/batch and the member routes: per VM, done or why not. */
export interface VMBatchResult {
  items: { id: string; ok: boolean; code?: string }[];
  done: number;
  failed: number;
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

export type { CollectionInput, CollectionSettings } from '../lib/collection';
import type { CollectionInput, CollectionSettings } from '../lib/collection';

/** The body of POST /users. */
export interface UserCreateBody {
  username: string;
  email: string;
  display_name: string;
  password: string;
  roles: string[];
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
  /** Open alerts in the caller's scope. */
  alerts: OverviewAlerts;
  sites: OverviewSite[];
  /** The 10 datastores closest to full: by days_to_full (nulls last), then used_percent. */
  datastores: OverviewDatastore[];
}

export interface OverviewAlerts {
  /** Firing and unknown alerts. */
  active: number;
  /** Active alerts per severity (critical, warning, info always present). */
  by_severity: Record<string, number>;
  unacknowledged: number;
  silenced: number;
  /** Held back by a maintenance window or a parent alert (not active). */
  suppressed: number;
}

export interface OverviewDatastore {
  id: string;
  name: string;
  site: string;
  capacity: number;
  free: number;
  used_percent: number;
  /** From the least-squares trend of free space over 7 days; null without a falling trend. */
  days_to_full: number | null;
}

// ---- Alerts (GET /alerts, /alert-rules, /silences, /notification-channels) ----

export type Severity = 'critical' | 'warning' | 'info';

export interface Alert {
  id: number;
  rule_id: string | null;
  rule_name: string;
  severity: Severity | string;
  /** firing, unknown (no data or site offline: stale) or resolved. */
  state: 'firing' | 'unknown' | 'resolved' | string;
  site: string;
  entity_kind: string;
  entity_id: string;
  entity_name: string;
  pending_since: string | null;
  starts_at: string;
  ends_at: string | null;
  value: number | null;
  threshold: number | null;
  unit: string;
  summary: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  late: boolean;
  silenced: boolean;
  acked: boolean;
  acked_at: string | null;
  acked_by: string;
  ack_comment: string;
  resolved_by: string;
  last_notified_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface AlertEvent {
  id: number;
  kind: string;
  at: string;
  recorded_at: string;
  late: boolean;
  actor: string;
  value: number | null;
  detail: Record<string, unknown> | null;
}

export interface AlertAttempt {
  attempt: number;
  started_at: string;
  finished_at: string;
  outcome: string;
  code: string;
  message: string;
  error: string;
}

export interface AlertNotification {
  id: number;
  channel_id: string;
  channel_name: string;
  kind: string;
  state: string;
  attempts: AlertAttempt[] | null;
  created_at: string;
  delivered_at: string | null;
  last_code: string;
  last_error: string;
}

export interface AlertDetail extends Alert {
  timeline: AlertEvent[] | null;
  notifications: AlertNotification[] | null;
}

export interface AlertStats {
  active: Record<string, number>;
  by_severity: Record<string, number>;
  by_site: Record<string, number>;
  acked: number;
  silenced: number;
  fired: number;
  resolved: number;
  late: number;
  mean_time_to_resolve_s: number;
}

export interface AlertCondition {
  metric: string;
  agg?: string;
  window?: string;
  op: string;
  threshold: number;
  clear_threshold?: number | null;
}

export interface AlertScope {
  sites?: string[];
  vm_groups?: string[];
  clusters?: string[];
  hosts?: string[];
  tags?: string[];
  entities?: string[];
}

export interface AlertRuleInput {
  name: string;
  description: string;
  entity_kind: string;
  severity: string;
  enabled: boolean;
  match: string;
  conditions: AlertCondition[];
  for: string;
  keep_firing_for: string;
  scope: AlertScope;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  channels: string[];
  repeat_interval: string;
}

export interface AlertRule extends AlertRuleInput {
  id: string;
  builtin: string;
  revision: number;
  created_at: string;
  updated_at: string;
  created_by: string;
  updated_by: string;
}

export interface AlertPreview {
  from: string;
  to: string;
  entities_evaluated: number;
  samples: number;
  fired: number;
  truncated: boolean;
  items: {
    site: string;
    entity_id: string;
    entity_name: string;
    firings: { pending_since: string | null; starts_at: string; ends_at: string | null; value: number }[];
  }[];
}

export interface AlertMatcher {
  name: string;
  op: string;
  value: string;
}

export interface Silence {
  id: string;
  matchers: AlertMatcher[];
  starts_at: string;
  ends_at: string;
  comment: string;
  created_by: string;
  created_at: string;
  expired_at: string | null;
  state: 'active' | 'pending' | 'expired' | string;
}

export interface NotificationChannel {
  id: string;
  name: string;
  type: string;
  config: Record<string, unknown>;
  secret_keys: string[] | null;
  locale: string;
  enabled: boolean;
  created_at: string;
  updated_at: string;
  created_by: string;
}

export interface ChannelTestResult {
  idempotency_key: string;
  outcome: string;
  code: string;
  message: string;
  error: string;
  duration_ms: number;
}

// ---- Sites, inventory objects, history ----

export interface SiteTimeline {
  site: string;
  from: string;
  to: string;
  sessions: { agent: Ref; from: string; to: string | null; end_reason: string }[] | null;
  offline: { from: string; to: string }[] | null;
  backfills: { from: string; to: string; data_from: string; data_to: string; batches: number }[] | null;
  gaps: { agent_id: string; from: string; to: string; batches: number; bytes: number; reason: string }[] | null;
}

export interface ResyncResult {
  agents_notified: number;
  agents: string[];
}

interface InventoryBase {
  id: string;
  site: string;
  source: string;
  moref: string;
  name: string;
  path: string;
  datacenter: string;
  tags: string[];
  observed_at: string;
}

export interface Host extends InventoryBase {
  connection_state: string;
  power_state: string;
  maintenance_mode: boolean | null;
  cpu_mhz: number | null;
  cpu_cores: number | null;
  memory_bytes: number | null;
  product: string;
  cluster: Ref | null;
  vms: number;
}

export interface Cluster extends InventoryBase {
  num_hosts: number | null;
  cpu_mhz_total: number | null;
  memory_bytes_total: number | null;
  overall_status: string;
  hosts: number;
  vms: number;
}

export interface Datastore extends InventoryBase {
  type: string;
  capacity: number | null;
  free: number | null;
  accessible: boolean | null;
  maintenance_mode: string;
  vms: number;
}

export interface MetricInfo {
  name: string;
  unit: string;
  entity_kinds: string[];
  per_instance: boolean;
}

export interface EntityRef {
  kind: string;
  id: string;
}

export interface MetricsQueryResult {
  items: { kind: string; id: string; found: boolean; history: HistoryAnswer | null }[];
}

export interface MetricsTop {
  metric: string;
  from: string;
  to: string;
  agg: string;
  resolution: string;
  items: { kind: string; id: string; name: string; site: string; unit: string; value: number }[];
}

/** One sample of the realtime feed. */
export interface RealtimeSample {
  kind: string;
  id: string;
  site: string;
  instance: string;
  metric: string;
  unit: string;
  ts: string;
  value: number;
}

// ---- Security and operations ----

export interface LoginRecord {
  id: number;
  time: string;
  user_id: string;
  username: string;
  result: string;
  reason: string;
  ip: string;
  user_agent: string;
}

export interface SessionInfo {
  id: string;
  user_id: string;
  username: string;
  created_at: string;
  last_seen_at: string;
  expires_at: string;
  ip: string;
  user_agent: string;
}

export interface APIToken {
  id: string;
  name: string;
  prefix: string;
  permissions: string[] | null;
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface APITokenCreated {
  token: string;
  api_token: APIToken;
}

export interface Backup {
  id: string;
  kind: 'config' | 'metrics' | string;
  status: 'running' | 'done' | 'failed' | string;
  from: string | null;
  to: string | null;
  file: string;
  size_bytes: number;
  bytes_done: number;
  sha256: string;
  schema_version: number;
  started_at: string;
  finished_at: string | null;
  duration_ms: number | null;
  error_code: string;
  error: string;
  created_by: string;
  trigger: string;
  note: string;
}

export interface RestoreInfo {
  id: string;
  backup_id: string;
  phase: string;
  bytes_total: number;
  bytes_done: number;
  eta_seconds: number | null;
  started_at: string;
  finished_at: string | null;
  error_code: string;
  error: string;
}

export interface RestoreStatus {
  restore: RestoreInfo | null;
  maintenance: { active: boolean; reason: string; restore_id: string | null; started_at: string | null };
}

export interface BackupSchedule {
  enabled: boolean;
  cron: string;
  kind: string;
  metrics_days: number;
  keep_last: number;
  keep_days: number;
  next_run_at: string | null;
}

export type HealthStatus = 'ok' | 'degraded' | 'down' | string;

export interface SystemHealth {
  status: HealthStatus;
  checked_at: string;
  components: Record<string, { status: HealthStatus; reasons?: string[]; error?: string; [k: string]: unknown }>;
}

export interface Job {
  name: string;
  description: string;
  schedule: string;
  state: string;
  last_started_at: string | null;
  last_finished_at: string | null;
  last_duration_ms: number | null;
  last_result: string;
  last_error: string;
  consecutive_failures: number;
  next_run_at: string | null;
  run_requested_at: string | null;
  runs: number;
  failures: number;
}

export interface PluginInfo {
  name: string;
  version: string;
  description: string;
  kinds: string[] | null;
  state: string;
  restarts: number;
  last_error: string;
  calls: number;
  errors: number;
  p99_ms: number;
}

export interface Settings {
  retention: Record<string, string>;
  /** The collection settings pushed to agents (absent from an API that predates them). */
  collection?: CollectionSettings;
  sources: Record<string, string>;
  version: number;
  updated_at: string | null;
  updated_by: string;
}

export interface EnrollmentToken {
  token: string;
  site: string;
  expires_at: string;
}
