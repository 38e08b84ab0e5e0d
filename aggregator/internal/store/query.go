package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Tier selection for QueryRange when the caller leaves Step at 0: the finest
// tier whose range limit covers To-From answers.
const (
	// RawMaxRange is the longest range answered from raw samples.
	RawMaxRange = 6 * time.Hour
	// Rollup5mMaxRange is the longest range answered from 5-minute buckets.
	Rollup5mMaxRange = 7 * day
	// Rollup1hMaxRange is the longest range answered from hourly buckets;
	// longer ranges come from daily buckets.
	Rollup1hMaxRange = 90 * day
	// AutoPoints is roughly how many points per series an automatic step
	// aims for: the step is the smallest of a list of round steps, no finer
	// than the tier, that gives at most this many.
	AutoPoints = 1000
	// MaxPoints bounds the points per series of any query; a finer explicit
	// step is refused.
	MaxPoints = 11000
	// MinAutoStep is the finest automatic step: vCenter's realtime
	// sampling interval. A finer one would show every sample between
	// empty steps.
	MinAutoStep = 20 * time.Second
)

// autoSteps are the round steps an automatic step is chosen from.
var autoSteps = []time.Duration{
	time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	day, 2 * day, 7 * day, 30 * day,
}

// Agg is how the values falling into one step are combined.
type Agg string

// The aggregations QueryRange supports. Count is the number of non-NULL raw
// values, also when a rollup tier answers.
const (
	AggAvg   Agg = "avg"
	AggMin   Agg = "min"
	AggMax   Agg = "max"
	AggSum   Agg = "sum"
	AggCount Agg = "count"
	// AggP95 is the 95th percentile of the raw values of a step. Only raw
	// samples can give it honestly (the rollup tiers keep min, max, sum and
	// count, not distributions): a query that a rollup tier would answer
	// is refused with ErrInvalidQuery.
	AggP95 Agg = "p95"
)

// ErrInvalidQuery is wrapped by every QueryRange error caused by the query
// itself rather than the database (a REST handler maps it to 400).
var ErrInvalidQuery = errors.New("store: invalid query")

// RangeQuery selects series, counters and a time range.
//
// Series are chosen by SeriesIDs, or by EntityKind and EntityID (optionally
// narrowed by Site and Source, since morefs repeat across vCenters);
// Instances, if not nil, keeps only those instances ("" is the entity
// aggregate). Counters, if not empty, keeps only those counters.
type RangeQuery struct {
	SeriesIDs            []int64
	Site, Source         string
	EntityKind, EntityID string
	Instances            []string
	Counters             []string
	// From and To bound the range, [From, To).
	From, To time.Time
	// Step is the width of the returned points; 0 picks the tier from the
	// range and the step from AutoPoints. A non-zero Step picks the coarsest
	// tier whose bucket width divides it (raw when none does, i.e. below 5
	// minutes), so each point combines whole buckets.
	Step time.Duration
	// Agg combines the values of a step; "" means avg.
	Agg Agg

	scope dataScope // the caller's, set by QueryRange
	// pool makes the hourly read (queryHourly) combine every series'
	// values of a counter into one accumulator per step: the cluster
	// history's answer from its VMs (QueryClusterVMs).
	pool bool
}

// Point is one value at the start of its step.
type Point struct {
	T time.Time
	V float64
}

// SeriesPoints is the points of one counter of one series, in time order.
// Steps without any value are absent.
type SeriesPoints struct {
	SeriesID                                     int64
	Site, Source, EntityKind, EntityID, Instance string
	Counter, Unit                                string
	Points                                       []Point
}

// RangeResult is what QueryRange returns.
type RangeResult struct {
	// Resolution is the tier that answered, Step the width of the points.
	Resolution Resolution
	Step       time.Duration
	// Series is ordered by entity, instance, series and counter position.
	Series []SeriesPoints
}

