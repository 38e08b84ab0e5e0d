package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The history of a cluster's VMs (migration 018): the hourly buckets of the
// cluster's VMs combined per cluster, counter and hour by the rollup job, so
// that a chart of the cluster reads one row an hour instead of one per VM.

const (
	// ClusterHorizon is how far back the cluster aggregates are built when
	// a cluster is first seen or its VMs change: ranges starting earlier
	// are answered from the VMs' series (ClusterPathVMs).
	ClusterHorizon = PackHorizon
	// clusterRebuildsPerRun bounds the clusters rebuilt by one rollup run
	// (a 1,000-VM cluster over ClusterHorizon takes seconds); the others
	// are answered from their VMs until their turn.
	clusterRebuildsPerRun = 4
)

// The paths of a cluster history answer.
const (
	// ClusterPathRollup: the cluster's hourly aggregates answered.
	ClusterPathRollup = "cluster_1h"
	// ClusterPathVMs: the VMs' own series, combined at query time.
	ClusterPathVMs = "vms"
)

// ClusterVMQuery asks for counters of a cluster's VMs (their series as a
// whole, instance ""), all their values in a step combined by Agg: avg is
// the mean of every VM's values in the step, min and max the extremes, sum
// and count over all of them. The VMs are the cluster's live VMs now.
type ClusterVMQuery struct {
	Site, Source, Cluster string
	// Counters keeps only these counters; empty for every counter the
	// VMs have.
	Counters []string
	From, To time.Time
	// Step and Agg are as in RangeQuery.
	Step time.Duration
	Agg  Agg
	// VMsOnly skips the cluster aggregates (benchmarks and tests compare
	// both paths).
	VMsOnly bool
}

// ClusterVMResult is what QueryClusterVMs returns.
type ClusterVMResult struct {
	Resolution Resolution
	Step       time.Duration
	// Path is ClusterPathRollup or ClusterPathVMs; Reason says why the
	// VMs answered.
	Path, Reason string
	// VMs is how many VMs (series) the cluster has now.
	VMs int
	// Series has one entry per counter with data (EntityKind cluster,
	// Instance ""), by counter name.
	Series []SeriesPoints
}

