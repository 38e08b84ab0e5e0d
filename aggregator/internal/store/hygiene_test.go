package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/access"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// writeInventoryAt writes an inventory of source observed at at (full or
// a delta of the objects given).
func (f *fixture) writeInventoryAt(site, agent, source string, at time.Time, full bool, objs ...protocol.InventoryObject) {
	f.t.Helper()
	f.seq++
	res, err := f.st.WriteInventory(f.ctx, store.BatchMeta{AgentID: agent, Site: site, Epoch: 1, Seq: f.seq, Kind: protocol.KindInventory},
		&protocol.Inventory{Source: source, Full: full, At: at.UnixMilli(), Objects: objs})
	if err != nil || res.Duplicate {
		f.t.Fatalf("write inventory: %+v, %v", res, err)
	}
}

// hygieneFixture writes, through the ingest write path, site dc1 with one
// VM per hygiene case (power changes observed at their time) and site dc2
// with one VM with an old snapshot. It returns the reference time.
func hygieneFixture(t *testing.T) (*fixture, time.Time) {
	f := newFixture(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	day := 24 * time.Hour
	t0 := now.Add(-60 * day)
	vm := func(id, name, power string, extra map[string]any) protocol.InventoryObject {
		p := map[string]any{"tools_running_status": "guestToolsRunning", "tools_version_status": "guestToolsCurrent"}
		for k, v := range extra {
			p[k] = v
		}
		return vmObj(id, name, "/Datacenters/DC1/vm/"+name, "host-1", "domain-c1", power, "", 2, 2048, p)
	}
	snap := func(age time.Duration, n int) map[string]any {
		return map[string]any{"snapshot_count": n, "snapshot_oldest": now.Add(-age).UnixMilli()}
	}
	offLong := vm("vm-5", "off-long", "poweredOn", nil)
	offShort := vm("vm-6", "off-short", "poweredOn", nil)
	f.writeInventoryAt("dc1", f.agent, vcA, t0, true,
		obj("datacenter", "datacenter-1", "DC1", "group-d1", "/Datacenters/DC1", nil),
		obj("cluster", "domain-c1", "Prod", "group-h1", "/Datacenters/DC1/host/Prod", nil),
		obj("host", "host-1", "esx1", "domain-c1", "/Datacenters/DC1/host/Prod/esx1", map[string]any{"cluster_id": "domain-c1"}),
		vm("vm-1", "snap-old", "poweredOn", snap(10*day, 2)),
		vm("vm-2", "snap-new", "poweredOn", snap(2*day, 1)),
		vm("vm-3", "tools-down", "poweredOn", map[string]any{"tools_running_status": "guestToolsNotRunning"}),
		vm("vm-4", "tools-old", "poweredOn", map[string]any{"tools_version_status": "guestToolsNeedUpgrade"}),
		offLong, offShort,
		vm("vm-7", "off-born", "poweredOff", nil),
		vm("vm-8", "a-template", "poweredOff", map[string]any{"template": true, "tools_running_status": "guestToolsNotRunning"}),
		vm("vm-9", "off-tools", "poweredOff", map[string]any{"tools_running_status": "guestToolsNotRunning"}),
		vm("vm-10", "clean", "poweredOn", nil),
		// A snapshot time beyond year 9999 (a broken or hostile agent) is
		// no finding, and no error for everyone whose scope holds the VM.
		vm("vm-11", "snap-bogus", "poweredOn", map[string]any{"snapshot_count": 1, "snapshot_oldest": 1e20}),
	)
	offLong.Props["power_state"] = "poweredOff"
	f.writeInventoryAt("dc1", f.agent, vcA, now.Add(-40*day), false, offLong)
	offShort.Props["power_state"] = "poweredOff"
	f.writeInventoryAt("dc1", f.agent, vcA, now.Add(-5*day), false, offShort)
	// A later change of another property does not move "powered off since".
	offLong.Props["num_cpu"] = 4
	f.writeInventoryAt("dc1", f.agent, vcA, now.Add(-1*day), false, offLong)

	b := f.enroll("dc2")
	f.writeInventoryAt("dc2", b, vcB, t0, true,
		vmObj("vm-1", "edge-snap", "/Datacenters/DC9/vm/edge-snap", "host-9", "", "poweredOn", "guestToolsRunning", 1, 1024, snap(20*day, 1)))
	return f, now
}

func findingNames(fs []store.HygieneFinding) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.Kind+":"+f.VM.Name)
	}
	return out
}

