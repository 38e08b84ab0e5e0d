package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// HygieneReader reads the hygiene findings of the VMs in the caller's data
// scope (*store.Store implements it; see store.Hygiene for the rules).
type HygieneReader interface {
	Hygiene(ctx context.Context, q store.HygieneQuery) (store.HygieneReport, error)
}

// The store serves the hygiene route through the Inventory dependency.
var _ HygieneReader = (*store.Store)(nil)

// Bounds of the hygiene thresholds.
const (
	minHygieneThreshold = time.Hour
	maxHygieneThreshold = 3650 * 24 * time.Hour
)

// hygieneRulesDoc states the rules in the OpenAPI document.
const hygieneRulesDoc = `Findings about the live VMs in the caller's data scope (templates excluded): ` +
	`old_snapshot (warning): the oldest snapshot is at least snapshot_age old, since = its creation time; ` +
	`consolidation_needed (warning): vCenter reports that the VM's disks need consolidation (runtime.consolidationNeeded; agents older than the property do not report it); ` +
	`tools_not_running (warning): powered on and VMware Tools not running (tools_running_status guestToolsNotRunning) or not installed (tools_version_status guestToolsNotInstalled); ` +
	`tools_outdated (info): tools_version_status guestToolsNeedUpgrade, guestToolsTooOld, guestToolsSupportedOld or guestToolsBlacklisted; ` +
	`powered_off (info): powered off for at least powered_off_for. ` +
	`For every kind but old_snapshot, since is when the inventory observed the last change of the property behind the finding ` +
	`(power_state to poweredOff; tools_running_status or tools_version_status; consolidation_needed to true), or the VM's first_seen when it never saw one ` +
	`(since_first_seen: true, the state lasted at least that long). Ordered by severity (warning first), then oldest since first, then VM name.`

// hygieneResource is GET /vms/hygiene.
type hygieneResource struct{ a *API }

// Routes lists the hygiene route.
func (h *hygieneResource) Routes() []Route {
	vmRef := objectSchema(map[string]any{"id": desc(str, objectIDDoc), "name": str})
	finding := objectSchema(map[string]any{
		"kind":     map[string]any{"type": "string", "enum": store.HygieneKinds},
		"severity": map[string]any{"type": "string", "enum": []string{store.SeverityWarning, store.SeverityInfo}},
		"vm": objectSchema(map[string]any{"id": desc(str, objectIDDoc), "name": str, "site": str, "datacenter": str,
			"power_state": str, "host": nullable(vmRef, "the VM's host"), "cluster": nullable(vmRef, "the VM's cluster")}),
		"since":                nullable(dateTime, "when the condition began (see the rules)"),
		"since_first_seen":     desc(boolean, "since is the VM's first_seen: the inventory never saw the state change, it lasted at least that long"),
		"age_seconds":          nullable(integer, "seconds from since to evaluated_at"),
		"snapshot_count":       integer,
		"snapshot_oldest":      nullable(dateTime, "creation time of the oldest snapshot"),
		"tools_running_status": str, "tools_version_status": str, "tools_version": str,
	}, "kind", "severity", "vm", "since", "since_first_seen")
	counts := map[string]any{}
	for _, k := range store.HygieneKinds {
		counts[k] = integer
	}
	return []Route{
		{Method: "GET", Pattern: "/vms/hygiene", Access: auth.PermVMRead, Handle: h.list, Doc: Doc{Tag: "inventory",
			Summary: "VM hygiene findings: old snapshots, disks needing consolidation, VMware Tools not running or outdated, VMs powered off for long. " + hygieneRulesDoc,
			Params: append([]Param{
				{Name: "kind", Description: "only this kind: " + strings.Join(store.HygieneKinds, ", ")},
				{Name: "site", Description: "site name"},
				{Name: "q", Description: "substring of the VM name, any case"},
				{Name: "snapshot_age", Description: `a snapshot at least this old is a finding: a duration such as 7d, 36h or 90m (1h to 3650d; default 7d)`},
				{Name: "powered_off_for", Description: `a VM powered off at least this long is a finding: a duration as snapshot_age (default 30d)`},
			}, pageParams...),
			Response: objectSchema(map[string]any{
				"items": arrayOf(finding), "total": integer, "page": integer, "page_size": integer,
				"counts":       desc(objectSchema(counts), "findings of each kind with the filters but kind"),
				"evaluated_at": dateTime,
				"rules": objectSchema(map[string]any{"snapshot_age_seconds": integer, "powered_off_for_seconds": integer,
					"tools_outdated": desc(strList, "the tools_version_status values of tools_outdated")}),
			}, "items", "total", "page", "page_size", "counts", "evaluated_at", "rules"),
			Errors: []int{401, 403, 422, 503}}},
	}
}

