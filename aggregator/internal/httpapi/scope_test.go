package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/alert"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// siteDataExempt are the routes that serve no site data, each with the
// reason. Every other route of the table is a data route and is checked by
// TestDataScopeEveryRoute; a new route must be classified here or there.
var siteDataExempt = map[string]string{
	"POST /auth/login":                "authentication",
	"POST /auth/refresh":              "authentication",
	"POST /auth/logout":               "authentication",
	"GET /auth/me":                    "the caller's own profile",
	"PUT /auth/password":              "the caller's own password",
	"GET /auth/check":                 "the caller's own permissions",
	"GET /users":                      "accounts, not site data",
	"POST /users":                     "accounts, not site data",
	"GET /users/{id}":                 "accounts, not site data",
	"PUT /users/{id}":                 "accounts, not site data",
	"DELETE /users/{id}":              "accounts, not site data",
	"POST /users/{id}/reset-password": "accounts, not site data",
	"POST /users/{id}/lock":           "accounts, not site data",
	"POST /users/{id}/unlock":         "accounts, not site data",
	"PUT /users/{id}/roles":           "accounts, not site data",
	"PUT /users/{id}/scope":           "accounts (no escalation is tested in the RBAC tests)",
	"GET /users/{id}/permissions":     "accounts, not site data",
	"GET /roles":                      "roles, not site data",
	"POST /roles":                     "roles, not site data",
	"GET /roles/{id}":                 "roles, not site data",
	"PUT /roles/{id}":                 "roles, not site data",
	"DELETE /roles/{id}":              "roles, not site data",
	"PUT /roles/{id}/permissions":     "roles, not site data",
	"GET /permissions":                "the permission catalog",
	"GET /api-tokens":                 "the caller's own tokens",
	"POST /api-tokens":                "the caller's own tokens",
	"DELETE /api-tokens/{id}":         "the caller's own tokens",
	"GET /audit-logs":                 "the operation log: who did what through the API (audit:read); its vCenter events are scoped by site (TestAuditLogsVCenterScope)",
	"GET /audit-logs/{id}":            "the operation log",
	"GET /audit-logs/export":          "the operation log",
	"GET /audit-logs/verify":          "the operation log's hash chain",
	"GET /login-logs":                 "the login log",
	"GET /login-logs/export":          "the login log",
	"GET /sessions":                   "who is online (session:admin)",
	"DELETE /sessions/{id}":           "who is online (session:admin)",
	"GET /system/info":                "the aggregator's version and configuration",
	"GET /system/storage":             "database table sizes, no site's rows",
	"GET /system/plugins":             "the aggregator's plugins, no site data",
	"GET /openapi.json":               "the API's description",
	"GET /vm-groups":                  "group definitions are configuration; member counts are scoped (TestVMGroupsAPI)",
	"POST /vm-groups":                 "group definitions; a scoped caller's rule is limited to its sites (TestVMGroupsAPI)",
	"GET /vm-groups/{id}":             "group definitions; member counts are scoped (TestVMGroupsAPI)",
	"PUT /vm-groups/{id}":             "group definitions (TestVMGroupsAPI)",
	"DELETE /vm-groups/{id}":          "group definitions (TestVMGroupsAPI)",
	"POST /vm-groups/{id}/members":    "members must be VMs in the caller's scope (TestVMGroupsAPI)",
	"DELETE /vm-groups/{id}/members":  "members must be VMs in the caller's scope (TestVMGroupsAPI)",

	"GET /system/jobs":             "the aggregator's jobs: schedules and run records, no site's rows",
	"GET /system/jobs/{name}":      "the aggregator's jobs: schedules and run records, no site's rows",
	"POST /system/jobs/{name}/run": "runs a fleet-wide maintenance job (system:write)",
	"GET /backups":                 "backups are fleet-wide: refused to a scoped caller (TestBackupsScope)",
	"POST /backups":                "backups are fleet-wide: refused to a scoped caller (TestBackupsScope)",
	"GET /backups/schedule":        "backups are fleet-wide: refused to a scoped caller (TestBackupsScope)",
	"PUT /backups/schedule":        "backups are fleet-wide: refused to a scoped caller (TestBackupsScope)",
	"GET /backups/restore":         "backups are fleet-wide: refused to a scoped caller (TestBackupsScope)",
	"GET /backups/{id}":            "backups are fleet-wide: refused to a scoped caller (TestBackupsScope)",
	"GET /backups/{id}/download":   "backups are fleet-wide: refused to a scoped caller (TestBackupsScope)",
	"POST /backups/{id}/restore":   "backups are fleet-wide: refused to a scoped caller (TestBackupsScope)",
	"DELETE /backups/{id}":         "backups are fleet-wide: refused to a scoped caller (TestBackupsScope)",
	"GET /system/settings":         "runtime settings (retention, lockout, sessions, backup, collection), no site's rows",
	"PUT /system/settings":         "fleet-wide settings (retention, collection pushed to every agent): refused to a scoped caller (TestSettingsRefusedToScopedCaller)",

	// The alerts module: its configuration (rules, silences, channels).
	"POST /alert-rules":                     "rule definitions; a scoped caller's rule must name only its sites (TestAlertScope)",
	"PUT /alert-rules/{id}":                 "rule definitions; a scoped caller may only change rules of its sites (TestAlertScope)",
	"DELETE /alert-rules/{id}":              "rule definitions; a scoped caller may only delete rules of its sites (TestAlertScope)",
	"POST /alert-rules/{id}/enable":         "rule definitions; a scoped caller may only enable rules of its sites (TestAlertScope)",
	"POST /alert-rules/{id}/disable":        "rule definitions; a scoped caller may only disable rules of its sites (TestAlertScope)",
	"GET /silences":                         "silences name sites by matchers, not site rows: a scoped caller lists only its sites' (TestAlertScope)",
	"POST /silences":                        "silence definitions; a scoped caller's must match only its sites (TestAlertScope)",
	"DELETE /silences/{id}":                 "silence definitions; a scoped caller may only end silences of its sites (TestAlertScope)",
	"GET /maintenance-windows":              "windows name sites by matchers: a scoped caller lists only its sites' (TestMaintenanceWindowsAPI)",
	"POST /maintenance-windows":             "maintenance window definitions; a scoped caller's must match only its sites (TestMaintenanceWindowsAPI)",
	"GET /maintenance-windows/{id}":         "windows name sites by matchers: another site's answers 404 (TestMaintenanceWindowsAPI)",
	"PUT /maintenance-windows/{id}":         "maintenance window definitions; a scoped caller may only change windows of its sites (TestMaintenanceWindowsAPI)",
	"DELETE /maintenance-windows/{id}":      "maintenance window definitions; a scoped caller may only delete windows of its sites (TestMaintenanceWindowsAPI)",
	"GET /notification-channels":            "notification channels are configuration (alert:write)",
	"POST /notification-channels":           "notification channels are configuration",
	"GET /notification-channels/{id}":       "notification channels are configuration",
	"PUT /notification-channels/{id}":       "notification channels are configuration",
	"DELETE /notification-channels/{id}":    "notification channels are configuration",
	"POST /notification-channels/{id}/test": "sends a fixed test message, no site data",
}

