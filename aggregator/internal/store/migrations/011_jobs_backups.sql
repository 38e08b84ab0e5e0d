-- 011: operations — the job runner's state, backups and restores, the
-- maintenance mode a restore runs in, and runtime settings.
--
-- Plain SQL: the same with and without TimescaleDB. None of these tables is
-- in a backup (except settings): a restore must not rewind the record of the
-- backups, restores and job runs made since.

-- One row per named job (aggregator/internal/jobs). Every replica runs the
-- same jobs; the one holding the job's advisory lock runs it, and writes
-- what happened here so that every replica shows the same.
CREATE TABLE jobs (
    name                 text PRIMARY KEY,
    description          text NOT NULL DEFAULT '',
    -- schedule is a cron expression (robfig/cron/v3 standard syntax, with
    -- @every and @hourly-style descriptors); '' runs only on request.
    schedule             text NOT NULL DEFAULT '',
    next_run_at          timestamptz,
    run_requested_at     timestamptz,
    requested_by         text NOT NULL DEFAULT '',
    running_on           text NOT NULL DEFAULT '',
    last_started_at      timestamptz,
    last_finished_at     timestamptz,
    last_duration_ms     bigint,
    last_result          text NOT NULL DEFAULT '' CHECK (last_result IN ('', 'ok', 'failed')),
    last_error           text NOT NULL DEFAULT '',
    last_summary         jsonb,
    consecutive_failures integer NOT NULL DEFAULT 0,
    runs                 bigint NOT NULL DEFAULT 0,
    failures             bigint NOT NULL DEFAULT 0,
    progress_done        bigint,
    progress_total       bigint,
    progress_at          timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- The recent runs of each job (the cleanup job keeps the newest 100 per
-- job).
CREATE TABLE job_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job         text NOT NULL,
    replica     text NOT NULL DEFAULT '',
    trigger     text NOT NULL DEFAULT '',
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    result      text NOT NULL DEFAULT '',
    error       text NOT NULL DEFAULT '',
    summary     jsonb
);
CREATE INDEX job_runs_job_idx ON job_runs (job, id DESC);

-- Backups (aggregator/internal/backup): one pg_dump archive each, in the
-- configured directory, named <id>.dump.
CREATE TABLE backups (
    id             uuid PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('config', 'metrics')),
    status         text NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    range_from     timestamptz,
    range_to       timestamptz,
    file           text NOT NULL,
    size_bytes     bigint NOT NULL DEFAULT 0,
    bytes_done     bigint NOT NULL DEFAULT 0,
    bytes_estimate bigint NOT NULL DEFAULT 0,
    sha256         text NOT NULL DEFAULT '',
    schema_version integer NOT NULL DEFAULT 0,
    tables         text[] NOT NULL DEFAULT '{}',
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    duration_ms    bigint,
    error_code     text NOT NULL DEFAULT '',
    error          text NOT NULL DEFAULT '',
    created_by     text NOT NULL DEFAULT '',
    trigger        text NOT NULL DEFAULT 'api',
    replica        text NOT NULL DEFAULT '',
    note           text NOT NULL DEFAULT ''
);
CREATE INDEX backups_started_idx ON backups (started_at DESC);

-- Restores, newest last. phase: verifying (checksum), pausing (waiting for
-- every replica's ingest to stop), restoring, done, failed.
CREATE TABLE backup_restores (
    id          uuid PRIMARY KEY,
    backup_id   uuid NOT NULL,
    phase       text NOT NULL,
    bytes_total bigint NOT NULL DEFAULT 0,
    bytes_done  bigint NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    paused_ms   bigint,
    error_code  text NOT NULL DEFAULT '',
    error       text NOT NULL DEFAULT '',
    created_by  text NOT NULL DEFAULT '',
    replica     text NOT NULL DEFAULT ''
);
CREATE INDEX backup_restores_started_idx ON backup_restores (started_at DESC);

-- The backup schedule and retention (GET/PUT /backups/schedule).
CREATE TABLE backup_schedule (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    enabled      boolean NOT NULL DEFAULT false,
    cron         text NOT NULL DEFAULT '0 3 * * *',
    kind         text NOT NULL DEFAULT 'config' CHECK (kind IN ('config', 'metrics')),
    metrics_days integer NOT NULL DEFAULT 1,
    keep_last    integer NOT NULL DEFAULT 7,
    keep_days    integer NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text NOT NULL DEFAULT ''
);
INSERT INTO backup_schedule DEFAULT VALUES;

-- The maintenance mode of a restore, seen by every replica (each polls it):
-- while active, ingest acknowledges nothing and the API answers 503.
-- generation counts the maintenance periods.
CREATE TABLE maintenance (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    active     boolean NOT NULL DEFAULT false,
    reason     text NOT NULL DEFAULT '',
    restore_id uuid,
    started_at timestamptz,
    generation bigint NOT NULL DEFAULT 0
);
INSERT INTO maintenance DEFAULT VALUES;

-- Runtime settings (GET/PUT /system/settings): one JSON value per key;
-- version grows with every change so that replicas notice it.
CREATE TABLE settings (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    version    bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT ''
);