// QueryRange returns the selected counters over [From, To), aggregated per
// Step, from the coarsest stored tier that fits (see RangeQuery.Step and the
// *MaxRange constants). A tier whose retention no longer reaches back to
// From yields to the next coarser one, and the step grows to its bucket
// width if need be. Steps are aligned to the Unix epoch (UTC days). With a
// rollup tier, every bucket overlapping [From, To) counts whole.
//
// The hourly tier is read from its packed copy (migration 016, packed.go)
// for the hours copied, and from samples_1h for the rest, in one
// repeatable-read snapshot, and combined per step in Go. The other tiers
// run one SQL statement; the counter values are taken out of the arrays by
// position after the series are matched, so a query for a few counters
// reads each row once. The derived MetricCPUReadyPercent, when named in
// Counters, is computed by its own statement (derived.go) and placed after
// the stored counters of its series.
func (s *Store) QueryRange(ctx context.Context, q RangeQuery) (RangeResult, error) {
	var res RangeResult
	if err := q.validate(); err != nil {
		return res, err
	}
	sc, err := scopeOf(ctx)
	if err != nil {
		return res, err
	}
	q.scope = sc
	agg := q.Agg
	if agg == "" {
		agg = AggAvg
	}
	ti, step, err := s.chooseTier(ctx, q.From, q.To, q.Step, agg)
	if err != nil {
		return res, err
	}
	res.Resolution, res.Step = tiers[ti].res, step

	stored, ready := splitDerived(q.Counters)
	var derived []SeriesPoints
	if ready {
		if derived, err = s.queryReadyPercent(ctx, tiers[ti], agg, step, &q); err != nil {
			return res, err
		}
		if len(stored) == 0 {
			res.Series = derived
			return res, nil
		}
		q.Counters = stored
	}
	if tiers[ti].res == Resolution1h && !hourlyViaSQL.Load() {
		res.Series, err = s.queryHourly(ctx, &q, agg, step)
		res.Series = mergeDerived(res.Series, derived)
		return res, err
	}
	sql, args := rangeSQL(tiers[ti], agg, step, &q)
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return res, fmt.Errorf("store: query range: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var sp SeriesPoints
		var ts []time.Time
		var vs []float64
		if err := rows.Scan(&sp.SeriesID, &sp.Site, &sp.Source, &sp.EntityKind, &sp.EntityID, &sp.Instance,
			&sp.Counter, &sp.Unit, &ts, &vs); err != nil {
			return res, fmt.Errorf("store: query range: %w", err)
		}
		sp.Points = make([]Point, len(ts))
		for i := range ts {
			sp.Points[i] = Point{T: ts[i].UTC(), V: vs[i]}
		}
		res.Series = append(res.Series, sp)
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("store: query range: %w", err)
	}
	res.Series = mergeDerived(res.Series, derived)
	return res, nil
}

// chooseTier picks the tier and step that answer [from, to) with the
// requested step (0: automatic) and aggregation: the tier pickTier gives,
// or a coarser one when its retention no longer reaches back to from, the
// step rounded up to the tier's width. It refuses (ErrInvalidQuery) more
// than MaxPoints steps and a p95 a rollup tier would answer.
func (s *Store) chooseTier(ctx context.Context, from, to time.Time, reqStep time.Duration, agg Agg) (int, time.Duration, error) {
	before, err := s.rollups.cutoffs(ctx, s)
	if err != nil {
		return 0, 0, err
	}
	ti, step := pickTier(to.Sub(from), reqStep)
	for ti < len(tiers)-1 && from.Before(before[ti]) {
		ti++
	}
	if w := tiers[ti].width; w > 0 && step%w != 0 {
		step = (step/w + 1) * w
	}
	if to.Sub(from)/step > MaxPoints {
		return 0, 0, fmt.Errorf("%w: %s / step %s exceeds %d points per series", ErrInvalidQuery, to.Sub(from), step, MaxPoints)
	}
	if agg == AggP95 && tiers[ti].width > 0 {
		return 0, 0, fmt.Errorf("%w: p95 needs raw samples, which answer ranges up to %s with a step under 5m (and within raw retention); this query is answered by %s buckets",
			ErrInvalidQuery, RawMaxRange, tiers[ti].res)
	}
	return ti, step, nil
}