// TestDataScopeEveryRoute is generated from the route table: for every data
// route, a user whose scope is site dc-east (holding every permission, by
// session and by API token) never receives anything of site dc-west, and
// an {id} of dc-west answers 404 exactly as a missing one; the same
// requests with dc-east's ids succeed, so the check is not vacuous.
func TestDataScopeEveryRoute(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	// dc-west also gets a cluster and a datastore, so that every kind has an
	// object on both sides.
	e.writeInv(f.west, 3, vcWest,
		invObj("cluster", "domain-c9", "west-cluster", "/Datacenters/DCW/host/west-cluster", nil),
		invObj("host", "host-9", "esx9", "/Datacenters/DCW/host/west-cluster/esx9", map[string]any{"cluster_id": "domain-c9"}),
		invObj("datastore", "datastore-9", "west-ds", "/Datacenters/DCW/datastore/west-ds", map[string]any{"capacity": 100, "free": 50}),
		invObj("vm", "vm-1", "edge-01", "/Datacenters/DCW/vm/edge-01", map[string]any{"power_state": "suspended", "host_id": "host-9",
			"cluster_id": "domain-c9", "datastore_ids": []string{"datastore-9"},
			// An old snapshot: a hygiene finding (GET /vms/hygiene) on dc-west.
			"snapshot_count": 1, "snapshot_oldest": int64(1600000000000)}),
	)
	e.cmds.set(f.east.ID, f.west.ID)
	// Anything that names dc-west or one of its objects.
	forbidden := []string{"dc-west", vcWest, f.west.ID, "edge-01", "esx9", "west-cluster", "west-ds", "west-1"}

	admin := e.tokens["admin"]
	res := e.do("POST", "/api/v1/users", admin, `{"username":"east-admin","password":"`+goodPassword+`","roles":["admin"]}`)
	if res.status != 201 {
		t.Fatalf("create user: %d %s", res.status, res.raw)
	}
	var u struct {
		ID string `json:"id"`
	}
	res.data(&u)
	if res := e.do("PUT", "/api/v1/users/"+u.ID+"/scope", admin, `{"sites":["dc-east"],"vm_groups":[]}`); res.status != 200 {
		t.Fatalf("set scope: %d %s", res.status, res.raw)
	}
	session := e.login("east-admin").AccessToken
	res = e.do("POST", "/api/v1/api-tokens", session, `{"name":"automation"}`)
	if res.status != 201 {
		t.Fatalf("create api token: %d %s", res.status, res.raw)
	}
	var tok struct {
		Token string `json:"token"`
	}
	res.data(&tok)

	// The {id} of each kind of data route, on each side.
	alertIDs := e.seedAlerts(f)
	// A rule of each site (rules are read within the scope: TestAlertRuleScope).
	ruleIDs := map[string]string{}
	for _, site := range []string{"dc-east", "dc-west"} {
		id, err := alert.NewDB(e.pool).CreateRule(store.AllSites(t.Context()), alert.Rule{Name: "cpu of " + site, EntityKind: "vm", Severity: "info", Enabled: true,
			Conditions: []alert.Condition{{Metric: "cpu.usage.average", Op: ">", Threshold: 99}}, Scope: alert.Scope{Sites: []string{site}}}, "test")
		if err != nil {
			t.Fatal(err)
		}
		ruleIDs[site] = id.String()
	}
	ids := map[string][2]string{ // prefix → {dc-east, dc-west}
		"/vms/":        {objectID(vcEast, "vm-1"), objectID(vcWest, "vm-1")},
		"/hosts/":      {objectID(vcEast, "host-1"), objectID(vcWest, "host-9")},
		"/clusters/":   {objectID(vcEast, "domain-c1"), objectID(vcWest, "domain-c9")},
		"/datastores/": {objectID(vcEast, "datastore-1"), objectID(vcWest, "datastore-9")},
		"/sites/":      {"dc-east", "dc-west"},
		"/agents/":     {f.east.ID, f.west.ID},
		// An alert on web-01 (dc-east) and one on edge-01 (dc-west).
		"/alerts/": {fmt.Sprint(alertIDs["dc-east"]), fmt.Sprint(alertIDs["dc-west"])},
		// A rule scoped to each site.
		"/alert-rules/": {ruleIDs["dc-east"], ruleIDs["dc-west"]},
		// The latest values of a VM.
		"/realtime/vms/": {objectID(vcEast, "vm-1"), objectID(vcWest, "vm-1")},
	}
	idFor := func(pattern string, side int) (string, bool) {
		for prefix, v := range ids {
			if strings.HasPrefix(pattern, prefix) {
				return strings.Replace(pattern, "{id}", url.PathEscape(v[side]), 1), true
			}
		}
		return "", false
	}
	westVM := objectID(vcWest, "vm-1")
	// Bodies of the data routes that take one, aimed at dc-west, and the
	// status they must answer.
	bodies := map[string]struct {
		body   string
		status int
	}{
		"POST /agents/enrollment-tokens": {`{"site":"dc-west"}`, http.StatusNotFound},
		"POST /metrics/query":            {`{"entities":[{"kind":"vm","id":"` + westVM + `"}]}`, http.StatusOK},
		"POST /vms/batch":                {`{"vms":["` + westVM + `"],"action":"set_labels","labels":{"a":"b"}}`, http.StatusOK},
		"PATCH /vms/{id}":                {`{"owner":"mallory"}`, http.StatusNotFound},
		"POST /alert-rules/preview": {`{"rule":{"entity_kind":"vm","severity":"info","conditions":[{"metric":"cpu.usage.average","op":">","threshold":1}],` +
			`"scope":{"sites":["dc-west"]}}}`, http.StatusOK},
	}
	// Queries aimed at dc-west for the routes that name an entity in
	// their query, and the status they must answer.
	queries := map[string][]struct {
		q      string
		status int
	}{
		"GET /metrics/summary": {{"?kind=vm&entity=" + url.QueryEscape(westVM), http.StatusNotFound}},
		"GET /metrics/export":  {{"?kind=vm&entity=" + url.QueryEscape(westVM), http.StatusNotFound}},
		"GET /metrics/top": {{"?metric=cpu.usage.average", http.StatusOK}, {"?metric=cpu.usage.average&site=dc-west", http.StatusOK},
			{"?metric=cpu.usage.average&order=asc&kind=vm", http.StatusOK}},
		// A stream of dc-west's entities is refused before it starts
		// (TestRealtimeScope checks what a scoped subscriber receives).
		"GET /realtime/stream": {{"?vm=" + url.QueryEscape(westVM), http.StatusNotFound},
			{"?host=" + url.QueryEscape(objectID(vcWest, "host-9")) + "&metric=cpu.usage.average", http.StatusNotFound},
			{"?vm=" + url.QueryEscape(objectID(vcEast, "vm-1")) + "&vm=" + url.QueryEscape(westVM), http.StatusNotFound}},
		"GET /realtime/overview": {{"?limit=50", http.StatusOK}},
		// Findings of dc-west's edge-01 (an old snapshot) must not show.
		"GET /vms/hygiene": {{"?kind=old_snapshot&snapshot_age=1h", http.StatusOK}, {"?site=dc-west&kind=old_snapshot", http.StatusOK}},
	}
	// dc-west has samples too, so that fleet-wide answers would name it.
	if _, err := e.store.WriteSamples(t.Context(), store.BatchMeta{AgentID: f.west.ID, Site: "dc-west", Epoch: 1, Seq: 4, Kind: protocol.KindSamples},
		&protocol.Samples{Series: []protocol.SeriesData{{
			Key:        protocol.SeriesKey{Source: vcWest, EntityKind: "vm", EntityID: "vm-1", Counters: []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}}},
			Timestamps: []int64{time.Now().Add(-time.Minute).UnixMilli()}, Values: [][]float64{{9999}},
		}}}); err != nil {
		t.Fatal(err)
	}
	// List routes are also asked to filter or search for dc-west.
	hostile := []string{"", "?site=dc-west", "?q=edge", "?q=west", "?host=esx9", "?cluster=west-cluster"}

	checked := 0
	for _, rt := range e.api.routeTable() {
		key := rt.Method + " " + rt.Pattern
		if _, ok := siteDataExempt[key]; ok {
			continue
		}
		checked++
		for name, cred := range map[string]string{"session": session, "api token": tok.Token} {
			t.Run(key+" by "+name, func(t *testing.T) {
				// leak reports anything of dc-west in the answer, but for
				// what the request itself named (echo).
				leak := func(res *response, echo ...string) {
					t.Helper()
					body := string(res.raw)
					for _, x := range echo {
						body = strings.ReplaceAll(body, x, "")
					}
					for _, s := range forbidden {
						if strings.Contains(body, s) {
							t.Errorf("%s answered %d with %q of dc-west: %s", key, res.status, s, res.raw)
						}
					}
				}
				if !strings.Contains(rt.Pattern, "{id}") {
					if !rt.mutating() {
						for _, q := range hostile {
							res := e.do(rt.Method, "/api/v1"+rt.Pattern+q, cred, "")
							if res.status >= 500 || res.status == http.StatusForbidden {
								t.Errorf("%s%s = %d %s", key, q, res.status, res.raw)
							}
							leak(res)
						}
						for _, q := range queries[key] {
							res := e.do(rt.Method, "/api/v1"+rt.Pattern+q.q, cred, "")
							if res.status != q.status {
								t.Errorf("%s%s = %d %.300s, want %d", key, q.q, res.status, res.raw, q.status)
							}
							leak(res)
						}
						return
					}
					b, ok := bodies[key]
					if !ok {
						t.Fatalf("data route %s: add a body aimed at dc-west to this test", key)
					}
					res := e.do(rt.Method, "/api/v1"+rt.Pattern, cred, b.body)
					if res.status != b.status {
						t.Errorf("%s at dc-west = %d %s, want %d", key, res.status, res.raw, b.status)
					}
					leak(res, `"id":"`+westVM+`"`)
					return
				}
				west, ok := idFor(rt.Pattern, 1)
				if !ok {
					t.Fatalf("data route %s: add the ids of its objects to this test", key)
				}
				res := e.do(rt.Method, "/api/v1"+west, cred, bodies[key].body)
				if res.status != http.StatusNotFound {
					t.Errorf("%s of dc-west = %d %s, want 404", key, res.status, res.raw)
				}
				leak(res)
				// The same route on dc-east's object works (reads; and the
				// resync command), so the 404 above is the scope's doing.
				if !rt.mutating() || key == "POST /sites/{id}/resync" {
					east, _ := idFor(rt.Pattern, 0)
					if res := e.do(rt.Method, "/api/v1"+east, cred, ""); res.status >= 300 {
						t.Errorf("%s of dc-east = %d %s", key, res.status, res.raw)
					}
				}
			})
		}
	}
	if checked < 15 {
		t.Errorf("only %d data routes checked; is the classification right?", checked)
	}

	// Nothing of dc-west changed, nor was it commanded.
	ag, err := e.store.AgentByID(store.AllSites(t.Context()), f.west.ID)
	if err != nil || ag.RevokedAt != nil {
		t.Errorf("dc-west's agent after the scoped calls: %+v, %v", ag, err)
	}
	for _, s := range e.cmds.sends() {
		if strings.HasPrefix(s, f.west.ID) {
			t.Errorf("dc-west's agent was sent %q", s)
		}
	}

	// Counts are the scope's, not the fleet's.
	for path, want := range map[string]string{
		"/api/v1/vms":        `"total":3`,
		"/api/v1/vms/stats":  `"total":3`,
		"/api/v1/hosts":      `"total":2`,
		"/api/v1/sites":      `"total":1`,
		"/api/v1/agents":     `"total":1`,
		"/api/v1/clusters":   `"total":1`,
		"/api/v1/datastores": `"total":1`,
	} {
		if res := e.do("GET", path, session, ""); !strings.Contains(string(res.raw), want) {
			t.Errorf("%s by the dc-east user: %s, want %s", path, res.raw, want)
		}
	}
	if res := e.do("GET", "/api/v1/system/health", session, ""); !strings.Contains(string(res.raw), `"registered":1`) {
		t.Errorf("health by the dc-east user counts other sites' agents: %s", res.raw)
	}
	// An unrestricted user still sees both sites.
	if res := e.do("GET", "/api/v1/vms", admin, ""); !strings.Contains(string(res.raw), `"total":4`) {
		t.Errorf("/vms by the unrestricted admin: %s", res.raw)
	}
}

// TestDataScopeMetricsExposition: the Prometheus exposition covers every
// site, so a credential limited to some sites may not read it.
func TestDataScopeMetricsExposition(t *testing.T) {
	e := newEnv(t, nil) // the default: an API credential with system:read
	e.inventory()
	admin := e.tokens["admin"]
	res := e.do("POST", "/api/v1/users", admin, `{"username":"east-ops","password":"`+goodPassword+`","roles":["admin"]}`)
	var u struct {
		ID string `json:"id"`
	}
	res.data(&u)
	if res := e.do("PUT", "/api/v1/users/"+u.ID+"/scope", admin, `{"sites":["dc-east"],"vm_groups":[]}`); res.status != 200 {
		t.Fatalf("set scope: %d %s", res.status, res.raw)
	}
	scoped := e.login("east-ops").AccessToken
	if res := e.do("GET", "/metrics", scoped, ""); res.status != http.StatusForbidden || strings.Contains(string(res.raw), "dc-west") {
		t.Errorf("/metrics by a scoped user = %d %.200s", res.status, res.raw)
	}
	if res := e.do("GET", "/metrics", admin, ""); res.status != 200 {
		t.Errorf("/metrics by the admin = %d %.200s", res.status, res.raw)
	}
}
