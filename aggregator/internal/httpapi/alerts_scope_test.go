package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/vmpulse/vmpulse/aggregator/internal/access"
	"github.com/vmpulse/vmpulse/aggregator/internal/alert"
)

// TestAlertRuleScope: rules are read within the data scope. A rule whose
// scope names only what the caller sees (or nothing of any site) is
// listed and readable; one naming another site, its hosts or entities, or
// a VM group outside the caller's scope is not listed and answers 404 to
// reads and writes alike.
func TestAlertRuleScope(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	admin := e.tokens["admin"]
	res := e.do("POST", "/api/v1/vm-groups", admin, `{"name":"web","rule":{"name_glob":"web-*"}}`)
	var g struct {
		ID string `json:"id"`
	}
	res.data(&g)
	other := e.do("POST", "/api/v1/vm-groups", admin, `{"name":"edge","rule":{"name_glob":"edge-*"}}`)
	var og struct {
		ID string `json:"id"`
	}
	other.data(&og)
	if g.ID == "" || og.ID == "" {
		t.Fatalf("groups: %s %s", res.raw, other.raw)
	}
	ids := map[string]string{}
	mk := func(name, kind, scope string) {
		t.Helper()
		res := e.do("POST", "/api/v1/alert-rules", admin, `{"name":"`+name+`","entity_kind":"`+kind+`","severity":"info",`+
			`"conditions":[{"metric":"cpu.usage.average","op":">","threshold":1}],"scope":`+scope+`}`)
		var r alert.Rule
		res.data(&r)
		if res.status != 201 {
			t.Fatalf("rule %s: %d %s", name, res.status, res.raw)
		}
		ids[name] = r.ID.String()
	}
	mk("fleet", "vm", `{}`)
	mk("tagged", "vm", `{"tags":["env/prod"]}`)
	mk("east", "vm", `{"sites":["dc-east"]}`)
	mk("east-group", "vm", `{"sites":["dc-east"],"vm_groups":["`+og.ID+`"]}`)
	mk("east-vm", "vm", `{"entities":["`+objectID(vcEast, "vm-1")+`"]}`)
	mk("east-host", "host", `{"hosts":["`+objectID(vcEast, "host-1")+`"]}`)
	mk("east-cluster", "vm", `{"clusters":["`+objectID(vcEast, "domain-c1")+`"]}`)
	mk("east-site", "site", `{"entities":["dc-east"]}`)
	mk("east-vcenter", "vcenter", `{"entities":["`+vcEast+`"]}`)
	mk("west-vcenter", "vcenter", `{"entities":["`+vcWest+`"]}`)
	mk("west", "vm", `{"sites":["dc-west"]}`)
	mk("both", "vm", `{"sites":["dc-east","dc-west"]}`)
	mk("west-vm", "vm", `{"entities":["`+objectID(vcWest, "vm-1")+`"]}`)
	mk("mixed-vms", "vm", `{"entities":["`+objectID(vcEast, "vm-1")+`","`+objectID(vcWest, "vm-1")+`"]}`)
	mk("west-host", "vm", `{"hosts":["`+objectID(vcWest, "host-9")+`"]}`)
	mk("west-site", "site", `{"entities":["dc-west"]}`)
	mk("unknown-vm", "vm", `{"entities":["`+objectID(vcEast, "vm-404")+`"]}`)
	mk("web-group", "vm", `{"vm_groups":["`+g.ID+`"]}`)
	mk("edge-group", "vm", `{"vm_groups":["`+og.ID+`"]}`)

	east := e.scopedUser("east-ops", `["operator"]`, `{"sites":["dc-east"],"vm_groups":[]}`)
	web := e.scopedUser("web-ops", `["operator"]`, `{"sites":[],"vm_groups":["`+g.ID+`"]}`)
	for _, c := range []struct {
		who, tok string
		see      []string
	}{
		{"dc-east", east, []string{"fleet", "tagged", "east", "east-group", "east-vm", "east-host", "east-cluster", "east-site", "east-vcenter"}},
		// The web group holds web-01 (dc-east's vm-1): its rules by that
		// VM and by the group itself, and the fleet-wide ones.
		{"web group", web, []string{"fleet", "tagged", "east-vm", "web-group"}},
		{"admin", admin, nil},
	} {
		res := e.do("GET", "/api/v1/alert-rules?page_size=100", c.tok, "")
		var page struct {
			Items []alert.Rule `json:"items"`
			Total int          `json:"total"`
		}
		res.data(&page)
		var got []string
		for _, r := range page.Items {
			got = append(got, r.Name)
		}
		if c.see == nil {
			if page.Total != len(ids) {
				t.Errorf("%s lists %d rules, want %d: %v", c.who, page.Total, len(ids), got)
			}
			continue
		}
		if page.Total != len(c.see) || len(got) != len(c.see) {
			t.Errorf("%s lists %v (total %d), want %v", c.who, got, page.Total, c.see)
		}
		for _, n := range c.see {
			if !strings.Contains(","+strings.Join(got, ",")+",", ","+n+",") {
				t.Errorf("%s does not list %s: %v", c.who, n, got)
			}
		}
		for name, id := range ids {
			want := 404
			for _, n := range c.see {
				if n == name {
					want = 200
				}
			}
			res := e.do("GET", "/api/v1/alert-rules/"+id, c.tok, "")
			if res.status != want {
				t.Errorf("%s GET rule %s = %d, want %d", c.who, name, res.status, want)
			}
			if want == 404 {
				if res.code() != CodeRuleNotFound || strings.Contains(string(res.raw), "dc-west") || strings.Contains(string(res.raw), vcWest) {
					t.Errorf("%s GET hidden rule %s: %s", c.who, name, res.raw)
				}
				// Writes see it as missing too.
				for _, p := range []string{"/disable", "/enable"} {
					if res := e.do("POST", "/api/v1/alert-rules/"+id+p, c.tok, ""); res.status != 404 {
						t.Errorf("%s %s of hidden rule %s = %d", c.who, p, name, res.status)
					}
				}
				if res := e.do("DELETE", "/api/v1/alert-rules/"+id, c.tok, ""); res.status != 404 {
					t.Errorf("%s DELETE hidden rule %s = %d", c.who, name, res.status)
				}
			}
		}
		if strings.Contains(string(res.raw), "dc-west") || strings.Contains(string(res.raw), vcWest) || strings.Contains(string(res.raw), og.ID) && c.tok == web {
			t.Errorf("%s's rule list names what it may not see: %s", c.who, res.raw)
		}
	}
	// Nothing was changed by the refused writes.
	res = e.do("GET", "/api/v1/alert-rules?enabled=true&page_size=100", admin, "")
	if !strings.Contains(string(res.raw), fmt.Sprintf(`"total":%d`, len(ids))) {
		t.Errorf("rules after the refused writes: %s", res.raw)
	}
	// A draft previewed by the dc-east caller evaluates dc-east's entities
	// only, whatever the draft names.
	e.seedAlerts(f)
	res = e.do("POST", "/api/v1/alert-rules/preview", east, `{"rule":{"entity_kind":"vm","severity":"info","conditions":[{"metric":"cpu.usage.average","op":">","threshold":1}]}}`)
	var p alert.PreviewResult
	res.data(&p)
	if res.status != 200 || p.Entities != 1 || len(p.Items) != 1 || p.Items[0].Site != "dc-east" || strings.Contains(string(res.raw), "dc-west") {
		t.Errorf("preview by the dc-east caller: %d %s", res.status, res.raw)
	}
}

