package e2e

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// eastPlugins are the collector plugins dc-east's agent reports in its
// heartbeats: one running, one restarting after failures.
func eastPlugins() []protocol.PluginStatus {
	now := time.Now()
	return []protocol.PluginStatus{
		{Name: "promexec", Version: "1.4.0", State: "running", Collects: 120, Samples: 4800,
			LastCollect: now.Add(-20 * time.Second).UnixMilli()},
		{Name: "snmp-ups", Version: "0.9.2", State: "restarting", Restarts: 3, Collects: 10, Failures: 4,
			LastError: "dial udp 192.0.2.50:161: i/o timeout", LastErrorAt: now.Add(-30 * time.Second).UnixMilli(),
			LastCollect: now.Add(-10 * time.Minute).UnixMilli()},
	}
}

// seedVMEvents stores a vCenter event about web-01 through the ingest
// write path and appends it to the operation log as the aggregator's job
// does, so the VM detail has an audit record; and reports dc-east's
// collector plugins in a heartbeat.
func seedVMEvents(t *testing.T, ctx context.Context, st *store.Store, f fleet) {
	t.Helper()
	if _, err := st.WriteEvents(ctx, store.BatchMeta{AgentID: f.east, Site: "dc-east", Epoch: 2, Seq: 1, Kind: protocol.KindEvents},
		&protocol.Events{Events: []protocol.Event{{Source: vcEast, Key: 9001, Type: "VmReconfiguredEvent", Time: time.Now().Add(-time.Hour).UnixMilli(),
			User: `VSPHERE.LOCAL\ops`, Message: "Reconfigured web-01 on esx1 in DC1", Severity: "info",
			EntityKind: "vm", EntityID: "vm-1", EntityName: "web-01", Datacenter: "DC1"}}}); err != nil {
		t.Fatalf("write events: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		rep, err := audit.AppendVCenterEvents(ctx, st.Pool(), audit.VCenterOptions{Settle: time.Millisecond})
		if err != nil {
			t.Fatalf("append vCenter events: %v", err)
		}
		if rep.Appended > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the vCenter event was never appended: %+v", rep)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := st.AgentHeartbeat(ctx, f.east, &protocol.Heartbeat{SpoolDepth: 240, SpoolBytes: 48 << 20,
		OldestUnsentAge: (25 * time.Minute).Milliseconds(), CollectionLag: 20_000, SentAt: time.Now().UnixMilli(), Plugins: eastPlugins()}); err != nil {
		t.Fatal(err)
	}
}

// vmRecords checks the VM detail's alerts and audit records (the page is open).
func vmRecords(b *browser, axe string) {
	b.do("vm alerts and audit", 20*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`section[aria-labelledby=vm-alerts] tr[data-alert]`)),
		chromedp.WaitVisible(chromedp.CSS(`section[aria-labelledby=vm-audit] tr[data-audit="vcenter.VmReconfiguredEvent"]`)),
	)
	rule := run(b, "vm alert rule", chromedp.Evaluate[string](`[...document.querySelectorAll('section[aria-labelledby=vm-alerts] tr[data-alert]')].map(r => r.innerText).join('\n')`))
	// The default pack's snapshot rule fires for web-01 (a 10-day-old
	// snapshot); dc-west's site-offline alert is not this VM's.
	b.check("vm alerts", strings.Contains(rule, "snapshot") && !strings.Contains(rule, "offline"), "web-01's alerts %q: want its snapshot alert only", rule)
	b.axe("vm records", axe)
}

