-- 014: the alert engine's topology suppression, maintenance windows,
-- per-channel rate limits with storm digests, and vCenter alarm mirroring
-- (aggregator/internal/alert).
--
-- Plain SQL: the same with and without TimescaleDB.

-- An alert whose entity's parent was down (host not responding or in
-- maintenance, datastore inaccessible) or that a maintenance window covers
-- when it fired is 'suppressed': recorded, never paged. suppressed_by is
-- the parent's alert when it has one; suppressed_reason says why in words.
ALTER TABLE alerts DROP CONSTRAINT alerts_state_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_state_check CHECK (state IN ('firing', 'unknown', 'resolved', 'suppressed'));
ALTER TABLE alerts
    ADD COLUMN suppressed_by     bigint REFERENCES alerts (id) ON DELETE SET NULL,
    ADD COLUMN suppressed_reason text NOT NULL DEFAULT '',
    -- vCenter alarm mirroring: the alarm's key (its moref) and the event
    -- time of the last alarm status applied, so that a status read twice
    -- is applied once.
    ADD COLUMN mirror_key        text,
    ADD COLUMN mirror_at         timestamptz;
-- One open alert per (rule, entity, alarm): two replicas mirroring the same
-- status change open it once.
CREATE UNIQUE INDEX alerts_mirror_open_idx ON alerts (rule_id, site, source, entity_id, mirror_key)
    WHERE mirror_key IS NOT NULL AND state <> 'resolved';
CREATE INDEX alerts_mirror_idx ON alerts (site, source, entity_id, mirror_key, id) WHERE mirror_key IS NOT NULL;

-- Maintenance windows: alerts of the entities a window covers (matchers on
-- the alerts' labels, all must match) that fire inside it are suppressed.
-- A recurring window repeats every `every` seconds from starts_at, each
-- occurrence lasting duration seconds, until ends_at (NULL: forever).
CREATE TABLE alert_maintenance_windows (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    matchers   jsonb NOT NULL,
    starts_at  timestamptz NOT NULL,
    duration_s bigint NOT NULL CHECK (duration_s > 0),
    every_s    bigint NOT NULL DEFAULT 0 CHECK (every_s = 0 OR every_s >= duration_s),
    ends_at    timestamptz,
    comment    text NOT NULL DEFAULT '',
    created_by text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Per-channel send limits: at most rate_per_minute notifications in any
-- 60 seconds and rate_per_second in any second (0: none). NULL takes the
-- default of the channel's type (DingTalk and WeCom 20/min, Feishu 100/min
-- and 5/s, others none). The lease holder counts the sends of the last
-- minute from alert_notification_attempts when it takes over.
ALTER TABLE notification_channels
    ADD COLUMN rate_per_minute integer CHECK (rate_per_minute IS NULL OR rate_per_minute BETWEEN 0 AND 100000),
    ADD COLUMN rate_per_second integer CHECK (rate_per_second IS NULL OR rate_per_second BETWEEN 0 AND 10000);
-- A notification merged into a storm digest: merged_into names the digest
-- that carries it (state 'merged').
ALTER TABLE alert_notifications DROP CONSTRAINT alert_notifications_state_check;
ALTER TABLE alert_notifications ADD CONSTRAINT alert_notifications_state_check
    CHECK (state IN ('pending', 'sending', 'delivered', 'failed', 'merged'));
ALTER TABLE alert_notifications ADD COLUMN merged_into bigint REFERENCES alert_notifications (id) ON DELETE SET NULL;
-- Grouping: the notifications of one group (a rule's group_by: rule and
-- site, or rule, site and cluster) due together go out as one message.
ALTER TABLE alert_notifications ADD COLUMN group_key text;
CREATE INDEX alert_notifications_group_idx ON alert_notifications (channel_id, group_key) WHERE state = 'pending' AND group_key IS NOT NULL;

CREATE INDEX alert_notification_attempts_started_idx ON alert_notification_attempts (started_at);
CREATE INDEX alert_notifications_channel_due_idx ON alert_notifications (channel_id, next_attempt_at) WHERE state = 'pending';

-- The alarm mirror reads the alarm events by arrival.
CREATE INDEX vcenter_events_alarm_idx ON vcenter_events (received_at)
    WHERE type IN ('AlarmStatusChangedEvent', 'AlarmClearedEvent', 'TriggeredAlarmState');

-- The engine's topology reads the changes of a VM's host and datastores,
-- a host's connection state and maintenance mode and a datastore's
-- accessibility (a full read at start, then what is new by id); its
-- datastore trends read the datastores' changes of the last 7 days.
CREATE INDEX inventory_changes_topology_idx ON inventory_changes (id)
    WHERE kind IN ('vm', 'host', 'datastore') AND op = 'update'
      AND changes ?| array['props.host_id', 'props.connection_state', 'props.maintenance_mode', 'props.accessible', 'props.datastore_ids'];
CREATE INDEX inventory_changes_datastore_idx ON inventory_changes (observed_at) WHERE kind = 'datastore';

-- Cursors of the engine's readers of other tables (vcenter_events for the
-- alarm mirror): the received_at read up to.
CREATE TABLE alert_cursors (
    name text PRIMARY KEY,
    at   timestamptz NOT NULL
);
