package e2e

import (
	"encoding/json"
	"net/url"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
)

// typeInto replaces the value of an input or textarea the way typing
// does (the page's handlers see an input event).
func typeInto(sel, value string) chromedp.Action[chromedp.Void] {
	q, _ := json.Marshal(sel)
	v, _ := json.Marshal(value)
	return chromedp.Evaluate[chromedp.Void](`(() => { const el = document.querySelector(` + string(q) + `);
		const proto = el instanceof HTMLTextAreaElement ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
		Object.getOwnPropertyDescriptor(proto, 'value').set.call(el, ` + string(v) + `);
		el.dispatchEvent(new Event('input', {bubbles: true})); })()`)
}

// page is a console page and a selector that shows it is drawn.
type page struct{ path, ready string }

// operatorPages visits the pages of the alert, site, infrastructure,
// history, realtime, security and system modules, checks each with
// axe-core and what it shows, acknowledges an alert and finds the ack in
// the operation log. It returns the pages for the language checks.
func operatorPages(b *browser, base, axe string, f fleet) []page {
	t := b.t
	t.Helper()
	web01 := url.QueryEscape(f.web01)

	// Alerts: the problems list shows dc-west's site-offline alert; ack it.
	b.visit(base, axe, "alerts", "/alerts", `tr[data-alert]`, `[data-testid=alert-stats]`)
	id := run(b, "offline alert", chromedp.Evaluate[string](`[...document.querySelectorAll('tr[data-alert]')]
		.find(r => r.innerText.includes('dc-west') && r.dataset.state === 'firing')?.dataset.alert ?? ''`))
	b.check("offline alert", id != "", "no firing alert for dc-west in the problems list")
	b.do("ack alert", 20*time.Second,
		chromedp.Click(chromedp.CSS(`button[data-ack="`+id+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-alert="`+id+`"][data-acked="true"] [data-mark=acked]`)),
	)
	b.visit(base, axe, "alert detail", "/alerts/"+id, `[data-testid=alert-timeline] li[data-kind=firing]`, `[data-testid=alert-timeline] li[data-kind=ack]`)
	b.visit(base, axe, "operation log ack", "/audit?action=alert.ack", `tr[data-action="alert.ack"]`)
	resource := run(b, "ack record", chromedp.Evaluate[string](`document.querySelector('tr[data-action="alert.ack"]').innerText`))
	b.check("ack in the operation log", strings.Contains(resource, "alert "+id) && strings.Contains(resource, adminName),
		"the alert.ack record %q does not name alert %s and its actor", resource, id)
	b.visit(base, axe, "alert history", "/alerts/history", `tr[data-alert="`+id+`"]`)

	// Silences: create one from the form; it is listed as active.
	b.visit(base, axe, "silences", "/alerts/silences", `#si-m`)
	b.do("create silence", 20*time.Second,
		chromedp.SendKeys(chromedp.CSS(`#si-m`), "site=dc-west"),
		chromedp.SendKeys(chromedp.CSS(`#si-c`), "e2e maintenance"),
		chromedp.Click(chromedp.CSS(`form[aria-label] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-silence][data-state=active]`)),
	)

	// Rules: the default pack is listed; a draft rule previewed on the stored samples fires for web-01.
	b.visit(base, axe, "rules", "/alerts/rules", `tr[data-rule="Site offline"]`)
	b.visit(base, axe, "rule editor", "/alerts/rules/new", `#r-name`)
	b.do("preview rule", 30*time.Second,
		chromedp.SendKeys(chromedp.CSS(`#r-name`), "e2e CPU"),
		chromedp.SendKeys(chromedp.CSS(`#c0-metric`), "cpu.usage.average"),
		chromedp.SendKeys(chromedp.CSS(`#c0-th`), "10"),
		chromedp.Click(chromedp.CSS(`[data-testid=rule-preview]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=preview-summary]`)),
	)
	fired := run(b, "preview fired", chromedp.AttributeValue(chromedp.CSS(`[data-testid=preview-summary]`), "data-fired"))
	b.check("preview fired", fired.Value != "" && fired.Value != "0", "the preview of cpu.usage.average > 10 fired %q times, want some", fired.Value)
	b.do("bad threshold", 10*time.Second,
		typeInto(`#c0-th`, "abc"),
		chromedp.Click(chromedp.CSS(`[data-testid=rule-preview]`)),
		chromedp.WaitVisible(chromedp.CSS(`.field-error[data-field="conditions[0].threshold"]`)),
	)
	// A vCenter rule: the kind is offered with its reachability metric; the
	// preview is off (heartbeats are not stored as samples) and says so;
	// saved disabled, the list names its kind from the catalog.
	b.do("vcenter rule", 30*time.Second,
		chromedp.Navigate(base+"/alerts/rules/new"),
		chromedp.WaitReady(chromedp.CSS(`#r-kind option[value="vcenter"]`)),
		chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector('#r-kind'); s.value = 'vcenter';
			s.dispatchEvent(new Event('change', {bubbles: true})); })()`),
		chromedp.WaitReady(chromedp.CSS(`#r-metrics option[value="vcenter.reachable.state"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=rule-no-preview]`)),
		chromedp.WaitReady(chromedp.CSS(`[data-testid=rule-preview]:disabled`)),
	)
	b.axe("vcenter rule", axe)
	b.do("save vcenter rule", 30*time.Second,
		chromedp.SendKeys(chromedp.CSS(`#r-name`), "e2e vCenter"),
		chromedp.SendKeys(chromedp.CSS(`#c0-metric`), "vcenter.reachable.state"),
		chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector('#c0-op'); s.value = '<';
			s.dispatchEvent(new Event('change', {bubbles: true})); })()`),
		chromedp.SendKeys(chromedp.CSS(`#c0-th`), "1"),
		chromedp.Click(chromedp.CSS(`#r-enabled`)),
		chromedp.Click(chromedp.CSS(`form.rule-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-rule="e2e vCenter"]`)),
	)
	enKind := readCatalog(t)["en"]["kind.vcenter"]
	kind := run(b, "vcenter rule kind", chromedp.Text(chromedp.CSS(`tr[data-rule="e2e vCenter"] td:nth-child(2)`)))
	b.check("vcenter rule kind", enKind != "" && kind == enKind, "the rule list names the kind %q, want the catalog's kind.vcenter %q", kind, enKind)

	// Channels: create a webhook channel; its test button reports what the API answered.
	b.visit(base, axe, "channels", "/alerts/channels", `#ch-name`)
	b.do("create channel", 20*time.Second,
		chromedp.SendKeys(chromedp.CSS(`#ch-name`), "ops-hook"),
		typeInto(`#ch-config`, `{"url": "https://hooks.example.com/x"}`),
		chromedp.Click(chromedp.CSS(`form[aria-label] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-channel="ops-hook"]`)),
		chromedp.Click(chromedp.CSS(`button[data-test-channel="ops-hook"]`)),
		// No notifier plugin runs here: the API answers 503
		// NOTIFIER_UNAVAILABLE, which the page shows as it is.
		chromedp.WaitVisible(chromedp.CSS(`[data-error-code]`)),
	)
	code := run(b, "channel test", chromedp.AttributeValue(chromedp.CSS(`[data-error-code]`), "data-error-code"))
	b.check("channel test", code.Value == "NOTIFIER_UNAVAILABLE", "the channel test showed %q, want the API's NOTIFIER_UNAVAILABLE", code.Value)

	// The site: its agent, and a timeline with the connection, the backlog drained late and the spool drop.
	b.visit(base, axe, "site", "/sites/dc-east", `[data-agent]`, `[data-testid=site-timeline] li[data-kind=session]`,
		`[data-testid=site-timeline] li[data-kind=gap]`, `[data-testid=site-timeline] li[data-kind=backfill]`)
	b.do("resync", 10*time.Second,
		chromedp.Click(chromedp.CSS(`[data-testid=site-resync]`)),
		chromedp.WaitVisible(chromedp.CSS(`.notice[role=status], [data-error-code]`)),
	)

	// Infrastructure.
	b.visit(base, axe, "hosts", "/hosts", `[data-testid=heat-grid] [data-heat]`, `tr[data-object]`)
	b.visit(base, axe, "host charts", "/hosts?id="+url.QueryEscape(vcEast+":host-1"), `[data-entity-charts] figure`)
	b.visit(base, axe, "clusters", "/clusters", `[data-heat="`+vcEast+`:domain-c1"]`)
	b.visit(base, axe, "datastores", "/datastores", `tr[data-datastore="ds1"]`)

	// History and compare, and realtime (dc-west is offline: its VM is paused, and the page says so).
	b.visit(base, axe, "history", "/history?e=vm:"+web01+"&m=cpu.usage.average&m=mem.usage.average&range=1h",
		`figure[data-metric="cpu.usage.average"] canvas`, `figure[data-metric="mem.usage.average"] canvas`, `[data-testid=top-list] li`)
	b.visit(base, axe, "realtime", "/realtime?e=vm:"+web01+"&e=vm:"+url.QueryEscape(vcWest+":vm-1")+"&m=cpu.usage.average",
		`figure[data-metric="cpu.usage.average"] canvas`, `[data-conn=live]`, `[data-testid=realtime-paused][data-sites="dc-west"]`)

	// Security.
	b.visit(base, axe, "login log", "/login-log", `tr[data-login="admin"][data-result=success]`, `tr[data-login="admin"][data-result=failure]`)
	b.visit(base, axe, "sessions", "/sessions", `tr[data-session="admin"]`)
	b.visit(base, axe, "tokens", "/tokens", `#tk-name`)
	b.do("create token", 20*time.Second,
		chromedp.SendKeys(chromedp.CSS(`#tk-name`), "e2e-script"),
		chromedp.Click(chromedp.CSS(`form[aria-label] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#tk-secret`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-token="e2e-script"]`)),
	)

	// Backups: a configuration backup through pg_dump; restore waits for the typed name.
	b.visit(base, axe, "backups", "/backups", `#bk-kind`)
	b.do("backup", 60*time.Second,
		chromedp.Click(chromedp.CSS(`form[aria-label] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-backup][data-status=done]`)),
		chromedp.Click(chromedp.CSS(`tr[data-backup][data-status=done] button[data-restore]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=restore-confirm]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=restore-confirm]`), "not-the-name"),
	)
	gate := run(b, "restore gate", chromedp.Evaluate[[]bool](`(() => { const btn = document.querySelector('[data-testid=restore-submit]');
		const before = btn.disabled; const input = document.querySelector('[data-testid=restore-confirm]');
		const name = document.querySelector('tr[data-backup][data-status=done]').dataset.backup;
		const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
		set.call(input, name); input.dispatchEvent(new Event('input', {bubbles: true}));
		return [before, name.length > 0]; })()`))
	enabled := run(b, "restore enabled", chromedp.Evaluate[bool](`!document.querySelector('[data-testid=restore-submit]').disabled`))
	b.check("restore gate", len(gate) == 2 && gate[0] && gate[1] && enabled, "restore button: disabled with a wrong name %v, enabled with the right one %v", gate, enabled)
	b.axe("backups restore form", axe)

	// System: health, the jobs with run now, plugins, settings, agents and an enrollment token.
	b.visit(base, axe, "system", "/system", `[data-testid=health] [data-component=database]`, `tr[data-job=rollups]`, `tr[data-agent="east-1"]`, `#ret-raw`)
	b.do("run job", 20*time.Second,
		chromedp.Click(chromedp.CSS(`tr[data-job=rollups] button`)),
		chromedp.WaitVisible(chromedp.CSS(`section[aria-labelledby=sys-jobs] .notice[role=status]`)),
	)
	b.do("enrollment token", 20*time.Second,
		chromedp.SendKeys(chromedp.CSS(`#en-site`), "dc-north"),
		chromedp.Click(chromedp.CSS(`section[aria-labelledby=sys-agents] form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#en-token`)),
	)
	b.axe("system tokens", axe)

	return []page{
		{"/alerts", `tr[data-alert]`},
		{"/alerts/" + id, `[data-testid=alert-timeline] li`},
		{"/alerts/silences", `tr[data-silence]`},
		{"/alerts/rules", `tr[data-rule]`},
		{"/alerts/rules/new", `#r-name`},
		{"/alerts/channels", `tr[data-channel]`},
		{"/sites/dc-east", `[data-testid=site-timeline] li`},
		{"/hosts", `[data-heat]`},
		{"/datastores", `tr[data-datastore]`},
		{"/history?e=vm:" + web01 + "&m=cpu.usage.average", `figure canvas`},
		{"/realtime?e=vm:" + web01, `figure canvas`},
		{"/login-log", `tr[data-login]`},
		{"/sessions", `tr[data-session]`},
		{"/tokens", `tr[data-token]`},
		{"/backups", `tr[data-backup]`},
		{"/system", `tr[data-job]`},
	}
}
