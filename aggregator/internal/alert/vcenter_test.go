package alert

import (
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// packRule is the default pack's rule builtin, as a fixture rule.
func packRule(t testing.TB, builtin string) Rule {
	t.Helper()
	for _, r := range DefaultPack() {
		if r.Builtin == builtin {
			return r
		}
	}
	t.Fatalf("no %s in the default pack", builtin)
	return Rule{}
}

// registryAgent enrolls and connects an agent of site in the fixture's
// store, and swaps the fixture's engine for one reading site liveness,
// spool fill and vCenter reachability from that real registry (the
// agents table the ingest server writes at every heartbeat).
func (f *fixture) registryAgent(site string, cfg Config) store.Agent {
	f.t.Helper()
	ctx := store.AllSites(f.ctx)
	secret, _, err := f.st.CreateEnrollmentToken(ctx, site, time.Hour, "test")
	if err != nil {
		f.t.Fatal(err)
	}
	ag, err := f.st.Enroll(ctx, secret, site+"-agent", "1.0", func(string, string) (string, time.Time, error) {
		return "serial-" + site, time.Now().Add(time.Hour), nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.st.AgentConnected(ctx, ag.ID, "1.0", "127.0.0.1:1", 1, ag.CertSerial); err != nil {
		f.t.Fatal(err)
	}
	f.sites = nil
	cfg.Now = f.clock.Now
	cfg.Logger = tlog(f.t)
	f.eng = NewEngine(f.pool, SitesFromAgents(f.st), cfg)
	if err := f.eng.Load(f.ctx); err != nil {
		f.t.Fatal(err)
	}
	return ag
}

func (f *fixture) heartbeat(id string, hb protocol.Heartbeat) {
	f.t.Helper()
	if _, err := f.st.AgentHeartbeat(store.AllSites(f.ctx), id, &hb); err != nil {
		f.t.Fatal(err)
	}
}

// TestVCenterUnreachableSuppresses: while the site's agent reports its
// vCenter unreachable, the built-in "vCenter unreachable" rule fires on
// the vCenter, and the alerts of its VMs and hosts that fire meanwhile are
// suppressed naming the vCenter and its alert, the host's own state
// included (vCenter unreachable ranks above host down). When the vCenter
// is reachable again its alert resolves and a still-firing VM alert is
// paged. A VM alert whose sample precedes the unreachability pages.
func TestVCenterUnreachableSuppresses(t *testing.T) {
	f := newFixture(t, Config{InventoryInterval: time.Nanosecond})
	ag := f.registryAgent("site-a", Config{InventoryInterval: time.Nanosecond})
	ch := f.channel("ops", "http://127.0.0.1:1/unused")
	vcRule := packRule(t, "vcenter-unreachable")
	vcRule.Channels = []uuid.UUID{ch}
	vcID := f.rule(vcRule)
	hostRule := f.rule(Rule{Name: "host-down", EntityKind: KindHost, Severity: SeverityCritical,
		Conditions: []Condition{{Metric: MetricHostConnected, Op: "<", Threshold: 1}}, Channels: []uuid.UUID{ch}})
	cpuRule := f.rule(Rule{Name: "cpu-high", Conditions: []Condition{{Metric: "cpu.usage.average", Op: ">", Threshold: 80}}, Channels: []uuid.UUID{ch}})

	now := f.clock.Now().Truncate(time.Second)
	f.clock.Set(now)
	t0 := now.Add(-10 * time.Minute)
	f.inventory(t0, true, hostObj("host-1", "connected", false), vmObj("vm-1", "host-1"), vmObj("vm-2", "host-1"))
	tick := func(d time.Duration) {
		t.Helper()
		f.clock.Set(f.clock.Now().Add(d))
		if err := f.eng.Tick(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
	f.heartbeat(ag.ID, protocol.Heartbeat{VCenters: []protocol.VCenterStatus{{Source: "vc1", Reachable: true, Since: t0.UnixMilli()}}})
	tick(time.Second)
	if n := len(f.alerts()); n != 0 {
		t.Fatalf("%d alerts while everything is reachable", n)
	}
	// vm-2 runs hot before the vCenter is lost: that alert is news.
	f.commit("site-a", cpuSeries("vc1", "vm-2", now.Add(-30*time.Second), 20*time.Second, 95))
	if a := f.alertOf(cpuRule, "vc1:vm-2"); a == nil || a.State != "firing" {
		t.Fatalf("vm-2 before the loss: %+v", a)
	}

	lost := f.clock.Now()
	f.heartbeat(ag.ID, protocol.Heartbeat{VCenters: []protocol.VCenterStatus{{Source: "vc1", Reachable: false, Since: lost.UnixMilli(),
		LastOK: lost.Add(-time.Second).UnixMilli(), LastError: "dial tcp: i/o timeout"}}})
	tick(time.Second)
	if s := f.stateOf(vcID, "vc1"); s != "pending" {
		t.Fatalf("vCenter rule after the first unreachable report: %s", s)
	}
	tick(2*time.Minute + time.Second)
	vc := f.alertOf(vcID, "vc1")
	if vc == nil || vc.State != "firing" || vc.EntityKind != KindVCenter || vc.Site != "site-a" || vc.Severity != SeverityCritical {
		t.Fatalf("vCenter alert: %+v", vc)
	}
	// Meanwhile vm-1 runs hot and host-1 is seen not responding.
	f.commit("site-a", cpuSeries("vc1", "vm-1", f.clock.Now().Add(-10*time.Second), 20*time.Second, 95))
	f.inventory(f.clock.Now(), false, hostObj("host-1", "notResponding", false))
	tick(time.Second)
	for _, c := range []struct {
		rule   uuid.UUID
		entity string
	}{{cpuRule, "vc1:vm-1"}, {hostRule, "vc1:host-1"}} {
		a := f.alertOf(c.rule, c.entity)
		if a == nil || a.State != "suppressed" || a.SuppressedBy == nil || *a.SuppressedBy != vc.ID || a.SuppressedReason != "vCenter vc1 is unreachable" {
			t.Fatalf("%s while the vCenter is unreachable: %+v", c.entity, a)
		}
	}
	pages := func(entity string) int {
		return f.count(`SELECT count(*) FROM alert_notifications n JOIN alerts a ON a.id = n.alert_id WHERE a.entity_id = $1 AND n.kind = 'firing'`, entity)
	}
	if pages("vm-1") != 0 || pages("host-1") != 0 || pages("vm-2") != 1 || pages("vc1") != 1 {
		t.Fatalf("pages: vm-1 %d, host-1 %d, vm-2 %d, vc1 %d; want 0, 0, 1, 1", pages("vm-1"), pages("host-1"), pages("vm-2"), pages("vc1"))
	}

	// The vCenter is back (and host-1 with it); vm-1 still runs hot.
	back := f.clock.Now()
	f.heartbeat(ag.ID, protocol.Heartbeat{VCenters: []protocol.VCenterStatus{{Source: "vc1", Reachable: true, Since: back.UnixMilli(), LastOK: back.UnixMilli()}}})
	f.inventory(back, false, hostObj("host-1", "connected", false))
	f.commit("site-a", cpuSeries("vc1", "vm-1", back.Add(time.Second), 20*time.Second, 96))
	tick(time.Second)
	if a := f.alertOf(vcID, "vc1"); a == nil || a.State != "resolved" {
		t.Fatalf("vCenter alert once reachable: %+v", a)
	}
	a := f.alertOf(cpuRule, "vc1:vm-1")
	if a == nil || a.State != "firing" || pages("vm-1") != 1 {
		t.Fatalf("vm-1 once the vCenter is back: %+v, %d pages", a, pages("vm-1"))
	}
	if tl := f.timeline(a.ID); !slices.Contains(tl, "unsuppressed") {
		t.Errorf("vm-1 timeline %v", tl)
	}
	if a := f.alertOf(hostRule, "vc1:host-1"); a == nil || a.State != "resolved" || pages("host-1") != 0 {
		t.Errorf("host-1 once connected: %+v, %d pages", a, pages("host-1"))
	}

	// The agent goes away: the site is offline and its vCenter's report
	// stale, so the vCenter rule is not evaluated (the site-offline
	// alert stands for it) and nothing new fires.
	f.heartbeat(ag.ID, protocol.Heartbeat{VCenters: []protocol.VCenterStatus{{Source: "vc1", Reachable: false, Since: f.clock.Now().UnixMilli()}}})
	if err := f.st.AgentDisconnected(store.AllSites(f.ctx), ag.ID); err != nil {
		t.Fatal(err)
	}
	tick(3 * time.Minute)
	if s := f.stateOf(vcID, "vc1"); s != "ok" {
		t.Errorf("vCenter rule of an offline site: %s", s)
	}
}

// TestSpoolNearlyFull: the built-in rule fires when an agent's spool holds
// 80 % of its reported quota for 5 minutes, and clears below 70 %; an
// agent that reports no quota is never evaluated.
func TestSpoolNearlyFull(t *testing.T) {
	f := newFixture(t, Config{})
	ag := f.registryAgent("site-a", Config{})
	rid := f.rule(packRule(t, "spool-nearly-full"))
	tick := func(d time.Duration) {
		t.Helper()
		f.clock.Set(f.clock.Now().Add(d))
		if err := f.eng.Tick(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
	// An older agent: bytes but no quota.
	f.heartbeat(ag.ID, protocol.Heartbeat{SpoolBytes: 1 << 40})
	tick(time.Second)
	if s := f.stateOf(rid, "site-a"); s != "ok" {
		t.Fatalf("without a quota: %s", s)
	}
	f.heartbeat(ag.ID, protocol.Heartbeat{SpoolBytes: 850, SpoolMaxBytes: 1000})
	tick(time.Second)
	if s := f.stateOf(rid, "site-a"); s != "pending" {
		t.Fatalf("at 85 %%: %s", s)
	}
	tick(5*time.Minute + time.Second)
	a := f.alertOf(rid, "site-a")
	if a == nil || a.State != "firing" || a.Value == nil || *a.Value != 85 {
		t.Fatalf("after 5 minutes at 85 %%: %+v", a)
	}
	// 75 % is above the clear threshold: still firing.
	f.heartbeat(ag.ID, protocol.Heartbeat{SpoolBytes: 750, SpoolMaxBytes: 1000})
	tick(time.Minute)
	if a := f.alertOf(rid, "site-a"); a.State != "firing" {
		t.Fatalf("at 75 %%: %s", a.State)
	}
	f.heartbeat(ag.ID, protocol.Heartbeat{SpoolBytes: 100, SpoolMaxBytes: 1000})
	tick(time.Minute)
	if a := f.alertOf(rid, "site-a"); a.State != "resolved" {
		t.Fatalf("at 10 %%: %s", a.State)
	}
}

// TestConsolidationNeeded: the built-in rule fires on a VM whose
// inventory says its disks need consolidation and resolves when that
// clears; a VM without the property (an older agent) is never evaluated.
func TestConsolidationNeeded(t *testing.T) {
	f := newFixture(t, Config{InventoryInterval: time.Nanosecond})
	rid := f.rule(packRule(t, "vm-consolidation-needed"))
	tick := func() {
		t.Helper()
		f.clock.Set(f.clock.Now().Add(time.Second))
		if err := f.eng.Tick(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
	needs := vmObj("vm-1", "host-1")
	needs.Props["consolidation_needed"] = true
	fine := vmObj("vm-2", "host-1")
	fine.Props["consolidation_needed"] = false
	f.inventory(f.clock.Now(), true, hostObj("host-1", "connected", false), needs, fine, vmObj("vm-3", "host-1"))
	tick()
	list := f.alerts()
	if len(list) != 1 || list[0].EntityID != "vc1:vm-1" || list[0].State != "firing" || *list[0].RuleID != rid {
		t.Fatalf("alerts: %+v", list)
	}
	needs.Props["consolidation_needed"] = false
	f.inventory(f.clock.Now(), false, needs)
	tick()
	if a := f.alertOf(rid, "vc1:vm-1"); a == nil || a.State != "resolved" {
		t.Fatalf("after consolidation: %+v", a)
	}
}

// TestVCenterStatuses: the reports of a site's agents merge per endpoint.
func TestVCenterStatuses(t *testing.T) {
	got := vcenterStatuses([][]protocol.VCenterStatus{
		{{Source: "a", Reachable: false, Since: 10}, {Source: "b", Reachable: false, Since: 10}, {Source: ""}},
		{{Source: "a", Reachable: true, Since: 5}, {Source: "b", Reachable: false, Since: 20}, {Source: "c", Reachable: true}},
	})
	if len(got) != 3 || !got["a"].Reachable || got["b"].Reachable || got["b"].Since != 20 || !got["c"].Reachable {
		t.Errorf("merged: %+v", got)
	}
	if pct, ok := spoolUsedPct([]int64{50, 900}, []int64{100, 0}); !ok || pct != 50 {
		t.Errorf("spool: %v %v", pct, ok)
	}
	if _, ok := spoolUsedPct([]int64{50}, []int64{0}); ok {
		t.Error("a spool without quota counted")
	}
}
