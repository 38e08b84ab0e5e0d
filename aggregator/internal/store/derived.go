package store

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Derived metrics: values computed from stored counters at query time, as
// vSphere's performance charts show them.

const (
	// CounterCPUReady is vCenter's CPU ready counter: milliseconds the
	// entity was ready to run but not scheduled, summed over each sampling
	// interval (and, for a VM as a whole, over its vCPUs).
	CounterCPUReady = "cpu.ready.summation"
	// MetricCPUReadyPercent is CPU ready as a percentage of the time, per
	// vCPU for a VM as a whole (see ReadyPercentRule). Its unit is "%" in
	// hundredths of a percent, like vCenter's percent counters.
	MetricCPUReadyPercent = "cpu.ready.percent"
	// ReadyPercentRule states how MetricCPUReadyPercent is computed.
	ReadyPercentRule = "cpu.ready.summation ms ÷ (sampling interval s × 1,000) × 100, divided by the VM's vCPU count for a VM " +
		"as a whole (instance \"\"; per-vCPU instances and hosts are not divided). Over a step: the ready ms of the step ÷ the " +
		"sampling time they cover. The interval of a raw sample is its distance to the series' previous sample when that is " +
		"one of vCenter's intervals (20 s, 5 min, 30 min, 2 h, 1 day), else the entity kind's collection interval (20 s for " +
		"VMs and hosts, 5 min otherwise); in a rollup bucket it is the largest of those intervals not above the bucket width ÷ " +
		"its sample count (and not below the collection interval), so buckets backfilled from vCenter's 5-minute history " +
		"count 5 minutes a sample"
)

// collectionIntervalSQL is the collection interval, in seconds, of the
// series on alias se: vCenter's realtime interval for VMs and hosts, its
// 5-minute historical interval for clusters and datastores (how the agent
// collects them).
const collectionIntervalSQL = `(CASE WHEN se.entity_kind IN ('vm', 'host') THEN 20 ELSE 300 END)`

// stdIntervalSQL is the largest of vCenter's sampling intervals not above
// the number of seconds x (20 s at least).
func stdIntervalSQL(x string) string {
	return `(CASE WHEN ` + x + ` >= 86400 THEN 86400 WHEN ` + x + ` >= 7200 THEN 7200 WHEN ` + x + ` >= 1800 THEN 1800
		WHEN ` + x + ` >= 300 THEN 300 ELSE 20 END)`
}

// splitDerived splits the counters of q into the stored ones and whether
// MetricCPUReadyPercent is asked for.
func splitDerived(counters []string) (stored []string, ready bool) {
	for _, c := range counters {
		if c == MetricCPUReadyPercent {
			ready = true
			continue
		}
		stored = append(stored, c)
	}
	return stored, ready
}

// queryReadyPercent answers MetricCPUReadyPercent for the series of q that
// carry cpu.ready.summation, from tier t with the given step (see
// ReadyPercentRule), in QueryRange's order.
func (s *Store) queryReadyPercent(ctx context.Context, t tier, agg Agg, step time.Duration, q *RangeQuery) ([]SeriesPoints, error) {
	a := args{step.Microseconds(), q.From, q.To, CounterCPUReady}
	where := q.seriesWhere(&a)
	x := readyRowsSQL(t, &a)
	// Hundredths of a percent: ms ÷ (iv s × 1000) × 100 × 100 = ms × 10 ÷ iv.
	val := map[Agg]string{
		AggAvg:   "sum(x.vsum) * 10 / sum(x.n * x.iv) / min(x.ncpu)",
		AggMin:   "min(x.vmin / x.iv) * 10 / min(x.ncpu)",
		AggMax:   "max(x.vmax / x.iv) * 10 / min(x.ncpu)",
		AggSum:   "sum(x.vsum / x.iv) * 10 / min(x.ncpu)",
		AggCount: "sum(x.n)::float8",
		AggP95:   "percentile_cont(0.95) WITHIN GROUP (ORDER BY x.vmax / x.iv) * 10 / min(x.ncpu)",
	}[agg]
	sql := `
		WITH sel AS (
			SELECT se.id, array_position(se.counters, $4::text) AS i, ` + collectionIntervalSQL + ` AS ival, ` + vcpusSQL + ` AS ncpu
			FROM series se
			WHERE ` + where + ` AND $4::text = ANY(se.counters)
		), x AS (
			` + x + `
		), pts AS (
			SELECT x.id, date_bin($1::bigint * interval '1 microsecond', x.ts, 'epoch') AS t, ` + val + ` AS v
			FROM x GROUP BY 1, 2
		)
		SELECT se.id, se.site, se.source, se.entity_kind, se.entity_id, se.instance,
		       array_agg(p.t ORDER BY p.t), array_agg(p.v ORDER BY p.t)
		FROM pts p JOIN series se ON se.id = p.id
		GROUP BY se.id
		ORDER BY se.entity_kind, se.entity_id, se.instance, se.id`
	return s.readySeries(ctx, sql, a)
}

