package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The history read side beside QueryRange: the catalog of metrics seen, and
// the known reasons an entity has no data over a range (gaps are data).

// MetricInfo is one counter seen in the stored series.
type MetricInfo struct {
	// Name is vCenter's "group.counter.rollup" (cpu.usage.average).
	Name string
	Unit string
	// EntityKinds are the kinds of entity it was collected for, sorted.
	EntityKinds []string
	// Instances reports whether some series carry it per instance (a vNIC,
	// a disk) besides the entity as a whole.
	Instances bool
	// Derived, for a metric computed at query time rather than stored
	// (MetricCPUReadyPercent), states how.
	Derived string
}

// MetricCatalog lists every counter of the series in the caller's data
// scope, by name.
func (s *Store) MetricCatalog(ctx context.Context) ([]MetricInfo, error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return nil, err
	}
	var a args
	rows, err := s.pool.Query(ctx, `SELECT c.name, coalesce(max(se.units[c.i]), ''), array_agg(DISTINCT se.entity_kind ORDER BY se.entity_kind),
		    bool_or(se.instance <> '')
		FROM series se CROSS JOIN LATERAL unnest(se.counters) WITH ORDINALITY AS c(name, i)
		WHERE `+sc.siteSQL("se.site", &a)+`
		GROUP BY c.name ORDER BY c.name`, a...)
	if err != nil {
		return nil, fmt.Errorf("store: metric catalog: %w", err)
	}
	defer rows.Close()
	out := []MetricInfo{}
	for rows.Next() {
		var m MetricInfo
		if err := rows.Scan(&m.Name, &m.Unit, &m.EntityKinds, &m.Instances); err != nil {
			return nil, fmt.Errorf("store: metric catalog: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: metric catalog: %w", err)
	}
	// Derived metrics are offered wherever their source counter is stored.
	for _, m := range out {
		if m.Name == CounterCPUReady {
			d := MetricInfo{Name: MetricCPUReadyPercent, Unit: "%", EntityKinds: m.EntityKinds, Instances: m.Instances, Derived: ReadyPercentRule}
			i, _ := slices.BinarySearchFunc(out, d.Name, func(m MetricInfo, name string) int { return strings.Compare(m.Name, name) })
			out = slices.Insert(out, i, d)
			break
		}
	}
	return out, nil
}

// Causes of a stretch without data, as the API names them.
const (
	// CauseSpoolDrop: the site's agent dropped batches it could not keep
	// (spool quota or disk floor) and recorded the loss.
	CauseSpoolDrop = "spool_drop"
	// CauseBeyondRetention: the agent was down longer than vCenter keeps
	// the samples, and recorded what it could not re-read.
	CauseBeyondRetention = "beyond_retention"
	// CausePoweredOff: the VM was powered off (or suspended).
	CausePoweredOff = "powered_off"
	// CauseNoData: nothing stored and no recorded reason.
	CauseNoData = "no_data"
)

// Outage is a known reason for an entity to have no data from From to To.
type Outage struct {
	From, To time.Time
	Cause    string
	// Detail is the recorded reason in the source's words (a gap record's
	// reason, the power state).
	Detail string
}

