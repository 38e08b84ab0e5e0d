package e2e

import (
	"net/url"
	"strings"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vmpulse/vmpulse/protocol"
)

// eastSpoolMax is dc-east's spool quota, as its heartbeats report it.
const eastSpoolMax = 1 << 30

// eastVCenters is dc-east's agent's view of its vCenter: reachable for two hours.
func eastVCenters() []protocol.VCenterStatus {
	return []protocol.VCenterStatus{{Source: vcEast, Reachable: true, Since: time.Now().Add(-2 * time.Hour).UnixMilli(), LastOK: time.Now().UnixMilli()}}
}

// agentsAndCollection checks the site page's spool quota and vCenter
// reachability as the agents' heartbeats report them (dc-east reachable,
// dc-west's vCenter refusing connections), and the system page's
// collection settings: a realtime interval the API refuses (not a multiple
// of 20 s) shown beside its field, then one it takes, with its revision.
func agentsAndCollection(b *browser, base, axe string) {
	b.visit(base, axe, "site vcenters", "/sites/dc-east", `[data-testid=agent-vcenters] tr[data-vcenter="`+vcEast+`"][data-reachable="true"]`)
	spool := run(b, "spool quota", chromedp.Evaluate[string](`document.querySelector('[data-agent]').innerText`))
	b.check("spool quota", strings.Contains(spool, "of 1.1 GB"), "dc-east's agent card %q: want the spool against its 1.1 GB quota", spool)
	b.visit(base, axe, "site vcenter unreachable", "/sites/dc-west", `[data-testid=agent-vcenters] tr[data-vcenter="`+vcWest+`"][data-reachable="false"]`)
	west := run(b, "unreachable vcenter", chromedp.Evaluate[string](`document.querySelector('[data-testid=agent-vcenters]').innerText`))
	b.check("unreachable vcenter", strings.Contains(west, "Unreachable") && strings.Contains(west, "connection refused"), "dc-west's vCenter table %q", west)

	b.visit(base, axe, "collection settings", "/system", `[data-testid=collection-form] #col-realtime_interval`)
	b.do("collection refused", 20*time.Second,
		typeInto(`#col-realtime_interval`, "30s"),
		chromedp.Click(chromedp.CSS(`[data-testid=collection-save]`)),
		chromedp.WaitVisible(chromedp.CSS(`.field-error[data-field="collection.realtime_interval"]`)),
	)
	b.axe("collection refused", axe)
	b.do("collection saved", 20*time.Second,
		typeInto(`#col-realtime_interval`, "40s"),
		typeInto(`#col-counters-vm`, "cpu.usage.average\nmem.usage.average"),
		chromedp.Click(chromedp.CSS(`[data-testid=collection-save]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=collection-revision]:not([data-revision="0"])`)),
	)
	b.do("collection after reload", 20*time.Second, chromedp.Navigate(base+"/system"), chromedp.WaitVisible(chromedp.CSS(`#col-realtime_interval`)))
	got := run(b, "collection values", chromedp.Evaluate[[]string](`[document.querySelector('#col-realtime_interval').value, document.querySelector('#col-counters-vm').value]`))
	b.check("collection saved", len(got) == 2 && got[0] == "40s" && got[1] == "cpu.usage.average\nmem.usage.average", "after a reload: %q, want 40s and the two VM counters", got)
}

