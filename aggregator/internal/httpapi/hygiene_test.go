package httpapi

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// hygieneInventory adds to the inventory fixture, through the ingest write
// path: in dc-east a VM first seen 40 days ago powered off and a powered-on
// VM whose Tools need an upgrade; in dc-west a VM with an old snapshot
// (web-01 of dc-east has one from 2023).
func (e *env) hygieneInventory(f invFixture) {
	e.t.Helper()
	write := func(a store.Agent, seq uint64, source string, at time.Time, objs ...protocol.InventoryObject) {
		e.t.Helper()
		if _, err := e.store.WriteInventory(context.Background(), store.BatchMeta{AgentID: a.ID, Site: a.Site, Epoch: 1, Seq: seq, Kind: protocol.KindInventory},
			&protocol.Inventory{Source: source, At: at.UnixMilli(), Objects: objs}); err != nil {
			e.t.Fatal(err)
		}
	}
	now := time.Now()
	write(f.east, 20, vcEast, now.Add(-40*24*time.Hour),
		invObj("vm", "vm-7", "old-off", "/Datacenters/DC1/vm/old-off", map[string]any{"power_state": "poweredOff", "host_id": "host-2", "cluster_id": "domain-c1"}))
	write(f.east, 21, vcEast, now,
		invObj("vm", "vm-8", "stale-tools", "/Datacenters/DC1/vm/stale-tools", map[string]any{"power_state": "poweredOn", "host_id": "host-1",
			"tools_running_status": "guestToolsRunning", "tools_version_status": "guestToolsNeedUpgrade", "tools_version": "11269"}))
	write(f.west, 20, vcWest, now,
		invObj("vm", "vm-1", "edge-01", "/Datacenters/DCW/vm/edge-01", map[string]any{"power_state": "suspended", "host_id": "host-9",
			"snapshot_count": 3, "snapshot_oldest": now.Add(-30 * 24 * time.Hour).UnixMilli()}))
}

func hygieneOf(t *testing.T, e *env, token, query string) HygieneReport {
	t.Helper()
	res := e.do("GET", "/api/v1/vms/hygiene"+query, token, "")
	if res.status != 200 {
		t.Fatalf("hygiene%s = %d %s", query, res.status, res.raw)
	}
	var rep HygieneReport
	res.data(&rep)
	return rep
}

func hygieneNames(rep HygieneReport) []string {
	out := []string{}
	for _, f := range rep.Items {
		out = append(out, f.Kind+":"+f.VM.Name)
	}
	return out
}