// vcpusSQL is what the ready time of the series on alias se is divided by:
// the VM's vCPU count (at least 1) for a VM as a whole, else 1.
var vcpusSQL = `CASE WHEN se.entity_kind = 'vm' AND se.instance = '' THEN coalesce((
	           SELECT greatest(` + numProp("o", "num_cpu") + `, 1)::float8 FROM inventory_objects o
	           WHERE o.site = se.site AND o.source = se.source AND o.kind = 'vm' AND o.moref = se.entity_id
	           ORDER BY o.deleted_at IS NULL DESC LIMIT 1), 1) ELSE 1 END`

// readyRowsSQL selects the cpu.ready.summation values of tier t in the
// range ($2, $3) of the series of a CTE sel (id, i: the counter's position,
// ival: the collection interval, ncpu), each with its sampling interval iv
// in seconds and its sample count n: (id, ts, n, iv, vsum, vmin, vmax,
// ncpu). Rollup buckets overlapping the range count whole.
func readyRowsSQL(t tier, a *args) string {
	if t.width == 0 {
		// Raw samples, each with its interval: the distance to the previous
		// sample of the series (looked for up to 2 h before the range).
		gap := `extract(epoch FROM s.ts - lag(s.ts) OVER (PARTITION BY s.series_id ORDER BY s.ts))`
		return `SELECT r.id, r.ts, 1 AS n, r.iv, r.v AS vsum, r.v AS vmin, r.v AS vmax, r.ncpu FROM (
				SELECT sel.id, s.ts, s.v[sel.i]::float8 AS v, sel.ncpu,
				       CASE WHEN ` + gap + ` IN (20, 300, 1800, 7200, 86400) THEN ` + gap + ` ELSE sel.ival END::float8 AS iv
				FROM sel JOIN samples s ON s.series_id = sel.id AND s.ts >= $2::timestamptz - interval '2 hours' AND s.ts < $3
			) r WHERE r.ts >= $2 AND r.v IS NOT NULL`
	}
	width := strconv.FormatInt(int64(t.width/time.Second), 10)
	return `SELECT sel.id, s.ts, s.vcnt[sel.i] AS n,
		       ` + stdIntervalSQL(`greatest(sel.ival, `+width+` / s.vcnt[sel.i])`) + `::float8 AS iv,
		       s.vsum[sel.i] AS vsum, s.vmin[sel.i]::float8 AS vmin, s.vmax[sel.i]::float8 AS vmax, sel.ncpu
		FROM sel JOIN ` + t.table + ` s ON s.series_id = sel.id
		 AND s.ts > $2::timestamptz - ` + a.add(t.width.Microseconds()) + `::bigint * interval '1 microsecond' AND s.ts < $3
		WHERE s.vcnt[sel.i] > 0`
}

// readySeries runs queryReadyPercent's statement.
func (s *Store) readySeries(ctx context.Context, sql string, a args) ([]SeriesPoints, error) {
	rows, err := s.pool.Query(ctx, sql, a...)
	if err != nil {
		return nil, fmt.Errorf("store: query %s: %w", MetricCPUReadyPercent, err)
	}
	defer rows.Close()
	var out []SeriesPoints
	for rows.Next() {
		sp := SeriesPoints{Counter: MetricCPUReadyPercent, Unit: "%"}
		var ts []time.Time
		var vs []float64
		if err := rows.Scan(&sp.SeriesID, &sp.Site, &sp.Source, &sp.EntityKind, &sp.EntityID, &sp.Instance, &ts, &vs); err != nil {
			return nil, fmt.Errorf("store: query %s: %w", MetricCPUReadyPercent, err)
		}
		sp.Points = make([]Point, len(ts))
		for i := range ts {
			sp.Points[i] = Point{T: ts[i].UTC(), V: vs[i]}
		}
		out = append(out, sp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: query %s: %w", MetricCPUReadyPercent, err)
	}
	return out, nil
}

// mergeDerived places each derived series after the stored counters of
// the same series; derived series of series without stored points go last.
func mergeDerived(stored, derived []SeriesPoints) []SeriesPoints {
	if len(derived) == 0 {
		return stored
	}
	if len(stored) == 0 {
		return derived
	}
	after := map[int64][]SeriesPoints{}
	var rest []SeriesPoints
	present := map[int64]bool{}
	for _, sp := range stored {
		present[sp.SeriesID] = true
	}
	for _, d := range derived {
		if present[d.SeriesID] {
			after[d.SeriesID] = append(after[d.SeriesID], d)
		} else {
			rest = append(rest, d)
		}
	}
	out := make([]SeriesPoints, 0, len(stored)+len(derived))
	for i, sp := range stored {
		out = append(out, sp)
		if i == len(stored)-1 || stored[i+1].SeriesID != sp.SeriesID {
			out = append(out, after[sp.SeriesID]...)
		}
	}
	return append(out, rest...)
}