// vmListAndCharts checks the VM list's latest-value columns (asked with
// POST /metrics/query for the rows in view: web-01 has recent samples,
// db-01 none), the min–max band on the VM page's 24 h charts (the 5-minute
// rollup's min and max around its average), and a custom range: refused
// beside its field when it ends before it starts, then put in the URL and
// drawn. It returns the custom-range page for the language checks.
func vmListAndCharts(b *browser, base, axe string, f fleet) []page {
	b.visit(base, axe, "vm list latest", "/vms?site=dc-east", `[data-vm="`+f.web01+`"] [data-latest="cpu.usage.average"]`)
	b.do("latest values", 20*time.Second, chromedp.Poll[chromedp.Void](`[...document.querySelectorAll('[data-latest]')].every(e => e.innerText !== '…')`, chromedp.WithPollingTimeout(15*time.Second)))
	latest := run(b, "latest cells", chromedp.Evaluate[map[string]map[string]string](`Object.fromEntries([...document.querySelectorAll('[data-vm]')].map(r =>
		[r.querySelector('a').innerText, Object.fromEntries([...r.querySelectorAll('[data-latest]')].map(c => [c.dataset.latest, c.innerText]))]))`))
	web, db := latest["web-01"], latest["db-01"]
	b.check("latest values", web != nil && strings.HasSuffix(web["cpu.usage.average"], "%") && strings.HasSuffix(web["mem.usage.average"], "%") &&
		db != nil && db["cpu.usage.average"] == "–", "latest cells %v: want web-01's CPU and memory in percent, none for db-01", latest)

	vmPath := "/vms/" + url.PathEscape(f.web01)
	b.visit(base, axe, "vm 24h band", vmPath+"?range=24h", `figure[data-metric="cpu.usage.average"][data-band] canvas`)
	band := run(b, "band points", chromedp.Evaluate[map[string]string](`({band: document.querySelector('figure[data-metric="cpu.usage.average"]').dataset.band,
		legend: document.querySelector('figure[data-metric="cpu.usage.average"] .u-legend')?.innerText ?? ''})`))
	b.check("min-max band", band["band"] != "" && band["band"] != "0" && strings.Contains(band["legend"], "Min") && strings.Contains(band["legend"], "Max"),
		"24 h chart band %v: want the rollup's min and max drawn and in the legend", band)

	b.do("custom range form", 20*time.Second,
		chromedp.Click(chromedp.CSS(`[data-testid=custom-range-toggle]`)),
		chromedp.WaitVisible(chromedp.CSS(`#cr-from`)),
		typeInto(`#cr-from`, "2026-01-02T10:00"),
		typeInto(`#cr-to`, "2026-01-01T10:00"),
		chromedp.Click(chromedp.CSS(`[data-testid=custom-range] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`.field-error[data-field="to"]`)),
	)
	b.axe("custom range error", axe)
	end := time.Now()
	start := end.Add(-2 * time.Hour)
	local := func(t time.Time) string { return t.Format("2006-01-02T15:04") }
	// The inputs are in the browser's zone, which is the test's (same machine).
	b.do("custom range applied", 30*time.Second,
		typeInto(`#cr-from`, local(start)),
		typeInto(`#cr-to`, local(end)),
		chromedp.Click(chromedp.CSS(`[data-testid=custom-range] button[type=submit]`)),
		chromedp.WaitReady(chromedp.CSS(`[data-testid=custom-range-toggle][aria-current="true"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.charts[data-resolution="raw"][aria-busy="false"] figure[data-metric="cpu.usage.average"] .chart-canvas[data-draw-ms]`)),
	)
	loc := run(b, "custom range url", chromedp.Evaluate[string](`location.search`))
	q, _ := url.ParseQuery(strings.TrimPrefix(loc, "?"))
	from, _ := time.Parse(time.RFC3339, q.Get("from"))
	to, _ := time.Parse(time.RFC3339, q.Get("to"))
	b.check("custom range in the URL", to.Sub(from).Round(time.Minute) == 2*time.Hour && to.Sub(end).Abs() < 2*time.Minute,
		"URL %q: want from and to two hours apart, ending now", loc)
	points := run(b, "custom range points", chromedp.Evaluate[int](`+document.querySelector('figure[data-metric="cpu.usage.average"]').dataset.points`))
	b.check("custom range drawn", points > 100, "the 2 h custom chart drew %d points", points)
	b.axe("custom range", axe)
	return []page{{vmPath + loc, `[data-testid=custom-range] #cr-from`}}
}

// batchForget selects dc-east's VMs and asks to forget them: refused until
// confirmed, then answered per VM (both are still in vCenter's inventory,
// so neither is forgotten: VM_LIVE each).
func batchForget(b *browser, base, axe string) {
	b.do("forget select", 20*time.Second,
		chromedp.Navigate(base+"/vms?site=dc-east"),
		chromedp.WaitVisible(chromedp.CSS(`[data-vm] input[data-select]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=select-page]`)),
		chromedp.WaitVisible(chromedp.CSS(`#vb-action`)),
		chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector('#vb-action'); s.value = 'forget';
			s.dispatchEvent(new Event('change', {bubbles: true})); })()`),
		chromedp.WaitVisible(chromedp.CSS(`#vb-confirm`)),
		chromedp.Click(chromedp.CSS(`[data-testid=vm-batch-apply]`)),
		chromedp.WaitVisible(chromedp.CSS(`.field-error[data-field="confirm"]`)),
	)
	b.axe("batch forget", axe)
	b.do("forget confirmed", 20*time.Second,
		chromedp.Click(chromedp.CSS(`#vb-confirm`)),
		chromedp.Click(chromedp.CSS(`[data-testid=vm-batch-apply]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=vm-batch-failures] [data-code="VM_LIVE"]`)),
	)
	res := run(b, "forget answer", chromedp.Evaluate[map[string]any](`({status: document.querySelector('[data-testid=vm-batch] [role=status]')?.innerText ?? '',
		live: document.querySelectorAll('[data-testid=vm-batch-failures] [data-code="VM_LIVE"]').length,
		rows: document.querySelectorAll('[data-vm]').length})`))
	b.check("forget answer", strings.Contains(res["status"].(string), "Done for 0 VMs, not done for 2") && res["live"].(float64) == 2 && res["rows"].(float64) == 2,
		"forget answer %v: want both VMs refused as still in vCenter and still listed", res)
}

