package alert

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// inventory writes objects of vc1 to site-a through the store's ingest
// path for inventory batches (WriteInventory, which records every change
// in inventory_changes), observed at at.
func (f *fixture) inventory(at time.Time, full bool, objs ...protocol.InventoryObject) {
	f.t.Helper()
	for i := range objs {
		objs[i].Source = "vc1"
	}
	inv := &protocol.Inventory{Source: "vc1", Full: full, At: at.UnixMilli(), Objects: objs}
	if _, err := f.st.WriteInventory(f.ctx, store.BatchMeta{AgentID: f.agent, Site: "site-a", Epoch: 1, Seq: f.seq.Add(1), Kind: protocol.KindInventory}, inv); err != nil {
		f.t.Fatalf("write inventory: %v", err)
	}
}

func hostObj(id, conn string, maint bool) protocol.InventoryObject {
	return protocol.InventoryObject{Kind: "host", ID: id, Name: "esx-" + id, Props: map[string]any{"connection_state": conn, "maintenance_mode": maint}}
}

func vmObj(id, host string, ds ...string) protocol.InventoryObject {
	if ds == nil {
		ds = []string{}
	}
	return protocol.InventoryObject{Kind: "vm", ID: id, Name: "web-" + id, Props: map[string]any{"host_id": host, "connection_state": "connected",
		"power_state": "poweredOn", "datastore_ids": ds}}
}

func dsObj(id string, accessible bool) protocol.InventoryObject {
	return protocol.InventoryObject{Kind: "datastore", ID: id, Name: "ds-" + id, Props: map[string]any{"accessible": accessible, "capacity": 1000.0, "free": 500.0}}
}

// alertOf returns the newest alert of rule on entity (source:moref).
func (f *fixture) alertOf(rule uuid.UUID, entity string) *Alert {
	var out *Alert
	for _, a := range f.alerts() {
		if a.RuleID != nil && *a.RuleID == rule && a.EntityID == entity {
			a := a
			out = &a
		}
	}
	return out
}