func (q *RangeQuery) validate() error {
	switch {
	case len(q.SeriesIDs) == 0 && (q.EntityKind == "" || q.EntityID == ""):
		return fmt.Errorf("%w: need series ids or an entity kind and id", ErrInvalidQuery)
	case !q.To.After(q.From):
		return fmt.Errorf("%w: empty time range", ErrInvalidQuery)
	case q.Step < 0:
		return fmt.Errorf("%w: negative step", ErrInvalidQuery)
	case q.Step > 0 && q.Step%time.Second != 0:
		return fmt.Errorf("%w: step %s is not whole seconds", ErrInvalidQuery, q.Step)
	}
	switch q.Agg {
	case "", AggAvg, AggMin, AggMax, AggSum, AggCount, AggP95:
	default:
		return fmt.Errorf("%w: unknown aggregation %q", ErrInvalidQuery, q.Agg)
	}
	return nil
}

// pickTier returns the index into tiers and the step for a range and a
// requested step (0 = automatic).
func pickTier(rng, step time.Duration) (int, time.Duration) {
	if step > 0 {
		ti := 0
		for i := len(tiers) - 1; i > 0; i-- {
			if step%tiers[i].width == 0 {
				ti = i
				break
			}
		}
		return ti, step
	}
	var ti int
	switch {
	case rng <= RawMaxRange:
		ti = 0
	case rng <= Rollup5mMaxRange:
		ti = 1
	case rng <= Rollup1hMaxRange:
		ti = 2
	default:
		ti = 3
	}
	want := max(tiers[ti].width, MinAutoStep, (rng+AutoPoints-1)/AutoPoints)
	for _, st := range autoSteps {
		if st >= want {
			return ti, st
		}
	}
	return ti, autoSteps[len(autoSteps)-1]
}

// rangeSQL builds QueryRange's statement for tier t. The series are matched
// first, with the positions of the wanted counters; each stored row is then
// read once and expanded to those positions only.
func rangeSQL(t tier, agg Agg, step time.Duration, q *RangeQuery) (string, []any) {
	a := args{step.Microseconds(), q.From, q.To, q.Counters}
	where := q.seriesWhere(&a)
	args := []any(a)
	param := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}

	var val, present, timeFilter string
	if t.width == 0 {
		x := "s.v[k.i]"
		present = x + " IS NOT NULL"
		val = map[Agg]string{
			AggAvg:   "avg(" + x + ")",
			AggMin:   "min(" + x + ")::float8",
			AggMax:   "max(" + x + ")::float8",
			AggSum:   "sum(" + x + "::float8)",
			AggCount: "count(" + x + ")::float8",
			AggP95:   "percentile_cont(0.95) WITHIN GROUP (ORDER BY " + x + ")",
		}[agg]
		timeFilter = "s.ts >= $2 AND s.ts < $3"
	} else {
		present = "s.vcnt[k.i] > 0"
		val = map[Agg]string{
			AggAvg:   "sum(s.vsum[k.i]) / sum(s.vcnt[k.i])",
			AggMin:   "min(s.vmin[k.i])::float8",
			AggMax:   "max(s.vmax[k.i])::float8",
			AggSum:   "sum(s.vsum[k.i])",
			AggCount: "sum(s.vcnt[k.i])::float8",
		}[agg]
		timeFilter = "s.ts > $2::timestamptz - " + param(t.width.Microseconds()) + "::bigint * interval '1 microsecond' AND s.ts < $3"
	}
	// One bucket per step (the step is the tier's width): each bucket is a
	// point as it is, with no grouping.
	pts := `SELECT sel.id, k.i, date_bin($1::bigint * interval '1 microsecond', s.ts, 'epoch') AS t, ` + val + ` AS v
			FROM sel
			JOIN ` + t.table + ` s ON s.series_id = sel.id AND ` + timeFilter + `
			CROSS JOIN LATERAL unnest(sel.idx) AS k(i)
			WHERE ` + present + `
			GROUP BY 1, 2, 3`
	if t.width > 0 && step == t.width {
		row := map[Agg]string{
			AggAvg:   "s.vsum[k.i] / s.vcnt[k.i]",
			AggMin:   "s.vmin[k.i]::float8",
			AggMax:   "s.vmax[k.i]::float8",
			AggSum:   "s.vsum[k.i]",
			AggCount: "s.vcnt[k.i]::float8",
		}[agg]
		pts = `SELECT sel.id, k.i, date_bin($1::bigint * interval '1 microsecond', s.ts, 'epoch') AS t, ` + row + ` AS v
			FROM sel
			JOIN ` + t.table + ` s ON s.series_id = sel.id AND ` + timeFilter + `
			CROSS JOIN LATERAL unnest(sel.idx) AS k(i)
			WHERE ` + present
	}
	sql := `
		WITH sel AS (
			SELECT se.id, array_agg(c.i::int ORDER BY c.i) AS idx
			FROM series se CROSS JOIN LATERAL unnest(se.counters) WITH ORDINALITY AS c(name, i)
			WHERE ` + where + `
			  AND (coalesce(cardinality($4::text[]), 0) = 0 OR c.name = ANY($4::text[]))
			GROUP BY se.id
		), pts AS (
			` + pts + `
		)
		SELECT se.id, se.site, se.source, se.entity_kind, se.entity_id, se.instance,
		       se.counters[p.i], coalesce(se.units[p.i], ''),
		       array_agg(p.t ORDER BY p.t), array_agg(p.v ORDER BY p.t)
		FROM pts p JOIN series se ON se.id = p.id
		GROUP BY se.id, p.i
		ORDER BY se.entity_kind, se.entity_id, se.instance, se.id, p.i`
	return sql, args
}

