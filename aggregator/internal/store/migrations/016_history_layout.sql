-- 016: a read-optimized copy of the hourly rollup tier, so that a month of
-- one counter of many series reads one short index entry per (series,
-- counter, day) instead of 720 heap rows carrying every counter.
--
-- samples_1h stays the tier of record (the rollup job writes it and builds
-- the daily tier from it). The rollup job (store.RunRollups, plain
-- PostgreSQL only) copies closed hours into samples_1h_days, counter by
-- counter: each hour once it has closed (one part per run, h0 its first
-- hour), and once a UTC day has closed, the day again as one part (h0 = 0)
-- in place of its hourly parts. samples_1h_packed records, per day, which
-- hours are copied: [day, packed_until). Late data that rewrites copied
-- hourly buckets repacks that day for the site in the same transaction, so
-- the copy never disagrees with samples_1h. QueryRange reads the copy for
-- the hours it covers and samples_1h for the others (the current hour).
--
-- b holds the non-empty hours of the part in hour order, 21 bytes each, in
-- network byte order: hour of the day (uint8, 0-23), vmin (float4), vmax
-- (float4), vsum (float8), vcnt (int4 > 0); the values of samples_1h's
-- arrays at position k. A counter without any value in the part has no row.
--
-- The primary key's index INCLUDEs b, so that a query reads each series'
-- month as a few adjacent index pages (an index-only scan: the job vacuums
-- the table after writing), whatever order the days were written in; the
-- heap, written day by day, would scatter one series over a page per day.
--
-- Only days within store.PackHorizon are copied (longer ranges are answered
-- by the daily tier); retention deletes older ones.
CREATE TABLE samples_1h_days (
    series_id bigint NOT NULL,
    k         smallint NOT NULL,
    day       date NOT NULL,
    h0        smallint NOT NULL CHECK (h0 BETWEEN 0 AND 23),
    b         bytea NOT NULL,
    PRIMARY KEY (series_id, k, day, h0) INCLUDE (b)
);

CREATE TABLE samples_1h_packed (
    day          date PRIMARY KEY,
    packed_until timestamptz NOT NULL,
    whole        boolean NOT NULL DEFAULT false,
    packed_at    timestamptz NOT NULL DEFAULT now()
);
