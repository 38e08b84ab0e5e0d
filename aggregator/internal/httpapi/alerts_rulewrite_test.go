package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/alert"
	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// ruleBody is a rule body of the tests below: cpu above 50 % on VMs.
func ruleBody(name, scope string) string {
	return `{"name":"` + name + `","entity_kind":"vm","severity":"critical",` +
		`"conditions":[{"metric":"cpu.usage.average","op":">","threshold":50}],"scope":` + scope + `}`
}

// ruleAlerts returns the alerts of rule id by site (every state).
func (e *env) ruleAlerts(id string) map[string]alert.Alert {
	e.t.Helper()
	uid, err := uuid.Parse(id)
	if err != nil {
		e.t.Fatal(err)
	}
	list, _, err := alert.NewDB(e.pool).ListAlerts(store.AllSites(context.Background()), alert.AlertFilter{State: "all", RuleID: &uid})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]alert.Alert{}
	for _, a := range list {
		out[a.Site] = a
	}
	return out
}

// closedReason is the reason of the 'closed' entry of alert id's
// timeline ("" when there is none).
func (e *env) closedReason(id int64) string {
	e.t.Helper()
	var reason string
	err := e.pool.QueryRow(context.Background(), `SELECT detail->>'reason' FROM alert_events WHERE alert_id = $1 AND kind = 'closed'`, id).Scan(&reason)
	if err != nil {
		return ""
	}
	return reason
}

// TestAlertRuleWriteScope (M1): the scope checks of a rule write run on
// the locked row in the write's own transaction, an admin's narrowing
// closes the alerts the new scope no longer covers, and a limited caller
// closes nothing outside its scope. A dc-east operator could disable or
// delete a rule an admin had narrowed from two sites (or from every site)
// to dc-east, resolving dc-west's alerts.
func TestAlertRuleWriteScope(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	admin := e.tokens["admin"]
	ids := map[string]string{}
	for _, name := range []string{"both-disable", "both-delete"} {
		res := e.do("POST", "/api/v1/alert-rules", admin, ruleBody(name, `{"sites":["dc-east","dc-west"]}`))
		var r alert.Rule
		res.data(&r)
		if res.status != 201 {
			t.Fatalf("create %s: %d %s", name, res.status, res.raw)
		}
		ids[name] = r.ID.String()
	}
	e.seedAlerts(f) // fires each enabled rule on vm-1 of both sites
	var seed alert.Rule
	res := e.do("GET", "/api/v1/alert-rules?q=seed-cpu", admin, "")
	var page struct {
		Items []alert.Rule `json:"items"`
	}
	res.data(&page)
	if len(page.Items) != 1 {
		t.Fatalf("seed rule: %s", res.raw)
	}
	seed = page.Items[0]
	ids["global"] = seed.ID.String()
	for name, id := range ids {
		if al := e.ruleAlerts(id); al["dc-east"].State != "firing" || al["dc-west"].State != "firing" {
			t.Fatalf("%s: alerts before %+v", name, al)
		}
	}
	east := e.scopedUser("east-ops", `["operator"]`, `{"sites":["dc-east"],"vm_groups":[]}`)

	for _, c := range []struct {
		name, method, path string
	}{
		{"both-disable", "POST", "/disable"},
		{"both-delete", "DELETE", ""},
		{"global", "POST", "/disable"},
	} {
		id := ids[c.name]
		body := ruleBody(c.name, `{"sites":["dc-east"]}`)
		if c.name == "global" {
			body = `{"name":"seed-cpu","entity_kind":"vm","severity":"critical","conditions":[{"metric":"cpu.usage.average","op":">","threshold":50}],"scope":{"sites":["dc-east"]}}`
		}
		// The admin narrows the rule to dc-east: dc-west's alert is closed
		// then, by the admin's write, saying why.
		if res := e.do("PUT", "/api/v1/alert-rules/"+id, admin, body); res.status != 200 {
			t.Fatalf("%s: narrow: %d %s", c.name, res.status, res.raw)
		}
		al := e.ruleAlerts(id)
		if al["dc-west"].State != "resolved" || al["dc-east"].State != "firing" {
			t.Errorf("%s: after the narrowing, dc-east %s and dc-west %s; want firing and resolved", c.name, al["dc-east"].State, al["dc-west"].State)
		}
		if r := e.closedReason(al["dc-west"].ID); r != "outside the rule's new scope" {
			t.Errorf("%s: dc-west's alert closed for %q", c.name, r)
		}
		// A dc-west alert of the rule still open (as one written before the
		// narrowing closed them would be) stays out of the dc-east
		// operator's reach.
		if _, err := e.pool.Exec(context.Background(), `UPDATE alerts SET state = 'firing', ends_at = NULL, resolved_by = '' WHERE id = $1`, al["dc-west"].ID); err != nil {
			t.Fatal(err)
		}
		res := e.do(c.method, "/api/v1/alert-rules/"+id+c.path, east, "")
		if res.status != 200 {
			t.Fatalf("%s: the dc-east operator's %s%s: %d %s", c.name, c.method, c.path, res.status, res.raw)
		}
		for _, site := range []string{"dc-east", "dc-west"} {
			a := al[site]
			// A deleted rule's alerts keep their history, without the rule id.
			if err := e.pool.QueryRow(context.Background(), `SELECT state FROM alerts WHERE id = $1`, a.ID).Scan(&a.State); err != nil {
				t.Fatal(err)
			}
			al[site] = a
		}
		if al["dc-east"].State != "resolved" || al["dc-west"].State != "firing" {
			t.Errorf("%s: after the dc-east operator's write, dc-east %s and dc-west %s; want resolved and firing", c.name, al["dc-east"].State, al["dc-west"].State)
		}
	}
}

