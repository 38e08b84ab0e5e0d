package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// The packed hourly tier (migration 016): the hourly buckets copied counter
// by counter into samples_1h_days, beside the hourly rows of samples_1h
// that stay the tier of record. A month of one counter of 1,000 series is
// then ~30,000 index entries of ~500 bytes, adjacent per series, instead of
// 720,000 heap rows carrying all of each series' counters.

const (
	// PackHorizon is how far back days of the hourly tier are packed:
	// ranges longer than Rollup1hMaxRange are answered by the daily tier,
	// so older packed days would only be read by explicit hourly steps,
	// which the hourly rows still answer.
	PackHorizon = Rollup1hMaxRange + 2*day
	// packHourGrace is how long after an hour ends, by the rollup
	// watermark, it is copied; packDayGrace the same for repacking a whole
	// day as one part. Data arriving later repacks the day for its site.
	packHourGrace = 10 * time.Minute
	packDayGrace  = time.Hour
	// packPartWidth is how many closed hours of an open day are copied at
	// once: each part adds an index entry per (series, counter), which
	// dirties an index page per (series, counter), so parts are a few
	// hours wide; the current part's hours are read from samples_1h.
	packPartWidth = 6 * time.Hour
	// packPerRun bounds the closed days packed whole by one run (a day of
	// 10,000 series × 15 counters takes seconds), newest first.
	packPerRun = 3
	// packSlot is the size of one hour in samples_1h_days.b.
	packSlot = 1 + 4 + 4 + 8 + 4
)

// PackReport says what packing did.
type PackReport struct {
	// Days is how many closed days were packed whole, Hours how many
	// hours were copied as parts of days not closed yet, Repacked how many
	// (site, day) pairs were packed again because late data changed their
	// hourly buckets.
	Days, Hours, Repacked int
	// Rows is how many (series, counter, part) rows were written.
	Rows int64
}

// packSQL copies the hourly buckets in [$1, $2) of day $3 as the part
// starting at hour $4, for the series of the sites $5 (all when NULL).
const packSQL = `
	INSERT INTO samples_1h_days (series_id, k, day, h0, b)
	SELECT s.series_id, c.k, $3::date, $4::smallint,
	       string_agg(set_byte('\x00'::bytea, 0, extract(hour FROM s.ts AT TIME ZONE 'UTC')::int)
	                  || float4send(s.vmin[c.k]) || float4send(s.vmax[c.k])
	                  || float8send(s.vsum[c.k]) || int4send(s.vcnt[c.k]), ''::bytea ORDER BY s.ts)
	FROM samples_1h s CROSS JOIN LATERAL generate_series(1, cardinality(s.vcnt)) AS c(k)
	WHERE s.ts >= $1::timestamptz AND s.ts < $2::timestamptz AND s.vcnt[c.k] > 0
	  AND ($5::text[] IS NULL OR s.series_id IN (SELECT id FROM series WHERE site = ANY($5::text[])))
	GROUP BY s.series_id, c.k`

// packedDay is a samples_1h_packed row: the hours [day, until) are copied.
type packedDay struct {
	day, until time.Time
	whole      bool
}

// packedDays reads the samples_1h_packed rows of the days overlapping
// [lo, hi), oldest first.
func packedDays(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, lo, hi time.Time, forUpdate bool) ([]packedDay, error) {
	sql := `SELECT (day - DATE '1970-01-01')::int, packed_until, whole FROM samples_1h_packed
		WHERE day >= ($1::timestamptz AT TIME ZONE 'UTC')::date AND day < $2::timestamptz AT TIME ZONE 'UTC' ORDER BY day`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	rows, err := q.Query(ctx, sql, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("store: packed days: %w", err)
	}
	defer rows.Close()
	var out []packedDay
	for rows.Next() {
		var dn int32
		var p packedDay
		if err := rows.Scan(&dn, &p.until, &p.whole); err != nil {
			return nil, fmt.Errorf("store: packed days: %w", err)
		}
		p.day = time.Unix(int64(dn)*86400, 0).UTC()
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: packed days: %w", err)
	}
	return out, nil
}