// TestTopologySuppression: a host that stops responding suppresses its
// VMs' alerts (state suppressed, naming the host's alert), while a VM on
// another host pages; one host alert fires. After a vMotion the VM follows
// its new host, by the inventory of each sample's time; a VM whose host
// comes back while its alert still fires is unsuppressed and paged then.
// Maintenance mode suppresses the host's own alerts and its VMs'. An
// inaccessible datastore suppresses the disk alerts of the VMs on it, not
// their other alerts.
func TestTopologySuppression(t *testing.T) {
	f := newFixture(t, Config{InventoryInterval: time.Nanosecond})
	ch := f.channel("ops", "http://127.0.0.1:1/unused")
	hostRule := f.rule(Rule{Name: "host-down", EntityKind: KindHost, Severity: SeverityCritical,
		Conditions: []Condition{{Metric: MetricHostConnected, Op: "<", Threshold: 1}}, Channels: []uuid.UUID{ch}})
	cpuRule := f.rule(Rule{Name: "cpu-high", Conditions: []Condition{{Metric: "cpu.usage.average", Op: ">", Threshold: 80}}, Channels: []uuid.UUID{ch}})
	hostCPU := f.rule(Rule{Name: "host-cpu-high", EntityKind: KindHost, Conditions: []Condition{{Metric: "cpu.usage.average", Op: ">", Threshold: 90}},
		Channels: []uuid.UUID{ch}})
	diskRule := f.rule(Rule{Name: "disk-latency", Conditions: []Condition{{Metric: "disk.maxTotalLatency.latest", Op: ">", Threshold: 100}},
		Channels: []uuid.UUID{ch}})
	now := f.clock.Now().Truncate(time.Second)
	t0 := now.Add(-8 * time.Minute)
	f.inventory(t0, true, hostObj("host-1", "connected", false), hostObj("host-2", "connected", false), dsObj("ds-1", true),
		vmObj("vm-1", "host-1", "ds-1"), vmObj("vm-2", "host-1"), vmObj("vm-3", "host-2", "ds-1"), vmObj("vm-4", "host-1"))
	tick := func() {
		t.Helper()
		f.clock.Set(f.clock.Now().Add(time.Second)) // state metrics are observed at the wall clock
		if err := f.eng.Tick(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
	tick()

	// host-1 stops responding at t1.
	t1 := t0.Add(time.Minute)
	f.inventory(t1, false, hostObj("host-1", "notResponding", false))
	tick()
	host := f.alertOf(hostRule, "vc1:host-1")
	if host == nil || host.State != "firing" {
		t.Fatalf("host alert: %+v", host)
	}
	f.commit("site-a", cpuSeries("vc1", "vm-1", t1.Add(20*time.Second), 20*time.Second, 95),
		cpuSeries("vc1", "vm-2", t1.Add(20*time.Second), 20*time.Second, 95),
		cpuSeries("vc1", "vm-3", t1.Add(20*time.Second), 20*time.Second, 95))
	for _, vm := range []string{"vm-1", "vm-2"} {
		a := f.alertOf(cpuRule, "vc1:"+vm)
		if a == nil || a.State != "suppressed" || a.SuppressedBy == nil || *a.SuppressedBy != host.ID || a.SuppressedReason != "host esx-host-1 is notResponding" {
			t.Fatalf("%s: %+v", vm, a)
		}
		if tl := f.timeline(a.ID); !slices.Equal(tl, []string{"firing", "suppressed"}) {
			t.Errorf("%s timeline %v", vm, tl)
		}
	}
	if a := f.alertOf(cpuRule, "vc1:vm-3"); a == nil || a.State != "firing" {
		t.Fatalf("vm-3 on the healthy host: %+v", a)
	}
	pages := func(entity string) int {
		return f.count(`SELECT count(*) FROM alert_notifications n JOIN alerts a ON a.id = n.alert_id WHERE a.entity_id = $1 AND n.kind = 'firing'`, entity)
	}
	if pages("vm-1")+pages("vm-2") != 0 || pages("vm-3") != 1 || pages("host-1") != 1 {
		t.Fatalf("pages: vm-1 %d, vm-2 %d, vm-3 %d, host-1 %d; want 0, 0, 1, 1", pages("vm-1"), pages("vm-2"), pages("vm-3"), pages("host-1"))
	}
	if n := f.count(`SELECT count(*) FROM alerts WHERE entity_kind = 'host'`); n != 1 {
		t.Errorf("%d host alerts, want 1", n)
	}

	// vm-2 moves to host-2 at t2 (vMotion) and resolves. A sample of
	// vm-2 from before the move, arriving now, is still judged on host-1;
	// its alert after the move is on healthy host-2 and pages.
	t2 := t1.Add(time.Minute)
	f.inventory(t2, false, vmObj("vm-2", "host-2"))
	tick()
	f.commit("site-a", cpuSeries("vc1", "vm-2", t1.Add(40*time.Second), 20*time.Second, 5))
	if a := f.alertOf(cpuRule, "vc1:vm-2"); a == nil || a.State != "resolved" {
		t.Fatalf("vm-2 after resolving: %+v", a)
	}
	if c := f.eng.suppression(f.eng.byID[cpuRule], &entity{key: entityKey{site: "site-a", source: "vc1", kind: KindVM, id: "vm-2"}}, map[string]string{},
		t1.Add(50*time.Second).UnixMilli()); c == nil || c.parent.id != "host-1" {
		t.Fatalf("vm-2 before its vMotion: cause %+v, want host-1", c)
	}
	f.commit("site-a", cpuSeries("vc1", "vm-2", t2.Add(20*time.Second), 20*time.Second, 95))
	if a := f.alertOf(cpuRule, "vc1:vm-2"); a == nil || a.State != "firing" || a.SuppressedBy != nil {
		t.Fatalf("vm-2 on host-2 after its vMotion: %+v", a)
	}
	if pages("vm-2") != 1 {
		t.Fatalf("vm-2 pages %d after its vMotion, want 1", pages("vm-2"))
	}

	// host-1 is back at t3 while vm-1 still fires: it is unsuppressed and
	// paged once.
	t3 := t2.Add(time.Minute)
	f.inventory(t3, false, hostObj("host-1", "connected", false))
	tick()
	f.commit("site-a", cpuSeries("vc1", "vm-1", t3.Add(20*time.Second), 20*time.Second, 96))
	tick()
	a := f.alertOf(cpuRule, "vc1:vm-1")
	if a == nil || a.State != "firing" || a.SuppressedBy != nil {
		t.Fatalf("vm-1 after host-1 is back: %+v", a)
	}
	if tl := f.timeline(a.ID); !slices.Equal(tl, []string{"firing", "suppressed", "unsuppressed"}) {
		t.Errorf("vm-1 timeline %v", tl)
	}
	if pages("vm-1") != 1 {
		t.Errorf("vm-1 pages %d after unsuppression, want 1", pages("vm-1"))
	}
	tick()
	if pages("vm-1") != 1 {
		t.Errorf("vm-1 pages %d after another tick, want 1", pages("vm-1"))
	}

	// host-2 enters maintenance at t4: its own alerts and its VMs' are
	// suppressed (vm-3 resolves, then fires again inside maintenance).
	t4 := t3.Add(time.Minute)
	f.inventory(t4, false, hostObj("host-2", "connected", true))
	tick()
	f.commit("site-a", cpuSeries("vc1", "vm-3", t4.Add(20*time.Second), 20*time.Second, 5, 97))
	if a := f.alertOf(cpuRule, "vc1:vm-3"); a == nil || a.State != "suppressed" || a.SuppressedReason != "host esx-host-2 is in maintenance mode" {
		t.Fatalf("vm-3 on a host in maintenance: %+v", a)
	}
	hs := cpuSeries("vc1", "host-2", t4.Add(20*time.Second), 20*time.Second, 99)
	hs.Key.EntityKind = KindHost
	f.commit("site-a", hs)
	if a := f.alertOf(hostCPU, "vc1:host-2"); a == nil || a.State != "suppressed" {
		t.Fatalf("host-2's own alert in maintenance: %+v", a)
	}

	// ds-1 becomes inaccessible at t5: vm-1's disk alert is suppressed,
	// its cpu alert is not affected.
	t5 := t4.Add(time.Minute)
	f.inventory(t5, false, dsObj("ds-1", false))
	tick()
	disk := protocol.Counter{Name: "disk.maxTotalLatency.latest", Unit: "ms"}
	f.commit("site-a", series("vc1", "vm-1", []protocol.Counter{disk}, t5.Add(20*time.Second), 20*time.Second, []float64{250}),
		series("vc1", "vm-4", []protocol.Counter{disk}, t5.Add(20*time.Second), 20*time.Second, []float64{250}))
	if a := f.alertOf(diskRule, "vc1:vm-1"); a == nil || a.State != "suppressed" || a.SuppressedReason != "datastore ds-ds-1 is inaccessible" {
		t.Fatalf("vm-1 disk alert on an inaccessible datastore: %+v", a)
	}
	if a := f.alertOf(diskRule, "vc1:vm-4"); a == nil || a.State != "firing" {
		t.Fatalf("vm-4 disk alert (not on ds-1): %+v", a)
	}
	if a := f.alertOf(cpuRule, "vc1:vm-1"); a == nil || a.State != "firing" {
		t.Fatalf("vm-1 cpu alert: %+v", a)
	}

	// A restarted engine knows what is suppressed: resolving sends nothing.
	e2 := f.newEngine(Config{InventoryInterval: time.Nanosecond})
	f.commitTo(e2, "site-a", cpuSeries("vc1", "vm-3", t4.Add(60*time.Second), 20*time.Second, 3))
	if a := f.alertOf(cpuRule, "vc1:vm-3"); a == nil || a.State != "resolved" {
		t.Fatalf("vm-3 after resolving: %+v", a)
	}
	if n := f.count(`SELECT count(*) FROM alert_notifications n JOIN alerts a ON a.id = n.alert_id WHERE a.entity_id = 'vm-3' AND n.kind = 'resolved'`); n != 1 {
		t.Errorf("vm-3 resolved notices %d, want 1 (of its first, paged alert only)", n)
	}
}

// TestMaintenanceWindow: alerts matching a window's matchers that fire
// inside it (by event time) are suppressed; outside it, or not matching,
// they page. A recurring window covers each occurrence.
func TestMaintenanceWindow(t *testing.T) {
	f := newFixture(t, Config{})
	ch := f.channel("ops", "http://127.0.0.1:1/unused")
	cpuRule := f.rule(Rule{Name: "cpu-high", Conditions: []Condition{{Metric: "cpu.usage.average", Op: ">", Threshold: 80}}, Channels: []uuid.UUID{ch}})
	now := f.clock.Now().Truncate(time.Second)
	w, err := f.db.CreateWindow(f.ctx, MaintenanceWindow{Name: "patching", Matchers: []Matcher{{Name: "site", Op: "=", Value: "site-a"},
		{Name: "entity_id", Op: "=~", Value: "vc1:vm-[12]"}}, StartsAt: now.Add(-5 * time.Minute), Duration: dur("10m")}, "test", now)
	if err != nil {
		t.Fatal(err)
	}
	if !w.Active {
		t.Fatal("window not active")
	}
	if err := f.eng.Tick(f.ctx); err != nil {
		t.Fatal(err)
	}
	in := now.Add(-4 * time.Minute)
	f.commit("site-a", cpuSeries("vc1", "vm-1", in, 20*time.Second, 95), cpuSeries("vc1", "vm-3", in, 20*time.Second, 95),
		cpuSeries("vc1", "vm-2", now.Add(-6*time.Minute), 20*time.Second, 95))
	if a := f.alertOf(cpuRule, "vc1:vm-1"); a == nil || a.State != "suppressed" || a.SuppressedReason != "maintenance window patching" {
		t.Fatalf("vm-1 inside the window: %+v", a)
	}
	if a := f.alertOf(cpuRule, "vc1:vm-3"); a == nil || a.State != "firing" {
		t.Fatalf("vm-3 not matching the window: %+v", a)
	}
	if a := f.alertOf(cpuRule, "vc1:vm-2"); a == nil || a.State != "firing" {
		t.Fatalf("vm-2 before the window (by its event time): %+v", a)
	}
	if n := f.count(`SELECT count(*) FROM alert_notifications WHERE kind = 'firing'`); n != 2 {
		t.Errorf("%d pages, want 2", n)
	}

	bad := MaintenanceWindow{Name: "", Matchers: []Matcher{{Name: "site", Op: "~"}}, Duration: dur("2h"), Every: dur("1h")}
	err = bad.Validate()
	var v *ValidationError
	if !errors.As(err, &v) {
		t.Fatalf("invalid window: %v", err)
	}
	var fields []string
	for _, fe := range v.Fields {
		fields = append(fields, fe.Field)
	}
	if !slices.Equal(fields, []string{"name", "matchers[0].op", "starts_at", "every"}) {
		t.Errorf("fields %v", fields)
	}
}

// TestMaintenanceWindowRecurs: a window every day covers the same hours of
// each day, until it ends.
func TestMaintenanceWindowRecurs(t *testing.T) {
	start := time.Date(2026, 1, 5, 2, 0, 0, 0, time.UTC)
	end := start.Add(72 * time.Hour)
	w := MaintenanceWindow{StartsAt: start, Duration: dur("2h"), Every: dur("24h"), EndsAt: &end}
	for _, c := range []struct {
		t    time.Time
		want bool
	}{
		{start.Add(-time.Minute), false}, {start, true}, {start.Add(119 * time.Minute), true}, {start.Add(2 * time.Hour), false},
		{start.Add(25 * time.Hour), true}, {start.Add(50 * time.Hour), false}, {start.Add(49*time.Hour + 59*time.Minute), true},
		{start.Add(72 * time.Hour), false}, {start.Add(73 * time.Hour), false},
	} {
		if got := w.Covers(c.t); got != c.want {
			t.Errorf("Covers(%v) = %v, want %v", c.t, got, c.want)
		}
	}
}
