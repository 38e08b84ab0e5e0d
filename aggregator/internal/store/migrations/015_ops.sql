-- 015: operations across replicas — vCenter events in the audit chain, and
-- the registry of aggregator replicas.
--
-- Plain SQL: the same with and without TimescaleDB. Neither table is in a
-- backup.

-- vCenter events join the tamper-evident operation log (audit_log) once
-- each: the appender (audit.AppendVCenterEvents, the vcenter-events job)
-- writes the chain records and sets audit_seq in the same transaction, so
-- an event is either pending (NULL) or in the chain, never both or twice.
-- Adding a nullable column without a default rewrites nothing.
ALTER TABLE vcenter_events ADD COLUMN audit_seq bigint;
CREATE INDEX vcenter_events_audit_pending_idx ON vcenter_events (time, site, source, key) WHERE audit_seq IS NULL;

-- Per site, the newest vCenter time already in the chain: an event older
-- than its site's mark arrived late (an offline site's backlog) and is
-- marked so in its record.
CREATE TABLE vcenter_audit_marks (
    site       text PRIMARY KEY,
    last_time  timestamptz NOT NULL,
    last_seq   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every aggregator replica registers itself at start and renews its row
-- every heartbeat (ingest.Server), with its ingest counters, so that any
-- replica can list the deployment (GET /system/info) and sum it
-- (/system/health). A replica whose heartbeat is older than three
-- intervals is shown as stale; rows a week stale are deleted.
CREATE TABLE aggregator_replicas (
    id               text PRIMARY KEY,
    version          text NOT NULL DEFAULT '',
    hostname         text NOT NULL DEFAULT '',
    ingest_addr      text NOT NULL DEFAULT '',
    http_addr        text NOT NULL DEFAULT '',
    started_at       timestamptz NOT NULL,
    heartbeat_at     timestamptz NOT NULL DEFAULT now(),
    heartbeat_every  interval NOT NULL DEFAULT '10 seconds',
    agents_connected integer NOT NULL DEFAULT 0,
    batches_stored   bigint NOT NULL DEFAULT 0,
    samples_stored   bigint NOT NULL DEFAULT 0,
    batches_rejected bigint NOT NULL DEFAULT 0,
    stopped_at       timestamptz
);