// packPart copies [from, to) of day d as the part starting at from's hour,
// for the series of sites (nil: all).
func packPart(ctx context.Context, tx pgx.Tx, d, from, to time.Time, sites []string) (int64, error) {
	tag, err := tx.Exec(ctx, packSQL, from, to, d, int16(from.Sub(d)/time.Hour), sites)
	if err != nil {
		return 0, fmt.Errorf("store: pack %s %s-%s: %w", d.Format(time.DateOnly), from.Format("15:04"), to.Format("15:04"), err)
	}
	return tag.RowsAffected(), nil
}

// repackDay replaces the copy of day d's hours [d, until) by one part, for
// the series of sites (nil: all).
func repackDay(ctx context.Context, tx pgx.Tx, d, until time.Time, sites []string) (int64, error) {
	if _, err := tx.Exec(ctx, `DELETE FROM samples_1h_days WHERE day = $1::date
		AND ($2::text[] IS NULL OR series_id IN (SELECT id FROM series WHERE site = ANY($2::text[])))`, d, sites); err != nil {
		return 0, fmt.Errorf("store: repack %s: clear: %w", d.Format(time.DateOnly), err)
	}
	if !until.After(d) {
		return 0, nil
	}
	return packPart(ctx, tx, d, d, until, sites)
}

// setPacked records that day d's hours [d, until) are copied.
func setPacked(ctx context.Context, tx pgx.Tx, d, until time.Time, whole bool) error {
	if _, err := tx.Exec(ctx, `INSERT INTO samples_1h_packed (day, packed_until, whole) VALUES ($1::date, $2, $3)
		ON CONFLICT (day) DO UPDATE SET packed_until = excluded.packed_until, whole = excluded.whole, packed_at = now()`,
		d, until, whole); err != nil {
		return fmt.Errorf("store: pack %s: record: %w", d.Format(time.DateOnly), err)
	}
	return nil
}

// repackTouched repacks, in the rollup transaction, the copied hours whose
// hourly buckets the spans just recomputed, day by day for the spans' sites
// only, so that the copy never disagrees with samples_1h.
func repackTouched(ctx context.Context, tx pgx.Tx, spans []span) (PackReport, error) {
	var rep PackReport
	if len(spans) == 0 {
		return rep, nil
	}
	lo, hi := spans[0].lo, spans[0].hi
	for _, sp := range spans {
		lo, hi = minTime(lo, sp.lo), maxTime(hi, sp.hi)
	}
	days, err := packedDays(ctx, tx, lo, hi, false)
	if err != nil {
		return rep, err
	}
	for _, p := range days {
		var sites []string
		for _, sp := range spans { // sorted by site
			if sp.lo.Before(p.until) && sp.hi.After(p.day) && (len(sites) == 0 || sites[len(sites)-1] != sp.site) {
				sites = append(sites, sp.site)
			}
		}
		if len(sites) == 0 {
			continue
		}
		n, err := repackDay(ctx, tx, p.day, p.until, sites)
		if err != nil {
			return rep, err
		}
		rep.Repacked += len(sites)
		rep.Rows += n
	}
	return rep, nil
}

// PackHours brings the packed copy of the hourly tier up to date: it
// copies the closed hours of the days not closed yet in parts of 6 hours
// (00-06, 06-12, 12-18; an hour is closed once the rollup watermark has
// passed its end by 10 minutes), and packs up
// to perRun closed days whole (a day is closed an hour after its end),
// newest first, within PackHorizon of now and above the hourly tier's
// retention cutoff; then it vacuums the copy so that queries read it with
// index-only scans. RunRollups calls it after each run; it is exported for
// tools and benchmarks that write the hourly tier themselves. Each step
// runs in its own transaction under the rollup lock, and is skipped when
// another aggregator holds it. A no-op on TimescaleDB.
func (s *Store) PackHours(ctx context.Context, now time.Time, perRun int) (PackReport, error) {
	rep, err := s.packHours(ctx, now, perRun)
	if err == nil && rep.Rows > 0 {
		err = s.vacuumPacked(ctx)
	}
	return rep, err
}

