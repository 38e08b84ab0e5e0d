package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Hygiene: the VMs that need an operator's attention although nothing is
// failing (old snapshots, VMware Tools not running or outdated, VMs powered
// off for long), derived from the live inventory and its change history.
//
// The rules, per finding kind (templates are never findings):
//
//   - old_snapshot (warning): the VM has snapshots (props.snapshot_count > 0)
//     and the oldest (props.snapshot_oldest) is at least SnapshotAge old.
//     Since is that snapshot's creation time.
//   - tools_not_running (warning): the VM is powered on and Tools is not
//     running (props.tools_running_status guestToolsNotRunning) or not
//     installed (props.tools_version_status guestToolsNotInstalled).
//   - tools_outdated (info): props.tools_version_status is one of
//     ToolsOutdatedStatuses (an upgrade is available or needed).
//   - consolidation_needed (warning): vCenter says the VM's disks need
//     consolidation (props.consolidation_needed, vSphere's
//     runtime.consolidationNeeded: delta disks a snapshot operation left
//     behind). Agents older than the property do not report it: their VMs
//     are never this finding.
//   - powered_off (info): the VM is powered off and has been for at least
//     PoweredOffFor.
//
// Since, for every kind but old_snapshot, is the observation time of the
// newest inventory change of the property that makes the finding
// (props.power_state to poweredOff; props.tools_running_status or
// props.tools_version_status; props.consolidation_needed to true), or the
// VM's first_seen when the inventory never saw it change (SinceFirstSeen:
// the state lasted at least that long).
//
// Findings are ordered by severity (warning first), then by age (oldest
// Since first, unknown last), then by VM name, source and moref.

// Hygiene finding kinds.
const (
	HygieneOldSnapshot     = "old_snapshot"
	HygieneToolsNotRunning = "tools_not_running"
	HygieneToolsOutdated   = "tools_outdated"
	HygienePoweredOff      = "powered_off"
	HygieneConsolidation   = "consolidation_needed"
)

// HygieneKinds lists the finding kinds in their display order.
var HygieneKinds = []string{HygieneOldSnapshot, HygieneConsolidation, HygieneToolsNotRunning, HygieneToolsOutdated, HygienePoweredOff}

// Hygiene severities.
const (
	SeverityWarning = "warning"
	SeverityInfo    = "info"
)

// ToolsOutdatedStatuses are the values of vSphere's toolsVersionStatus2
// that make a tools_outdated finding.
var ToolsOutdatedStatuses = []string{"guestToolsNeedUpgrade", "guestToolsTooOld", "guestToolsSupportedOld", "guestToolsBlacklisted"}

// HygieneQuery selects findings; zero durations take the defaults.
type HygieneQuery struct {
	Site string // only this site's VMs
	Kind string // only this kind (one of HygieneKinds); "" is all
	Q    string // substring of the VM name, any case
	// SnapshotAge is the age from which a snapshot is old (default 7 days).
	SnapshotAge time.Duration
	// PoweredOffFor is how long a VM must have been powered off (default
	// 30 days).
	PoweredOffFor time.Duration
	// Now is the reference time (zero: time.Now).
	Now            time.Time
	Page, PageSize int
}

// Defaults of HygieneQuery.
const (
	DefaultSnapshotAge   = 7 * 24 * time.Hour
	DefaultPoweredOffFor = 30 * 24 * time.Hour
)

// HygieneFinding is one finding about one VM.
type HygieneFinding struct {
	Kind, Severity string
	// VM is the VM (with its host and cluster resolved to names).
	VM Object
	// Since is when the condition began (see the rules); nil when unknown.
	Since          *time.Time
	SinceFirstSeen bool
}

// HygieneReport is a page of findings, how many match in all, and how many
// of each kind match (the Kind filter aside).
type HygieneReport struct {
	Findings []HygieneFinding
	Total    int
	Counts   map[string]int
}