// usersAndRoles creates a user (a missing password is caught before
// sending, a weak one is refused by the API beside the field), locks and
// unlocks it, and creates a role inheriting from viewer, whose permissions
// show as inherited in the tree and whose parent shows in the list.
func usersAndRoles(b *browser, base, axe string) {
	b.visit(base, axe, "users create", "/users", `[data-testid=user-new]`)
	b.do("user form", 20*time.Second,
		chromedp.Click(chromedp.CSS(`[data-testid=user-new]`)),
		chromedp.WaitVisible(chromedp.CSS(`#uc-username`)),
		chromedp.WaitVisible(chromedp.CSS(`input[data-role-pick="viewer"]`)),
		typeInto(`#uc-username`, "e2e-new"),
		typeInto(`#uc-email`, "new@example.com"),
		typeInto(`#uc-display_name`, "Nina New"),
		chromedp.Click(chromedp.CSS(`input[data-role-pick="viewer"]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=user-create]`)),
		chromedp.WaitVisible(chromedp.CSS(`.field-error[data-field="password"]`)),
		typeInto(`#uc-password`, "short"),
		chromedp.Click(chromedp.CSS(`[data-testid=user-create]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=user-form] [role=alert], [data-testid=user-form] .notice-error`)),
		chromedp.WaitVisible(chromedp.CSS(`.field-error[data-field="password"]`)),
	)
	b.axe("user form refused", axe)
	b.do("user created", 20*time.Second,
		typeInto(`#uc-password`, adminPassword),
		chromedp.Click(chromedp.CSS(`[data-testid=user-create]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="e2e-new"] [data-lock-state="active"]`)),
	)
	row := run(b, "new user row", chromedp.Evaluate[string](`document.querySelector('tr[data-user="e2e-new"]').innerText`))
	b.check("new user", strings.Contains(row, "new@example.com") && strings.Contains(row, "Nina New") && strings.Contains(row, "viewer"), "row %q", row)
	b.do("lock user", 20*time.Second,
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS(`button[data-lock="e2e-new"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="e2e-new"] [data-lock-state="locked"]`)),
	)
	b.axe("user locked", axe)
	b.do("unlock user", 20*time.Second,
		chromedp.Click(chromedp.CSS(`button[data-lock="e2e-new"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="e2e-new"] [data-lock-state="active"]`)),
	)
	self := run(b, "no self lock", chromedp.Evaluate[bool](`!document.querySelector('button[data-lock="admin"]')`))
	b.check("no self lock", self, "the signed-in administrator is offered to lock themselves")

	b.do("role with a parent", 20*time.Second,
		chromedp.Click(chromedp.CSS(`[data-testid=role-new]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[data-parent="viewer"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[data-permission="audit:read"]`)),
		typeInto(`#re-name`, "e2e-child"),
		chromedp.Click(chromedp.CSS(`input[data-parent="viewer"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-inherited="vm:read"]`)),
		chromedp.Click(chromedp.CSS(`input[data-permission="audit:read"]`)),
	)
	b.axe("role parents", axe)
	b.do("role with a parent saved", 20*time.Second,
		chromedp.Click(chromedp.CSS(`[data-testid=role-save]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-role="e2e-child"] td[data-parents="viewer"]`)),
	)
	perms := run(b, "child permissions", chromedp.AttributeValue(chromedp.CSS(`tr[data-role="e2e-child"] td[title]`), "title"))
	b.check("inherited permissions", strings.Contains(perms.Value, "audit:read") && strings.Contains(perms.Value, "vm:read"),
		"e2e-child's effective permissions %q: want its own audit:read and viewer's vm:read", perms.Value)
}