// TestHygieneAPI: GET /vms/hygiene over real PostgreSQL: the findings and
// their details, the thresholds and filters, a user scoped to one site
// (the other site's VMs neither listed nor counted), and bad input as 422
// naming the field.
func TestHygieneAPI(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	e.hygieneInventory(f)
	viewer := e.tokens["viewer"]

	rep := hygieneOf(t, e, viewer, "")
	want := []string{"old_snapshot:web-01", "old_snapshot:edge-01", "powered_off:old-off", "tools_outdated:stale-tools"}
	if got := hygieneNames(rep); !slices.Equal(got, want) {
		t.Fatalf("findings = %v, want %v", got, want)
	}
	if rep.Total != 4 || rep.Counts[store.HygieneOldSnapshot] != 2 || rep.Counts[store.HygieneToolsNotRunning] != 0 ||
		rep.Rules.SnapshotAgeSeconds != 7*86400 || rep.Rules.PoweredOffForSeconds != 30*86400 || rep.Page != 1 || rep.PageSize != 50 {
		t.Errorf("report = %+v", rep)
	}
	web := rep.Items[0]
	if web.Severity != store.SeverityWarning || web.VM.ID != objectID(vcEast, "vm-1") || web.VM.Site != "dc-east" || web.VM.Host == nil ||
		web.VM.Host.Name != "esx1" || web.VM.Cluster == nil || web.VM.Cluster.Name != "Prod" || web.SnapshotCount != 1 ||
		web.SnapshotOldest == nil || !web.SnapshotOldest.Equal(time.UnixMilli(1700000000000)) || web.Since == nil || !web.Since.Equal(*web.SnapshotOldest) ||
		web.AgeSeconds == nil || *web.AgeSeconds < 365*86400 {
		t.Errorf("web-01 = %+v", web)
	}
	off := rep.Items[2]
	if off.Severity != store.SeverityInfo || !off.SinceFirstSeen || off.Since == nil || off.AgeSeconds == nil ||
		*off.AgeSeconds < 40*86400-120 || *off.AgeSeconds > 40*86400+120 || off.VM.PowerState != "poweredOff" {
		t.Errorf("old-off = %+v", off)
	}
	if st := rep.Items[3]; st.ToolsVersionStatus != "guestToolsNeedUpgrade" || st.ToolsVersion != "11269" {
		t.Errorf("stale-tools = %+v", st)
	}

	// Thresholds, filters, paging.
	for q, want := range map[string][]string{
		"?snapshot_age=3000d":                    {"powered_off:old-off", "tools_outdated:stale-tools"},
		"?powered_off_for=41d&snapshot_age=31d":  {"old_snapshot:web-01", "tools_outdated:stale-tools"},
		"?kind=powered_off&powered_off_for=720h": {"powered_off:old-off"},
		"?site=dc-west":                          {"old_snapshot:edge-01"},
		"?q=WEB":                                 {"old_snapshot:web-01"},
		"?page=2&page_size=3":                    {"tools_outdated:stale-tools"},
	} {
		if got := hygieneNames(hygieneOf(t, e, viewer, q)); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", q, got, want)
		}
	}
	if r := hygieneOf(t, e, viewer, "?kind=old_snapshot"); r.Total != 2 || r.Counts[store.HygienePoweredOff] != 1 {
		t.Errorf("kind=old_snapshot: total %d counts %v", r.Total, r.Counts)
	}

	// A user scoped to dc-east.
	admin := e.tokens["admin"]
	res := e.do("POST", "/api/v1/users", admin, `{"username":"east-viewer","password":"`+goodPassword+`","roles":["viewer"]}`)
	var u struct {
		ID string `json:"id"`
	}
	res.data(&u)
	if res := e.do("PUT", "/api/v1/users/"+u.ID+"/scope", admin, `{"sites":["dc-east"],"vm_groups":[]}`); res.status != 200 {
		t.Fatalf("set scope: %d %s", res.status, res.raw)
	}
	east := e.login("east-viewer").AccessToken
	for _, q := range []string{"", "?site=dc-west", "?q=edge", "?kind=old_snapshot&snapshot_age=1h"} {
		res := e.do("GET", "/api/v1/vms/hygiene"+q, east, "")
		if res.status != 200 || strings.Contains(string(res.raw), "edge-01") || strings.Contains(string(res.raw), "dc-west") {
			t.Errorf("scoped %s = %d %s", q, res.status, res.raw)
		}
	}
	if r := hygieneOf(t, e, east, ""); r.Total != 3 || r.Counts[store.HygieneOldSnapshot] != 1 ||
		!slices.Equal(hygieneNames(r), []string{"old_snapshot:web-01", "powered_off:old-off", "tools_outdated:stale-tools"}) {
		t.Errorf("scoped: %v total %d counts %v", hygieneNames(r), r.Total, r.Counts)
	}

	// Bad input.
	for _, c := range []struct{ query, field, code string }{
		{"snapshot_age=abc", "snapshot_age", FieldInvalidFormat},
		{"snapshot_age=7", "snapshot_age", FieldInvalidFormat},
		{"snapshot_age=-1d", "snapshot_age", FieldOutOfRange},
		{"snapshot_age=30m", "snapshot_age", FieldOutOfRange},
		{"snapshot_age=3651d", "snapshot_age", FieldOutOfRange},
		{"snapshot_age=99999999999999999999d", "snapshot_age", FieldInvalidFormat},
		{"powered_off_for=0d", "powered_off_for", FieldOutOfRange},
		{"powered_off_for=" + url.QueryEscape("1d\x00"), "powered_off_for", FieldInvalidText},
		{"kind=snapshots", "kind", FieldInvalidValue},
		{"page=0", "page", FieldOutOfRange},
		{"page_size=x", "page_size", FieldInvalidType},
		{"site=" + strings.Repeat("s", 64), "site", FieldTooLong},
	} {
		res := e.do("GET", "/api/v1/vms/hygiene?"+c.query, viewer, "")
		var d errData
		res.data(&d)
		if res.status != 422 || res.code() != CodeValidation || len(d.Fields) != 1 || d.Fields[0].Field != c.field || d.Fields[0].Code != c.code {
			t.Errorf("?%s = %d %s; want 422 %s/%s", c.query, res.status, res.raw, c.field, c.code)
		}
	}
	if res := e.do("GET", "/api/v1/vms/hygiene", "", ""); res.status != 401 {
		t.Errorf("anonymous = %d", res.status)
	}
}
