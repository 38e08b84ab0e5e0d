package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DatabaseInfo describes the PostgreSQL server behind the store.
type DatabaseInfo struct {
	// ServerVersion is PostgreSQL's server_version ("16.4 (Debian …)").
	ServerVersion string
	// Timescale reports whether samples is a TimescaleDB hypertable;
	// TimescaleVersion is the installed extension's version, "" without it.
	Timescale        bool
	TimescaleVersion string
	// SizeBytes is pg_database_size of the current database.
	SizeBytes int64
}

// DatabaseInfo reads the server version, the TimescaleDB extension version
// and the database size.
func (s *Store) DatabaseInfo(ctx context.Context) (DatabaseInfo, error) {
	info := DatabaseInfo{Timescale: s.Timescale()}
	err := s.pool.QueryRow(ctx, `
		SELECT current_setting('server_version'),
		       coalesce((SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), ''),
		       pg_database_size(current_database())`).Scan(&info.ServerVersion, &info.TimescaleVersion, &info.SizeBytes)
	if err != nil {
		return info, fmt.Errorf("store: database info: %w", err)
	}
	return info, nil
}

// DatabaseSize is pg_database_size of the current database, in bytes.
func (s *Store) DatabaseSize(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: database size: %w", err)
	}
	return n, nil
}

// TableUsage is one table's share of the database.
type TableUsage struct {
	// Name is the table's name; the raw samples table is one entry
	// "samples" with its daily partitions (or TimescaleDB chunks) summed.
	Name string
	// Resolution is the storage tier the table holds (raw, 5m, 1h, 1d), ""
	// for tables that are not a tier of samples.
	Resolution Resolution
	// Bytes is pg_total_relation_size (table, indexes, TOAST) summed over
	// partitions or chunks.
	Bytes int64
	// Rows is an estimate: pg_class.reltuples as of the last ANALYZE or
	// autovacuum, else pg_stat_user_tables.n_live_tup.
	Rows int64
	// Partitions counts the daily partitions (or chunks) of a partitioned
	// table, 0 for a plain table.
	Partitions int
	// Oldest and Newest are the tier's first and last sample times, nil
	// when the tier is empty or for a table that is not a tier.
	Oldest, Newest *time.Time
}

// tableUsageSQL lists the tables of the current schema, partitions folded
// into their parent. Sizes and row estimates come from the catalogs only.
const tableUsageSQL = `
	WITH tables AS (
		SELECT c.oid, c.relname, c.relkind
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
	), parts AS ( -- a plain table is its own only leaf
		SELECT t.oid AS root, t.oid AS relid, true AS isleaf, 0 AS level FROM tables t WHERE t.relkind = 'r'
		UNION ALL
		SELECT t.oid, p.relid, p.isleaf, p.level FROM tables t, pg_partition_tree(t.oid) p WHERE t.relkind = 'p'
	)
	SELECT t.relname,
	       coalesce(sum(pg_total_relation_size(p.relid)), 0)::bigint,
	       coalesce(sum(CASE WHEN NOT p.isleaf THEN 0 WHEN k.reltuples >= 0 THEN k.reltuples ELSE coalesce(st.n_live_tup, 0) END), 0)::bigint,
	       count(*) FILTER (WHERE p.level > 0)::int
	FROM tables t
	JOIN parts p ON p.root = t.oid
	JOIN pg_class k ON k.oid = p.relid
	LEFT JOIN pg_stat_user_tables st ON st.relid = p.relid
	GROUP BY t.relname
	ORDER BY t.relname`

