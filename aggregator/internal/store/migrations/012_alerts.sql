-- 012: the alert engine (aggregator/internal/alert) — rules, the state of
-- each (rule, entity), alerts and their timelines, silences, notification
-- channels, and the transactional outbox of notifications with its
-- delivery attempts and the dispatcher's lease.
--
-- Plain SQL: the same with and without TimescaleDB.

-- A rule: one entity kind, a condition set and a scope (spec, the JSON of
-- alert.Spec). builtin names the default-pack entry a rule came from ('' for
-- an operator's own); revision counts its changes, so that every replica's
-- engine notices a change by polling.
CREATE TABLE alert_rules (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    description text NOT NULL DEFAULT '',
    entity_kind text NOT NULL CHECK (entity_kind IN ('vm', 'host', 'cluster', 'datastore', 'site')),
    severity    text NOT NULL CHECK (severity IN ('critical', 'warning', 'info')),
    enabled     boolean NOT NULL DEFAULT true,
    spec        jsonb NOT NULL,
    builtin     text NOT NULL DEFAULT '',
    revision    bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL DEFAULT '',
    updated_by  text NOT NULL DEFAULT ''
);

-- Notification channels. type names the notifier plugin; config is what
-- the API shows; secrets are merged into config only when a notification
-- is sent, and never leave the aggregator otherwise.
CREATE TABLE notification_channels (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    type       text NOT NULL,
    config     jsonb NOT NULL DEFAULT '{}',
    secrets    jsonb NOT NULL DEFAULT '{}',
    locale     text NOT NULL DEFAULT 'en',
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL DEFAULT ''
);

-- Alerts: one row per firing episode of a (rule, entity), from its first
-- firing to its resolution. Times are event times (the samples'); created_at
-- is when the aggregator learnt of it. state: firing, unknown (no data or
-- site offline while firing: never resolved for that), resolved.
CREATE TABLE alerts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id          uuid REFERENCES alert_rules (id) ON DELETE SET NULL,
    rule_name        text NOT NULL,
    severity         text NOT NULL,
    site             text NOT NULL,
    source           text NOT NULL,
    entity_kind      text NOT NULL,
    entity_id        text NOT NULL,
    entity_name      text NOT NULL DEFAULT '',
    state            text NOT NULL CHECK (state IN ('firing', 'unknown', 'resolved')),
    pending_since    timestamptz,
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz,
    value            double precision,
    threshold        double precision,
    unit             text NOT NULL DEFAULT '',
    summary          text NOT NULL DEFAULT '',
    labels           jsonb NOT NULL DEFAULT '{}',
    annotations      jsonb NOT NULL DEFAULT '{}',
    late             boolean NOT NULL DEFAULT false,
    silenced         boolean NOT NULL DEFAULT false,
    acked_at         timestamptz,
    acked_by         text NOT NULL DEFAULT '',
    ack_comment      text NOT NULL DEFAULT '',
    resolved_by      text NOT NULL DEFAULT '',
    last_notified_at timestamptz,
    notify_seq       integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alerts_active_idx ON alerts (site, rule_id) WHERE state <> 'resolved';
CREATE INDEX alerts_starts_idx ON alerts (starts_at DESC);
CREATE INDEX alerts_entity_idx ON alerts (site, source, entity_kind, entity_id);

-- The timeline of an alert: every transition (at: event time; recorded_at:
-- arrival time), acknowledgement, manual resolution and notification.
CREATE TABLE alert_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    at          timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    late        boolean NOT NULL DEFAULT false,
    actor       text NOT NULL DEFAULT '',
    value       double precision,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_events_alert_idx ON alert_events (alert_id, id);
CREATE INDEX alert_events_recorded_idx ON alert_events (recorded_at);

-- The persisted state of each (rule, entity) that is not plainly ok, written
-- in the same transaction as each transition, so that a restarted engine
-- neither fires again nor forgets a running timer. since: event time the
-- state began (pending: the `for` timer; firing: the alert's start);
-- last_true: event time the condition last held (the keep_firing_for
-- timer, written when the condition stops holding); prior: the state an
-- unknown instance had before. version guards against two writers.
CREATE TABLE alert_states (
    rule_id     uuid NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    site        text NOT NULL,
    source      text NOT NULL,
    entity_kind text NOT NULL,
    entity_id   text NOT NULL,
    state       text NOT NULL CHECK (state IN ('ok', 'pending', 'firing', 'unknown')),
    prior       text NOT NULL DEFAULT 'ok',
    since       timestamptz NOT NULL,
    last_true   timestamptz,
    keeping     boolean NOT NULL DEFAULT false,
    last_at     timestamptz NOT NULL,
    alert_id    bigint REFERENCES alerts (id) ON DELETE SET NULL,
    value       double precision,
    version     bigint NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule_id, site, source, entity_id)
);
CREATE INDEX alert_states_updated_idx ON alert_states (updated_at);

-- Silences: matchers on alert labels (all must match) over a time range.
CREATE TABLE alert_silences (
    id         uuid PRIMARY KEY,
    matchers   jsonb NOT NULL,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    comment    text NOT NULL DEFAULT '',
    created_by text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    expired_at timestamptz,
    CHECK (ends_at > starts_at)
);

-- The outbox. A notification is inserted in the same transaction as the
-- state change it announces; the dispatcher holding the lease claims due
-- rows (FOR UPDATE SKIP LOCKED), stamping them with its epoch, and records
-- the outcome only while that epoch is still the lease's (fencing).
-- idempotency_key is unique and travels to the provider.
CREATE TABLE alert_notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    channel_id      uuid NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    alert_id        bigint REFERENCES alerts (id) ON DELETE SET NULL,
    kind            text NOT NULL CHECK (kind IN ('firing', 'resolved', 'repeat', 'digest', 'test')),
    payload         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_epoch   bigint,
    claimed_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    last_code       text NOT NULL DEFAULT '',
    last_error      text NOT NULL DEFAULT ''
);
CREATE INDEX alert_notifications_due_idx ON alert_notifications (next_attempt_at, id) WHERE state IN ('pending', 'sending');
CREATE INDEX alert_notifications_alert_idx ON alert_notifications (alert_id);

-- Every delivery attempt: when, by which lease epoch, what the provider
-- said. fenced: the attempt's outcome arrived after the lease had passed
-- to another dispatcher and was not recorded on the notification.
CREATE TABLE alert_notification_attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id bigint NOT NULL REFERENCES alert_notifications (id) ON DELETE CASCADE,
    attempt         integer NOT NULL,
    epoch           bigint NOT NULL,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL,
    outcome         text NOT NULL,
    code            text NOT NULL DEFAULT '',
    message         text NOT NULL DEFAULT '',
    error           text NOT NULL DEFAULT '',
    fenced          boolean NOT NULL DEFAULT false
);
CREATE INDEX alert_notification_attempts_idx ON alert_notification_attempts (notification_id, id);

-- Late transitions waiting to go out as one digest per (channel, site).
CREATE TABLE alert_digest_items (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id  uuid NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    site        text NOT NULL,
    alert_id    bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    transition  text NOT NULL,
    at          timestamptz NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_digest_items_idx ON alert_digest_items (channel_id, site, created_at);

-- The dispatcher's lease: the holder of the advisory lock
-- hashtext('vmpulse.alert.dispatcher') bumps epoch when it takes over.
CREATE TABLE alert_dispatch_lease (
    id          integer PRIMARY KEY CHECK (id = 1),
    epoch       bigint NOT NULL,
    holder      text NOT NULL DEFAULT '',
    acquired_at timestamptz
);
INSERT INTO alert_dispatch_lease (id, epoch) VALUES (1, 0);

-- The default rule pack's entries installed on this database: each once,
-- so that one an operator deleted is not installed again.
CREATE TABLE alert_pack_installed (
    key          text PRIMARY KEY,
    installed_at timestamptz NOT NULL DEFAULT now()
);