// hygieneBranches are the SQL of each finding kind over the VM alias o:
// the condition, and the since and since-from-first-seen expressions.
func hygieneBranch(kind string, a *args, q *HygieneQuery) (cond, since, firstSeen string) {
	lastChange := func(key, newValue string) string {
		c := `(SELECT c.observed_at FROM inventory_changes c WHERE c.site = o.site AND c.source = o.source AND c.moref = o.moref
		    AND c.kind = 'vm' AND c.changes ? '` + key + `'`
		if newValue != "" {
			c += ` AND c.changes->'` + key + `'->>'new' = ` + newValue
		}
		return c + ` ORDER BY c.observed_at DESC LIMIT 1)`
	}
	switch kind {
	case HygieneOldSnapshot:
		// Unix ms from the agent, guarded: a value beyond year 9999 (a
		// hostile or broken agent) is no finding rather than an error.
		oldest := `(CASE WHEN ` + numProp("o", "snapshot_oldest") + ` BETWEEN 1 AND 253402300799999 THEN ` + numProp("o", "snapshot_oldest") + ` END)`
		ts := `to_timestamp(` + oldest + ` / 1000.0)`
		return numProp("o", "snapshot_count") + ` > 0 AND ` + oldest + ` > 0 AND ` +
				ts + ` <= ` + a.add(q.Now) + `::timestamptz - make_interval(secs => ` + a.add(q.SnapshotAge.Seconds()) + `)`,
			ts, `false`
	case HygieneToolsNotRunning:
		ch := `coalesce(` + lastChange("props.tools_running_status", "") + `, ` + lastChange("props.tools_version_status", "") + `)`
		return `o.props->>'power_state' = 'poweredOn' AND (o.props->>'tools_running_status' = 'guestToolsNotRunning'
		    OR o.props->>'tools_version_status' = 'guestToolsNotInstalled')`, `coalesce(` + ch + `, o.first_seen)`, ch + ` IS NULL`
	case HygieneConsolidation:
		// The agent sends a JSON boolean; the JSON text is 'true'.
		ch := lastChange("props.consolidation_needed", "'true'")
		return `o.props->>'consolidation_needed' = 'true'`, `coalesce(` + ch + `, o.first_seen)`, ch + ` IS NULL`
	case HygieneToolsOutdated:
		ch := lastChange("props.tools_version_status", "")
		return `o.props->>'tools_version_status' = ANY(` + a.add(ToolsOutdatedStatuses) + `::text[])`,
			`coalesce(` + ch + `, o.first_seen)`, ch + ` IS NULL`
	default: // HygienePoweredOff
		ch := lastChange("props.power_state", "'poweredOff'")
		since := `coalesce(` + ch + `, o.first_seen)`
		return `o.props->>'power_state' = 'poweredOff' AND ` + since + ` <= ` + a.add(q.Now) + `::timestamptz - make_interval(secs => ` +
			a.add(q.PoweredOffFor.Seconds()) + `)`, since, ch + ` IS NULL`
	}
}

// hygieneSeverity is each kind's severity.
var hygieneSeverity = map[string]string{
	HygieneOldSnapshot: SeverityWarning, HygieneToolsNotRunning: SeverityWarning, HygieneConsolidation: SeverityWarning,
	HygieneToolsOutdated: SeverityInfo, HygienePoweredOff: SeverityInfo,
}