func (s *Store) vacuumPacked(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `VACUUM (ANALYZE) samples_1h_days`); err != nil {
		return fmt.Errorf("store: pack: vacuum: %w", err)
	}
	return nil
}

func (s *Store) packHours(ctx context.Context, now time.Time, perRun int) (PackReport, error) {
	var rep PackReport
	if s.Timescale() {
		return rep, nil
	}
	st, err := readRollupState(ctx, s.pool)
	if err != nil {
		return rep, err
	}
	first := maxTime(ceilTime(st.before[2], day), now.Add(-PackHorizon).UTC().Truncate(day))
	mark := minTime(st.receivedUntil, now).UTC()
	dayEnd := mark.Add(-packDayGrace).Truncate(day)         // days before it are closed
	hourEnd := mark.Add(-packHourGrace).Truncate(time.Hour) // hours before it are closed

	if first.Before(dayEnd) && perRun > 0 {
		rows, err := s.pool.Query(ctx, `
			SELECT d FROM generate_series($1::timestamptz, $2::timestamptz - interval '1 day', interval '1 day') AS d
			WHERE NOT EXISTS (SELECT 1 FROM samples_1h_packed p WHERE p.day = (d AT TIME ZONE 'UTC')::date AND p.whole)
			ORDER BY d DESC LIMIT $3`, first, dayEnd, perRun)
		if err != nil {
			return rep, fmt.Errorf("store: pack: list days: %w", err)
		}
		days, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
		if err != nil {
			return rep, fmt.Errorf("store: pack: list days: %w", err)
		}
		for _, d := range days {
			d = d.UTC()
			err := s.packStep(ctx, d, func(tx pgx.Tx, p *packedDay) error {
				if p != nil && p.whole {
					return nil
				}
				n, err := repackDay(ctx, tx, d, d.Add(day), nil)
				if err != nil {
					return err
				}
				rep.Days++
				rep.Rows += n
				return setPacked(ctx, tx, d, d.Add(day), true)
			})
			if err != nil {
				return rep, err
			}
		}
	}
	for d := maxTime(dayEnd, first); d.Before(hourEnd); d = d.Add(day) {
		err := s.packStep(ctx, d, func(tx pgx.Tx, p *packedDay) error {
			from, to := d, minTime(d.Add(day), d.Add(hourEnd.Sub(d)/packPartWidth*packPartWidth))
			if p != nil {
				if p.whole {
					return nil
				}
				from = p.until
			}
			if !from.Before(to) {
				return nil
			}
			n, err := packPart(ctx, tx, d, from, to, nil)
			if err != nil {
				return err
			}
			rep.Hours += int(to.Sub(from) / time.Hour)
			rep.Rows += n
			return setPacked(ctx, tx, d, to, false)
		})
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// packStep runs fn for day d in a transaction holding the rollup lock, with
// the day's samples_1h_packed row (nil when there is none) locked. It does
// nothing when another aggregator holds the lock.
func (s *Store) packStep(ctx context.Context, d time.Time, fn func(pgx.Tx, *packedDay) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("store: pack: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	var locked bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtext($1))`, rollupLock).Scan(&locked); err != nil {
		return fmt.Errorf("store: pack: lock: %w", err)
	}
	if !locked {
		return nil
	}
	days, err := packedDays(ctx, tx, d, d.Add(day), true)
	if err != nil {
		return err
	}
	var p *packedDay
	if len(days) > 0 {
		p = &days[0]
	}
	if err := fn(tx, p); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: pack %s: commit: %w", d.Format(time.DateOnly), err)
	}
	return nil
}

// hourAcc accumulates the hourly buckets falling into one step.
type hourAcc struct {
	min, max, sum float64
	cnt           int64
}

func (a *hourAcc) add(vmin, vmax float32, vsum float64, vcnt int32) {
	lo, hi := float64(vmin), float64(vmax)
	if a.cnt == 0 || lo < a.min {
		a.min = lo
	}
	if a.cnt == 0 || hi > a.max {
		a.max = hi
	}
	a.sum += vsum
	a.cnt += int64(vcnt)
}

func (a *hourAcc) value(agg Agg) float64 {
	switch agg {
	case AggMin:
		return a.min
	case AggMax:
		return a.max
	case AggSum:
		return a.sum
	case AggCount:
		return float64(a.cnt)
	}
	return a.sum / float64(a.cnt)
}

// hourlyCounter is one counter of one selected series being accumulated.
type hourlyCounter struct {
	series int // index into the selection
	name   string
	unit   string
	steps  []hourAcc // lazily allocated, one per step (steps over an hour)
	points []Point   // one per hour (hourly steps)
}

// queryHourly answers QueryRange from the hourly tier: packed rows for the
// packed days, hourly rows for the others, all read in one repeatable-read
// snapshot, and combined per step in Go. The result is what rangeSQL gives
// for the hourly tier: every bucket overlapping [From, To) counts whole;
// steps without a value are absent, and so are counters without any point.
func (s *Store) queryHourly(ctx context.Context, q *RangeQuery, agg Agg, step time.Duration) ([]SeriesPoints, error) {
	// The selection: series in the result's order, with the positions,
	// names and units of the wanted counters.
	a := args{q.Counters}
	where := q.seriesWhere(&a)
	selSQL := `
		SELECT se.id, se.site, se.source, se.entity_kind, se.entity_id, se.instance, x.idx, x.names, x.units
		FROM series se CROSS JOIN LATERAL (
			SELECT array_agg(c.i::int ORDER BY c.i) AS idx, array_agg(c.name ORDER BY c.i) AS names,
			       array_agg(coalesce(se.units[c.i], '') ORDER BY c.i) AS units
			FROM unnest(se.counters) WITH ORDINALITY AS c(name, i)
			WHERE coalesce(cardinality($1::text[]), 0) = 0 OR c.name = ANY($1::text[])
		) x
		WHERE ` + where + ` AND x.idx IS NOT NULL
		ORDER BY se.entity_kind, se.entity_id, se.instance, se.id`
	// Buckets overlapping [From, To) start in [lo, To).
	lo, hi := q.From.UTC().Truncate(time.Hour), q.To.UTC()

	// One entity's series (a few at most) are read in one round trip: the
	// selection, then one statement reading the packed rows and the
	// hourly rows of the hours not packed, the latter encoded as packed
	// hours, in one snapshot (queryEntityHourlySQL). Many series (a
	// SeriesIDs list) are read as below, one index scan per counter.
	var rows pgx.Rows
	var br pgx.BatchResults
	var tx pgx.Tx
	var err error
	if len(q.SeriesIDs) == 0 && !entityViaTx.Load() {
		dataArgs := append(slices.Clone(a), lo.Truncate(day), lo, hi)
		n := len(a)
		batch := &pgx.Batch{}
		batch.Queue(selSQL, a...)
		batch.Queue(queryEntityHourlySQL(where, "$"+strconv.Itoa(n+1), "$"+strconv.Itoa(n+2), "$"+strconv.Itoa(n+3)), dataArgs...)
		br = s.pool.SendBatch(ctx, batch)
		defer br.Close()
		rows, err = br.Query()
	} else {
		tx, err = s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return nil, fmt.Errorf("store: query range: begin: %w", err)
		}
		defer tx.Rollback(ctx)
		rows, err = tx.Query(ctx, selSQL, a...)
	}
	if err != nil {
		return nil, fmt.Errorf("store: query range: series: %w", err)
	}
	var sel []SeriesPoints
	var ids []int64
	var counters []hourlyCounter
	byKey := make(map[[2]int64]int) // (series id, position) → index into counters
	kset := make(map[int32]bool)
	pooled := map[string]int{} // with q.pool: counter name → index into counters
	for rows.Next() {
		var sp SeriesPoints
		var idx []int32
		var names, units []string
		if err := rows.Scan(&sp.SeriesID, &sp.Site, &sp.Source, &sp.EntityKind, &sp.EntityID, &sp.Instance, &idx, &names, &units); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: query range: series: %w", err)
		}
		for j, k := range idx {
			if q.pool {
				// One accumulator per counter name, for every series.
				ci, ok := pooled[names[j]]
				if !ok {
					ci = len(counters)
					pooled[names[j]] = ci
					counters = append(counters, hourlyCounter{series: len(sel), name: names[j], unit: units[j]})
				}
				byKey[[2]int64{sp.SeriesID, int64(k)}] = ci
				kset[k] = true
				continue
			}
			byKey[[2]int64{sp.SeriesID, int64(k)}] = len(counters)
			counters = append(counters, hourlyCounter{series: len(sel), name: names[j], unit: units[j]})
			kset[k] = true
		}
		sel = append(sel, sp)
		ids = append(ids, sp.SeriesID)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: query range: series: %w", err)
	}
	if len(sel) == 0 {
		return nil, nil
	}
	ks := make([]int32, 0, len(kset))
	for k := range kset {
		ks = append(ks, k)
	}

	stepSec := int64(step / time.Second)
	loSec, hiSec := lo.Unix(), hi.Unix() // a bucket at t overlaps when loSec <= t < hiSec
	if hi.Nanosecond() > 0 {
		hiSec++
	}
	first := floorDiv(loSec, stepSec)
	nSteps := int(floorDiv(hiSec-1, stepSec)-first) + 1
	// Each hour is stored once (copied hours and hourly rows are disjoint),
	// so with hourly steps every bucket is a point as it is.
	hourly := stepSec == 3600 && !q.pool
	addHour := func(c *hourlyCounter, t int64, vmin, vmax float32, vsum float64, vcnt int32) {
		if t < loSec || t >= hiSec {
			return
		}
		if hourly {
			if c.points == nil {
				c.points = make([]Point, 0, nSteps)
			}
			a := hourAcc{min: float64(vmin), max: float64(vmax), sum: vsum, cnt: int64(vcnt)}
			c.points = append(c.points, Point{T: time.Unix(t, 0).UTC(), V: a.value(agg)})
			return
		}
		if c.steps == nil {
			c.steps = make([]hourAcc, nSteps)
		}
		c.steps[floorDiv(t, stepSec)-first].add(vmin, vmax, vsum, vcnt)
	}

	if br != nil {
		if err := readPacked(br, byKey, counters, addHour); err != nil {
			return nil, err
		}
		return hourlyResult(sel, counters, hourly, first, stepSec, agg), nil
	}
	packed, err := packedDays(ctx, tx, lo, hi, false)
	if err != nil {
		return nil, fmt.Errorf("store: query range: %w", err)
	}
	if len(packed) > 0 {
		// One index-only scan per counter position with k a constant: on
		// PostgreSQL 15, k = ANY(...) beside series_id = ANY(...) measured
		// 7x slower for 1,000 series. A single series reads all its
		// positions in one scan (the byKey lookup skips unwanted ones).
		const sql = `SELECT series_id, k, (day - DATE '1970-01-01')::int, b FROM samples_1h_days
			WHERE series_id = ANY($1) AND day >= DATE '1970-01-01' + $2::int AND day <= DATE '1970-01-01' + $3::int`
		d0, d1 := packed[0].day.Unix()/86400, packed[len(packed)-1].day.Unix()/86400
		batch := &pgx.Batch{}
		if len(ids) == 1 {
			batch.Queue(sql, ids, d0, d1)
		} else {
			for _, k := range ks {
				batch.Queue(sql+` AND k = $4`, ids, d0, d1, int16(k))
			}
		}
		br := tx.SendBatch(ctx, batch)
		for range batch.Len() {
			if err := readPacked(br, byKey, counters, addHour); err != nil {
				br.Close()
				return nil, err
			}
		}
		if err := br.Close(); err != nil {
			return nil, fmt.Errorf("store: query range: packed rows: %w", err)
		}
	}

	// Hourly rows for the stretches of [lo, hi) outside the packed days.
	var los, his []time.Time
	cur := lo
	for _, p := range packed {
		if p.day.After(cur) {
			los, his = append(los, cur), append(his, minTime(p.day, hi))
		}
		cur = maxTime(cur, p.until)
	}
	if cur.Before(hi) {
		los, his = append(los, cur), append(his, hi)
	}
	if len(los) > 0 {
		rows, err := tx.Query(ctx, `
			SELECT s.series_id, k.i, extract(epoch FROM s.ts)::bigint, s.vmin[k.i], s.vmax[k.i], s.vsum[k.i], s.vcnt[k.i]
			FROM unnest($2::timestamptz[], $3::timestamptz[]) AS r(lo, hi)
			JOIN samples_1h s ON s.series_id = ANY($1) AND s.ts >= r.lo AND s.ts < r.hi
			CROSS JOIN LATERAL unnest($4::int[]) AS k(i)
			WHERE s.vcnt[k.i] > 0`, ids, los, his, ks)
		if err != nil {
			return nil, fmt.Errorf("store: query range: hourly rows: %w", err)
		}
		for rows.Next() {
			var id, t int64
			var k, vcnt int32
			var vmin, vmax float32
			var vsum float64
			if err := rows.Scan(&id, &k, &t, &vmin, &vmax, &vsum, &vcnt); err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: query range: hourly rows: %w", err)
			}
			if ci, ok := byKey[[2]int64{id, int64(k)}]; ok {
				addHour(&counters[ci], t, vmin, vmax, vsum, vcnt)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("store: query range: hourly rows: %w", err)
		}
	}

	return hourlyResult(sel, counters, hourly, first, stepSec, agg), nil
}