// hygienePages adds a VM powered off for 45 days (first seen so) and one
// whose Tools need an upgrade to dc-east through the ingest write path,
// then visits the hygiene page (web-01's 10-day-old snapshot, the
// powered-off VM, the outdated Tools), its filters in the URL, the link to
// the VM, and the agents' collector plugins on the system and site pages.
func hygienePages(b *browser, base, axe string, st *store.Store, f fleet) []page {
	t := b.t
	t.Helper()
	ctx := store.AllSites(context.Background())
	for i, o := range []struct {
		at  time.Time
		obj protocol.InventoryObject
	}{
		{time.Now().Add(-45 * 24 * time.Hour), protocol.InventoryObject{Kind: "vm", ID: "vm-30", Name: "legacy-01", Path: "/Datacenters/DC1/vm/legacy-01",
			Props: map[string]any{"power_state": "poweredOff", "host_id": "host-1", "cluster_id": "domain-c1"}}},
		{time.Now(), protocol.InventoryObject{Kind: "vm", ID: "vm-31", Name: "app-07", Path: "/Datacenters/DC1/vm/app-07",
			Props: map[string]any{"power_state": "poweredOn", "host_id": "host-1", "cluster_id": "domain-c1", "tools_running_status": "guestToolsRunning",
				"tools_version_status": "guestToolsNeedUpgrade", "tools_version": "10346"}}},
	} {
		if _, err := st.WriteInventory(ctx, store.BatchMeta{AgentID: f.east, Site: "dc-east", Epoch: 3, Seq: uint64(i + 1), Kind: protocol.KindInventory},
			&protocol.Inventory{Source: vcEast, At: o.at.UnixMilli(), Objects: []protocol.InventoryObject{o.obj}}); err != nil {
			t.Fatalf("write inventory: %v", err)
		}
	}

	b.visit(base, axe, "hygiene", "/hygiene", `tr[data-finding=old_snapshot][data-vm="web-01"]`, `tr[data-finding=powered_off][data-vm="legacy-01"]`,
		`tr[data-finding=tools_outdated][data-vm="app-07"]`, `[data-count=old_snapshot]`)
	rows := run(b, "hygiene rows", chromedp.Evaluate[[]string](`[...document.querySelectorAll('tr[data-finding]')].map(r => r.dataset.finding + ':' + r.dataset.vm)`))
	b.check("hygiene findings", strings.Join(rows, " ") == "old_snapshot:web-01 powered_off:legacy-01 tools_outdated:app-07",
		"findings %v: want web-01's snapshot (warning) first, then legacy-01 (45 days off), then app-07's Tools", rows)
	b.check("hygiene scope", !strings.Contains(strings.Join(rows, " "), "edge-01"), "dc-west's edge-01 has no finding: %v", rows)

	// A filter is a URL: the 30-day snapshot threshold leaves web-01's
	// 10-day-old snapshot out; the kind link keeps the threshold.
	b.do("hygiene filter", 20*time.Second,
		chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector('#hy-snap'); s.value = '30d';
			s.dispatchEvent(new Event('change', {bubbles: true})); })()`),
		chromedp.WaitReady(chromedp.CSS(`[data-count=old_snapshot]`)),
		chromedp.Poll[chromedp.Void](`location.search === '?snapshot_age=30d' && !document.querySelector('tr[data-finding=old_snapshot]')
			&& !!document.querySelector('tr[data-vm="legacy-01"]')`),
	)
	b.do("hygiene kind", 20*time.Second,
		chromedp.Click(chromedp.CSS(`nav.subnav a[href*="kind=powered_off"]`)),
		chromedp.Poll[chromedp.Void](`location.search === '?kind=powered_off&snapshot_age=30d' && document.querySelectorAll('tr[data-finding]').length === 1
			&& !!document.querySelector('tr[data-finding=powered_off][data-vm="legacy-01"]')`),
	)
	b.axe("hygiene filtered", axe)
	since := run(b, "powered off since", chromedp.Evaluate[string](`document.querySelector('tr[data-vm="legacy-01"]').innerText`))
	b.check("powered off since", strings.Contains(since, "45 days"), "legacy-01 row %q: want powered off for at least 45 days", since)
	b.do("hygiene to vm", 20*time.Second,
		chromedp.Click(chromedp.CSS(`tr[data-vm="legacy-01"] a[href^="/vms/"]`)),
		chromedp.WaitVisible(chromedp.CSS(`section[aria-labelledby=vm-alerts] table`)),
	)
	where := run(b, "vm path", chromedp.Evaluate[string](`decodeURIComponent(location.pathname)`))
	b.check("hygiene link", where == "/vms/"+vcEast+":vm-30", "the finding's link opened %q", where)

	// Collector plugins: on the system page's agents and on the site's agent card.
	b.visit(base, axe, "system plugins", "/system", `tr[data-agent="east-1"] [data-plugin="promexec"][data-plugin-state=running]`,
		`tr[data-agent="east-1"] [data-plugin="snmp-ups"][data-plugin-state=restarting]`)
	b.visit(base, axe, "site plugins", "/sites/dc-east", `[data-agent] tr[data-plugin="snmp-ups"][data-plugin-state=restarting]`)
	card := run(b, "site plugins text", chromedp.Evaluate[string](`document.querySelector('[data-agent]').innerText`))
	b.check("site plugins", strings.Contains(card, "i/o timeout") && strings.Contains(card, "1.4.0") && strings.Contains(card, "1 plugin(s) need attention"),
		"dc-east's agent card %q: want both plugins, snmp-ups's last error and the attention badge", card)

	return []page{
		{"/hygiene", `tr[data-finding]`},
		{"/hygiene?kind=powered_off&powered_off_for=14d", `tr[data-finding=powered_off]`},
		{"/vms/" + url.PathEscape(f.web01), `section[aria-labelledby=vm-audit] tr[data-audit]`},
	}
}