// TestAlertRuleWriteRace (M1): a rule widened to another site while a
// dc-east operator's disable waits for the rule's lock is judged as
// widened: 404, and nothing closed.
func TestAlertRuleWriteRace(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	admin := e.tokens["admin"]
	res := e.do("POST", "/api/v1/alert-rules", admin, ruleBody("east", `{"sites":["dc-east"]}`))
	var r alert.Rule
	res.data(&r)
	if res.status != 201 {
		t.Fatalf("create: %d %s", res.status, res.raw)
	}
	e.seedAlerts(f)
	east := e.scopedUser("east-ops", `["operator"]`, `{"sites":["dc-east"],"vm_groups":[]}`)
	ctx := context.Background()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `UPDATE alert_rules SET spec = jsonb_set(spec, '{scope,sites}', '["dc-east","dc-west"]') WHERE id = $1`, r.ID); err != nil {
		t.Fatal(err)
	}
	done := make(chan *response, 1)
	go func() { done <- e.do("POST", "/api/v1/alert-rules/"+r.ID.String()+"/disable", east, "") }()
	// Wait until the operator's transaction waits for the widening's lock.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var n int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FROM alert_rules WHERE id = $1 FOR UPDATE%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		select {
		case res := <-done:
			t.Fatalf("the disable did not wait for the rule's lock: %d %s", res.status, res.raw)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the disable never waited for the rule's lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	res = <-done
	if res.status != 404 || res.code() != CodeRuleNotFound {
		t.Errorf("disable of the widened rule: %d %s", res.status, res.raw)
	}
	al := e.ruleAlerts(r.ID.String())
	if al["dc-east"].State != "firing" {
		t.Errorf("dc-east's alert after the refused disable: %s", al["dc-east"].State)
	}
	var enabled bool
	if err := e.pool.QueryRow(ctx, `SELECT enabled FROM alert_rules WHERE id = $1`, r.ID).Scan(&enabled); err != nil || !enabled {
		t.Errorf("rule enabled = %v (%v)", enabled, err)
	}
}