// TestHygiene: the rules of each finding kind, powered-off-since from the
// inventory's change history, the order, the thresholds, the filters and
// paging, and the data scope (out-of-scope VMs neither listed nor counted).
func TestHygiene(t *testing.T) {
	f, now := hygieneFixture(t)
	day := 24 * time.Hour

	rep, err := f.st.Hygiene(f.ctx, store.HygieneQuery{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		// warnings, oldest first
		"tools_not_running:tools-down", "old_snapshot:edge-snap", "old_snapshot:snap-old",
		// then info, oldest first, ties by name
		"powered_off:off-born", "powered_off:off-tools", "tools_outdated:tools-old", "powered_off:off-long",
	}
	if got := findingNames(rep.Findings); !slices.Equal(got, want) {
		t.Fatalf("findings = %v\nwant %v", got, want)
	}
	if rep.Total != len(want) || rep.Counts[store.HygieneOldSnapshot] != 2 || rep.Counts[store.HygienePoweredOff] != 3 ||
		rep.Counts[store.HygieneToolsNotRunning] != 1 || rep.Counts[store.HygieneToolsOutdated] != 1 {
		t.Errorf("total %d, counts %v", rep.Total, rep.Counts)
	}
	byName := map[string]store.HygieneFinding{}
	for _, x := range rep.Findings {
		byName[x.Kind+":"+x.VM.Name] = x
	}
	// Powered off since: the change to poweredOff, not the later num_cpu
	// change; a VM never seen on counts from first_seen.
	if x := byName["powered_off:off-long"]; x.Since == nil || !x.Since.Equal(now.Add(-40*day)) || x.SinceFirstSeen || x.Severity != store.SeverityInfo {
		t.Errorf("off-long: %+v", x)
	}
	if x := byName["powered_off:off-born"]; x.Since == nil || !x.Since.Equal(now.Add(-60*day)) || !x.SinceFirstSeen {
		t.Errorf("off-born: since %v first-seen %v", x.Since, x.SinceFirstSeen)
	}
	if x := byName["old_snapshot:snap-old"]; x.Since == nil || !x.Since.Equal(now.Add(-10*day)) || x.Severity != store.SeverityWarning ||
		x.VM.Host == nil || x.VM.Host.Name != "esx1" || x.VM.Cluster == nil || x.VM.Cluster.Name != "Prod" || x.VM.Site != "dc1" {
		t.Errorf("snap-old: %+v", x)
	}

	// Thresholds.
	rep, err = f.st.Hygiene(f.ctx, store.HygieneQuery{Now: now, SnapshotAge: day, PoweredOffFor: 72 * time.Hour, Kind: store.HygieneOldSnapshot})
	if err != nil {
		t.Fatal(err)
	}
	if got := findingNames(rep.Findings); !slices.Equal(got, []string{"old_snapshot:edge-snap", "old_snapshot:snap-old", "old_snapshot:snap-new"}) ||
		rep.Total != 3 || rep.Counts[store.HygienePoweredOff] != 4 {
		t.Errorf("snapshot_age 1d: %v total %d counts %v", got, rep.Total, rep.Counts)
	}

	// Filters and paging.
	rep, err = f.st.Hygiene(f.ctx, store.HygieneQuery{Now: now, Site: "dc1", Page: 2, PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := findingNames(rep.Findings); !slices.Equal(got, []string{"powered_off:off-born", "powered_off:off-tools"}) || rep.Total != 6 {
		t.Errorf("dc1 page 2: %v (total %d)", got, rep.Total)
	}
	// Past the last page: no findings, the counts still there.
	rep, err = f.st.Hygiene(f.ctx, store.HygieneQuery{Now: now, Kind: store.HygienePoweredOff, Page: 9, PageSize: 2})
	if err != nil || len(rep.Findings) != 0 || rep.Total != 3 || rep.Counts[store.HygieneOldSnapshot] != 2 {
		t.Errorf("page 9: %v total %d counts %v, %v", findingNames(rep.Findings), rep.Total, rep.Counts, err)
	}
	rep, err = f.st.Hygiene(f.ctx, store.HygieneQuery{Now: now, Q: "TOOLS"})
	if err != nil {
		t.Fatal(err)
	}
	if got := findingNames(rep.Findings); !slices.Equal(got, []string{"tools_not_running:tools-down", "powered_off:off-tools", "tools_outdated:tools-old"}) {
		t.Errorf("q=TOOLS: %v", got)
	}
	if _, err := f.st.Hygiene(f.ctx, store.HygieneQuery{Kind: "nope"}); err == nil {
		t.Error("unknown kind accepted")
	}

	// Data scope.
	dc1 := access.WithScope(context.Background(), access.Scope{Sites: []string{"dc1"}})
	rep, err = f.st.Hygiene(dc1, store.HygieneQuery{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range rep.Findings {
		if x.VM.Site != "dc1" {
			t.Errorf("scope dc1 sees %s of %s", x.VM.Name, x.VM.Site)
		}
	}
	if rep.Total != 6 || rep.Counts[store.HygieneOldSnapshot] != 1 {
		t.Errorf("scope dc1: total %d counts %v", rep.Total, rep.Counts)
	}
	rep, err = f.st.Hygiene(dc1, store.HygieneQuery{Now: now, Site: "dc2"})
	if err != nil || rep.Total != 0 || len(rep.Findings) != 0 {
		t.Errorf("scope dc1 asking for dc2: %v %d %v", findingNames(rep.Findings), rep.Total, err)
	}
	if _, err := f.st.Hygiene(context.Background(), store.HygieneQuery{}); !errors.Is(err, store.ErrNoScope) {
		t.Errorf("no scope: %v", err)
	}
}