// TestSuppressionRedacted: a suppressed alert names its parent's alert and
// the parent; a caller who sees the alert through a VM group only gets
// neither (the kind of cause stays), one who sees the site gets both.
func TestSuppressionRedacted(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	ids := e.seedAlerts(f)
	admin := e.tokens["admin"]
	res := e.do("POST", "/api/v1/vm-groups", admin, `{"name":"web","rule":{"name_glob":"web-*"}}`)
	var g struct {
		ID string `json:"id"`
	}
	res.data(&g)
	ctx := context.Background()
	// dc-east's host-1 alert, and web-01's alert suppressed by it (as the
	// engine records them, see alert.TestTopologySuppression).
	var hostAlert int64
	if err := e.pool.QueryRow(ctx, `INSERT INTO alerts (rule_name, severity, site, source, entity_kind, entity_id, entity_name, state, starts_at)
		VALUES ('host down', 'critical', 'dc-east', $1, 'host', 'host-1', 'esx1', 'firing', now()) RETURNING id`, vcEast).Scan(&hostAlert); err != nil {
		t.Fatal(err)
	}
	vmAlert := ids["dc-east"]
	if _, err := e.pool.Exec(ctx, `UPDATE alerts SET state = 'suppressed', suppressed_by = $2, suppressed_reason = 'host esx1 is notResponding' WHERE id = $1`,
		vmAlert, hostAlert); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `INSERT INTO alert_events (alert_id, kind, at, detail) VALUES ($1, 'suppressed', now(), $2)`, vmAlert,
		map[string]any{"reason": "host esx1 is notResponding", "suppressed_by": hostAlert}); err != nil {
		t.Fatal(err)
	}
	web := e.scopedUser("web-ops", `["viewer"]`, `{"sites":[],"vm_groups":["`+g.ID+`"]}`)
	east := e.scopedUser("east-ops", `["viewer"]`, `{"sites":["dc-east"],"vm_groups":[]}`)
	for _, c := range []struct {
		who, tok, reason string
		by               bool
	}{{"web group", web, "its host is notResponding", false}, {"dc-east", east, "host esx1 is notResponding", true}} {
		for _, path := range []string{fmt.Sprintf("/api/v1/alerts/%d", vmAlert), "/api/v1/alerts?state=suppressed"} {
			res := e.do("GET", path, c.tok, "")
			raw := string(res.raw)
			if res.status != 200 || !strings.Contains(raw, `"suppressed_reason":"`+c.reason+`"`) {
				t.Errorf("%s %s: %d %s", c.who, path, res.status, raw)
			}
			has := strings.Contains(raw, fmt.Sprintf(`"suppressed_by":%d`, hostAlert))
			if has != c.by || (!c.by && strings.Contains(raw, "esx1")) {
				t.Errorf("%s %s: suppressed_by or the host shown = %v, want %v: %s", c.who, path, has, c.by, raw)
			}
		}
		if res := e.do("GET", fmt.Sprintf("/api/v1/alerts/%d", hostAlert), c.tok, ""); (res.status == 200) != c.by {
			t.Errorf("%s reads the host's alert: %d", c.who, res.status)
		}
	}
	var d alert.AlertDetail
	e.do("GET", fmt.Sprintf("/api/v1/alerts/%d", vmAlert), web, "").data(&d)
	for _, ev := range d.Timeline {
		if ev.Kind == "suppressed" {
			b, _ := json.Marshal(ev.Detail)
			if string(b) != `{"reason":"its host is notResponding"}` {
				t.Errorf("timeline entry for the web group: %s", b)
			}
		}
	}
}

