package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/protocol"
)

// Resolution names the tier of stored data that answers a query.
type Resolution string

// The tiers, finest first. Raw is what agents sent (20 s realtime for VMs and
// hosts, 5 min for clusters and datastores); the others are rollups whose
// buckets start at UTC-aligned multiples of their width.
const (
	ResolutionRaw Resolution = "raw"
	Resolution5m  Resolution = "5m"
	Resolution1h  Resolution = "1h"
	Resolution1d  Resolution = "1d"
)

// tier describes one level of stored data.
type tier struct {
	res   Resolution
	table string
	width time.Duration // 0 for raw
}

// tiers lists the levels finest first; tiers[i+1] is built from tiers[i].
var tiers = [...]tier{
	{ResolutionRaw, "samples", 0},
	{Resolution5m, "samples_5m", 5 * time.Minute},
	{Resolution1h, "samples_1h", time.Hour},
	{Resolution1d, "samples_1d", day},
}

// Width returns the bucket width of the tier, 0 for raw data.
func (r Resolution) Width() time.Duration {
	for _, t := range tiers {
		if t.res == r {
			return t.width
		}
	}
	return 0
}

const (
	// rollupLock serializes the rollup job and rollup retention across
	// aggregators sharing a database.
	rollupLock = "vmpulse.rollups"
	// ingestTxHorizon bounds how long an open transaction of another session
	// may hold the ledger watermark back (see RunRollups). Ingest
	// transactions last well under a second; a session that has been in a
	// transaction longer (a pg_dump, an idle psql) is not an ingest and must
	// not stall the rollups.
	ingestTxHorizon = 15 * time.Minute
)

// TierReport says what a rollup run did to one tier.
type TierReport struct {
	// Buckets is how many (series, bucket) rows were recomputed.
	Buckets int64
	// Written is how many of them were new or changed.
	Written int64
	// SourceRows is how many rows of the tier below were read.
	SourceRows int64
}

// RollupReport says what RunRollups did.
type RollupReport struct {
	// Skipped is why nothing ran: "timescaledb" (continuous aggregates do
	// the work) or "busy" (another aggregator holds the rollup lock). Empty
	// when the job ran.
	Skipped string
	// From and To bound the ledger receive times covered: batches received
	// in [From, To) were rolled up. To is the new watermark.
	From, To time.Time
	// Batches is how many samples batches the window held; Spans how many
	// (site, time range) pieces they merged into.
	Batches, Spans int
	// R5m, R1h and R1d report the three tiers.
	R5m, R1h, R1d TierReport
	// Pack reports the packed copy of the hourly tier: days repacked
	// because the run changed their copied hourly buckets, and the hours
	// and days copied after the run (see PackHours).
	Pack PackReport
	// ClusterRows is how many cluster aggregate rows (migration 018) the
	// run's hours recomputed in the same transaction; Clusters what the
	// rebuilds after it did (see SyncClusters).
	ClusterRows int64
	Clusters    ClusterReport
	// Duration is the wall time of the run.
	Duration time.Duration
}

// span is a time range [lo, hi) of one site's series to recompute.
type span struct {
	site   string
	lo, hi time.Time
}