// Outages returns the recorded reasons why the entity may lack data in
// [from, to), oldest first: the gap records of its site, the stretches in
// which no agent of its site was connected, and for a VM the periods it was
// not powered on (from its inventory history). An entity
// whose site is outside the caller's data scope has none.
func (s *Store) Outages(ctx context.Context, site, source, kind, entity string, from, to time.Time) ([]Outage, error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return nil, err
	}
	if ok, err := s.entityVisible(ctx, sc, site, source, kind, entity); err != nil || !ok {
		return []Outage{}, err
	}
	out := []Outage{}
	// A spool gap concerns the whole site; a collection gap (migration
	// 010) names its source, entity kind and entities when it is narrower.
	rows, err := s.pool.Query(ctx, `SELECT first_ts, last_ts, reason FROM ingest_gaps
		WHERE site = $1 AND first_ts IS NOT NULL AND last_ts IS NOT NULL AND first_ts < $3 AND last_ts >= $2
		  AND (source IS NULL OR source = $4) AND (entity_kind IS NULL OR entity_kind = $5)
		  AND (entity_ids IS NULL OR entity_ids @> ARRAY[$6::text])
		ORDER BY first_ts`, site, from, to, source, kind, entity)
	if err != nil {
		return nil, fmt.Errorf("store: outages of %s %s/%s: %w", kind, source, entity, err)
	}
	for rows.Next() {
		var o Outage
		if err := rows.Scan(&o.From, &o.To, &o.Detail); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: outages of %s %s/%s: %w", kind, source, entity, err)
		}
		o.Cause = CauseSpoolDrop
		if strings.Contains(strings.ToLower(o.Detail), "retention") {
			o.Cause = CauseBeyondRetention
		}
		// last_ts is the newest sample lost: the stretch covers it.
		o.From, o.To = o.From.UTC(), o.To.UTC().Add(time.Millisecond)
		out = append(out, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: outages of %s %s/%s: %w", kind, source, entity, err)
	}
	sess, err := s.sessions(ctx, site, from, to)
	if err != nil {
		return nil, err
	}
	offline, err := s.offline(ctx, site, sess, from, to)
	if err != nil {
		return nil, err
	}
	for _, p := range offline {
		out = append(out, Outage{From: p.From, To: p.To, Cause: CauseSiteOffline, Detail: "no agent of the site was connected"})
	}
	if kind == KindVM {
		off, err := s.powerOffPeriods(ctx, site, source, entity, from, to)
		if err != nil {
			return nil, err
		}
		out = append(out, off...)
	}
	slices.SortStableFunc(out, func(a, b Outage) int { return a.From.Compare(b.From) })
	return out, nil
}

// powerOffPeriods are the stretches of [from, to) in which the VM's power
// state was not poweredOn, from its inventory history: the state at from
// is the newest change before it (or, without one, the old value of the
// first change after it, or the current state), then each change in range.
func (s *Store) powerOffPeriods(ctx context.Context, site, source, moref string, from, to time.Time) ([]Outage, error) {
	var state string
	err := s.pool.QueryRow(ctx, `SELECT coalesce(
		    (SELECT changes->'props.power_state'->>'new' FROM inventory_changes
		     WHERE site = $1 AND source = $2 AND moref = $3 AND kind = 'vm' AND changes ? 'props.power_state' AND observed_at <= $4
		     ORDER BY observed_at DESC, id DESC LIMIT 1),
		    (SELECT changes->'props.power_state'->>'old' FROM inventory_changes
		     WHERE site = $1 AND source = $2 AND moref = $3 AND kind = 'vm' AND changes ? 'props.power_state' AND observed_at > $4
		     ORDER BY observed_at, id LIMIT 1),
		    (SELECT props->>'power_state' FROM inventory_objects WHERE site = $1 AND source = $2 AND kind = 'vm' AND moref = $3),
		    '')`, site, source, moref, from).Scan(&state)
	if err != nil {
		return nil, fmt.Errorf("store: power history of vm %s/%s: %w", source, moref, err)
	}
	rows, err := s.pool.Query(ctx, `SELECT observed_at, coalesce(changes->'props.power_state'->>'new', '') FROM inventory_changes
		WHERE site = $1 AND source = $2 AND moref = $3 AND kind = 'vm' AND changes ? 'props.power_state'
		AND observed_at > $4 AND observed_at < $5 ORDER BY observed_at, id`, site, source, moref, from, to)
	if err != nil {
		return nil, fmt.Errorf("store: power history of vm %s/%s: %w", source, moref, err)
	}
	defer rows.Close()
	var out []Outage
	start := from
	flush := func(end time.Time) {
		if state != "" && state != "poweredOn" && end.After(start) {
			out = append(out, Outage{From: start.UTC(), To: end.UTC(), Cause: CausePoweredOff, Detail: state})
		}
	}
	for rows.Next() {
		var at time.Time
		var next string
		if err := rows.Scan(&at, &next); err != nil {
			return nil, fmt.Errorf("store: power history of vm %s/%s: %w", source, moref, err)
		}
		if next == state {
			continue
		}
		flush(at)
		state, start = next, at
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: power history of vm %s/%s: %w", source, moref, err)
	}
	flush(to)
	return out, nil
}

