-- 003: rollup tiers of the raw samples — 5 minutes, 1 hour, 1 day — with
-- per-counter min, max, sum and count (avg = vsum / vcnt), and the state of
-- the rollup job.
--
-- Every tier has the same columns, whatever builds it, so that queries do not
-- care (store.QueryRange):
--
--   series_id bigint, ts timestamptz (bucket start, UTC-aligned),
--   vmin real[], vmax real[], vsum float8[], vcnt int[]
--
-- Element i describes counters[i] of the series, like samples.v[i]; vcnt[i] is
-- how many non-NULL raw values the bucket had, and vmin/vmax/vsum[i] are NULL
-- when it is 0. Sums are float8 so that a day of float4 values adds up
-- without losing digits.
--
-- Without TimescaleDB the tiers are plain tables maintained by the Go job
-- store.RunRollups (5 min from raw, 1 h from 5 min, 1 day from 1 h), and
-- retention deletes old buckets (store.ApplyRetention). With TimescaleDB they
-- are continuous aggregates (1 h and 1 day hierarchical on the tier below)
-- with refresh, compression and retention policies.

-- Element-wise aggregates over the value arrays. NULL elements are skipped;
-- arrays of different lengths are combined position by position. They are
-- what the continuous aggregates are made of, and are handy in ad-hoc SQL
-- (e.g. SELECT vmp_max(v) FROM samples WHERE ...). The plain-PostgreSQL
-- rollup job does not use them: built-in aggregates per array position
-- (min(v[1]), min(v[2]), ...) measured over ten times faster than four
-- PL/pgSQL transition functions per row.
CREATE FUNCTION vmp_least(a real[], b real[]) RETURNS real[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    FOR i IN 1 .. greatest(cardinality(a), cardinality(b)) LOOP
        a[i] := least(a[i], b[i]);
    END LOOP;
    RETURN a;
END
$$;

CREATE FUNCTION vmp_greatest(a real[], b real[]) RETURNS real[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    FOR i IN 1 .. greatest(cardinality(a), cardinality(b)) LOOP
        a[i] := greatest(a[i], b[i]);
    END LOOP;
    RETURN a;
END
$$;

CREATE FUNCTION vmp_sum_acc(s float8[], v real[]) RETURNS float8[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF v IS NULL THEN RETURN s; END IF;
    IF s IS NULL THEN RETURN v::float8[]; END IF;
    FOR i IN 1 .. cardinality(v) LOOP
        IF v[i] IS NOT NULL THEN s[i] := coalesce(s[i], 0) + v[i]; END IF;
    END LOOP;
    RETURN s;
END
$$;

CREATE FUNCTION vmp_sum_acc(s float8[], v float8[]) RETURNS float8[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF v IS NULL THEN RETURN s; END IF;
    IF s IS NULL THEN RETURN v; END IF;
    FOR i IN 1 .. cardinality(v) LOOP
        IF v[i] IS NOT NULL THEN s[i] := coalesce(s[i], 0) + v[i]; END IF;
    END LOOP;
    RETURN s;
END
$$;

CREATE FUNCTION vmp_sum_acc(s int[], v int[]) RETURNS int[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF v IS NULL THEN RETURN s; END IF;
    IF s IS NULL THEN RETURN v; END IF;
    FOR i IN 1 .. cardinality(v) LOOP
        IF v[i] IS NOT NULL THEN s[i] := coalesce(s[i], 0) + v[i]; END IF;
    END LOOP;
    RETURN s;
END
$$;

CREATE FUNCTION vmp_count_acc(s int[], v real[]) RETURNS int[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF v IS NULL THEN RETURN s; END IF;
    IF s IS NULL THEN s := array_fill(0, ARRAY[cardinality(v)]); END IF;
    FOR i IN 1 .. cardinality(v) LOOP
        IF v[i] IS NOT NULL THEN s[i] := coalesce(s[i], 0) + 1; END IF;
    END LOOP;
    RETURN s;
END
$$;

CREATE AGGREGATE vmp_min(real[]) (
    sfunc = vmp_least, stype = real[], combinefunc = vmp_least, parallel = safe);
CREATE AGGREGATE vmp_max(real[]) (
    sfunc = vmp_greatest, stype = real[], combinefunc = vmp_greatest, parallel = safe);
CREATE AGGREGATE vmp_sum(real[]) (
    sfunc = vmp_sum_acc, stype = float8[], combinefunc = vmp_sum_acc, parallel = safe);
CREATE AGGREGATE vmp_sum(float8[]) (
    sfunc = vmp_sum_acc, stype = float8[], combinefunc = vmp_sum_acc, parallel = safe);
-- vmp_sum(int[]) adds up counts (vcnt) when a tier is built from the one below.
CREATE AGGREGATE vmp_sum(int[]) (
    sfunc = vmp_sum_acc, stype = int[], combinefunc = vmp_sum_acc, parallel = safe);
CREATE AGGREGATE vmp_count(real[]) (
    sfunc = vmp_count_acc, stype = int[], combinefunc = vmp_sum_acc, parallel = safe);

-- One row of job state. received_until is the ingest-ledger watermark of the
-- rollup job: batches received before it are rolled up. The *_before columns
-- record how far retention has deleted each tier (everything before them is
-- gone), so that the job never rebuilds a bucket from a tier that was already
-- trimmed, and queries skip to a coarser tier for older ranges.
CREATE TABLE rollup_state (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    received_until timestamptz NOT NULL DEFAULT '-infinity',
    raw_before     timestamptz NOT NULL DEFAULT '-infinity',
    r5m_before     timestamptz NOT NULL DEFAULT '-infinity',
    r1h_before     timestamptz NOT NULL DEFAULT '-infinity',
    r1d_before     timestamptz NOT NULL DEFAULT '-infinity',
    last_run_at    timestamptz
);
INSERT INTO rollup_state DEFAULT VALUES;
{{if not .timescale}}
-- Plain tables. They are not partitioned: each tier is 12x (5 min), 720x
-- (1 h) and 17,280x (1 day) smaller than 20-second raw data, so even the 5
-- minute tier of 10,000 series is ~2.9 M rows a day, which a daily DELETE
-- of the expired day handles in seconds (the BRIN index on ts finds them; the
-- job and live ingest append in roughly time order, so the BRIN stays
-- selective) and autovacuum recycles. Partitions would need the
-- create-ahead machinery of the raw table for every backfilled month, for
-- little gain at these sizes.
CREATE TABLE samples_5m (
    series_id bigint NOT NULL,
    ts        timestamptz NOT NULL,
    vmin      real[] NOT NULL,
    vmax      real[] NOT NULL,
    vsum      float8[] NOT NULL,
    vcnt      int[] NOT NULL,
    PRIMARY KEY (series_id, ts)
);
CREATE INDEX samples_5m_ts_brin ON samples_5m USING brin (ts);

CREATE TABLE samples_1h (LIKE samples_5m INCLUDING ALL);
CREATE TABLE samples_1d (LIKE samples_5m INCLUDING ALL);
{{else}}
-- Continuous aggregates. The 1 h and 1 day tiers are hierarchical (built
-- from the tier below, finalized form), so a refresh reads 12x / 24x fewer
-- rows than from raw. Real-time aggregation is on: the newest buckets that
-- no refresh has materialized yet are computed at query time, as the plain
-- job's tables are at most one job period behind.
CREATE MATERIALIZED VIEW samples_5m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT series_id, time_bucket(INTERVAL '5 minutes', ts) AS ts,
       vmp_min(v) AS vmin, vmp_max(v) AS vmax, vmp_sum(v) AS vsum, vmp_count(v) AS vcnt
FROM samples
GROUP BY series_id, time_bucket(INTERVAL '5 minutes', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW samples_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT series_id, time_bucket(INTERVAL '1 hour', ts) AS ts,
       vmp_min(vmin) AS vmin, vmp_max(vmax) AS vmax, vmp_sum(vsum) AS vsum, vmp_sum(vcnt) AS vcnt
FROM samples_5m
GROUP BY series_id, time_bucket(INTERVAL '1 hour', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW samples_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT series_id, time_bucket(INTERVAL '1 day', ts) AS ts,
       vmp_min(vmin) AS vmin, vmp_max(vmax) AS vmax, vmp_sum(vsum) AS vsum, vmp_sum(vcnt) AS vcnt
FROM samples_1h
GROUP BY series_id, time_bucket(INTERVAL '1 day', ts)
WITH NO DATA;

-- Refresh windows reach back close to the retention of the tier below, so
-- late data (an offline site syncing days later) is rolled up as long as the
-- rows it lands among still exist; only invalidated buckets are recomputed,
-- so a wide window costs nothing when nothing arrived late.
SELECT add_continuous_aggregate_policy('samples_5m',
    start_offset => INTERVAL '13 days', end_offset => INTERVAL '5 minutes',
    schedule_interval => INTERVAL '5 minutes');
SELECT add_continuous_aggregate_policy('samples_1h',
    start_offset => INTERVAL '59 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes');
SELECT add_continuous_aggregate_policy('samples_1d',
    start_offset => INTERVAL '399 days', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '6 hours');

-- Raw chunks are compressed after two days: by then live data is complete,
-- and late rows still go in (TimescaleDB decompresses the affected segment).
ALTER TABLE samples SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'series_id',
    timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('samples', compress_after => INTERVAL '2 days');

-- Retention: the defaults of store.DefaultRetention (store.ApplyRetention
-- retunes these policies to the configured durations).
SELECT add_retention_policy('samples', drop_after => INTERVAL '14 days');
SELECT add_retention_policy('samples_5m', drop_after => INTERVAL '60 days');
SELECT add_retention_policy('samples_1h', drop_after => INTERVAL '400 days');
SELECT add_retention_policy('samples_1d', drop_after => INTERVAL '1825 days');
{{end}}