// entityViaTx makes queryHourly read one entity's series as it reads many
// (a transaction and four more round trips), as before the one-round-trip
// read: benchmarks set it to measure both in one run.
var entityViaTx atomic.Bool

// queryEntityHourlySQL reads, for the series selected by where (with the
// wanted counters in $1), the packed hours of the days from dayLo and the
// hourly rows in [lo, hi) that no packed part covers, the latter encoded
// as packed hours (packSQL's format): (series_id, k, day number, hours).
// Packed rows exist only for the hours samples_1h_packed records, so the
// two never overlap.
func queryEntityHourlySQL(where, dayLo, lo, hi string) string {
	return `
		WITH sel AS (
			SELECT se.id, x.ks
			FROM series se CROSS JOIN LATERAL (
				SELECT array_agg(c.i::smallint) AS ks FROM unnest(se.counters) WITH ORDINALITY AS c(name, i)
				WHERE coalesce(cardinality($1::text[]), 0) = 0 OR c.name = ANY($1::text[])
			) x
			WHERE ` + where + ` AND x.ks IS NOT NULL
		), open AS (
			-- The hours of each day of the range that no packed part covers.
			SELECT greatest(coalesce(p.packed_until, g.d), ` + lo + `::timestamptz) AS lo, least(g.d + interval '24 hours', ` + hi + `::timestamptz) AS hi
			FROM generate_series(` + dayLo + `::timestamptz, ` + hi + `::timestamptz - interval '1 microsecond', interval '24 hours') AS g(d)
			LEFT JOIN samples_1h_packed p ON p.day = (g.d AT TIME ZONE 'UTC')::date
		)
		SELECT d.series_id, d.k, (d.day - DATE '1970-01-01')::int, d.b
		FROM sel JOIN samples_1h_days d ON d.series_id = sel.id AND d.k = ANY(sel.ks)
		 AND d.day >= (` + dayLo + `::timestamptz AT TIME ZONE 'UTC')::date AND d.day < ` + hi + `::timestamptz AT TIME ZONE 'UTC'
		UNION ALL
		SELECT s.series_id, k.i, ((s.ts AT TIME ZONE 'UTC')::date - DATE '1970-01-01')::int,
		       set_byte('\x00'::bytea, 0, extract(hour FROM s.ts AT TIME ZONE 'UTC')::int)
		       || float4send(s.vmin[k.i]) || float4send(s.vmax[k.i]) || float8send(s.vsum[k.i]) || int4send(s.vcnt[k.i])
		FROM open JOIN sel ON true
		JOIN samples_1h s ON s.series_id = sel.id AND s.ts >= open.lo AND s.ts < open.hi
		CROSS JOIN LATERAL unnest(sel.ks) AS k(i)
		WHERE open.lo < open.hi AND s.vcnt[k.i] > 0`
}

