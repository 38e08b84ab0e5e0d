package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/alert"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/protocol"
)

// seedAlerts makes the alert engine fire one alert on vm-1 of each site
// of the inventory fixture (web-01 of dc-east, edge-01 of dc-west), and
// returns their ids by site.
func (e *env) seedAlerts(f invFixture) map[string]int64 {
	e.t.Helper()
	ctx := context.Background()
	db := alert.NewDB(e.pool)
	if _, err := db.CreateRule(store.AllSites(ctx), alert.Rule{Name: "seed-cpu", EntityKind: "vm", Severity: "critical", Enabled: true,
		Conditions: []alert.Condition{{Metric: "cpu.usage.average", Op: ">", Threshold: 50}}}, "test"); err != nil {
		e.t.Fatal(err)
	}
	eng := alert.NewEngine(e.pool, nil, alert.Config{})
	if err := eng.Load(ctx); err != nil {
		e.t.Fatal(err)
	}
	at := time.Now().Add(-30 * time.Second).UnixMilli()
	for i, a := range []struct {
		ag     store.Agent
		source string
	}{{f.east, vcEast}, {f.west, vcWest}} {
		p := &protocol.Samples{Series: []protocol.SeriesData{{
			Key:        protocol.SeriesKey{Source: a.source, EntityKind: "vm", EntityID: "vm-1", Counters: []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}}},
			Timestamps: []int64{at}, Values: [][]float64{{9000}}}}}
		if _, err := e.store.WriteSamples(ctx, store.BatchMeta{AgentID: a.ag.ID, Site: a.ag.Site, Epoch: 9, Seq: uint64(100 + i), Kind: protocol.KindSamples}, p); err != nil {
			e.t.Fatal(err)
		}
		if err := eng.Process(ctx, a.ag.Site, p); err != nil {
			e.t.Fatal(err)
		}
	}
	list, _, err := db.ListAlerts(store.AllSites(ctx), alert.AlertFilter{State: "all"})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]int64{}
	for _, a := range list {
		out[a.Site] = a.ID
	}
	if len(out) != 2 {
		e.t.Fatalf("seeded alerts: %+v", list)
	}
	return out
}

func fieldsOf(res *response) []string {
	var d errData
	res.data(&d)
	var out []string
	for _, f := range d.Fields {
		out = append(out, f.Field+":"+f.Code)
	}
	slices.Sort(out)
	return out
}