// QueryClusterVMs answers a ClusterVMQuery. The cluster's site must be in
// the caller's data scope as a whole (ErrNotFound otherwise): a cluster's
// answer combines every VM of it.
//
// The cluster aggregates answer when the tier QueryRange would pick for
// the VMs is the hourly or the daily one, the aggregates were built for the
// cluster's current VMs, and the range lies within the hours they hold;
// they give exactly what the VMs' buckets give (sums may differ in the last
// bits of a float8, being added in another order). Otherwise the VMs'
// series answer, combined in SQL, and Reason says why.
func (s *Store) QueryClusterVMs(ctx context.Context, q ClusterVMQuery) (ClusterVMResult, error) {
	var res ClusterVMResult
	rq := RangeQuery{EntityKind: KindCluster, EntityID: q.Cluster, From: q.From, To: q.To, Step: q.Step, Agg: q.Agg}
	if err := rq.validate(); err != nil {
		return res, err
	}
	sc, err := scopeOf(ctx)
	if err != nil {
		return res, err
	}
	if !sc.allowsSite(q.Site) {
		return res, fmt.Errorf("store: cluster %s/%s: %w", q.Source, q.Cluster, ErrNotFound)
	}
	agg := q.Agg
	if agg == "" {
		agg = AggAvg
	}
	ti, step, err := s.chooseTier(ctx, q.From, q.To, q.Step, agg)
	if err != nil {
		return res, err
	}
	t := tiers[ti]
	res.Resolution, res.Step = t.res, step
	lo, hi := q.From.UTC(), q.To.UTC()
	if t.width > 0 {
		lo, hi = lo.Truncate(t.width), ceilTime(hi, t.width)
	}
	before, err := s.rollups.cutoffs(ctx, s)
	if err != nil {
		return res, err
	}
	if !q.VMsOnly && !s.Timescale() && t.width >= time.Hour {
		ok, n, series, err := clusterFromAggregates(ctx, s.pool, &q, lo, hi, before[2], step, agg)
		if err != nil || ok {
			res.Path, res.VMs, res.Series = ClusterPathRollup, n, series
			return res, err
		}
	}

	// One snapshot: the members and the aggregates change together.
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return res, fmt.Errorf("store: cluster history: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	var current, recorded []int64
	var builtFrom *time.Time
	err = tx.QueryRow(ctx, `SELECT
		    (SELECT coalesce(array_agg(se.id ORDER BY se.id), '{}') FROM inventory_objects o
		     JOIN series se ON se.site = o.site AND se.source = o.source AND se.entity_kind = 'vm' AND se.entity_id = o.moref AND se.instance = ''
		     WHERE o.site = $1 AND o.source = $2 AND o.kind = 'vm' AND o.deleted_at IS NULL AND o.props->>'cluster_id' = $3),
		    m.series, m.built_from
		FROM (SELECT 1) one LEFT JOIN cluster_vm_members m ON m.site = $1 AND m.source = $2 AND m.cluster = $3`,
		q.Site, q.Source, q.Cluster).Scan(&current, &recorded, &builtFrom)
	if err != nil {
		return res, fmt.Errorf("store: cluster %s/%s: members: %w", q.Source, q.Cluster, err)
	}
	res.VMs = len(current)
	if len(current) == 0 {
		res.Path, res.Reason = ClusterPathVMs, "the cluster has no VM with stored series"
		return res, nil
	}
	units, err := memberUnits(ctx, tx, current, q.Counters)
	if err != nil {
		return res, err
	}
	switch {
	case q.VMsOnly:
		res.Reason = "asked for"
	case s.Timescale():
		res.Reason = "no cluster aggregates on TimescaleDB"
	case t.width < time.Hour:
		res.Reason = "the step is finer than an hour (" + string(t.res) + " buckets answer)"
	case builtFrom == nil:
		res.Reason = "the cluster aggregates are not built yet"
	case !slices.Equal(current, recorded):
		res.Reason = "the cluster's VMs changed since its aggregates were built (rebuilt by the next rollup run)"
	case lo.Before(maxTime(*builtFrom, before[2])):
		res.Reason = "the range starts before the cluster aggregates (" + maxTime(*builtFrom, before[2]).UTC().Format(time.RFC3339) + ")"
	default:
		// The aggregates were fit a moment ago (clusterFromAggregates
		// declined in its own snapshot): they changed in between.
		res.Reason = "the cluster's aggregates changed during the query"
	}
	res.Path = ClusterPathVMs
	if t.res == Resolution1h && !s.Timescale() && !hourlyViaSQL.Load() {
		// The hourly tier's packed copy, one scan per counter, every
		// VM's buckets added up in Go.
		rq := RangeQuery{SeriesIDs: current, Counters: q.Counters, From: q.From, To: q.To, scope: dataScope{all: true}, pool: true}
		series, err := s.queryHourly(ctx, &rq, agg, step)
		if err != nil {
			return res, err
		}
		slices.SortFunc(series, func(a, b SeriesPoints) int { return strings.Compare(a.Counter, b.Counter) })
		for _, sp := range series {
			res.Series = append(res.Series, SeriesPoints{Site: q.Site, Source: q.Source, EntityKind: KindCluster, EntityID: q.Cluster,
				Counter: sp.Counter, Unit: units[sp.Counter], Points: sp.Points})
		}
		return res, nil
	}
	res.Series, err = clusterFromVMs(ctx, tx, t, &q, current, units, step, agg)
	return res, err
}

// memberUnits maps the wanted counters the member series have to their
// units.
func memberUnits(ctx context.Context, tx pgx.Tx, ids []int64, counters []string) (map[string]string, error) {
	rows, err := tx.Query(ctx, `SELECT DISTINCT counters, units FROM series WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("store: cluster history: counters: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var cs, us []string
		if err := rows.Scan(&cs, &us); err != nil {
			return nil, fmt.Errorf("store: cluster history: counters: %w", err)
		}
		for i, c := range cs {
			if len(counters) > 0 && !slices.Contains(counters, c) {
				continue
			}
			if out[c] == "" && i < len(us) {
				out[c] = us[i]
			} else if _, ok := out[c]; !ok {
				out[c] = ""
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: cluster history: counters: %w", err)
	}
	return out, nil
}

// clusterFromAggregates answers q from the cluster's hourly aggregates in
// [lo, hi), combined per step, when they are exact for it: built for the
// cluster's current VMs, from an hour at or before lo (and above the
// hourly tier's retention cutoff cut). One statement, so one snapshot and
// one round trip: its first row says whether they fit and how many VMs the
// cluster has, the others are the aggregates (only when they fit).
func clusterFromAggregates(ctx context.Context, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, q *ClusterVMQuery, lo, hi, cut time.Time, step time.Duration, agg Agg) (bool, int, []SeriesPoints, error) {
	rows, err := db.Query(ctx, `
		WITH cur AS (
			SELECT coalesce(array_agg(se.id ORDER BY se.id), '{}') AS ids FROM inventory_objects o
			JOIN series se ON se.site = o.site AND se.source = o.source AND se.entity_kind = 'vm' AND se.entity_id = o.moref AND se.instance = ''
			WHERE o.site = $1 AND o.source = $2 AND o.kind = 'vm' AND o.deleted_at IS NULL AND o.props->>'cluster_id' = $3
		), fit AS (
			SELECT coalesce(m.series = cur.ids AND greatest(m.built_from, $7) <= $5, false) AS ok, cardinality(cur.ids) AS n,
			       coalesce(m.counters, '{}') AS counters, coalesce(m.units, '{}') AS units
			FROM cur LEFT JOIN cluster_vm_members m ON m.site = $1 AND m.source = $2 AND m.cluster = $3
		)
		SELECT fit.ok, fit.n, fit.counters, fit.units, NULL::text, NULL::bigint, NULL::real, NULL::real, NULL::float8, NULL::int FROM fit
		UNION ALL
		SELECT NULL, NULL, NULL, NULL, c.counter, extract(epoch FROM c.ts)::bigint, c.vmin, c.vmax, c.vsum, c.vcnt
		FROM fit JOIN cluster_vm_1h c ON fit.ok AND c.site = $1 AND c.source = $2 AND c.cluster = $3 AND c.ts >= $5 AND c.ts < $6
		 AND (coalesce(cardinality($4::text[]), 0) = 0 OR c.counter = ANY($4::text[]))`,
		q.Site, q.Source, q.Cluster, q.Counters, lo, hi, cut)
	if err != nil {
		return false, 0, nil, fmt.Errorf("store: cluster history: %w", err)
	}
	defer rows.Close()
	stepSec := int64(step / time.Second)
	first := floorDiv(lo.Unix(), stepSec)
	nSteps := int(floorDiv(hi.Unix()-1, stepSec)-first) + 1
	accs := map[string][]hourAcc{}
	var ok *bool
	var n *int32
	var counters, units []string
	for rows.Next() {
		var c *string
		var ts *int64
		var vmin, vmax *float32
		var vsum *float64
		var vcnt *int32
		var rok *bool
		var rn *int32
		var rc, ru []string
		if err := rows.Scan(&rok, &rn, &rc, &ru, &c, &ts, &vmin, &vmax, &vsum, &vcnt); err != nil {
			return false, 0, nil, fmt.Errorf("store: cluster history: %w", err)
		}
		if c == nil {
			ok, n, counters, units = rok, rn, rc, ru
			continue
		}
		a := accs[*c]
		if a == nil {
			a = make([]hourAcc, nSteps)
			accs[*c] = a
		}
		a[floorDiv(*ts, stepSec)-first].add(*vmin, *vmax, *vsum, *vcnt)
	}
	if err := rows.Err(); err != nil {
		return false, 0, nil, fmt.Errorf("store: cluster history: %w", err)
	}
	if ok == nil || !*ok || n == nil {
		return false, 0, nil, nil
	}
	var out []SeriesPoints
	for i, c := range counters { // sorted by name
		a := accs[c]
		if a == nil {
			continue
		}
		sp := SeriesPoints{Site: q.Site, Source: q.Source, EntityKind: KindCluster, EntityID: q.Cluster, Counter: c}
		if i < len(units) {
			sp.Unit = units[i]
		}
		for j := range a {
			if a[j].cnt > 0 {
				sp.Points = append(sp.Points, Point{T: time.Unix((first+int64(j))*stepSec, 0).UTC(), V: a[j].value(agg)})
			}
		}
		out = append(out, sp)
	}
	return true, int(*n), out, nil
}

// clusterFromVMs combines the member series' values of tier t per step in
// SQL: every bucket overlapping [From, To) counts whole, as in QueryRange.
func clusterFromVMs(ctx context.Context, tx pgx.Tx, t tier, q *ClusterVMQuery, ids []int64, units map[string]string,
	step time.Duration, agg Agg) ([]SeriesPoints, error) {
	a := args{step.Microseconds(), q.From, q.To, ids, q.Counters}
	var val, present, timeFilter string
	if t.width == 0 {
		x := "s.v[k.i]"
		present = x + " IS NOT NULL"
		val = map[Agg]string{
			AggAvg: "avg(" + x + ")", AggMin: "min(" + x + ")::float8", AggMax: "max(" + x + ")::float8",
			AggSum: "sum(" + x + "::float8)", AggCount: "count(" + x + ")::float8",
			AggP95: "percentile_cont(0.95) WITHIN GROUP (ORDER BY " + x + ")",
		}[agg]
		timeFilter = "s.ts >= $2 AND s.ts < $3"
	} else {
		present = "s.vcnt[k.i] > 0"
		val = map[Agg]string{
			AggAvg: "sum(s.vsum[k.i]) / sum(s.vcnt[k.i])", AggMin: "min(s.vmin[k.i])::float8", AggMax: "max(s.vmax[k.i])::float8",
			AggSum: "sum(s.vsum[k.i])", AggCount: "sum(s.vcnt[k.i])::float8",
		}[agg]
		timeFilter = "s.ts > $2::timestamptz - " + a.add(t.width.Microseconds()) + "::bigint * interval '1 microsecond' AND s.ts < $3"
	}
	rows, err := tx.Query(ctx, `
		WITH sel AS (
			SELECT se.id, array_agg(c.i::int ORDER BY c.i) AS idx, array_agg(c.name ORDER BY c.i) AS names
			FROM series se CROSS JOIN LATERAL unnest(se.counters) WITH ORDINALITY AS c(name, i)
			WHERE se.id = ANY($4::bigint[]) AND (coalesce(cardinality($5::text[]), 0) = 0 OR c.name = ANY($5::text[]))
			GROUP BY se.id
		), pts AS (
			SELECT k.name, date_bin($1::bigint * interval '1 microsecond', s.ts, 'epoch') AS t, `+val+` AS v
			FROM sel
			JOIN `+t.table+` s ON s.series_id = sel.id AND `+timeFilter+`
			CROSS JOIN LATERAL unnest(sel.idx, sel.names) AS k(i, name)
			WHERE `+present+`
			GROUP BY 1, 2
		)
		SELECT name, array_agg(t ORDER BY t), array_agg(v ORDER BY t) FROM pts GROUP BY name ORDER BY name`, a...)
	if err != nil {
		return nil, fmt.Errorf("store: cluster history from its VMs: %w", err)
	}
	defer rows.Close()
	var out []SeriesPoints
	for rows.Next() {
		sp := SeriesPoints{Site: q.Site, Source: q.Source, EntityKind: KindCluster, EntityID: q.Cluster}
		var ts []time.Time
		var vs []float64
		if err := rows.Scan(&sp.Counter, &ts, &vs); err != nil {
			return nil, fmt.Errorf("store: cluster history from its VMs: %w", err)
		}
		sp.Unit = units[sp.Counter]
		sp.Points = make([]Point, len(ts))
		for i := range ts {
			sp.Points[i] = Point{T: ts[i].UTC(), V: vs[i]}
		}
		out = append(out, sp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: cluster history from its VMs: %w", err)
	}
	return out, nil
}

// clusterAggSQL recomputes the cluster aggregates of the hours in the spans
// ($1 sites, $2 lows, $3 highs) from samples_1h, for the recorded members of
// every cluster of the spans' sites, or of the one cluster $4/$5 (source,
// cluster) when $4 is not NULL, for series of at most n counters. Rows are
// recomputed, never incremented: the hourly buckets are grouped per
// (cluster, counters array, hour), each counter position folded by a
// built-in aggregate (as rollupSQL does), then the positions are named and
// merged across counters arrays.
func clusterAggSQL(n int) string {
	fold := func(format string) string { return arrayOfPositions(n, format) }
	return `
		INSERT INTO cluster_vm_1h AS c (site, source, cluster, counter, ts, vmin, vmax, vsum, vcnt, nvm)
		SELECT g.site, g.source, g.cluster, u.name, g.ts, min(u.vmin), max(u.vmax), sum(u.vsum), sum(u.vcnt)::int, sum(u.n)::int
		FROM (
			SELECT m.site, m.source, m.cluster, se.counters, s.ts,
			       ` + fold("min(s.vmin[%d])") + ` AS vmin, ` + fold("max(s.vmax[%d])") + ` AS vmax,
			       ` + fold("sum(s.vsum[%d])") + ` AS vsum, ` + fold("sum(s.vcnt[%d])") + ` AS vcnt,
			       ` + fold("count(*) FILTER (WHERE s.vcnt[%d] > 0)") + ` AS n
			FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS d(site, lo, hi)
			JOIN cluster_vm_members m ON m.site = d.site AND ($4::text IS NULL OR (m.source = $4 AND m.cluster = $5))
			JOIN series se ON se.id = ANY(m.series)
			JOIN samples_1h s ON s.series_id = se.id AND s.ts >= greatest(d.lo, m.built_from) AND s.ts < d.hi
			GROUP BY m.site, m.source, m.cluster, se.counters, s.ts
		) g CROSS JOIN LATERAL unnest(g.counters, g.vmin, g.vmax, g.vsum, g.vcnt, g.n) AS u(name, vmin, vmax, vsum, vcnt, n)
		WHERE u.name IS NOT NULL AND u.vcnt > 0
		GROUP BY g.site, g.source, g.cluster, u.name, g.ts
		ON CONFLICT (site, source, cluster, counter, ts) DO UPDATE
		SET vmin = excluded.vmin, vmax = excluded.vmax, vsum = excluded.vsum, vcnt = excluded.vcnt, nvm = excluded.nvm
		WHERE (c.vmin, c.vmax, c.vsum, c.vcnt, c.nvm) IS DISTINCT FROM (excluded.vmin, excluded.vmax, excluded.vsum, excluded.vcnt, excluded.nvm)`
}

// clusterAggregate runs clusterAggSQL over the spans (sorted by site, not
// overlapping within a site), for one cluster when source is not empty.
// Hours only ever gain buckets in samples_1h (the job upserts them), so the
// upsert leaves no stale row behind.
func clusterAggregate(ctx context.Context, tx pgx.Tx, spans []span, source, cluster string) (int64, error) {
	if len(spans) == 0 {
		return 0, nil
	}
	sites := make([]string, len(spans))
	los := make([]time.Time, len(spans))
	his := make([]time.Time, len(spans))
	for i, sp := range spans {
		sites[i], los[i], his[i] = sp.site, sp.lo, sp.hi
	}
	var src, cl *string
	if source != "" {
		src, cl = &source, &cluster
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(cardinality(se.counters)), 0) FROM cluster_vm_members m JOIN series se ON se.id = ANY(m.series)
		WHERE m.site = ANY($1) AND ($2::text IS NULL OR (m.source = $2 AND m.cluster = $3))`, sites, src, cl).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: cluster aggregates: counters: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	tag, err := tx.Exec(ctx, clusterAggSQL(n), sites, los, his, src, cl)
	if err != nil {
		return 0, fmt.Errorf("store: cluster aggregates: %w", err)
	}
	return tag.RowsAffected(), nil
}

// ClusterReport says what SyncClusters did.
type ClusterReport struct {
	// Rebuilt is how many clusters were (re)built for new members,
	// Dropped how many vanished, Pending how many still wait for a rebuild.
	Rebuilt, Dropped, Pending int
	// Rows is how many aggregate rows the rebuilds wrote.
	Rows int64
}

type clusterKey struct{ site, source, cluster string }

// SyncClusters rebuilds the aggregates of up to perRun clusters whose VMs
// (their series) differ from those their aggregates were built for, over
// ClusterHorizon (and above the hourly tier's retention), and drops those
// of clusters without VMs. Each cluster is rebuilt in its own transaction
// under the rollup lock (skipped when another aggregator holds it), which
// also records its members, so a query sees either the old members with
// the old rows or the new with the new. RunRollups calls it after each
// run; it is exported for tools and benchmarks. A no-op on TimescaleDB.
func (s *Store) SyncClusters(ctx context.Context, now time.Time, perRun int) (ClusterReport, error) {
	var rep ClusterReport
	if s.Timescale() {
		return rep, nil
	}
	current := map[clusterKey][]int64{}
	rows, err := s.pool.Query(ctx, `SELECT o.site, o.source, o.props->>'cluster_id', array_agg(se.id ORDER BY se.id)
		FROM inventory_objects o
		JOIN series se ON se.site = o.site AND se.source = o.source AND se.entity_kind = 'vm' AND se.entity_id = o.moref AND se.instance = ''
		WHERE o.kind = 'vm' AND o.deleted_at IS NULL AND coalesce(o.props->>'cluster_id', '') <> ''
		GROUP BY 1, 2, 3`)
	if err != nil {
		return rep, fmt.Errorf("store: cluster aggregates: members: %w", err)
	}
	for rows.Next() {
		var k clusterKey
		var ids []int64
		if err := rows.Scan(&k.site, &k.source, &k.cluster, &ids); err != nil {
			rows.Close()
			return rep, fmt.Errorf("store: cluster aggregates: members: %w", err)
		}
		current[k] = ids
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("store: cluster aggregates: members: %w", err)
	}
	recorded := map[clusterKey][]int64{}
	rows, err = s.pool.Query(ctx, `SELECT site, source, cluster, series FROM cluster_vm_members`)
	if err != nil {
		return rep, fmt.Errorf("store: cluster aggregates: recorded members: %w", err)
	}
	for rows.Next() {
		var k clusterKey
		var ids []int64
		if err := rows.Scan(&k.site, &k.source, &k.cluster, &ids); err != nil {
			rows.Close()
			return rep, fmt.Errorf("store: cluster aggregates: recorded members: %w", err)
		}
		recorded[k] = ids
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("store: cluster aggregates: recorded members: %w", err)
	}
	var todo []clusterKey
	for k, ids := range current {
		if r, ok := recorded[k]; !ok || !slices.Equal(r, ids) {
			todo = append(todo, k)
		}
	}
	for k := range recorded {
		if _, ok := current[k]; !ok {
			todo = append(todo, k)
		}
	}
	// The biggest clusters first: they gain the most.
	slices.SortFunc(todo, func(a, b clusterKey) int {
		if c := len(current[b]) - len(current[a]); c != 0 {
			return c
		}
		return strings.Compare(a.site+"\x00"+a.source+"\x00"+a.cluster, b.site+"\x00"+b.source+"\x00"+b.cluster)
	})
	for i, k := range todo {
		if i >= perRun {
			rep.Pending = len(todo) - perRun
			break
		}
		n, err := s.rebuildCluster(ctx, now, k, current[k])
		if err != nil {
			return rep, err
		}
		if current[k] == nil {
			rep.Dropped++
		} else {
			rep.Rebuilt++
		}
		rep.Rows += n
	}
	if rep.Rebuilt > 0 {
		if _, err := s.pool.Exec(ctx, `VACUUM (ANALYZE) cluster_vm_1h`); err != nil {
			return rep, fmt.Errorf("store: cluster aggregates: vacuum: %w", err)
		}
	}
	return rep, nil
}

// rebuildCluster replaces the aggregates of one cluster by those of its
// members ids (none: the cluster is forgotten).
func (s *Store) rebuildCluster(ctx context.Context, now time.Time, k clusterKey, ids []int64) (int64, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: cluster aggregates: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	var locked bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtext($1))`, rollupLock).Scan(&locked); err != nil {
		return 0, fmt.Errorf("store: cluster aggregates: lock: %w", err)
	}
	if !locked {
		return 0, nil
	}
	if _, err := tx.Exec(ctx, `DELETE FROM cluster_vm_1h WHERE site = $1 AND source = $2 AND cluster = $3`, k.site, k.source, k.cluster); err != nil {
		return 0, fmt.Errorf("store: cluster aggregates: clear %s/%s: %w", k.source, k.cluster, err)
	}
	if ids == nil {
		_, err := tx.Exec(ctx, `DELETE FROM cluster_vm_members WHERE site = $1 AND source = $2 AND cluster = $3`, k.site, k.source, k.cluster)
		if err != nil {
			return 0, fmt.Errorf("store: cluster aggregates: forget %s/%s: %w", k.source, k.cluster, err)
		}
		return 0, tx.Commit(ctx)
	}
	st, err := readRollupState(ctx, tx)
	if err != nil {
		return 0, err
	}
	from := maxTime(ceilTime(st.before[2], time.Hour), now.Add(-ClusterHorizon).UTC().Truncate(day))
	if _, err := tx.Exec(ctx, `INSERT INTO cluster_vm_members (site, source, cluster, series, counters, units, built_from)
		SELECT $1, $2, $3, $4, coalesce(array_agg(u.name ORDER BY u.name), '{}'), coalesce(array_agg(u.unit ORDER BY u.name), '{}'), $5
		FROM (SELECT c.name, coalesce(max(se.units[c.i]), '') AS unit FROM series se CROSS JOIN LATERAL unnest(se.counters) WITH ORDINALITY AS c(name, i)
		      WHERE se.id = ANY($4) GROUP BY c.name) u
		ON CONFLICT (site, source, cluster) DO UPDATE SET series = excluded.series, counters = excluded.counters, units = excluded.units,
		    built_from = excluded.built_from, built_at = now()`,
		k.site, k.source, k.cluster, ids, from); err != nil {
		return 0, fmt.Errorf("store: cluster aggregates: record %s/%s: %w", k.source, k.cluster, err)
	}
	n, err := clusterAggregate(ctx, tx, []span{{site: k.site, lo: from, hi: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}}, k.source, k.cluster)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("store: cluster aggregates: commit %s/%s: %w", k.source, k.cluster, err)
	}
	s.log.Debug("cluster aggregates rebuilt", "site", k.site, "source", k.source, "cluster", k.cluster, "vms", len(ids), "rows", n)
	return n, nil
}