// threshold reads a duration parameter: Go's syntax (36h, 90m,
// 1h30m) or whole days (7d), within the hygiene bounds.
func (q *query) threshold(name string, def time.Duration) time.Duration {
	s := q.str(name, 32)
	if s == "" {
		return def
	}
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int64
		n, err = strconv.ParseInt(days, 10, 64)
		if err == nil && (n < 0 || n > int64(maxHygieneThreshold/(24*time.Hour))) {
			q.fe.add(name, FieldOutOfRange, map[string]any{"min": "1h", "max": "3650d"})
			return def
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	switch {
	case err != nil:
		q.fe.add(name, FieldInvalidFormat, map[string]any{"format": "a duration such as 7d, 36h or 90m"})
		return def
	case d < minHygieneThreshold || d > maxHygieneThreshold:
		q.fe.add(name, FieldOutOfRange, map[string]any{"min": "1h", "max": "3650d"})
		return def
	}
	return d
}

// HygieneVM is the VM of a finding.
type HygieneVM struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Site       string `json:"site"`
	Datacenter string `json:"datacenter"`
	PowerState string `json:"power_state"`
	Host       *Ref   `json:"host"`
	Cluster    *Ref   `json:"cluster"`
}

// HygieneFinding is one finding of GET /vms/hygiene.
type HygieneFinding struct {
	Kind               string     `json:"kind"`
	Severity           string     `json:"severity"`
	VM                 HygieneVM  `json:"vm"`
	Since              *time.Time `json:"since"`
	SinceFirstSeen     bool       `json:"since_first_seen"`
	AgeSeconds         *int64     `json:"age_seconds"`
	SnapshotCount      int64      `json:"snapshot_count"`
	SnapshotOldest     *time.Time `json:"snapshot_oldest"`
	ToolsRunningStatus string     `json:"tools_running_status"`
	ToolsVersionStatus string     `json:"tools_version_status"`
	ToolsVersion       string     `json:"tools_version"`
}

// HygieneRules are the thresholds a report was computed with.
type HygieneRules struct {
	SnapshotAgeSeconds   int64    `json:"snapshot_age_seconds"`
	PoweredOffForSeconds int64    `json:"powered_off_for_seconds"`
	ToolsOutdated        []string `json:"tools_outdated"`
}

// HygieneReport is GET /vms/hygiene.
type HygieneReport struct {
	Items       []HygieneFinding `json:"items"`
	Total       int              `json:"total"`
	Page        int              `json:"page"`
	PageSize    int              `json:"page_size"`
	Counts      map[string]int   `json:"counts"`
	EvaluatedAt time.Time        `json:"evaluated_at"`
	Rules       HygieneRules     `json:"rules"`
}

func hygieneFindingOf(f *store.HygieneFinding, now time.Time) HygieneFinding {
	o := &f.VM
	p := o.Props
	out := HygieneFinding{Kind: f.Kind, Severity: f.Severity, Since: f.Since, SinceFirstSeen: f.SinceFirstSeen,
		VM: HygieneVM{ID: objectID(o.Source, o.Moref), Name: o.Name, Site: o.Site, Datacenter: o.Datacenter,
			PowerState: propStr(p, "power_state"), Host: refOf(o.Source, o.Host), Cluster: refOf(o.Source, o.Cluster)},
		ToolsRunningStatus: propStr(p, "tools_running_status"), ToolsVersionStatus: propStr(p, "tools_version_status"),
		ToolsVersion: propStr(p, "tools_version")}
	if f.Since != nil {
		age := int64(now.Sub(*f.Since) / time.Second)
		out.AgeSeconds = &age
	}
	if n := propInt(p, "snapshot_count"); n != nil {
		out.SnapshotCount = *n
	}
	if ms := propInt(p, "snapshot_oldest"); ms != nil && *ms > 0 {
		t := time.UnixMilli(*ms).UTC()
		out.SnapshotOldest = &t
	}
	return out
}

func (h *hygieneResource) list(w http.ResponseWriter, r *http.Request) error {
	// *store.Store, the Inventory main wires, implements HygieneReader (see
	// the assertion above); another Inventory answers 503.
	reader, ok := h.a.inventory.(HygieneReader)
	if !ok {
		return newError(http.StatusServiceUnavailable, CodeUnavailable)
	}
	q := newQuery(r)
	sq := store.HygieneQuery{
		Kind:          q.oneOf("kind", store.HygieneKinds...),
		Site:          q.str("site", 63),
		Q:             q.str("q", 200),
		SnapshotAge:   q.threshold("snapshot_age", store.DefaultSnapshotAge),
		PoweredOffFor: q.threshold("powered_off_for", store.DefaultPoweredOffFor),
		Now:           h.a.now().UTC(),
	}
	sq.Page, sq.PageSize = q.page()
	if err := q.err(); err != nil {
		return err
	}
	rep, err := reader.Hygiene(r.Context(), sq)
	if err != nil {
		return err
	}
	out := HygieneReport{Items: make([]HygieneFinding, 0, len(rep.Findings)), Total: rep.Total, Page: sq.Page, PageSize: sq.PageSize,
		Counts: rep.Counts, EvaluatedAt: sq.Now,
		Rules: HygieneRules{SnapshotAgeSeconds: int64(sq.SnapshotAge / time.Second), PoweredOffForSeconds: int64(sq.PoweredOffFor / time.Second),
			ToolsOutdated: store.ToolsOutdatedStatuses}}
	for i := range rep.Findings {
		out.Items = append(out.Items, hygieneFindingOf(&rep.Findings[i], sq.Now))
	}
	writeData(w, r, http.StatusOK, out)
	return nil
}