// TestAlertRuleWriteInvisible (M2): a rule its writer could not read back
// is not written: 403 AUTH_ESCALATION_DENIED naming the scope's list at
// fault, no row, the audit record's status 403; by POST and by PUT. A VM
// group outside the caller's scope is accepted when scope.sites confines
// the rule to the caller's sites; hosts, clusters and entities are not
// (their ids name another site's vCenter and objects).
func TestAlertRuleWriteInvisible(t *testing.T) {
	e := newEnv(t, nil)
	e.inventory()
	admin := e.tokens["admin"]
	res := e.do("POST", "/api/v1/vm-groups", admin, `{"name":"edge","rule":{"name_glob":"edge-*"}}`)
	var g struct {
		ID string `json:"id"`
	}
	res.data(&g)
	east := e.scopedUser("east-ops", `["operator"]`, `{"sites":["dc-east"],"vm_groups":[]}`)
	westHost, westCluster, westVM := objectID(vcWest, "host-9"), objectID(vcWest, "domain-c9"), objectID(vcWest, "vm-1")
	count := func(name string) int {
		var n int
		if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM alert_rules WHERE name = $1`, name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	check := func(what string, res *response, reqID string, want ...string) {
		t.Helper()
		var d struct {
			Reason string   `json:"reason"`
			Fields []string `json:"scope_fields"`
		}
		res.data(&d)
		if res.status != 403 || res.code() != CodeEscalation || d.Reason != "rule_outside_scope" || !slices.Equal(d.Fields, want) {
			t.Errorf("%s: %d %s; want 403 naming %v", what, res.status, res.raw, want)
		}
		if strings.Contains(string(res.raw), vcWest) {
			t.Errorf("%s: the refusal names dc-west's vCenter: %s", what, res.raw)
		}
		recs := e.auditRecords(reqID)
		if len(recs) != 1 || recs[0].Status != 403 || recs[0].Result != audit.ResultDenied {
			t.Errorf("%s: audit records %+v; want one denied with status 403", what, recs)
		}
	}
	for i, c := range []struct {
		scope string
		want  []string
	}{
		{`{"sites":["dc-east"],"hosts":["` + westHost + `"]}`, []string{"scope.hosts"}},
		{`{"sites":["dc-east"],"clusters":["` + westCluster + `"]}`, []string{"scope.clusters"}},
		{`{"sites":["dc-east"],"entities":["` + westVM + `"]}`, []string{"scope.entities"}},
		{`{"sites":["dc-east"],"hosts":["` + westHost + `"],"entities":["` + westVM + `"]}`, []string{"scope.hosts", "scope.entities"}},
		{`{"sites":["dc-west"]}`, []string{"scope.sites"}},
		{`{}`, []string{"scope.sites"}},
	} {
		name := fmt.Sprintf("hidden-%d", i)
		reqID := fmt.Sprintf("req-hidden-post-%d", i)
		check("POST "+c.scope, e.do("POST", "/api/v1/alert-rules", east, ruleBody(name, c.scope), "X-Request-ID", reqID), reqID, c.want...)
		if n := count(name); n != 0 {
			t.Errorf("POST %s stored %d rules", c.scope, n)
		}
	}
	// The caller's own rule, replaced by one it could not see.
	res = e.do("POST", "/api/v1/alert-rules", east, ruleBody("mine", `{"sites":["dc-east"]}`))
	var mine alert.Rule
	res.data(&mine)
	if res.status != 201 {
		t.Fatalf("create mine: %d %s", res.status, res.raw)
	}
	reqID := "req-hidden-put"
	check("PUT", e.do("PUT", "/api/v1/alert-rules/"+mine.ID.String(), east, ruleBody("mine-west", `{"sites":["dc-east"],"hosts":["`+westHost+`"]}`),
		"X-Request-ID", reqID), reqID, "scope.hosts")
	res = e.do("GET", "/api/v1/alert-rules/"+mine.ID.String(), east, "")
	var got alert.Rule
	res.data(&got)
	if res.status != 200 || got.Name != "mine" || got.Revision != mine.Revision || len(got.Scope.Hosts) != 0 {
		t.Errorf("mine after the refused PUT: %d %s", res.status, res.raw)
	}
	// A group outside the scope, confined to dc-east by sites: accepted
	// and readable (it can match only dc-east's VMs).
	res = e.do("POST", "/api/v1/alert-rules", east, ruleBody("east-edge", `{"sites":["dc-east"],"vm_groups":["`+g.ID+`"]}`))
	var eg alert.Rule
	res.data(&eg)
	if res.status != 201 {
		t.Errorf("a group confined to dc-east: %d %s", res.status, res.raw)
	} else if res := e.do("GET", "/api/v1/alert-rules/"+eg.ID.String(), east, ""); res.status != 200 {
		t.Errorf("read it back: %d", res.status)
	}
	// The admin writes any of them.
	if res := e.do("POST", "/api/v1/alert-rules", admin, ruleBody("admin-west-host", `{"sites":["dc-east"],"hosts":["`+westHost+`"]}`)); res.status != 201 {
		t.Errorf("admin: %d %s", res.status, res.raw)
	}
}

// TestAlertRuleNamesFleetWide (L1, L2): rule names are fleet-wide, like VM
// groups': a name another site's rule holds is refused with 409 naming
// only the field, nothing of the rule. An alert names the rule that raised
// it (rule_id, rule_name) even when the rule is hidden from the caller,
// whose reads of the rule still answer 404.
func TestAlertRuleNamesFleetWide(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	admin := e.tokens["admin"]
	res := e.do("POST", "/api/v1/alert-rules", admin, ruleBody("two-sites", `{"sites":["dc-east","dc-west"]}`))
	var r alert.Rule
	res.data(&r)
	if res.status != 201 {
		t.Fatalf("create: %d %s", res.status, res.raw)
	}
	e.seedAlerts(f)
	east := e.scopedUser("east-ops", `["operator"]`, `{"sites":["dc-east"],"vm_groups":[]}`)
	if res := e.do("GET", "/api/v1/alert-rules/"+r.ID.String(), east, ""); res.status != 404 {
		t.Fatalf("the two-site rule is readable by dc-east: %d", res.status)
	}
	res = e.do("POST", "/api/v1/alert-rules", east, ruleBody("two-sites", `{"sites":["dc-east"]}`))
	if res.status != 409 || res.code() != CodeRuleNameTaken || fmt.Sprint(fieldsOf(res)) != "[name:taken]" ||
		strings.Contains(string(res.raw), r.ID.String()) || strings.Contains(string(res.raw), "dc-west") {
		t.Errorf("a hidden rule's name: %d %s", res.status, res.raw)
	}
	res = e.do("GET", "/api/v1/alerts?rule="+r.ID.String(), east, "")
	var page struct {
		Items []json.RawMessage `json:"items"`
	}
	res.data(&page)
	if res.status != 200 || len(page.Items) != 1 || !strings.Contains(string(page.Items[0]), `"rule_name":"two-sites"`) ||
		!strings.Contains(string(page.Items[0]), `"site":"dc-east"`) {
		t.Errorf("dc-east's alert of the hidden rule: %d %s", res.status, res.raw)
	}
}

// TestAlertEntityFilterColonSource (L5): GET /alerts?entity= finds a
// vCenter's alert by its source when the source holds ':' (a host:port),
// a site's by its name, and a VM's by source:moref with such a source.
func TestAlertEntityFilterColonSource(t *testing.T) {
	e := newEnv(t, nil)
	e.inventory()
	ctx := context.Background()
	const src = "vc.east.example:443"
	ids := map[string]int64{}
	for _, c := range []struct{ kind, source, id string }{
		{"vcenter", src, src}, {"vm", src, "vm-7"}, {"site", "", "dc-east"}, {"vm", "vc.west.example", "vm-7"},
	} {
		var id int64
		if err := e.pool.QueryRow(ctx, `INSERT INTO alerts (rule_name, severity, site, source, entity_kind, entity_id, entity_name, state, starts_at)
			VALUES ('r', 'critical', 'dc-east', $1, $2, $3, $3, 'firing', now()) RETURNING id`, c.source, c.kind, c.id).Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[c.kind+"/"+c.source+"/"+c.id] = id
	}
	for entity, want := range map[string]string{
		src:                      "vcenter/" + src + "/" + src,
		src + ":vm-7":            "vm/" + src + "/vm-7",
		"dc-east":                "site//dc-east",
		"vc.west.example:vm-7":   "vm/vc.west.example/vm-7",
		"vc.east.example:443:vm": "",
	} {
		res := e.do("GET", "/api/v1/alerts?state=all&entity="+url.QueryEscape(entity), e.tokens["admin"], "")
		var page struct {
			Items []alert.Alert `json:"items"`
		}
		res.data(&page)
		var got []int64
		for _, a := range page.Items {
			got = append(got, a.ID)
		}
		var exp []int64
		if want != "" {
			exp = []int64{ids[want]}
		}
		if res.status != 200 || !slices.Equal(got, exp) {
			t.Errorf("entity=%s: %d %v, want %v", entity, res.status, got, exp)
		}
	}
}
