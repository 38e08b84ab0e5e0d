package alert

import (
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