// Hygiene returns a page of the hygiene findings about the live VMs in the
// caller's data scope: VMs outside it are neither listed nor counted.
func (s *Store) Hygiene(ctx context.Context, q HygieneQuery) (HygieneReport, error) {
	sc, err := scopeOf(ctx)
	if err != nil {
		return HygieneReport{}, err
	}
	if q.SnapshotAge <= 0 {
		q.SnapshotAge = DefaultSnapshotAge
	}
	if q.PoweredOffFor <= 0 {
		q.PoweredOffFor = DefaultPoweredOffFor
	}
	if q.Now.IsZero() {
		q.Now = time.Now()
	}
	if q.Kind != "" && hygieneSeverity[q.Kind] == "" {
		return HygieneReport{}, fmt.Errorf("store: hygiene: unknown kind %q", q.Kind)
	}
	var a args
	where := []string{"o.kind = 'vm'", "o.deleted_at IS NULL", sc.vmSQL("o", &a),
		"coalesce(o.props->>'template', '') <> 'true'"}
	if q.Site != "" {
		where = append(where, "o.site = "+a.add(q.Site))
	}
	if q.Q != "" {
		where = append(where, "o.name ILIKE "+a.add(likePattern(q.Q)))
	}
	var branches []string
	for _, kind := range HygieneKinds {
		cond, since, first := hygieneBranch(kind, &a, &q)
		rank := "1"
		if hygieneSeverity[kind] == SeverityInfo {
			rank = "2"
		}
		branches = append(branches, `SELECT '`+kind+`' AS finding, `+rank+` AS rank, `+since+` AS since, `+first+` AS first_seen_since,
		    o.site, o.source, o.moref, o.name FROM vmset o WHERE `+cond)
	}
	// vmset is the scoped, filtered VMs; all is every finding about them.
	cte := `WITH vmset AS MATERIALIZED (SELECT * FROM inventory_objects o WHERE ` + strings.Join(where, " AND ") + `),
		allf AS MATERIALIZED (` + strings.Join(branches, "\nUNION ALL\n") + `)`
	rep := HygieneReport{Findings: []HygieneFinding{}, Counts: map[string]int{}}
	for _, k := range HygieneKinds {
		rep.Counts[k] = 0
	}
	cteArgs := len(a) // the arguments the CTE uses
	limit, offset := pageBounds(q.Page, q.PageSize)
	filter := "true"
	if q.Kind != "" {
		filter = "f.finding = " + a.add(q.Kind)
	}
	lp, op := a.add(limit), a.add(offset)
	order := `f.rank, f.since ASC NULLS LAST, f.name, f.source, f.moref, f.finding`
	// One statement: the page, each row carrying the counts of every kind
	// (an uncorrelated subquery over the materialized findings, computed
	// once). An empty page needs the counts on their own.
	counts := `SELECT coalesce(jsonb_object_agg(finding, n), '{}') FROM (SELECT finding, count(*) AS n FROM allf GROUP BY finding) x`
	rows, err := s.pool.Query(ctx, cte+`
		SELECT (`+counts+`), f.finding, f.since, f.first_seen_since, `+objectCols+`
		FROM (SELECT * FROM allf f WHERE `+filter+` ORDER BY `+order+` LIMIT `+lp+` OFFSET `+op+`) f
		JOIN inventory_objects o ON o.site = f.site AND o.source = f.source AND o.kind = 'vm' AND o.moref = f.moref`+objectJoins+`
		ORDER BY `+order, a...)
	if err != nil {
		return HygieneReport{}, fmt.Errorf("store: hygiene: %w", err)
	}
	defer rows.Close()
	var byKind map[string]int
	for rows.Next() {
		var (
			f                          HygieneFinding
			since                      *time.Time
			hostID, hostName, cl, clNm string
		)
		o := &f.VM
		if err := rows.Scan(&byKind, &f.Kind, &since, &f.SinceFirstSeen, &o.Site, &o.Source, &o.Kind, &o.Moref, &o.Name, &o.ParentMoref, &o.Path, &o.Props,
			&o.FirstSeen, &o.ObservedAt, &o.UpdatedAt, &o.Datacenter, &hostID, &hostName, &cl, &clNm); err != nil {
			return HygieneReport{}, fmt.Errorf("store: hygiene: %w", err)
		}
		if o.Props == nil {
			o.Props = map[string]any{}
		}
		if hostID != "" {
			o.Host = &ObjectRef{Moref: hostID, Name: hostName}
		}
		if cl != "" {
			o.Cluster = &ObjectRef{Moref: cl, Name: clNm}
		}
		if since != nil {
			t := since.UTC()
			f.Since = &t
		}
		f.Severity = hygieneSeverity[f.Kind]
		rep.Findings = append(rep.Findings, f)
	}
	if err := rows.Err(); err != nil {
		return HygieneReport{}, fmt.Errorf("store: hygiene: %w", err)
	}
	rows.Close()
	if len(rep.Findings) == 0 {
		if err := s.pool.QueryRow(ctx, cte+` `+counts, a[:cteArgs]...).Scan(&byKind); err != nil {
			return HygieneReport{}, fmt.Errorf("store: hygiene counts: %w", err)
		}
	}
	for k, n := range byKind {
		rep.Counts[k] = n
	}
	if q.Kind != "" {
		rep.Total = rep.Counts[q.Kind]
	} else {
		for _, n := range rep.Counts {
			rep.Total += n
		}
	}
	return rep, nil
}