// RunRollups brings the rollup tables of a plain-PostgreSQL store up to date
// with the batches received since its previous run, and returns what it did.
// Call it on a schedule (every minute is reasonable); it is a no-op on
// TimescaleDB, whose continuous aggregates refresh themselves.
//
// It recomputes exactly the buckets touched by the samples batches whose
// ledger rows were received in [watermark, cutoff): the 5 min buckets of the
// batch's site's series over the batch's data time range from raw, then the
// 1 h buckets over those from 5 min, then the 1 day buckets from 1 h, each
// with INSERT … ON CONFLICT DO UPDATE. Buckets are recomputed, not
// incremented, so a rerun, late data and out-of-order data all converge to
// the same rows. The watermark advances in the same transaction, under a
// transaction-level advisory lock; a second aggregator that finds the lock
// taken returns at once with Skipped "busy".
//
// The cutoff is the earliest of now, the database's clock, and the start of
// the oldest other open transaction (younger than 15 minutes) on the
// database: a ledger row's received_at is its transaction's start time, so
// a batch still committing when the job runs has a received_at at or after
// the cutoff and is picked up by the next run, never skipped.
//
// Buckets older than what retention has already trimmed from the tier they
// are built from are left alone: data arriving that late lands in raw
// storage (until retention drops it) but is not rolled up.
func (s *Store) RunRollups(ctx context.Context, now time.Time) (RollupReport, error) {
	start := time.Now()
	if s.Timescale() {
		return RollupReport{Skipped: "timescaledb"}, nil
	}
	var rep RollupReport
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return rep, fmt.Errorf("store: rollups: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	var locked bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtext($1))`, rollupLock).Scan(&locked); err != nil {
		return rep, fmt.Errorf("store: rollups: lock: %w", err)
	}
	if !locked {
		rep.Skipped = "busy"
		rep.Duration = time.Since(start)
		return rep, nil
	}
	st, err := readRollupState(ctx, tx)
	if err != nil {
		return rep, err
	}
	err = tx.QueryRow(ctx, `
		SELECT least($1::timestamptz, now(), coalesce((
			SELECT min(xact_start) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()
			  AND backend_type = 'client backend' AND xact_start > now() - $2::bigint * interval '1 microsecond'),
			'infinity'))`, now, ingestTxHorizon.Microseconds()).Scan(&rep.To)
	if err != nil {
		return rep, fmt.Errorf("store: rollups: cutoff: %w", err)
	}
	rep.From = st.receivedUntil
	if !rep.To.After(rep.From) {
		rep.To = rep.From
		rep.Duration = time.Since(start)
		return rep, tx.Commit(ctx)
	}

	spans, batches, err := dirtySpans(ctx, tx, rep.From, rep.To)
	if err != nil {
		return rep, err
	}
	rep.Batches = batches
	// Each tier is rebuilt only above the retention cutoff of its source.
	s5 := alignSpans(spans, tiers[1].width, st.before[0])
	s1h := alignSpans(s5, tiers[2].width, st.before[1])
	s1d := alignSpans(s1h, tiers[3].width, st.before[2])
	rep.Spans = len(s5)
	for i, step := range []struct {
		spans []span
		rep   *TierReport
	}{{s5, &rep.R5m}, {s1h, &rep.R1h}, {s1d, &rep.R1d}} {
		if len(step.spans) == 0 {
			continue
		}
		if *step.rep, err = rollupTier(ctx, tx, tiers[i], tiers[i+1], step.spans); err != nil {
			return rep, err
		}
	}
	if rep.Pack, err = repackTouched(ctx, tx, s1h); err != nil {
		return rep, err
	}
	if rep.ClusterRows, err = clusterAggregate(ctx, tx, s1h, "", ""); err != nil {
		return rep, err
	}
	if _, err := tx.Exec(ctx, `UPDATE rollup_state SET received_until = $1, last_run_at = now()`, rep.To); err != nil {
		return rep, fmt.Errorf("store: rollups: advance watermark: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return rep, fmt.Errorf("store: rollups: commit: %w", err)
	}
	newly, err := s.packHours(ctx, now, packPerRun)
	rep.Pack.Days, rep.Pack.Hours, rep.Pack.Rows = newly.Days, newly.Hours, rep.Pack.Rows+newly.Rows
	if err == nil && rep.Pack.Rows > 0 {
		err = s.vacuumPacked(ctx)
	}
	if err != nil {
		return rep, err
	}
	if rep.Clusters, err = s.SyncClusters(ctx, now, clusterRebuildsPerRun); err != nil {
		return rep, err
	}
	rep.Duration = time.Since(start)
	s.log.Debug("rollups", "batches", rep.Batches, "spans", rep.Spans, "raw_rows", rep.R5m.SourceRows,
		"buckets_5m", rep.R5m.Buckets, "buckets_1h", rep.R1h.Buckets, "buckets_1d", rep.R1d.Buckets, "duration", rep.Duration)
	return rep, nil
}

// rollupState is the rollup_state row.
type rollupState struct {
	receivedUntil time.Time
	// before[i] is the retention cutoff of tiers[i]: rows before it are gone.
	before [4]time.Time
}

func readRollupState(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (rollupState, error) {
	// -infinity (never) reads as the Unix epoch, before any accepted sample.
	var st rollupState
	err := q.QueryRow(ctx, `
		SELECT greatest(received_until, 'epoch'), greatest(raw_before, 'epoch'), greatest(r5m_before, 'epoch'),
		       greatest(r1h_before, 'epoch'), greatest(r1d_before, 'epoch')
		FROM rollup_state`).Scan(&st.receivedUntil, &st.before[0], &st.before[1], &st.before[2], &st.before[3])
	if err != nil {
		return st, fmt.Errorf("store: read rollup state: %w", err)
	}
	return st, nil
}

// dirtySpans returns the 5-minute-aligned time ranges, per site, of the
// samples batches received in [from, to), with overlapping or adjacent
// ranges merged (gaps and islands, in SQL so that a long backlog of batches
// never crosses the wire), and how many batches there were. A batch from an
// agent no longer registered dirties its range on every site.
func dirtySpans(ctx context.Context, tx pgx.Tx, from, to time.Time) ([]span, int, error) {
	rows, err := tx.Query(ctx, `
		WITH b AS (
			SELECT a.site,
			       date_bin('5 minutes', l.first_ts, 'epoch') AS lo,
			       date_bin('5 minutes', l.last_ts, 'epoch') + interval '5 minutes' AS hi
			FROM ingest_ledger l LEFT JOIN agents a ON a.id = l.agent_id
			WHERE l.received_at >= $1 AND l.received_at < $2 AND l.kind = $3 AND l.first_ts IS NOT NULL
		), m AS (
			SELECT site, lo, hi, max(hi) OVER (PARTITION BY site ORDER BY lo, hi
			                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_hi
			FROM b
		), g AS (
			SELECT site, lo, hi, count(*) FILTER (WHERE prev_hi IS NULL OR lo > prev_hi)
			                     OVER (PARTITION BY site ORDER BY lo, hi) AS island
			FROM m
		)
		SELECT site, min(lo), max(hi), count(*) FROM g GROUP BY site, island`,
		from, to, int16(protocol.KindSamples))
	if err != nil {
		return nil, 0, fmt.Errorf("store: rollups: read ledger: %w", err)
	}
	var out, orphans []span
	batches := 0
	for rows.Next() {
		var sp span
		var site *string
		var n int
		if err := rows.Scan(&site, &sp.lo, &sp.hi, &n); err != nil {
			rows.Close()
			return nil, 0, fmt.Errorf("store: rollups: read ledger: %w", err)
		}
		batches += n
		if site == nil {
			orphans = append(orphans, sp)
			continue
		}
		sp.site = *site
		out = append(out, sp)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("store: rollups: read ledger: %w", err)
	}
	if len(orphans) > 0 {
		srows, err := tx.Query(ctx, `SELECT DISTINCT site FROM series`)
		if err != nil {
			return nil, 0, fmt.Errorf("store: rollups: list sites: %w", err)
		}
		sites, err := pgx.CollectRows(srows, pgx.RowTo[string])
		if err != nil {
			return nil, 0, fmt.Errorf("store: rollups: list sites: %w", err)
		}
		for _, o := range orphans {
			for _, site := range sites {
				out = append(out, span{site: site, lo: o.lo, hi: o.hi})
			}
		}
	}
	return out, batches, nil
}

// alignSpans widens spans to whole buckets of width, drops what lies before
// floor (rounded up to a bucket), and merges overlapping or adjacent spans
// of the same site. The result is sorted by site and time.
func alignSpans(in []span, width time.Duration, floor time.Time) []span {
	floor = ceilTime(floor, width)
	out := make([]span, 0, len(in))
	for _, sp := range in {
		sp.lo, sp.hi = sp.lo.Truncate(width), ceilTime(sp.hi, width)
		if sp.lo.Before(floor) {
			sp.lo = floor
		}
		if sp.lo.Before(sp.hi) {
			out = append(out, sp)
		}
	}
	slices.SortFunc(out, func(a, b span) int {
		if c := strings.Compare(a.site, b.site); c != 0 {
			return c
		}
		return a.lo.Compare(b.lo)
	})
	merged := out[:0]
	for _, sp := range out {
		if n := len(merged); n > 0 && merged[n-1].site == sp.site && !sp.lo.After(merged[n-1].hi) {
			if sp.hi.After(merged[n-1].hi) {
				merged[n-1].hi = sp.hi
			}
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}

// ceilTime rounds t up to a multiple of d (UTC-aligned for any d dividing a
// day: Truncate counts from the zero time, a UTC midnight).
func ceilTime(t time.Time, d time.Duration) time.Time {
	if tt := t.Truncate(d); !tt.Equal(t) {
		return tt.Add(d)
	}
	return t
}

// rollupTier recomputes the buckets of dst covering spans from src. Spans
// of one site never overlap, and sites never share series, so each bucket is
// computed once per statement as ON CONFLICT DO UPDATE requires. Unchanged
// buckets are not rewritten. The statement aggregates series by series (a
// LATERAL subquery over the primary key's index): the hash table then holds
// one series' buckets, where one hash over all of them outgrew work_mem and
// measured 1.5x slower for a day of 1,000 series.
func rollupTier(ctx context.Context, tx pgx.Tx, src, dst tier, spans []span) (TierReport, error) {
	sites := make([]string, len(spans))
	los := make([]time.Time, len(spans))
	his := make([]time.Time, len(spans))
	for i, sp := range spans {
		sites[i], los[i], his[i] = sp.site, sp.lo, sp.hi
	}
	var rep TierReport
	var n int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(cardinality(counters)), 0) FROM series WHERE site = ANY($1)`, sites).Scan(&n); err != nil {
		return rep, fmt.Errorf("store: rollups: %s: counters: %w", dst.table, err)
	}
	if n == 0 {
		return rep, nil
	}
	err := tx.QueryRow(ctx, rollupSQL(src, dst, n), sites, los, his, dst.width.Microseconds()).
		Scan(&rep.Buckets, &rep.SourceRows, &rep.Written)
	if err != nil {
		return rep, fmt.Errorf("store: rollups: %s from %s: %w", dst.table, src.table, err)
	}
	return rep, nil
}

// rollupSQL builds the statement that recomputes dst from src over the spans
// ($1 sites, $2 lows, $3 highs; $4 the bucket width in µs), for series of at
// most n counters. Each counter position is folded by a built-in aggregate
// (min(v[1]), min(v[2]), …), and the arrays are cut to the series' own
// length: this measured six times faster than unnesting the values and
// grouping by position, and over ten times faster than the PL/pgSQL vmp_*
// aggregates. From raw: min, max, sum and count of the values; from a rollup
// tier: min of mins, max of maxes, sum of sums and sum of counts, so averages
// are never averaged.
func rollupSQL(src, dst tier, n int) string {
	fold := func(format string) string {
		return "(" + arrayOfPositions(n, format) + ")[1:cardinality(se.counters)]"
	}
	var aggs string
	if src.width == 0 {
		aggs = fold("min(s.v[%d])") + " AS vmin, " + fold("max(s.v[%d])") + " AS vmax, " +
			fold("sum(s.v[%d]::float8)") + " AS vsum, " + fold("count(s.v[%d])::int") + " AS vcnt"
	} else {
		aggs = fold("min(s.vmin[%d])") + " AS vmin, " + fold("max(s.vmax[%d])") + " AS vmax, " +
			fold("sum(s.vsum[%d])") + " AS vsum, " + fold("sum(s.vcnt[%d])::int") + " AS vcnt"
	}
	return `
		WITH agg AS (
			SELECT se.id AS series_id, x.*
			FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS d(site, lo, hi)
			JOIN series se ON se.site = d.site
			CROSS JOIN LATERAL (
				SELECT date_bin($4::bigint * interval '1 microsecond', s.ts, 'epoch') AS b,
				       ` + aggs + `, count(*) AS n
				FROM ` + src.table + ` s
				WHERE s.series_id = se.id AND s.ts >= d.lo AND s.ts < d.hi
				GROUP BY 1
			) x
		), ins AS (
			INSERT INTO ` + dst.table + ` AS t (series_id, ts, vmin, vmax, vsum, vcnt)
			SELECT series_id, b, vmin, vmax, vsum, vcnt FROM agg
			ON CONFLICT (series_id, ts) DO UPDATE
			SET vmin = excluded.vmin, vmax = excluded.vmax, vsum = excluded.vsum, vcnt = excluded.vcnt
			WHERE (t.vmin, t.vmax, t.vsum, t.vcnt) IS DISTINCT FROM (excluded.vmin, excluded.vmax, excluded.vsum, excluded.vcnt)
			RETURNING 1
		)
		SELECT (SELECT count(*) FROM agg), (SELECT coalesce(sum(n), 0)::bigint FROM agg), (SELECT count(*) FROM ins)`
}

// Retention says how long each tier is kept; 0 keeps it forever.
type Retention struct {
	Raw, R5m, R1h, R1d time.Duration
}

// DefaultRetention is what the TimescaleDB migration sets up, and a sensible
// configuration for plain PostgreSQL: every range QueryRange answers from a
// tier stays within that tier's retention for recent data.
var DefaultRetention = Retention{Raw: 14 * day, R5m: 60 * day, R1h: 400 * day, R1d: 1825 * day}

// RetentionReport says what ApplyRetention removed.
type RetentionReport struct {
	// DroppedPartitions lists the raw daily partitions dropped.
	DroppedPartitions []string
	// Deleted5m, Deleted1h and Deleted1d count rollup rows deleted.
	Deleted5m, Deleted1h, Deleted1d int64
}

// ApplyRetention removes data older than each tier's retention, measured
// back from now. Call it on a schedule (hourly or daily).
//
// Without TimescaleDB, raw data goes by whole daily partitions
// (DropPartitionsBefore: a day goes once all of it is older than now-Raw),
// and the rollup tiers by DELETE of the buckets that end before their
// cutoff (the tables are small and unpartitioned; see the migration). With
// TimescaleDB, it replaces the four retention policies with ones for the
// given durations, and the policies drop chunks in the background.
//
// Either way the cutoffs are recorded, so that RunRollups never rebuilds a
// bucket from a trimmed source and QueryRange moves to a coarser tier for
// ranges that start before a tier's cutoff. Safe for concurrent use with
// RunRollups (the same advisory lock).
func (s *Store) ApplyRetention(ctx context.Context, now time.Time, r Retention) (RetentionReport, error) {
	var rep RetentionReport
	keep := [4]time.Duration{r.Raw, r.R5m, r.R1h, r.R1d}
	for i, d := range keep {
		if d < 0 {
			return rep, fmt.Errorf("store: retention: negative duration for %s", tiers[i].res)
		}
	}
	// cut[i] is the boundary before which tiers[i] has nothing after this
	// call: whole days for raw partitions, whole buckets for rollups.
	var cut [4]*time.Time
	for i, d := range keep {
		if d == 0 {
			continue
		}
		c := now.Add(-d).UTC()
		if i == 0 {
			c = c.Truncate(day)
		} else {
			c = c.Truncate(tiers[i].width)
		}
		cut[i] = &c
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return rep, fmt.Errorf("store: retention: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, rollupLock); err != nil {
		return rep, fmt.Errorf("store: retention: lock: %w", err)
	}
	// Record first: should a drop below fail, the recorded cutoff only keeps
	// the job away from buckets it could have rebuilt, never the reverse.
	if _, err := tx.Exec(ctx, `
		UPDATE rollup_state SET
			raw_before = greatest(raw_before, coalesce($1::timestamptz, '-infinity')),
			r5m_before = greatest(r5m_before, coalesce($2::timestamptz, '-infinity')),
			r1h_before = greatest(r1h_before, coalesce($3::timestamptz, '-infinity')),
			r1d_before = greatest(r1d_before, coalesce($4::timestamptz, '-infinity'))`,
		cut[0], cut[1], cut[2], cut[3]); err != nil {
		return rep, fmt.Errorf("store: retention: record cutoffs: %w", err)
	}
	if s.Timescale() {
		for i, t := range tiers {
			if _, err := tx.Exec(ctx, `SELECT remove_retention_policy($1::text::regclass, if_exists => true)`, t.table); err != nil {
				return rep, fmt.Errorf("store: retention: remove policy on %s: %w", t.table, err)
			}
			if keep[i] == 0 {
				continue
			}
			if _, err := tx.Exec(ctx, `SELECT add_retention_policy($1::text::regclass, drop_after => justify_hours($2::bigint * interval '1 second'))`,
				t.table, int64(keep[i]/time.Second)); err != nil {
				return rep, fmt.Errorf("store: retention: add policy on %s: %w", t.table, err)
			}
		}
	} else {
		deleted := [4]*int64{nil, &rep.Deleted5m, &rep.Deleted1h, &rep.Deleted1d}
		for i := 1; i < len(tiers); i++ {
			if cut[i] == nil {
				continue
			}
			tag, err := tx.Exec(ctx, `DELETE FROM `+tiers[i].table+` WHERE ts < $1`, *cut[i])
			if err != nil {
				return rep, fmt.Errorf("store: retention: delete from %s: %w", tiers[i].table, err)
			}
			*deleted[i] = tag.RowsAffected()
		}
		// Packed days go with the hourly buckets they copy, and beyond
		// PackHorizon.
		packCut := now.Add(-PackHorizon).UTC().Truncate(day)
		if cut[2] != nil {
			packCut = maxTime(packCut, cut[2].Truncate(day))
		}
		if _, err := tx.Exec(ctx, `DELETE FROM samples_1h_days WHERE day < $1::date`, packCut); err != nil {
			return rep, fmt.Errorf("store: retention: delete packed hours: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM samples_1h_packed WHERE day < $1::date`, packCut); err != nil {
			return rep, fmt.Errorf("store: retention: delete packed days: %w", err)
		}
		// The cluster aggregates keep the same horizon; the hours they
		// hold start no earlier than what is left.
		if _, err := tx.Exec(ctx, `DELETE FROM cluster_vm_1h WHERE ts < $1`, packCut); err != nil {
			return rep, fmt.Errorf("store: retention: delete cluster aggregates: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE cluster_vm_members SET built_from = $1 WHERE built_from < $1`, packCut); err != nil {
			return rep, fmt.Errorf("store: retention: cluster aggregates horizon: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return rep, fmt.Errorf("store: retention: commit: %w", err)
	}
	s.rollups.invalidate()
	if !s.Timescale() && cut[0] != nil {
		if rep.DroppedPartitions, err = s.DropPartitionsBefore(ctx, *cut[0]); err != nil {
			return rep, fmt.Errorf("store: retention: %w", err)
		}
	}
	return rep, nil
}

// arrayOfPositions is the SQL array ARRAY[f(1), ..., f(n)], each element
// format with the counter position k: how rollups and cluster aggregates
// fold every counter position of a series with one aggregate.
func arrayOfPositions(n int, format string) string {
	var b strings.Builder
	b.WriteString("ARRAY[")
	for k := 1; k <= n; k++ {
		if k > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, format, k)
	}
	b.WriteString("]")
	return b.String()
}