// Storage reports every table's size and row estimate, and the time range
// of each storage tier. The time ranges are found without scanning a tier:
// for each series, the first (last) row of the (series_id, ts) primary key
// index, so the cost grows with the number of series, not of samples; for
// the raw tier only the oldest and newest non-empty daily partitions are
// probed.
func (s *Store) Storage(ctx context.Context) ([]TableUsage, error) {
	rows, err := s.pool.Query(ctx, tableUsageSQL)
	if err != nil {
		return nil, fmt.Errorf("store: storage: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TableUsage, error) {
		var u TableUsage
		err := r.Scan(&u.Name, &u.Bytes, &u.Rows, &u.Partitions)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: storage: %w", err)
	}
	if s.Timescale() {
		if out, err = s.timescaleUsage(ctx, out); err != nil {
			return nil, err
		}
	}
	for i := range out {
		for _, t := range tiers {
			if out[i].Name != t.table {
				continue
			}
			out[i].Resolution = t.res
			if out[i].Oldest, out[i].Newest, err = s.tierRange(ctx, t); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// timescaleUsage replaces the sizes of the hypertable samples and adds the
// continuous aggregates (views, so not in the table list) with the sizes of
// their materialization hypertables.
func (s *Store) timescaleUsage(ctx context.Context, in []TableUsage) ([]TableUsage, error) {
	for i := range in {
		if in[i].Name != "samples" {
			continue
		}
		err := s.pool.QueryRow(ctx, `
			SELECT hypertable_size('samples'), approximate_row_count('samples'),
			       (SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'samples')::int`).
			Scan(&in[i].Bytes, &in[i].Rows, &in[i].Partitions)
		if err != nil {
			return nil, fmt.Errorf("store: storage: samples hypertable: %w", err)
		}
	}
	for _, t := range tiers[1:] {
		u := TableUsage{Name: t.table}
		err := s.pool.QueryRow(ctx, `
			SELECT hypertable_size(m), approximate_row_count(m),
			       (SELECT count(*) FROM timescaledb_information.chunks ch
			         WHERE ch.hypertable_schema = a.materialization_hypertable_schema
			           AND ch.hypertable_name = a.materialization_hypertable_name)::int
			FROM timescaledb_information.continuous_aggregates a,
			     LATERAL format('%I.%I', a.materialization_hypertable_schema, a.materialization_hypertable_name)::regclass m
			WHERE a.view_name = $1`, t.table).Scan(&u.Bytes, &u.Rows, &u.Partitions)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store: storage: %s: %w", t.table, err)
		}
		in = append(in, u)
	}
	return in, nil
}

// tierRangeSQL finds the oldest and newest ts of a (series_id, ts)-keyed
// table with one index probe per series at each end.
const tierRangeSQL = `
	SELECT (SELECT min(x.ts) FROM series s CROSS JOIN LATERAL
	          (SELECT ts FROM %[1]s WHERE series_id = s.id ORDER BY ts LIMIT 1) x),
	       (SELECT max(x.ts) FROM series s CROSS JOIN LATERAL
	          (SELECT ts FROM %[1]s WHERE series_id = s.id ORDER BY ts DESC LIMIT 1) x)`

// tierRange returns the tier's oldest and newest sample times, nil when it
// holds none.
func (s *Store) tierRange(ctx context.Context, t tier) (oldest, newest *time.Time, err error) {
	if t.res == ResolutionRaw && !s.Timescale() {
		return s.rawRange(ctx)
	}
	// On TimescaleDB the tiers are continuous aggregates with real-time
	// aggregation: the probes go through the view, which answers the
	// newest buckets from raw data.
	if err := s.pool.QueryRow(ctx, fmt.Sprintf(tierRangeSQL, pgx.Identifier{t.table}.Sanitize())).Scan(&oldest, &newest); err != nil {
		return nil, nil, fmt.Errorf("store: storage: time range of %s: %w", t.table, err)
	}
	return utc(oldest), utc(newest), nil
}

// rawRange probes the oldest and the newest non-empty daily partitions.
func (s *Store) rawRange(ctx context.Context) (oldest, newest *time.Time, err error) {
	parts, err := s.Partitions(ctx)
	if err != nil {
		return nil, nil, err
	}
	probe := func(p Partition, desc bool) (*time.Time, error) {
		q := fmt.Sprintf(tierRangeSQL, pgx.Identifier{p.Name}.Sanitize())
		var lo, hi *time.Time
		if err := s.pool.QueryRow(ctx, q).Scan(&lo, &hi); err != nil {
			return nil, fmt.Errorf("store: storage: time range of %s: %w", p.Name, err)
		}
		if desc {
			return utc(hi), nil
		}
		return utc(lo), nil
	}
	for _, p := range parts {
		if oldest, err = probe(p, false); err != nil || oldest != nil {
			break
		}
	}
	if err != nil || oldest == nil {
		return nil, nil, err
	}
	for i := len(parts) - 1; i >= 0; i-- {
		if newest, err = probe(parts[i], true); err != nil || newest != nil {
			break
		}
	}
	return oldest, newest, err
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
