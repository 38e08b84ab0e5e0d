package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// enrollAgent registers an agent the way an agent's first connection does.
func (e *env) enrollAgent(site, name string) store.Agent {
	e.t.Helper()
	ctx := context.Background()
	if err := e.store.EnsureSite(ctx, site, ""); err != nil {
		e.t.Fatal(err)
	}
	secret, _, err := e.store.CreateEnrollmentToken(ctx, site, time.Hour, "test")
	if err != nil {
		e.t.Fatal(err)
	}
	a, err := e.store.Enroll(ctx, secret, name, "1.2.3", func(id, site string) (string, time.Time, error) {
		return "1f", time.Now().Add(time.Hour), nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// connectAgent records a hello and a heartbeat, as the ingest server does.
func (e *env) connectAgent(a store.Agent, hb *protocol.Heartbeat) {
	e.t.Helper()
	ctx := context.Background()
	if err := e.store.AgentConnected(ctx, a.ID, "1.2.4", "192.0.2.7:50000", 1, a.CertSerial); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.AgentHeartbeat(ctx, a.ID, hb); err != nil {
		e.t.Fatal(err)
	}
}

func agentNames(items []Agent) []string {
	var out []string
	for _, a := range items {
		out = append(out, a.Name)
	}
	return out
}

func TestAgentsListAndGet(t *testing.T) {
	e := newEnv(t, nil)
	op := e.tokens["operator"]
	alpha := e.enrollAgent("dc-east", "alpha")
	b := e.enrollAgent("dc-east", "esx-agent-B")
	beta := e.enrollAgent("dc-west", "Beta")
	e.enrollAgent("dc-west", "gamma")
	e.connectAgent(b, &protocol.Heartbeat{SpoolDepth: 7, SpoolBytes: 7000, OldestUnsentAge: 1500, CollectionLag: 20000, Dropped: 2})
	if err := e.store.RevokeAgent(store.AllSites(context.Background()), beta.ID); err != nil {
		t.Fatal(err)
	}

	// The default order is site, name; every field is there, snake_case.
	res := e.do("GET", "/api/v1/agents", op, "")
	if res.status != 200 {
		t.Fatalf("list = %d %s", res.status, res.raw)
	}
	var page pageOf[Agent]
	res.data(&page)
	if want := []string{"alpha", "esx-agent-B", "Beta", "gamma"}; !slices.Equal(agentNames(page.Items), want) || page.Total != 4 || page.Page != 1 || page.PageSize != 50 {
		t.Fatalf("list = %v total %d page %d/%d; want %v", agentNames(page.Items), page.Total, page.Page, page.PageSize, want)
	}
	var raw struct {
		Items []map[string]any `json:"items"`
	}
	res.data(&raw)
	wantKeys := []string{"id", "name", "site", "version", "state", "connected", "remote_addr", "enrolled_at", "first_seen", "last_seen",
		"spool_depth", "spool_bytes", "oldest_unsent_ms", "collection_lag_ms", "dropped_batches", "cert_not_after", "revoked_at", "plugins",
		"spool_max_bytes", "vcenters"}
	slices.Sort(wantKeys)
	for _, item := range raw.Items {
		var keys []string
		for k := range item {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, wantKeys) {
			t.Errorf("item keys = %v; want %v", keys, wantKeys)
		}
	}
	// Never connected: unknown times are null, not zero times.
	never := raw.Items[0]
	if never["first_seen"] != nil || never["last_seen"] != nil || never["revoked_at"] != nil || never["state"] != "disconnected" || never["connected"] != false {
		t.Errorf("never-connected agent = %v", never)
	}
	for _, f := range []string{"enrolled_at", "cert_not_after"} {
		s, _ := never[f].(string)
		if _, err := time.Parse(time.RFC3339, s); err != nil || !strings.HasSuffix(s, "Z") {
			t.Errorf("%s = %q; want RFC 3339 in UTC", f, s)
		}
	}
	conn := page.Items[1]
	if conn.ID != b.ID || conn.State != "connected" || !conn.Connected || conn.RemoteAddr != "192.0.2.7:50000" || conn.Version != "1.2.4" ||
		conn.FirstSeen == nil || conn.LastSeen == nil || conn.SpoolDepth != 7 || conn.SpoolBytes != 7000 || conn.OldestUnsentMS != 1500 ||
		conn.CollectionLagMS != 20000 || conn.DroppedBatches != 2 || conn.RevokedAt != nil {
		t.Errorf("connected agent = %+v", conn)
	}
	if s, _ := raw.Items[1]["last_seen"].(string); !strings.HasSuffix(s, "Z") {
		t.Errorf("last_seen = %q; want UTC", s)
	}
	if rev := page.Items[2]; rev.State != "revoked" || rev.RevokedAt == nil || rev.Connected {
		t.Errorf("revoked agent = %+v", rev)
	}

	// Filters, sorting and paging.
	for _, c := range []struct {
		query string
		want  []string
		total int
	}{
		{"site=dc-east", []string{"alpha", "esx-agent-B"}, 2},
		{"site=nowhere", nil, 0},
		{"state=connected", []string{"esx-agent-B"}, 1},
		{"state=disconnected", []string{"alpha", "gamma"}, 2},
		{"state=revoked", []string{"Beta"}, 1},
		{"q=BET", []string{"Beta"}, 1},
		{"q=agent", []string{"esx-agent-B"}, 1},
		{"site=dc-west&state=disconnected", []string{"gamma"}, 1},
		{"page_size=3&page=2", []string{"gamma"}, 4},
		{"page_size=2&page=1", []string{"alpha", "esx-agent-B"}, 4},
		{"page=9", nil, 4},
		{"sort=-name", []string{"gamma", "esx-agent-B", "alpha", "Beta"}, 4},
		{"sort=-site,name", []string{"Beta", "gamma", "alpha", "esx-agent-B"}, 4},
		{"sort=-spool_depth,name", []string{"esx-agent-B", "Beta", "alpha", "gamma"}, 4},
		{"sort=-last_seen,name", []string{"esx-agent-B", "Beta", "alpha", "gamma"}, 4},
	} {
		res := e.do("GET", "/api/v1/agents?"+c.query, op, "")
		var p pageOf[Agent]
		res.data(&p)
		if res.status != 200 || !slices.Equal(agentNames(p.Items), c.want) || p.Total != c.total || p.Items == nil {
			t.Errorf("?%s = %d %v total %d; want %v total %d", c.query, res.status, agentNames(p.Items), p.Total, c.want, c.total)
		}
	}
	for _, c := range []struct{ query, field, code string }{
		{"state=online", "state", FieldInvalidValue},
		{"sort=cert_serial", "sort", FieldInvalidValue},
		{"page_size=501", "page_size", FieldOutOfRange},
		{"page=0", "page", FieldOutOfRange},
		{"q=" + strings.Repeat("x", 201), "q", FieldTooLong},
	} {
		res := e.do("GET", "/api/v1/agents?"+c.query, op, "")
		var d errData
		res.data(&d)
		if res.status != 422 || res.code() != CodeValidation || len(d.Fields) != 1 || d.Fields[0].Field != c.field || d.Fields[0].Code != c.code {
			t.Errorf("?%s = %d %s; want 422 %s/%s", c.query, res.status, res.raw, c.field, c.code)
		}
	}

	// One agent.
	res = e.do("GET", "/api/v1/agents/"+alpha.ID, op, "")
	var one Agent
	res.data(&one)
	if res.status != 200 || one.ID != alpha.ID || one.Name != "alpha" || one.Site != "dc-east" || one.Version != "1.2.3" || one.State != "disconnected" {
		t.Errorf("get = %d %s", res.status, res.raw)
	}
	for _, id := range []string{uuid.NewString(), "not-a-uuid", "42", strings.ToUpper(uuid.NewString())} {
		for _, lang := range Languages {
			res := e.do("GET", "/api/v1/agents/"+id, op, "", "Accept-Language", lang)
			if res.status != 404 || res.code() != CodeAgentNotFound || res.env.Message != messages[CodeAgentNotFound][lang] {
				t.Errorf("get %s (%s) = %d %s; want 404 %s", id, lang, res.status, res.raw, CodeAgentNotFound)
			}
		}
	}
	m := messages[CodeAgentNotFound]
	if m[LangEN] == m[LangZH] || m[LangEN] == m[LangJA] || m[LangZH] == m[LangJA] {
		t.Errorf("%s is not translated: %v", CodeAgentNotFound, m)
	}
	// GET on the token route's path is the {id} route: no such agent.
	if res := e.do("GET", "/api/v1/agents/enrollment-tokens", op, ""); res.status != 404 || res.code() != CodeAgentNotFound {
		t.Errorf("GET /agents/enrollment-tokens = %d %s", res.status, res.raw)
	}
}

func TestEnrollmentTokens(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.tokens["admin"]
	ctx := context.Background()

	res := e.do("POST", "/api/v1/agents/enrollment-tokens", admin, `{"site":"dc-north"}`, "X-Request-ID", "req-enroll")
	var created struct {
		Token     string    `json:"token"`
		Site      string    `json:"site"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	res.data(&created)
	if res.status != 201 || created.Site != "dc-north" {
		t.Fatalf("create = %d %s", res.status, res.raw)
	}
	if d := time.Until(created.ExpiresAt); d < 23*time.Hour+59*time.Minute || d > 24*time.Hour+time.Minute {
		t.Errorf("expires_at = %s; want in 24h (the default)", created.ExpiresAt)
	}
	var rawCreated struct {
		ExpiresAt string `json:"expires_at"`
	}
	res.data(&rawCreated)
	if !strings.HasSuffix(rawCreated.ExpiresAt, "Z") {
		t.Errorf("expires_at = %q; want UTC", rawCreated.ExpiresAt)
	}
	secret, caHash, err := protocol.ParseEnrollToken(created.Token)
	if err != nil {
		t.Fatalf("ParseEnrollToken(%q): %v", created.Token, err)
	}
	if caHash != sha256.Sum256(e.agents.ca.Cert.Raw) {
		t.Error("the token does not pin this aggregator's CA")
	}
	var sites int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM sites WHERE name = 'dc-north'`).Scan(&sites); err != nil || sites != 1 {
		t.Errorf("site dc-north rows = %d, %v; want it created", sites, err)
	}
	var createdBy string
	if err := e.pool.QueryRow(ctx, `SELECT created_by FROM enrollment_tokens WHERE site = 'dc-north'`).Scan(&createdBy); err != nil || createdBy != "admin" {
		t.Errorf("created_by = %q, %v; want admin", createdBy, err)
	}
	// The token works, once.
	sign := func(id, site string) (string, time.Time, error) { return "1f", time.Now().Add(time.Hour), nil }
	ag, err := e.store.Enroll(ctx, secret, "north-1", "1.0.0", sign)
	if err != nil || ag.Site != "dc-north" {
		t.Fatalf("Enroll with the issued token = %+v, %v", ag, err)
	}
	if _, err := e.store.Enroll(ctx, secret, "north-2", "1.0.0", sign); err == nil {
		t.Error("the token enrolled a second agent")
	}
	var list pageOf[Agent]
	e.do("GET", "/api/v1/agents?site=dc-north", admin, "").data(&list)
	if len(list.Items) != 1 || list.Items[0].ID != ag.ID {
		t.Errorf("agents of dc-north = %+v", list.Items)
	}

	// A given ttl, and an existing site.
	res = e.do("POST", "/api/v1/agents/enrollment-tokens", admin, `{"site":"dc-north","ttl":"90m"}`)
	res.data(&created)
	if d := time.Until(created.ExpiresAt); res.status != 201 || d < 89*time.Minute || d > 91*time.Minute {
		t.Errorf("ttl 90m: %d, expires in %s", res.status, d)
	}
	second := created.Token

	// Bad input: 422 with field errors, nothing created.
	type fieldWant struct{ field, code string }
	for _, c := range []struct {
		body string
		want fieldWant
	}{
		{`{}`, fieldWant{"site", FieldRequired}},
		{`{"ttl":"1h"}`, fieldWant{"site", FieldRequired}},
		{`{"site":""}`, fieldWant{"site", FieldRequired}},
		{`{"site":"Bad Site"}`, fieldWant{"site", FieldInvalidFormat}},
		{`{"site":"-lead"}`, fieldWant{"site", FieldInvalidFormat}},
		{`{"site":"` + strings.Repeat("a", 64) + `"}`, fieldWant{"site", FieldInvalidFormat}},
		{`{"site":42}`, fieldWant{"site", FieldInvalidType}},
		{`{"site":"bad-ttl","ttl":"forever"}`, fieldWant{"ttl", FieldInvalidFormat}},
		{`{"site":"bad-ttl","ttl":""}`, fieldWant{"ttl", FieldInvalidFormat}},
		{`{"site":"bad-ttl","ttl":"30s"}`, fieldWant{"ttl", FieldOutOfRange}},
		{`{"site":"bad-ttl","ttl":"721h"}`, fieldWant{"ttl", FieldOutOfRange}},
		{`{"site":"bad-ttl","ttl":"-1h"}`, fieldWant{"ttl", FieldOutOfRange}},
		{`{"site":"bad-ttl","ttl":3600}`, fieldWant{"ttl", FieldInvalidType}},
		{`{"site":"bad-ttl","agent":"x"}`, fieldWant{"agent", FieldUnknown}},
	} {
		for _, lang := range Languages {
			res := e.do("POST", "/api/v1/agents/enrollment-tokens", admin, c.body, "Accept-Language", lang)
			var d errData
			res.data(&d)
			found := false
			for _, f := range d.Fields {
				if f.Field == c.want.field && f.Code == c.want.code && f.Message != "" && f.Message != f.Code {
					found = true
				}
			}
			if res.status != 422 || res.code() != CodeValidation || !found {
				t.Errorf("%s (%s) = %d %s; want 422 with %s/%s", c.body, lang, res.status, res.raw, c.want.field, c.want.code)
			}
		}
	}
	if res := e.do("POST", "/api/v1/agents/enrollment-tokens", admin, `{"site":`); res.status != 400 || res.code() != CodeInvalidJSON {
		t.Errorf("malformed JSON = %d %s", res.status, res.raw)
	}
	var n int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM sites WHERE name NOT IN ('dc-north')`).Scan(&n); err != nil || n != 0 {
		t.Errorf("refused requests created %d sites (%v)", n, err)
	}
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM enrollment_tokens`).Scan(&n); err != nil || n != 2 {
		t.Errorf("enrollment tokens = %d (%v); want 2", n, err)
	}

	// The audit trail records who issued a token for which site, until
	// when, and never the token.
	e.flushAudit()
	var recs cursorOf[audit.Record]
	e.do("GET", "/api/v1/audit-logs?action=agent.enrollment_token.create&result=success", e.tokens["auditor"], "").data(&recs)
	if len(recs.Items) != 2 {
		t.Fatalf("success records = %d; want 2", len(recs.Items))
	}
	var r audit.Record
	for _, rr := range recs.Items {
		if rr.RequestID == "req-enroll" {
			r = rr
		}
	}
	var summary map[string]any
	_ = json.Unmarshal(r.Summary, &summary)
	if r.ResourceType != "site" || r.ResourceID != "dc-north" || r.ActorName != "admin" || r.Status != 201 ||
		summary["site"] != "dc-north" || summary["expires_at"] == nil || summary["token"] != nil {
		t.Errorf("record = %+v summary %s", r, r.Summary)
	}
	if exp, _ := summary["expires_at"].(string); exp == "" || !strings.HasSuffix(exp, "Z") {
		t.Errorf("summary expires_at = %v", summary["expires_at"])
	}
	var failures cursorOf[audit.Record]
	e.do("GET", "/api/v1/audit-logs?action=agent.enrollment_token.create&result=failure", e.tokens["auditor"], "").data(&failures)
	if len(failures.Items) < 14*len(Languages) {
		t.Errorf("failure records = %d; want one per refused request", len(failures.Items))
	}
	secret2, _, _ := protocol.ParseEnrollToken(second)
	for _, s := range []string{created.Token, secret, second, secret2} {
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_log a WHERE strpos(row_to_json(a)::text, $1) > 0`, s).Scan(&n); err != nil || n != 0 {
			t.Errorf("the token is in %d audit records (%v)", n, err)
		}
		if strings.Contains(e.logs.String(), s) {
			t.Error("the token is in the log")
		}
	}
}

func TestAgentRevoke(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.tokens["admin"]
	a := e.enrollAgent("dc-east", "east-1")
	other := e.enrollAgent("dc-east", "east-2")
	e.connectAgent(a, &protocol.Heartbeat{SpoolDepth: 1})
	e.connectAgent(other, &protocol.Heartbeat{})

	res := e.do("DELETE", "/api/v1/agents/"+a.ID, admin, "", "X-Request-ID", "req-revoke")
	var got Agent
	res.data(&got)
	if res.status != 200 || got.ID != a.ID || got.State != "revoked" || got.Connected || got.RevokedAt == nil {
		t.Fatalf("revoke = %d %s", res.status, res.raw)
	}
	if d := e.agents.disconnects(); !slices.Equal(d, []string{a.ID}) {
		t.Errorf("Disconnect calls = %v; want [%s]", d, a.ID)
	}
	var one Agent
	e.do("GET", "/api/v1/agents/"+a.ID, admin, "").data(&one)
	if one.State != "revoked" || one.RevokedAt == nil || !one.RevokedAt.Equal(*got.RevokedAt) {
		t.Errorf("after revoke = %+v", one)
	}
	var o Agent
	e.do("GET", "/api/v1/agents/"+other.ID, admin, "").data(&o)
	if o.State != "connected" {
		t.Errorf("the other agent = %+v; want still connected", o)
	}
	// The revocation holds at the store: the next heartbeat reports it.
	if revoked, err := e.store.AgentHeartbeat(context.Background(), a.ID, &protocol.Heartbeat{}); err != nil || !revoked {
		t.Errorf("heartbeat after revoke = %v, %v; want revoked", revoked, err)
	}

	// Idempotent: revoking again answers 200, keeps the first time, and
	// still closes any connection.
	res = e.do("DELETE", "/api/v1/agents/"+a.ID, admin, "", "X-Request-ID", "req-revoke-again")
	var again Agent
	res.data(&again)
	if res.status != 200 || again.State != "revoked" || again.RevokedAt == nil || !again.RevokedAt.Equal(*got.RevokedAt) {
		t.Errorf("revoke again = %d %s", res.status, res.raw)
	}
	if d := e.agents.disconnects(); len(d) != 2 || d[1] != a.ID {
		t.Errorf("Disconnect calls = %v", d)
	}

	for _, id := range []string{uuid.NewString(), "not-a-uuid"} {
		if res := e.do("DELETE", "/api/v1/agents/"+id, admin, ""); res.status != 404 || res.code() != CodeAgentNotFound {
			t.Errorf("revoke %s = %d %s; want 404 %s", id, res.status, res.raw, CodeAgentNotFound)
		}
	}
	if d := e.agents.disconnects(); len(d) != 2 {
		t.Errorf("unknown agents were disconnected: %v", d)
	}

	e.flushAudit()
	var recs cursorOf[audit.Record]
	e.do("GET", "/api/v1/audit-logs?action=agent.revoke", e.tokens["auditor"], "").data(&recs)
	byReq := map[string]audit.Record{}
	failures := 0
	for _, r := range recs.Items {
		byReq[r.RequestID] = r
		if r.Result == audit.ResultFailure && r.Status == 404 {
			failures++
		}
	}
	for req, already := range map[string]bool{"req-revoke": false, "req-revoke-again": true} {
		r, ok := byReq[req]
		var summary map[string]any
		_ = json.Unmarshal(r.Summary, &summary)
		if !ok || r.ResourceType != "agent" || r.ResourceID != a.ID || r.Result != audit.ResultSuccess || r.ActorName != "admin" ||
			summary["name"] != "east-1" || summary["site"] != "dc-east" || summary["already_revoked"] != already {
			t.Errorf("%s record = %+v summary %s", req, r, r.Summary)
		}
	}
	if failures != 2 {
		t.Errorf("404 records = %d; want 2", failures)
	}
}

// TestAgentsPermissions spells out, for the agents routes, what the route
// matrix test checks for every route: system:read to look, system:write to
// change.
func TestAgentsPermissions(t *testing.T) {
	e := newEnv(t, nil)
	a := e.enrollAgent("dc-east", "east-1")
	calls := []struct{ method, path, body string }{
		{"GET", "/api/v1/agents", ""},
		{"GET", "/api/v1/agents/" + a.ID, ""},
		{"POST", "/api/v1/agents/enrollment-tokens", `{"site":"dc-perm"}`},
		{"DELETE", "/api/v1/agents/" + a.ID, ""},
	}
	allowed := map[string][]bool{
		"viewer":   {false, false, false, false},
		"auditor":  {false, false, false, false},
		"operator": {true, true, false, false},
		"admin":    {true, true, true, true},
	}
	for _, role := range []string{"viewer", "auditor", "operator", "admin"} {
		for i, c := range calls {
			res := e.do(c.method, c.path, e.tokens[role], c.body)
			switch {
			case allowed[role][i] && res.status >= 300:
				t.Errorf("%s %s as %s = %d %s; want allowed", c.method, c.path, role, res.status, res.raw)
			case !allowed[role][i] && (res.status != http.StatusForbidden || res.code() != CodeForbidden):
				t.Errorf("%s %s as %s = %d %s; want 403", c.method, c.path, role, res.status, res.raw)
			}
			if role == "operator" {
				// Refusals change nothing.
				var st Agent
				e.do("GET", "/api/v1/agents/"+a.ID, e.tokens["admin"], "").data(&st)
				if st.State == "revoked" || len(e.agents.disconnects()) != 0 {
					t.Fatalf("a refused revoke took effect: %+v", st)
				}
			}
		}
	}
	if res := e.do("GET", "/api/v1/agents", "", ""); res.status != 401 {
		t.Errorf("anonymous = %d", res.status)
	}
}

// TestNewRequiresAgents: an API whose agents routes could not work is not
// built.
func TestNewRequiresAgents(t *testing.T) {
	e := newEnv(t, nil)
	_, err := New(Defaults(), Deps{Pool: e.pool, Ready: e.store.Ready, KeyEncryptionKey: testKEK})
	if err == nil || !strings.Contains(err.Error(), "Agents") {
		t.Errorf("New without Deps.Agents = %v; want an error", err)
	}
}

// TestAgentsFarFutureTimes: a heartbeat whose times lie past the year 9999
// (an agent's clock, or hostile bytes) is shown with those times null;
// GET /agents and /agents/{id} answer 200, not 500.
func TestAgentsFarFutureTimes(t *testing.T) {
	e := newEnv(t, nil)
	a := e.enrollAgent("dc-east", "east-1")
	const past9999 = 253402300800000 // 10000-01-01T00:00:00Z
	e.connectAgent(a, &protocol.Heartbeat{
		VCenters: []protocol.VCenterStatus{{Source: "vc1", Reachable: true, Since: past9999, LastOK: math.MaxInt64}},
		Plugins:  []protocol.PluginStatus{{Name: "p", State: "running", LastErrorAt: past9999, LastCollect: math.MaxInt64}},
	})
	for _, path := range []string{"/api/v1/agents", "/api/v1/agents/" + a.ID} {
		res := e.do("GET", path, e.tokens["admin"], "")
		raw := string(res.raw)
		if res.status != 200 {
			t.Fatalf("GET %s: %d %s", path, res.status, raw)
		}
		for _, want := range []string{`"since":null`, `"last_ok":null`, `"last_error_at":null`, `"last_collect":null`} {
			if !strings.Contains(raw, want) {
				t.Errorf("GET %s lacks %s: %s", path, want, raw)
			}
		}
	}
	// The last instant RFC 3339 writes is still shown.
	e.connectAgent(a, &protocol.Heartbeat{VCenters: []protocol.VCenterStatus{{Source: "vc1", Since: 253402300799999}}})
	if res := e.do("GET", "/api/v1/agents/"+a.ID, e.tokens["admin"], ""); !strings.Contains(string(res.raw), `"since":"9999-12-31T23:59:59.999Z"`) {
		t.Errorf("the year 9999: %d %s", res.status, res.raw)
	}
}
