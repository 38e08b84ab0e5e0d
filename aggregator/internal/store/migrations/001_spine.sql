-- 001: the data spine — sites, agents and enrollment, the ingest ledger, gap
-- records, series definitions, samples, inventory with history, vCenter events.
--
-- Rendered by tern as a Go template: .timescale is true when the
-- timescaledb extension is available and the samples table becomes a
-- hypertable; otherwise it is a natively range-partitioned table whose daily
-- partitions the aggregator creates ahead (store.EnsurePartitions).

CREATE TABLE sites (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- An enrollment token is single-use and expires. Only its SHA-256 is stored.
CREATE TABLE enrollment_tokens (
    id         uuid PRIMARY KEY,
    token_hash bytea NOT NULL UNIQUE,
    site       text NOT NULL REFERENCES sites (name),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL DEFAULT '',
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    agent_id   uuid
);

-- The agent registry. epoch holds the agent spool's uint64 epoch reinterpreted
-- as a signed bigint.
CREATE TABLE agents (
    id                uuid PRIMARY KEY,
    site              text NOT NULL REFERENCES sites (name),
    name              text NOT NULL DEFAULT '',
    version           text NOT NULL DEFAULT '',
    cert_serial       text NOT NULL,
    cert_not_after    timestamptz NOT NULL,
    enrolled_at       timestamptz NOT NULL DEFAULT now(),
    first_seen        timestamptz,
    last_seen         timestamptz,
    connected         boolean NOT NULL DEFAULT false,
    remote_addr       text NOT NULL DEFAULT '',
    epoch             bigint,
    spool_depth       bigint NOT NULL DEFAULT 0,
    spool_bytes       bigint NOT NULL DEFAULT 0,
    oldest_unsent_ms  bigint NOT NULL DEFAULT 0,
    collection_lag_ms bigint NOT NULL DEFAULT 0,
    dropped_batches   bigint NOT NULL DEFAULT 0,
    revoked_at        timestamptz
);
CREATE INDEX agents_site_idx ON agents (site);

-- A source (vCenter or ESXi endpoint, by instance UUID) belongs to the site of
-- the first agent that reported it; agents of other sites may not write it.
CREATE TABLE sources (
    source     text PRIMARY KEY,
    site       text NOT NULL REFERENCES sites (name),
    first_seen timestamptz NOT NULL DEFAULT now()
);

-- The ingest ledger: one row per committed batch, inserted in the same
-- transaction as the batch's rows. A redelivered batch hits the primary key
-- and is acknowledged again without writing anything.
CREATE TABLE ingest_ledger (
    agent_id    uuid NOT NULL,
    epoch       bigint NOT NULL,
    seq         bigint NOT NULL,
    kind        smallint NOT NULL,
    first_ts    timestamptz,
    last_ts     timestamptz,
    rows        integer NOT NULL DEFAULT 0,
    samples     integer NOT NULL DEFAULT 0,
    bytes       integer NOT NULL DEFAULT 0,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, epoch, seq)
);
CREATE INDEX ingest_ledger_received_idx ON ingest_ledger (received_at);

-- Data an agent knows it lost (spool quota, disk floor), so the loss is
-- queryable rather than silent. The agent's spool keeps one open gap and
-- widens it as it drops more, so a later gap with the same from_seq
-- supersedes the earlier one.
CREATE TABLE ingest_gaps (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id    uuid NOT NULL,
    site        text NOT NULL,
    epoch       bigint NOT NULL,
    from_seq    bigint NOT NULL,
    to_seq      bigint NOT NULL,
    batches     bigint NOT NULL,
    bytes       bigint NOT NULL,
    first_ts    timestamptz,
    last_ts     timestamptz,
    reason      text NOT NULL,
    detected_at timestamptz,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (agent_id, epoch, from_seq)
);

-- A series is one entity (or one instance of it) on one source with a fixed
-- list of counters; samples.v[i] is the value of counters[i] (1-based, as SQL
-- arrays are).
CREATE TABLE series (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site        text NOT NULL,
    source      text NOT NULL,
    entity_kind text NOT NULL,
    entity_id   text NOT NULL,
    instance    text NOT NULL,
    counters    text[] NOT NULL,
    units       text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (site, source, entity_kind, entity_id, instance, counters)
);
CREATE INDEX series_entity_idx ON series (entity_kind, entity_id);

-- Raw samples: one row per (series, timestamp) with all of the series'
-- counter values together; NULL where a counter had no sample. float4 keeps
-- ~7 significant digits, enough for every vSphere performance counter, and
-- halves the row size. The primary key is the second line of defence against
-- duplicates behind the ledger.
CREATE TABLE samples (
    series_id bigint NOT NULL,
    ts        timestamptz NOT NULL,
    v         real[] NOT NULL,
    PRIMARY KEY (series_id, ts)
){{if not .timescale}} PARTITION BY RANGE (ts){{end}};
{{if .timescale}}
SELECT create_hypertable('samples', 'ts', chunk_time_interval => interval '1 day');
{{end}}

-- Inventory: the latest state of every managed object, and its history.
CREATE TABLE inventory_objects (
    site         text NOT NULL,
    source       text NOT NULL,
    kind         text NOT NULL,
    moref        text NOT NULL,
    name         text NOT NULL,
    parent_moref text NOT NULL DEFAULT '',
    path         text NOT NULL DEFAULT '',
    props        jsonb NOT NULL DEFAULT '{}',
    first_seen   timestamptz NOT NULL,
    observed_at  timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    PRIMARY KEY (site, source, kind, moref)
);
CREATE INDEX inventory_objects_kind_idx ON inventory_objects (kind, site) WHERE deleted_at IS NULL;

CREATE TABLE inventory_changes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site        text NOT NULL,
    source      text NOT NULL,
    kind        text NOT NULL,
    moref       text NOT NULL,
    op          text NOT NULL CHECK (op IN ('create', 'update', 'delete')),
    changes     jsonb NOT NULL DEFAULT '{}',
    observed_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inventory_changes_object_idx ON inventory_changes (site, source, moref, observed_at);

CREATE TABLE vcenter_events (
    site        text NOT NULL,
    source      text NOT NULL,
    key         bigint NOT NULL,
    chain_id    bigint NOT NULL DEFAULT 0,
    type        text NOT NULL,
    time        timestamptz NOT NULL,
    username    text NOT NULL DEFAULT '',
    message     text NOT NULL DEFAULT '',
    severity    text NOT NULL DEFAULT '',
    entity_kind text NOT NULL DEFAULT '',
    entity_id   text NOT NULL DEFAULT '',
    entity_name text NOT NULL DEFAULT '',
    datacenter  text NOT NULL DEFAULT '',
    extra       jsonb NOT NULL DEFAULT '{}',
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, source, key)
);
CREATE INDEX vcenter_events_time_idx ON vcenter_events (time);

-- A view for SQL and Grafana users: one row per sample, named.
CREATE VIEW samples_named AS
SELECT s.ts, se.site, se.source, se.entity_kind, se.entity_id, se.instance,
       c.counter, se.units[c.i] AS unit, s.v[c.i] AS value
FROM samples s
JOIN series se ON se.id = s.series_id
CROSS JOIN LATERAL unnest(se.counters) WITH ORDINALITY AS c(counter, i)
WHERE s.v[c.i] IS NOT NULL;