// TestAlertRulesAPI: rule CRUD, enable/disable, field errors, names,
// channels, and the permissions (viewer reads, operator writes).
func TestAlertRulesAPI(t *testing.T) {
	e := newEnv(t, nil)
	op, viewer := e.tokens["operator"], e.tokens["viewer"]
	body := `{"name":"vm-cpu-high","entity_kind":"vm","severity":"warning","match":"any",
		"conditions":[{"metric":"cpu.usage.average","agg":"avg","window":"5m","op":">","threshold":90,"clear_threshold":80},
		              {"metric":"mem.usage.average","op":">=","threshold":95}],
		"for":"5m","keep_firing_for":"2m","scope":{"sites":["dc-east"],"tags":["env/prod"]},
		"labels":{"team":"ops"},"annotations":{"summary":"{{entity}} cpu {{value}}%"},"repeat_interval":"4h"}`
	res := e.do("POST", "/api/v1/alert-rules", op, body)
	if res.status != http.StatusCreated {
		t.Fatalf("create: %d %s", res.status, res.raw)
	}
	var rule alert.Rule
	res.data(&rule)
	if rule.Name != "vm-cpu-high" || !rule.Enabled || rule.Match != "any" || len(rule.Conditions) != 2 || rule.For != alert.Duration(5*time.Minute) ||
		rule.Conditions[0].ClearThreshold == nil || *rule.Conditions[0].ClearThreshold != 80 || rule.CreatedBy != "operator" {
		t.Errorf("created rule %+v", rule)
	}
	if !strings.Contains(string(res.raw), `"for":"5m"`) || !strings.Contains(string(res.raw), `"window":"5m"`) {
		t.Errorf("durations are not written as strings: %s", res.raw)
	}
	id := rule.ID.String()
	if res := e.do("POST", "/api/v1/alert-rules", op, body); res.status != http.StatusConflict || res.code() != CodeRuleNameTaken {
		t.Errorf("same name again: %d %s", res.status, res.raw)
	}
	if res := e.do("POST", "/api/v1/alert-rules", viewer, body); res.status != http.StatusForbidden {
		t.Errorf("viewer creates: %d", res.status)
	}
	if res := e.do("GET", "/api/v1/alert-rules/"+id, viewer, ""); res.status != 200 {
		t.Errorf("viewer reads: %d %s", res.status, res.raw)
	}
	// Field errors name every bad field.
	bad := `{"name":"","entity_kind":"hypervisor","severity":"loud","match":"most",
		"conditions":[{"metric":"cpu","agg":"median","window":"5 minutes","op":"=>"},{"metric":"mem.usage.average","op":">","threshold":1,"clear_threshold":5}],
		"for":"-1m","scope":{"sites":["Not A Site"]},"labels":{"9bad":"x"},"channels":["nope"],"repeat_interval":"1s"}`
	res = e.do("POST", "/api/v1/alert-rules", op, bad)
	want := []string{"channels[0]:invalid_format", "conditions[0].agg:invalid_value", "conditions[0].metric:invalid_format", "conditions[0].op:invalid_value",
		"conditions[0].threshold:required", "conditions[0].window:invalid_format", "conditions[1].clear_threshold:out_of_range", "entity_kind:invalid_value",
		"for:out_of_range", "labels.9bad:invalid_format", "match:invalid_value", "name:required", "repeat_interval:out_of_range",
		"scope.sites[0]:invalid_format", "severity:invalid_value"}
	if got := fieldsOf(res); res.status != 422 || !slices.Equal(got, want) {
		t.Errorf("bad rule: %d\n got %v\nwant %v", res.status, got, want)
	}
	if res := e.do("POST", "/api/v1/alert-rules", op, `{"name":"x","entity_kind":"vm","severity":"info","conditions":[{"metric":"a.b","op":">","threshold":1}],"bogus":1}`); res.status != 422 {
		t.Errorf("unknown field: %d %s", res.status, res.raw)
	}
	res = e.do("POST", "/api/v1/alert-rules", op, `{"name":"x","entity_kind":"vm","severity":"info","conditions":[{"metric":"a.b","op":">","threshold":1}],
		"channels":["00000000-0000-0000-0000-000000000001"]}`)
	if got := fieldsOf(res); res.status != 422 || !slices.Equal(got, []string{"channels[0]:" + FieldUnknownChannel}) {
		t.Errorf("unknown channel: %d %v", res.status, got)
	}

	// Disable, enable, replace, list, delete.
	for _, c := range []struct {
		path string
		on   bool
	}{{"/disable", false}, {"/enable", true}} {
		res := e.do("POST", "/api/v1/alert-rules/"+id+c.path, op, "")
		res.data(&rule)
		if res.status != 200 || rule.Enabled != c.on || rule.Revision < 2 {
			t.Errorf("%s: %d %+v", c.path, res.status, rule)
		}
	}
	res = e.do("PUT", "/api/v1/alert-rules/"+id, op, strings.Replace(body, `"severity":"warning"`, `"severity":"critical"`, 1))
	res.data(&rule)
	if res.status != 200 || rule.Severity != "critical" {
		t.Errorf("replace: %d %s", res.status, res.raw)
	}
	res = e.do("GET", "/api/v1/alert-rules?kind=vm&severity=critical&q=cpu", viewer, "")
	if res.status != 200 || !strings.Contains(string(res.raw), `"total":1`) {
		t.Errorf("list: %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/alert-rules?kind=hypervisor", viewer, ""); res.status != 422 {
		t.Errorf("list by an unknown kind: %d", res.status)
	}
	if res := e.do("DELETE", "/api/v1/alert-rules/"+id, op, ""); res.status != 200 {
		t.Errorf("delete: %d %s", res.status, res.raw)
	}
	for _, p := range []string{"/api/v1/alert-rules/" + id, "/api/v1/alert-rules/not-a-uuid"} {
		if res := e.do("GET", p, viewer, ""); res.status != 404 || res.code() != CodeRuleNotFound {
			t.Errorf("GET %s: %d %s", p, res.status, res.raw)
		}
	}
	e.flushAudit()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action LIKE 'alert_rule.%'`).Scan(&n); err != nil || n < 6 {
		t.Errorf("%d alert_rule audit records (%v)", n, err)
	}
}

// TestAlertsAPI: list (filters), detail with timeline, ack (stops
// repeats), manual resolve, stats.
func TestAlertsAPI(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	ids := e.seedAlerts(f)
	op, viewer := e.tokens["operator"], e.tokens["viewer"]
	east := fmt.Sprint(ids["dc-east"])

	res := e.do("GET", "/api/v1/alerts", viewer, "")
	var page struct {
		Items []alert.Alert `json:"items"`
		Total int           `json:"total"`
	}
	res.data(&page)
	if res.status != 200 || page.Total != 2 {
		t.Fatalf("list: %d %s", res.status, res.raw)
	}
	for _, q := range []struct {
		query string
		total int
	}{
		{"?site=dc-east", 1}, {"?q=edge", 1}, {"?severity=critical", 2}, {"?severity=info", 0}, {"?state=resolved", 0}, {"?state=all", 2},
		{"?entity=" + objectID(vcEast, "vm-1"), 1}, {"?acked=false", 2}, {"?late=true", 0}, {"?kind=vm&sort=-severity,site", 2},
	} {
		res := e.do("GET", "/api/v1/alerts"+q.query, viewer, "")
		res.data(&page)
		if res.status != 200 || page.Total != q.total {
			t.Errorf("list %s: %d total %d, want %d: %.300s", q.query, res.status, page.Total, q.total, res.raw)
		}
	}
	if res := e.do("GET", "/api/v1/alerts?state=sleeping&sort=nope", viewer, ""); res.status != 422 {
		t.Errorf("bad filters: %d", res.status)
	}
	res = e.do("GET", "/api/v1/alerts/"+east, viewer, "")
	var d alert.AlertDetail
	res.data(&d)
	if res.status != 200 || d.EntityName != "web-01" || d.State != "firing" || d.Value == nil || *d.Value != 90 || len(d.Timeline) != 1 || d.Timeline[0].Kind != "firing" {
		t.Errorf("detail: %d %s", res.status, res.raw)
	}
	if res := e.do("POST", "/api/v1/alerts/"+east+"/ack", viewer, `{"comment":"mine"}`); res.status != 403 {
		t.Errorf("viewer acks: %d", res.status)
	}
	res = e.do("POST", "/api/v1/alerts/"+east+"/ack", op, `{"comment":"on it"}`)
	var a alert.Alert
	res.data(&a)
	if res.status != 200 || !a.Acked || a.AckedBy != "operator" || a.AckComment != "on it" {
		t.Errorf("ack: %d %s", res.status, res.raw)
	}
	res = e.do("POST", "/api/v1/alerts/"+east+"/resolve", op, "")
	res.data(&a)
	if res.status != 200 || a.State != "resolved" || a.ResolvedBy != "operator" {
		t.Errorf("resolve: %d %s", res.status, res.raw)
	}
	for _, act := range []string{"/ack", "/resolve"} {
		if res := e.do("POST", "/api/v1/alerts/"+east+act, op, ""); res.status != 409 || res.code() != CodeAlertNotActive {
			t.Errorf("%s of a resolved alert: %d %s", act, res.status, res.raw)
		}
	}
	for _, p := range []string{"/api/v1/alerts/999999", "/api/v1/alerts/x"} {
		if res := e.do("GET", p, viewer, ""); res.status != 404 || res.code() != CodeAlertNotFound {
			t.Errorf("GET %s: %d", p, res.status)
		}
	}
	res = e.do("GET", "/api/v1/alerts/"+east, viewer, "")
	res.data(&d)
	var kinds []string
	for _, ev := range d.Timeline {
		kinds = append(kinds, ev.Kind)
	}
	if !slices.Equal(kinds, []string{"firing", "ack", "manual_resolve"}) {
		t.Errorf("timeline %v", kinds)
	}
	// The API's clock is the test's, fixed; the database's moves on.
	period := "?from=" + time.Now().Add(-time.Hour).UTC().Format(time.RFC3339) + "&to=" + time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	res = e.do("GET", "/api/v1/alerts/stats"+period, viewer, "")
	var st alert.AlertCounts
	res.data(&st)
	if res.status != 200 || st.Active["firing"] != 1 || st.BySite["dc-west"] != 1 || st.Fired != 2 || st.Resolved != 1 || st.Transitions["ack"] != 1 {
		t.Errorf("stats: %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/alerts/stats?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z", viewer, ""); res.status != 422 {
		t.Errorf("stats with to before from: %d", res.status)
	}
}

// TestSilencesAPI: create, list, expire, and field errors.
func TestSilencesAPI(t *testing.T) {
	e := newEnv(t, nil)
	op, viewer := e.tokens["operator"], e.tokens["viewer"]
	end := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	res := e.do("POST", "/api/v1/silences", op, `{"matchers":[{"name":"site","op":"=","value":"dc-east"},{"name":"alertname","op":"=~","value":"cpu-.*"}],
		"ends_at":"`+end+`","comment":"maintenance"}`)
	var s alert.Silence
	res.data(&s)
	if res.status != 201 || s.State != "active" || s.CreatedBy != "operator" || len(s.Matchers) != 2 {
		t.Fatalf("create: %d %s", res.status, res.raw)
	}
	res = e.do("POST", "/api/v1/silences", op, `{"matchers":[{"name":"","op":"~","value":"("},{"name":"x","op":"=~","value":"("}],"ends_at":"2001-01-01T00:00:00Z"}`)
	if got := fieldsOf(res); res.status != 422 || !slices.Equal(got, []string{"ends_at:out_of_range", "matchers[0].name:required", "matchers[0].op:invalid_value",
		"matchers[1].value:invalid_format"}) {
		t.Errorf("bad silence: %d %v", res.status, got)
	}
	if res := e.do("GET", "/api/v1/silences?state=active", viewer, ""); res.status != 200 || !strings.Contains(string(res.raw), s.ID.String()) {
		t.Errorf("list: %d %s", res.status, res.raw)
	}
	res = e.do("DELETE", "/api/v1/silences/"+s.ID.String(), op, "")
	res.data(&s)
	if res.status != 200 || s.State != "expired" {
		t.Errorf("expire: %d %s", res.status, res.raw)
	}
	if res := e.do("DELETE", "/api/v1/silences/00000000-0000-0000-0000-000000000009", op, ""); res.status != 404 || res.code() != CodeSilenceNotFound {
		t.Errorf("expire unknown: %d", res.status)
	}
}

// recordingNotifier is the channel test's notifier: it records what it is
// asked to send and answers with res.
type recordingNotifier struct {
	mu   sync.Mutex
	sent []alert.Channel
	res  sdk.Result
}

func (n *recordingNotifier) Notify(_ context.Context, ch alert.Channel, _ sdk.Notification) (sdk.Result, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sent = append(n.sent, ch)
	return n.res, nil
}

// TestNotificationChannelsAPI: CRUD; secrets are write-only (never in an
// answer, never in the audit log, but sent to the notifier); the test
// route answers with the provider's outcome and records the attempt.
func TestNotificationChannelsAPI(t *testing.T) {
	e := newEnv(t, nil)
	op, viewer := e.tokens["operator"], e.tokens["viewer"]
	const secret = "hunter2-very-secret"
	res := e.do("POST", "/api/v1/notification-channels", op, `{"name":"ops-hook","type":"webhook","config":{"url":"https://hooks.example.com/x"},
		"secrets":{"secret":"`+secret+`"},"locale":"zh-CN"}`)
	var ch alert.Channel
	res.data(&ch)
	if res.status != 201 || ch.Type != "webhook" || !slices.Equal(ch.SecretKeys, []string{"secret"}) || ch.Locale != "zh-CN" || !ch.Enabled {
		t.Fatalf("create: %d %s", res.status, res.raw)
	}
	id := ch.ID.String()
	if res := e.do("GET", "/api/v1/notification-channels", viewer, ""); res.status != 403 {
		t.Errorf("viewer lists channels: %d", res.status)
	}
	for _, p := range []string{"/api/v1/notification-channels", "/api/v1/notification-channels/" + id} {
		if res := e.do("GET", p, op, ""); res.status != 200 || strings.Contains(string(res.raw), secret) {
			t.Errorf("GET %s: %d %s", p, res.status, res.raw)
		}
	}
	// An update without secrets keeps them.
	res = e.do("PUT", "/api/v1/notification-channels/"+id, op, `{"name":"ops-hook","type":"webhook","config":{"url":"https://hooks.example.com/y"}}`)
	if res.status != 200 || !strings.Contains(string(res.raw), `"secret_keys":["secret"]`) {
		t.Errorf("update: %d %s", res.status, res.raw)
	}
	if res := e.do("POST", "/api/v1/notification-channels", op, `{"name":"x","type":"Web Hook!","config":[1],"locale":"fr"}`); res.status != 422 ||
		!slices.Equal(fieldsOf(res), []string{"config:invalid_value", "locale:invalid_value", "type:invalid_format"}) {
		t.Errorf("bad channel: %d %v", res.status, fieldsOf(res))
	}
	if res := e.do("POST", "/api/v1/notification-channels", op, `{"name":"ops-hook","type":"webhook"}`); res.status != 409 || res.code() != CodeChannelNameTaken {
		t.Errorf("same name: %d %s", res.status, res.raw)
	}
	// No notifier wired: the test route says so.
	if res := e.do("POST", "/api/v1/notification-channels/"+id+"/test", op, ""); res.status != 503 || res.code() != CodeNotifierUnavailable {
		t.Errorf("test without a notifier: %d %s", res.status, res.raw)
	}
	n := &recordingNotifier{res: sdk.RetryResult(30*time.Second, "429", "slow down")}
	e.api.notifier = n
	res = e.do("POST", "/api/v1/notification-channels/"+id+"/test", op, "")
	var tr ChannelTestResult
	res.data(&tr)
	if res.status != 200 || tr.Outcome != "retry" || tr.Code != "429" || !strings.HasPrefix(tr.IdempotencyKey, "test-") {
		t.Errorf("test: %d %s", res.status, res.raw)
	}
	if len(n.sent) != 1 || !strings.Contains(string(n.sent[0].Config), secret) || !strings.Contains(string(n.sent[0].Config), "/y") {
		t.Errorf("the notifier got %+v; want the config with its secret merged in", n.sent)
	}
	var attempts int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM alert_notification_attempts t JOIN alert_notifications n ON n.id = t.notification_id
		WHERE n.kind = 'test' AND t.code = '429'`).Scan(&attempts); err != nil || attempts != 1 {
		t.Errorf("recorded test attempts: %d %v", attempts, err)
	}
	// A rule that names the channel keeps it from being deleted.
	res = e.do("POST", "/api/v1/alert-rules", op, `{"name":"r","entity_kind":"vm","severity":"info","conditions":[{"metric":"a.b","op":">","threshold":1}],"channels":["`+id+`"]}`)
	if res.status != 201 {
		t.Fatalf("rule: %d %s", res.status, res.raw)
	}
	if res := e.do("DELETE", "/api/v1/notification-channels/"+id, op, ""); res.status != 409 || res.code() != CodeChannelInUse {
		t.Errorf("delete a channel in use: %d %s", res.status, res.raw)
	}
	e.flushAudit()
	rows, err := e.pool.Query(context.Background(), `SELECT summary::text FROM audit_log WHERE action LIKE 'notification_channel.%'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		seen++
		if strings.Contains(s, secret) {
			t.Errorf("a secret reached the audit log: %s", s)
		}
	}
	if seen < 4 {
		t.Errorf("%d channel audit records", seen)
	}
}

// TestAlertRulePreview: a draft evaluated over stored samples lists the
// entities that would have fired, in the caller's data scope.
func TestAlertRulePreview(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	e.seedAlerts(f) // stores a 90% sample of vm-1 on each site
	body := `{"rule":{"entity_kind":"vm","severity":"info","conditions":[{"metric":"cpu.usage.average","op":">","threshold":80}]}}`
	res := e.do("POST", "/api/v1/alert-rules/preview", e.tokens["viewer"], body)
	var p alert.PreviewResult
	res.data(&p)
	if res.status != 200 || p.Fired != 2 || len(p.Items) != 2 || p.Items[0].EntityName != "web-01" || p.Items[0].Firings[0].EndsAt != nil {
		t.Errorf("preview: %d %s", res.status, res.raw)
	}
	res = e.do("POST", "/api/v1/alert-rules/preview", e.tokens["viewer"], `{"rule":{"entity_kind":"vm","severity":"info","conditions":[{"metric":"cpu.usage.average","op":">","threshold":95}]}}`)
	res.data(&p)
	if res.status != 200 || p.Fired != 0 || p.Entities != 2 {
		t.Errorf("preview above every value: %d %s", res.status, res.raw)
	}
	if res := e.do("POST", "/api/v1/alert-rules/preview", e.tokens["viewer"], `{"rule":{"entity_kind":"vm"},"from":"2020-01-01T00:00:00Z"}`); res.status != 422 {
		t.Errorf("bad preview: %d %s", res.status, res.raw)
	}
}

// TestAlertScope: a caller whose data scope is limited to dc-east writes
// rules and silences for dc-east only, and sees only dc-east's alerts.
func TestAlertScope(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	ids := e.seedAlerts(f)
	admin := e.tokens["admin"]
	res := e.do("POST", "/api/v1/users", admin, `{"username":"east-ops","password":"`+goodPassword+`","roles":["operator"]}`)
	var u struct {
		ID string `json:"id"`
	}
	res.data(&u)
	if res := e.do("PUT", "/api/v1/users/"+u.ID+"/scope", admin, `{"sites":["dc-east"],"vm_groups":[]}`); res.status != 200 {
		t.Fatalf("set scope: %d %s", res.status, res.raw)
	}
	tok := e.login("east-ops").AccessToken
	n := 0
	rule := func(sites string) string {
		n++
		return `{"name":"r` + fmt.Sprint(n) + `","entity_kind":"vm","severity":"info","conditions":[{"metric":"a.b","op":">","threshold":1}],"scope":{"sites":[` + sites + `]}}`
	}
	for _, c := range []struct {
		sites  string
		status int
	}{{``, 403}, {`"dc-west"`, 403}, {`"dc-east","dc-west"`, 403}, {`"dc-east"`, 201}} {
		if res := e.do("POST", "/api/v1/alert-rules", tok, rule(c.sites)); res.status != c.status {
			t.Errorf("rule for sites [%s]: %d %s, want %d", c.sites, res.status, res.raw, c.status)
		}
	}
	// A fleet-wide rule the admin made is not the scoped caller's to change.
	res = e.do("POST", "/api/v1/alert-rules", admin, rule(``))
	var r alert.Rule
	res.data(&r)
	for _, p := range []string{"/disable", "/enable"} {
		if res := e.do("POST", "/api/v1/alert-rules/"+r.ID.String()+p, tok, ""); res.status != 403 || res.code() != CodeEscalation {
			t.Errorf("%s of a fleet-wide rule: %d", p, res.status)
		}
	}
	if res := e.do("DELETE", "/api/v1/alert-rules/"+r.ID.String(), tok, ""); res.status != 403 {
		t.Errorf("delete a fleet-wide rule: %d", res.status)
	}
	end := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if res := e.do("POST", "/api/v1/silences", tok, `{"matchers":[{"name":"severity","op":"=","value":"info"}],"ends_at":"`+end+`"}`); res.status != 403 {
		t.Errorf("a silence of every site: %d", res.status)
	}
	if res := e.do("POST", "/api/v1/silences", tok, `{"matchers":[{"name":"site","op":"=","value":"dc-east"}],"ends_at":"`+end+`"}`); res.status != 201 {
		t.Errorf("a silence of dc-east: %d %s", res.status, res.raw)
	}
	// Silences are read within the scope: the admin's silence of every
	// site is neither listed nor expirable for the dc-east caller.
	res = e.do("POST", "/api/v1/silences", admin, `{"matchers":[{"name":"severity","op":"=","value":"info"}],"ends_at":"`+end+`"}`)
	var fleetSilence struct {
		ID string `json:"id"`
	}
	res.data(&fleetSilence)
	if res := e.do("GET", "/api/v1/silences", tok, ""); strings.Contains(string(res.raw), fleetSilence.ID) || !strings.Contains(string(res.raw), "dc-east") {
		t.Errorf("silences of the scoped caller: %s", res.raw)
	}
	if res := e.do("GET", "/api/v1/silences", admin, ""); !strings.Contains(string(res.raw), fleetSilence.ID) {
		t.Errorf("silences of the admin: %s", res.raw)
	}
	if res := e.do("DELETE", "/api/v1/silences/"+fleetSilence.ID, tok, ""); res.status != 404 || res.code() != CodeSilenceNotFound {
		t.Errorf("the scoped caller expires a silence of every site: %d %s", res.status, res.raw)
	}
	res = e.do("GET", "/api/v1/alerts?state=all", tok, "")
	if !strings.Contains(string(res.raw), `"total":1`) || strings.Contains(string(res.raw), "dc-west") {
		t.Errorf("alerts of the scoped caller: %s", res.raw)
	}
	if res := e.do("GET", fmt.Sprintf("/api/v1/alerts/%d", ids["dc-west"]), tok, ""); res.status != 404 {
		t.Errorf("dc-west's alert: %d", res.status)
	}
	res = e.do("GET", "/api/v1/alerts/stats", tok, "")
	if strings.Contains(string(res.raw), "dc-west") || !strings.Contains(string(res.raw), `"firing":1`) {
		t.Errorf("stats of the scoped caller: %s", res.raw)
	}
}

// TestMaintenanceWindowsAPI: create, get, list, replace and delete a
// maintenance window; field errors; a caller scoped to dc-east writes
// windows of dc-east only and may not change a fleet-wide one.
func TestMaintenanceWindowsAPI(t *testing.T) {
	e := newEnv(t, nil)
	op, viewer, admin := e.tokens["operator"], e.tokens["viewer"], e.tokens["admin"]
	start := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	body := `{"name":"patch tuesday","matchers":[{"name":"site","op":"=","value":"dc-east"}],"starts_at":"` + start + `","duration":"2h","every":"168h","comment":"weekly"}`
	res := e.do("POST", "/api/v1/maintenance-windows", op, body)
	var w alert.MaintenanceWindow
	res.data(&w)
	if res.status != 201 || !w.Active || w.CreatedBy != "operator" || time.Duration(w.Every) != 168*time.Hour {
		t.Fatalf("create: %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/maintenance-windows", viewer, ""); res.status != 200 || !strings.Contains(string(res.raw), w.ID.String()) {
		t.Errorf("list: %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/maintenance-windows/"+w.ID.String(), viewer, ""); res.status != 200 {
		t.Errorf("get: %d %s", res.status, res.raw)
	}
	if res := e.do("POST", "/api/v1/maintenance-windows", viewer, body); res.status != 403 {
		t.Errorf("a viewer creates a window: %d", res.status)
	}
	res = e.do("POST", "/api/v1/maintenance-windows", op, `{"name":"","matchers":[{"name":"site","op":"~"}],"duration":"-1h","every":"5m"}`)
	got := map[string]bool{}
	for _, f := range fieldsOf(res) {
		got[f[:strings.IndexByte(f, ':')]] = true
	}
	if res.status != 422 || !got["name"] || !got["matchers[0].op"] || !got["starts_at"] || !got["duration"] {
		t.Errorf("bad window: %d %s", res.status, res.raw)
	}
	upd := strings.Replace(body, `"2h"`, `"3h"`, 1)
	res = e.do("PUT", "/api/v1/maintenance-windows/"+w.ID.String(), op, upd)
	res.data(&w)
	if res.status != 200 || time.Duration(w.Duration) != 3*time.Hour {
		t.Errorf("replace: %d %s", res.status, res.raw)
	}

	// Scope: dc-east only.
	res = e.do("POST", "/api/v1/users", admin, `{"username":"east-ops","password":"`+goodPassword+`","roles":["operator"]}`)
	var u struct {
		ID string `json:"id"`
	}
	res.data(&u)
	if res := e.do("PUT", "/api/v1/users/"+u.ID+"/scope", admin, `{"sites":["dc-east"],"vm_groups":[]}`); res.status != 200 {
		t.Fatalf("set scope: %d %s", res.status, res.raw)
	}
	tok := e.login("east-ops").AccessToken
	fleet := strings.Replace(body, `{"name":"site","op":"=","value":"dc-east"}`, `{"name":"severity","op":"=","value":"info"}`, 1)
	if res := e.do("POST", "/api/v1/maintenance-windows", tok, fleet); res.status != 403 || res.code() != CodeEscalation {
		t.Errorf("a scoped caller's fleet-wide window: %d %s", res.status, res.raw)
	}
	res = e.do("POST", "/api/v1/maintenance-windows", admin, fleet)
	var fw alert.MaintenanceWindow
	res.data(&fw)
	if res := e.do("DELETE", "/api/v1/maintenance-windows/"+fw.ID.String(), tok, ""); res.status != 404 || res.code() != CodeWindowNotFound {
		t.Errorf("a scoped caller deletes a fleet-wide window: %d (want 404, as a missing one)", res.status)
	}
	// Reads are scoped too: the fleet-wide window is neither listed nor
	// found for the dc-east caller; its own is.
	if res := e.do("GET", "/api/v1/maintenance-windows", tok, ""); res.status != 200 || strings.Contains(string(res.raw), fw.ID.String()) ||
		!strings.Contains(string(res.raw), w.ID.String()) {
		t.Errorf("a scoped caller's list: %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/maintenance-windows/"+fw.ID.String(), tok, ""); res.status != 404 || res.code() != CodeWindowNotFound {
		t.Errorf("a scoped caller gets a fleet-wide window: %d", res.status)
	}
	if res := e.do("GET", "/api/v1/maintenance-windows/"+fw.ID.String(), admin, ""); res.status != 200 {
		t.Errorf("the admin gets the fleet-wide window: %d", res.status)
	}
	if res := e.do("PUT", "/api/v1/maintenance-windows/"+w.ID.String(), tok, fleet); res.status != 403 {
		t.Errorf("a scoped caller widens a window: %d", res.status)
	}
	if res := e.do("DELETE", "/api/v1/maintenance-windows/"+w.ID.String(), tok, ""); res.status != 200 {
		t.Errorf("a scoped caller deletes a dc-east window: %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/maintenance-windows/"+w.ID.String(), viewer, ""); res.status != 404 || res.code() != CodeWindowNotFound {
		t.Errorf("get a deleted window: %d", res.status)
	}
}

// FuzzMaintenanceWindowBody: whatever arrives as a maintenance window or
// notification channel body, decoding and validation answer a client
// error naming fields, never a panic or a 500.
func FuzzMaintenanceWindowBody(f *testing.F) {
	f.Add([]byte(`{"name":"patch","matchers":[{"name":"site","op":"=","value":"dc1"}],"starts_at":"2026-01-01T00:00:00Z","duration":"2h","every":"168h"}`))
	f.Add([]byte(`{"name":"","matchers":[{"name":"x","op":"=~","value":"("}],"duration":"-1h","every":"1s","ends_at":"2020-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"duration":5,"every":null,"matchers":{}}`))
	f.Add([]byte(`{"name":"robot","type":"dingtalk","config":{},"rate_per_minute":-1,"rate_per_second":1e9}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var w windowInput
		r := httptest.NewRequest(http.MethodPost, "/api/v1/maintenance-windows", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if err := decodeJSON(r, &w); err != nil {
			checkClientError(t, "window body", err)
		} else {
			win := w.window()
			checkClientError(t, "window", alertError(win.Validate(), CodeWindowNotFound))
		}
		var c channelInput
		r = httptest.NewRequest(http.MethodPost, "/api/v1/notification-channels", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if err := decodeJSON(r, &c); err != nil {
			checkClientError(t, "channel body", err)
		} else {
			in := c.input()
			checkClientError(t, "channel", alertError(in.Validate(), CodeChannelNotFound))
		}
	})
}

// TestAlertRuleGroupingAPI: a rule's group_by and group_wait are stored
// and shown; bad ones are field errors.
func TestAlertRuleGroupingAPI(t *testing.T) {
	e := newEnv(t, nil)
	op := e.tokens["operator"]
	res := e.do("POST", "/api/v1/alert-rules", op, `{"name":"grouped","entity_kind":"vm","severity":"warning",
		"conditions":[{"metric":"cpu.usage.average","op":">","threshold":90}],"group_by":["site","cluster"],"group_wait":"30s"}`)
	var rule alert.Rule
	res.data(&rule)
	if res.status != http.StatusCreated || !slices.Equal(rule.GroupBy, []string{"site", "cluster"}) || rule.GroupWait != alert.Duration(30*time.Second) {
		t.Fatalf("create: %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/alert-rules/"+rule.ID.String(), op, ""); !strings.Contains(string(res.raw), `"group_wait":"30s"`) {
		t.Errorf("get: %s", res.raw)
	}
	res = e.do("POST", "/api/v1/alert-rules", op, `{"name":"bad","entity_kind":"vm","severity":"warning",
		"conditions":[{"metric":"cpu.usage.average","op":">","threshold":90}],"group_by":["rack"],"group_wait":"1h"}`)
	if got := fieldsOf(res); res.status != 422 || !slices.Equal(got, []string{"group_by:invalid_value", "group_by[0]:invalid_value", "group_wait:out_of_range"}) {
		t.Errorf("bad grouping: %d %v", res.status, got)
	}
}