// hourlyViaSQL makes QueryRange answer the hourly tier with rangeSQL over
// samples_1h alone, as before the packed layout: benchmarks set it to
// measure both layouts in one run (see export_test.go).
var hourlyViaSQL atomic.Bool

// seriesWhere is the condition on series alias se that selects the query's
// series within the caller's scope, with its parameters appended to a.
func (q *RangeQuery) seriesWhere(a *args) string {
	var where []string
	if len(q.SeriesIDs) > 0 {
		where = append(where, "se.id = ANY("+a.add(q.SeriesIDs)+"::bigint[])")
	}
	if q.EntityKind != "" {
		where = append(where, "se.entity_kind = "+a.add(q.EntityKind))
	}
	if q.EntityID != "" {
		where = append(where, "se.entity_id = "+a.add(q.EntityID))
	}
	if q.Site != "" {
		where = append(where, "se.site = "+a.add(q.Site))
	}
	if q.Source != "" {
		where = append(where, "se.source = "+a.add(q.Source))
	}
	if !q.scope.all {
		where = append(where, q.scope.seriesSQL("se", a))
	}
	if q.Instances != nil {
		where = append(where, "se.instance = ANY("+a.add(q.Instances)+"::text[])")
	}
	return strings.Join(where, " AND ")
}

// rollupCache keeps the retention cutoffs of rollup_state for QueryRange's
// tier choice. It is refreshed every minute, so that retention applied by
// another aggregator is seen soon, and at once after ApplyRetention here.
type rollupCache struct {
	mu     sync.Mutex
	before [4]time.Time
	at     time.Time
}

const rollupCacheTTL = time.Minute

func (c *rollupCache) cutoffs(ctx context.Context, s *Store) ([4]time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < rollupCacheTTL {
		return c.before, nil
	}
	st, err := readRollupState(ctx, s.pool)
	if err != nil {
		return c.before, err
	}
	c.before, c.at = st.before, time.Now()
	return c.before, nil
}

func (c *rollupCache) invalidate() {
	c.mu.Lock()
	c.at = time.Time{}
	c.mu.Unlock()
}