// TopQuery asks for the entities with the highest (or lowest) value of one
// counter over a range, each entity's values combined by Agg.
type TopQuery struct {
	Counter    string
	EntityKind string // "" for every kind
	Site       string // "" for every site in scope
	From, To   time.Time
	Agg        Agg // avg (default), min or max
	Limit      int
	Ascending  bool
}

// TopEntry is one entity of a Top answer. Value is as stored (a percent
// counter in hundredths).
type TopEntry struct {
	Site, Source, EntityKind, EntityID, Name, Unit string
	Value                                          float64
	// SourceValue is, for MetricCPUReadyPercent, the average of the counter it
	// is derived from (cpu.ready.summation, ms per sample) over the range.
	SourceValue *float64
}

// Top returns the entities of the caller's data scope ranked by q.Agg of
// q.Counter (their values as a whole, not per instance) over [From, To), from
// the tier QueryRange would pick for the range, and that tier. The derived
// MetricCPUReadyPercent ranks by CPU ready per vCPU (topReady).
func (s *Store) Top(ctx context.Context, q TopQuery) ([]TopEntry, Resolution, error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return nil, "", err
	}
	switch {
	case q.Counter == "":
		return nil, "", fmt.Errorf("%w: no counter", ErrInvalidQuery)
	case !q.To.After(q.From):
		return nil, "", fmt.Errorf("%w: empty time range", ErrInvalidQuery)
	case q.Limit < 1 || q.Limit > 1000:
		return nil, "", fmt.Errorf("%w: limit %d outside 1-1000", ErrInvalidQuery, q.Limit)
	}
	if q.Agg == "" {
		q.Agg = AggAvg
	}
	before, err := s.rollups.cutoffs(ctx, s)
	if err != nil {
		return nil, "", err
	}
	ti, _ := pickTier(q.To.Sub(q.From), 0)
	for ti < len(tiers)-1 && q.From.Before(before[ti]) {
		ti++
	}
	t := tiers[ti]
	if q.Counter == MetricCPUReadyPercent {
		out, err := s.topReady(ctx, sc, t, q)
		return out, t.res, err
	}
	var val string
	if t.width == 0 {
		val = map[Agg]string{AggAvg: "avg(s.v[sel.i])", AggMin: "min(s.v[sel.i])", AggMax: "max(s.v[sel.i])"}[q.Agg]
	} else {
		val = map[Agg]string{AggAvg: "sum(s.vsum[sel.i]) / nullif(sum(s.vcnt[sel.i]), 0)", AggMin: "min(s.vmin[sel.i])", AggMax: "max(s.vmax[sel.i])"}[q.Agg]
	}
	if val == "" {
		return nil, "", fmt.Errorf("%w: aggregation %q not supported by top (avg, min, max)", ErrInvalidQuery, q.Agg)
	}
	a := args{q.Counter, q.From, q.To}
	where := []string{"se.instance = ''", sc.seriesSQL("se", &a)}
	if q.EntityKind != "" {
		where = append(where, "se.entity_kind = "+a.add(q.EntityKind))
	}
	if q.Site != "" {
		where = append(where, "se.site = "+a.add(q.Site))
	}
	dir := "DESC"
	if q.Ascending {
		dir = "ASC"
	}
	lim := a.add(q.Limit)
	rows, err := s.pool.Query(ctx, `WITH sel AS (
		    SELECT se.id, se.site, se.source, se.entity_kind, se.entity_id, c.i::int AS i, coalesce(se.units[c.i], '') AS unit
		    FROM series se CROSS JOIN LATERAL unnest(se.counters) WITH ORDINALITY AS c(name, i)
		    WHERE c.name = $1 AND `+strings.Join(where, " AND ")+`
		), v AS (
		    SELECT sel.site, sel.source, sel.entity_kind, sel.entity_id, max(sel.unit) AS unit, `+val+` AS value
		    FROM sel JOIN `+t.table+` s ON s.series_id = sel.id AND s.ts >= $2 AND s.ts < $3
		    GROUP BY 1, 2, 3, 4
		)
		SELECT v.site, v.source, v.entity_kind, v.entity_id, coalesce(o.name, ''), v.unit, v.value::float8
		FROM v LEFT JOIN inventory_objects o ON o.site = v.site AND o.source = v.source AND o.kind = v.entity_kind AND o.moref = v.entity_id
		WHERE v.value IS NOT NULL
		ORDER BY v.value `+dir+`, v.site, v.source, v.entity_id LIMIT `+lim, a...)
	if err != nil {
		return nil, "", fmt.Errorf("store: top %s: %w", q.Counter, err)
	}
	defer rows.Close()
	out := []TopEntry{}
	for rows.Next() {
		var e TopEntry
		if err := rows.Scan(&e.Site, &e.Source, &e.EntityKind, &e.EntityID, &e.Name, &e.Unit, &e.Value); err != nil {
			return nil, "", fmt.Errorf("store: top %s: %w", q.Counter, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("store: top %s: %w", q.Counter, err)
	}
	return out, t.res, nil
}

// topReady answers Top for MetricCPUReadyPercent from tier t: per entity,
// the ready time of the range ÷ the sampling time it covers (avg), or the
// least or greatest bucket's share (min, max), per vCPU for a VM as a
// whole (see ReadyPercentRule); in hundredths of a percent.
func (s *Store) topReady(ctx context.Context, sc dataScope, t tier, q TopQuery) ([]TopEntry, error) {
	val := map[Agg]string{
		AggAvg: "sum(x.vsum) * 10 / sum(x.n * x.iv) / min(x.ncpu)",
		AggMin: "min(x.vmin / x.iv) * 10 / min(x.ncpu)",
		AggMax: "max(x.vmax / x.iv) * 10 / min(x.ncpu)",
	}[q.Agg]
	if val == "" {
		return nil, fmt.Errorf("%w: aggregation %q not supported by top (avg, min, max)", ErrInvalidQuery, q.Agg)
	}
	a := args{CounterCPUReady, q.From, q.To}
	where := []string{"se.instance = ''", "$1::text = ANY(se.counters)", sc.seriesSQL("se", &a)}
	if q.EntityKind != "" {
		where = append(where, "se.entity_kind = "+a.add(q.EntityKind))
	}
	if q.Site != "" {
		where = append(where, "se.site = "+a.add(q.Site))
	}
	x := readyRowsSQL(t, &a)
	dir := "DESC"
	if q.Ascending {
		dir = "ASC"
	}
	lim := a.add(q.Limit)
	rows, err := s.pool.Query(ctx, `WITH sel AS (
		    SELECT se.id, se.site, se.source, se.entity_kind, se.entity_id, array_position(se.counters, $1::text) AS i,
		           `+collectionIntervalSQL+` AS ival, `+vcpusSQL+` AS ncpu
		    FROM series se
		    WHERE `+strings.Join(where, " AND ")+`
		), x AS (
		    `+x+`
		), v AS (
		    SELECT sel.site, sel.source, sel.entity_kind, sel.entity_id, `+val+` AS value, sum(x.vsum) / sum(x.n) AS raw
		    FROM x JOIN sel ON sel.id = x.id
		    GROUP BY 1, 2, 3, 4
		)
		SELECT v.site, v.source, v.entity_kind, v.entity_id, coalesce(o.name, ''), v.value::float8, v.raw::float8
		FROM v LEFT JOIN inventory_objects o ON o.site = v.site AND o.source = v.source AND o.kind = v.entity_kind AND o.moref = v.entity_id
		WHERE v.value IS NOT NULL
		ORDER BY v.value `+dir+`, v.site, v.source, v.entity_id LIMIT `+lim, a...)
	if err != nil {
		return nil, fmt.Errorf("store: top %s: %w", q.Counter, err)
	}
	defer rows.Close()
	out := []TopEntry{}
	for rows.Next() {
		e := TopEntry{Unit: "%"}
		var raw float64
		if err := rows.Scan(&e.Site, &e.Source, &e.EntityKind, &e.EntityID, &e.Name, &e.Value, &raw); err != nil {
			return nil, fmt.Errorf("store: top %s: %w", q.Counter, err)
		}
		e.SourceValue = &raw
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: top %s: %w", q.Counter, err)
	}
	return out, nil
}

// AlertCounts is how many alerts are open in the caller's data scope, as
// the realtime overview shows them.
type AlertCounts struct {
	// Active counts the firing and unknown alerts; BySeverity splits them
	// (critical, warning and info are always present).
	Active     int64
	BySeverity map[string]int64
	// Unacknowledged and Silenced count the active alerts not yet
	// acknowledged, and those silenced.
	Unacknowledged, Silenced int64
	// Suppressed counts the open alerts held back by a maintenance window
	// or a parent alert (not active).
	Suppressed int64
}

// alertSQL is the condition that the alert on alias al is in the scope:
// of one of its sites, or of a live VM in one of its groups. It is the
// alert package's own condition (alert/scope.go): unlike a series, the
// alert of a VM forgotten from the inventory (deleted_at set) has left its
// groups, so it is counted exactly when GET /alerts lists it.
func (d dataScope) alertSQL(al string, a *args) string {
	if d.all || len(d.groups) == 0 {
		return d.siteSQL(al+".site", a)
	}
	vm := `(` + al + `.entity_kind = 'vm' AND EXISTS (SELECT 1 FROM inventory_objects so WHERE so.site = ` + al + `.site
		AND so.source = ` + al + `.source AND so.kind = 'vm' AND so.moref = ` + al + `.entity_id AND so.deleted_at IS NULL
		AND ` + groupMemberSQL("so", a.add(d.groups)) + `))`
	if len(d.sites) == 0 {
		return vm
	}
	return "(" + d.siteSQL(al+".site", a) + " OR " + vm + ")"
}

// AlertCounts counts the open alerts (table alerts, migration 012) in the
// caller's data scope: an alert belongs to its entity's site, and a VM's
// alert is also in the scope of the VM's groups.
func (s *Store) AlertCounts(ctx context.Context) (AlertCounts, error) {
	out := AlertCounts{BySeverity: map[string]int64{"critical": 0, "warning": 0, "info": 0}}
	sc, err := scopeOf(ctx)
	if err != nil {
		return out, err
	}
	var a args
	rows, err := s.pool.Query(ctx, `
		SELECT a.severity,
		       count(*) FILTER (WHERE a.state IN ('firing', 'unknown')),
		       count(*) FILTER (WHERE a.state IN ('firing', 'unknown') AND a.acked_at IS NULL),
		       count(*) FILTER (WHERE a.state IN ('firing', 'unknown') AND a.silenced),
		       count(*) FILTER (WHERE a.state = 'suppressed')
		FROM alerts a
		WHERE a.state <> 'resolved' AND `+sc.alertSQL("a", &a)+`
		GROUP BY a.severity`, a...)
	if err != nil {
		return out, fmt.Errorf("store: alert counts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var sev string
		var active, unacked, silenced, suppressed int64
		if err := rows.Scan(&sev, &active, &unacked, &silenced, &suppressed); err != nil {
			return out, fmt.Errorf("store: alert counts: %w", err)
		}
		out.BySeverity[sev] += active
		out.Active += active
		out.Unacknowledged += unacked
		out.Silenced += silenced
		out.Suppressed += suppressed
	}
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("store: alert counts: %w", err)
	}
	return out, nil
}