// TestAlertCountsForgottenVM: the realtime overview's alert counts and
// GET /alerts agree for a caller scoped by VM group once a VM is
// forgotten from the inventory (its alerts leave the group's scope).
func TestAlertCountsForgottenVM(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	e.seedAlerts(f)
	admin := e.tokens["admin"]
	res := e.do("POST", "/api/v1/vm-groups", admin, `{"name":"web","rule":{"name_glob":"web-*"}}`)
	var g struct {
		ID string `json:"id"`
	}
	res.data(&g)
	ctx := access.WithScope(context.Background(), access.Scope{VMGroups: []string{g.ID}})
	count := func() (int64, int) {
		t.Helper()
		c, err := e.store.AlertCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, n, err := alert.NewDB(e.pool).ListAlerts(ctx, alert.AlertFilter{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Active, n
	}
	if c, n := count(); c != 1 || n != 1 {
		t.Fatalf("before: counts %d, listed %d; want 1, 1", c, n)
	}
	if _, err := e.pool.Exec(ctx, `UPDATE inventory_objects SET deleted_at = now() WHERE site = 'dc-east' AND source = $1 AND kind = 'vm' AND moref = 'vm-1'`, vcEast); err != nil {
		t.Fatal(err)
	}
	if c, n := count(); c != 0 || n != 0 {
		t.Errorf("after the VM is forgotten: counts %d, listed %d; want 0, 0", c, n)
	}
}
