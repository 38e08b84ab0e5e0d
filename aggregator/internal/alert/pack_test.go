package alert

import (
	"slices"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// TestDefaultPack: the pack installs once (a deleted rule stays deleted)
// and its rules fire on the registry's and the inventory's states: a site
// without a connected agent, a host not responding, a host in
// maintenance, a datastore nearly full, an old snapshot.
func TestDefaultPack(t *testing.T) {
	f := newFixture(t, Config{InventoryInterval: time.Nanosecond})
	if n, err := f.db.InstallDefaultPack(f.ctx); err != nil || n != len(DefaultPack()) {
		t.Fatalf("install: %d, %v", n, err)
	}
	if n, err := f.db.InstallDefaultPack(f.ctx); err != nil || n != 0 {
		t.Fatalf("install again: %d, %v", n, err)
	}
	if _, err := f.pool.Exec(f.ctx, `DELETE FROM alert_rules WHERE builtin = 'vm-snapshot-age'`); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.db.InstallDefaultPack(f.ctx); n != 0 {
		t.Fatalf("a deleted pack rule came back")
	}
	if _, err := f.pool.Exec(f.ctx, `UPDATE alert_pack_installed SET key = 'x' WHERE key = 'vm-snapshot-age'`); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.db.InstallDefaultPack(f.ctx); n != 1 {
		t.Fatalf("reinstalling the snapshot rule: %d", n)
	}
	now := f.clock.Now()
	obj := func(kind, id, name string, props map[string]any) protocol.InventoryObject {
		return protocol.InventoryObject{Source: "vc1", Kind: kind, ID: id, Name: name, Props: props}
	}
	if _, err := f.st.WriteInventory(f.ctx, store.BatchMeta{AgentID: f.agent, Site: "site-a", Epoch: 1, Seq: 1000, Kind: protocol.KindInventory},
		&protocol.Inventory{Source: "vc1", Full: true, At: now.UnixMilli(), Objects: []protocol.InventoryObject{
			obj("host", "host-1", "esx1", map[string]any{"connection_state": "notResponding"}),
			obj("host", "host-2", "esx2", map[string]any{"connection_state": "connected", "maintenance_mode": true}),
			obj("host", "host-3", "esx3", map[string]any{"connection_state": "connected", "maintenance_mode": false}),
			obj("datastore", "datastore-1", "ds1", map[string]any{"capacity": 1000, "free": 50}),
			obj("datastore", "datastore-2", "ds2", map[string]any{"capacity": 1000, "free": 500}),
			obj("vm", "vm-1", "old-snap", map[string]any{"snapshot_count": 2, "snapshot_oldest": now.Add(-100 * time.Hour).UnixMilli()}),
			obj("vm", "vm-2", "no-snap", map[string]any{"snapshot_count": 0}),
		}}); err != nil {
		t.Fatal(err)
	}
	f.sites.set("site-b", false)
	f.clock.Set(now.Add(time.Second)) // the inventory is reloaded at the next tick
	tick := func() {
		t.Helper()
		if err := f.eng.Tick(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
	tick()
	firing := func() map[string]string {
		out := map[string]string{}
		for _, a := range f.alerts() {
			if a.State == "firing" {
				out[a.RuleName] = a.EntityName
			}
		}
		return out
	}
	got := firing()
	if len(got) != 2 || got["Host in maintenance mode"] != "esx2" || got["VM snapshot older than 3 days"] != "old-snap" {
		t.Errorf("firing at once: %v", got)
	}
	f.clock.Set(now.Add(6 * time.Minute)) // past every rule's `for`
	tick()
	got = firing()
	want := map[string]string{"Host in maintenance mode": "esx2", "VM snapshot older than 3 days": "old-snap",
		"Host not responding or disconnected": "esx1", "Datastore free space low": "ds1", "Site offline": "site-b"}
	if len(got) != len(want) {
		t.Errorf("firing after 6 minutes: %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: firing on %q, want %q", k, got[k], v)
		}
	}
	// The site comes back: its offline alert resolves.
	f.sites.set("site-b", true)
	f.clock.Set(now.Add(7 * time.Minute))
	tick()
	if _, ok := firing()["Site offline"]; ok {
		t.Errorf("site-b is back but still offline: %v", firing())
	}
}

// TestStateMetrics: VMware Tools are judged only on powered-on VMs; a
// datastore's days until full come from its free-space trend.
func TestStateMetrics(t *testing.T) {
	now := time.Now()
	on := &entityMeta{props: map[string]string{"power_state": "poweredOn", "connection_state": "orphaned",
		"tools_running_status": "guestToolsNotRunning", "tools_version_status": "guestToolsNeedUpgrade"}}
	m := on.stateMetrics(KindVM, now)
	if m[MetricToolsRunning] != 0 || m[MetricToolsOutdated] != 1 || m[MetricVMConnected] != 0 {
		t.Errorf("powered-on VM: %v", m)
	}
	off := &entityMeta{props: map[string]string{"power_state": "poweredOff", "tools_running_status": "guestToolsNotRunning"}}
	if m := off.stateMetrics(KindVM, now); len(m) != 2 { // the snapshot metrics only
		t.Errorf("powered-off VM: %v", m)
	}
	ds := &entityMeta{props: map[string]string{"capacity": "1000", "free": "200", "accessible": "false"}, freeSlope: -100.0 / 86400}
	m = ds.stateMetrics(KindDatastore, now)
	if m[MetricDatastoreDaysUntilFull] != 2 || m[MetricDatastoreFreePct] != 20 || m[MetricDatastoreAccessible] != 0 {
		t.Errorf("datastore: %v", m)
	}
	ds.freeSlope = 0
	if _, ok := ds.stateMetrics(KindDatastore, now)[MetricDatastoreDaysUntilFull]; ok {
		t.Error("days until full without a shrinking trend")
	}
}

// TestDatastoreDaysUntilFull: a datastore losing 100 GB an hour with
// 200 GB left, as its inventory recorded it, fires the default pack's
// days-until-full rule.
func TestDatastoreDaysUntilFull(t *testing.T) {
	f := newFixture(t, Config{InventoryInterval: time.Nanosecond})
	if _, err := f.db.InstallDefaultPack(f.ctx); err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	const gb = 1 << 30
	for i, free := range []float64{500, 400, 300, 200} {
		o := dsObj("ds-9", true)
		o.Props["capacity"], o.Props["free"] = 1000.0*gb, free*gb
		f.inventory(now.Add(time.Duration(i-3)*time.Hour), i == 0, o)
	}
	f.clock.Set(now.Add(time.Second))
	if err := f.eng.Tick(f.ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range f.alerts() {
		got = append(got, a.RuleName+" "+a.State)
		if a.RuleName == "Datastore full within 14 days" && (a.Value == nil || *a.Value < 0.08 || *a.Value > 0.09) {
			t.Errorf("days until full %v, want 200/100 hours = 0.083 days", a.Value)
		}
	}
	if !slices.Contains(got, "Datastore full within 14 days firing") {
		t.Errorf("alerts %v", got)
	}
}