// hourlyResult turns queryHourly's accumulated counters into its answer.
func hourlyResult(sel []SeriesPoints, counters []hourlyCounter, hourly bool, first, stepSec int64, agg Agg) []SeriesPoints {
	var out []SeriesPoints
	for i := range counters {
		c := &counters[i]
		sp := sel[c.series]
		sp.Counter, sp.Unit = c.name, c.unit
		switch {
		case hourly && len(c.points) > 0:
			sp.Points = c.points
			if !slices.IsSortedFunc(sp.Points, comparePoints) {
				slices.SortFunc(sp.Points, comparePoints)
			}
		case c.steps != nil:
			n := 0
			for j := range c.steps {
				if c.steps[j].cnt > 0 {
					n++
				}
			}
			sp.Points = make([]Point, 0, n)
			for j := range c.steps {
				if c.steps[j].cnt > 0 {
					sp.Points = append(sp.Points, Point{T: time.Unix((first+int64(j))*stepSec, 0).UTC(), V: c.steps[j].value(agg)})
				}
			}
		default:
			continue
		}
		out = append(out, sp)
	}
	return out
}

// readPacked reads the next result of br, samples_1h_days rows, into the
// counters.
func readPacked(br pgx.BatchResults, byKey map[[2]int64]int, counters []hourlyCounter,
	addHour func(c *hourlyCounter, t int64, vmin, vmax float32, vsum float64, vcnt int32)) error {
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("store: query range: packed rows: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var k int16
		var dn int32
		var b pgtype.DriverBytes // valid until the next row
		if err := rows.Scan(&id, &k, &dn, &b); err != nil {
			return fmt.Errorf("store: query range: packed rows: %w", err)
		}
		ci, ok := byKey[[2]int64{id, int64(k)}]
		if !ok {
			continue
		}
		if len(b)%packSlot != 0 {
			return fmt.Errorf("store: query range: packed row of series %d day %d: %d bytes is not whole hours", id, dn, len(b))
		}
		base := int64(dn) * 86400
		for o := 0; o < len(b); o += packSlot {
			x := b[o : o+packSlot]
			addHour(&counters[ci], base+int64(x[0])*3600,
				math.Float32frombits(binary.BigEndian.Uint32(x[1:])), math.Float32frombits(binary.BigEndian.Uint32(x[5:])),
				math.Float64frombits(binary.BigEndian.Uint64(x[9:])), int32(binary.BigEndian.Uint32(x[17:])))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: query range: packed rows: %w", err)
	}
	return nil
}

func comparePoints(a, b Point) int { return a.T.Compare(b.T) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// ForgetPackedRange drops the packed copy of the hourly tier for every UTC
// day overlapping [from, to), in tx: a restore that replaces samples_1h
// over a range calls it in the same transaction, so a query never reads a
// copy of hours the restore replaced; the rollup job packs those days
// again from samples_1h. It also forgets the cluster aggregates' members
// (and their rows in the range), so that every cluster is answered from
// its VMs until the rollup job has rebuilt it.
func ForgetPackedRange(ctx context.Context, tx pgx.Tx, from, to time.Time) error {
	for _, sql := range []string{
		`DELETE FROM samples_1h_days WHERE day >= ($1::timestamptz AT TIME ZONE 'UTC')::date AND day < $2::timestamptz AT TIME ZONE 'UTC'`,
		`DELETE FROM samples_1h_packed WHERE day >= ($1::timestamptz AT TIME ZONE 'UTC')::date AND day < $2::timestamptz AT TIME ZONE 'UTC'`,
		`DELETE FROM cluster_vm_1h WHERE ts >= $1 AND ts < $2`,
	} {
		if _, err := tx.Exec(ctx, sql, from, to); err != nil {
			return fmt.Errorf("store: forget packed %s..%s: %w", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), err)
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM cluster_vm_members`); err != nil {
		return fmt.Errorf("store: forget cluster aggregates: %w", err)
	}
	return nil
}
