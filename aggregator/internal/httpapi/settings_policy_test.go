package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestSettingsPolicyOnEveryReplica: the lockout policy, session lifetimes
// and backup defaults are validated with field errors, audited with their
// before/after difference, and a change made through replica A governs
// logins and sessions on replica B (another API on the same database,
// which had read the old policy) within policyTTL, without a restart.
func TestSettingsPolicyOnEveryReplica(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.tokens["admin"]
	cfgB := Defaults()
	cfgB.Auth.LoginRate, cfgB.Auth.LoginBurst = 1000, 1000
	b, err := New(cfgB, Deps{Pool: e.pool, Ready: e.store.Ready, KeyEncryptionKey: testKEK, Agents: e.agents, Inventory: e.store,
		History: e.store, Commander: e.cmds, System: e.store, Ingest: e.ingest}) // replica B
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	loginB := func(user, password string) int {
		req := httptest.NewRequest("POST", "/api/v1/auth/login", strings.NewReader(`{"username":"`+user+`","password":"`+password+`"}`))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		b.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	// B reads (and caches) the configuration's policy: 5 failures lock.
	if code := loginB("operator", goodPassword); code != http.StatusOK {
		t.Fatalf("login on B: %d", code)
	}

	var s Settings
	e.do("GET", "/api/v1/system/settings", admin, "").data(&s)
	if s.Lockout.Threshold != 5 || s.Lockout.Duration != "30m" || s.Sessions.RefreshTTL != "12h" || s.Sessions.MaxAge != "168h" ||
		s.Backup == nil || s.Sources["lockout"] != "config" || s.Sources["sessions"] != "config" || s.Sources["backup"] != "config" {
		t.Fatalf("defaults: %+v", s)
	}
	for body, field := range map[string]string{
		`{"lockout":{"threshold":2}}`:                             "lockout.threshold",
		`{"lockout":{"threshold":101}}`:                           "lockout.threshold",
		`{"lockout":{"duration":"5s"}}`:                           "lockout.duration",
		`{"lockout":{"duration":"soon"}}`:                         "lockout.duration",
		`{"lockout":{"duration":"48h"}}`:                          "lockout.duration",
		`{"sessions":{"refresh_ttl":"1m"}}`:                       "sessions.refresh_ttl",
		`{"sessions":{"max_age":"10000h"}}`:                       "sessions.max_age",
		`{"sessions":{"refresh_ttl":"24h","max_age":"2h"}}`:       "sessions.max_age",
		`{"backup":{"compression":10}}`:                           "backup.compression",
		`{"lockout":{"threshold":"three"}}`:                       "lockout.threshold",
		`{"lockout":{"threshold":3},"backup":{"compression":-1}}`: "backup.compression",
	} {
		res := e.do("PUT", "/api/v1/system/settings", admin, body)
		if res.status != 422 || !strings.Contains(string(res.raw), `"field":"`+field+`"`) {
			t.Errorf("%s: %d %s, want 422 on %s", body, res.status, res.raw, field)
		}
	}
	// Nothing was stored by the refused changes.
	e.do("GET", "/api/v1/system/settings", admin, "").data(&s)
	if s.Lockout.Threshold != 5 || s.Version != 0 {
		t.Fatalf("after refused changes: %+v", s)
	}

	res := e.do("PUT", "/api/v1/system/settings", admin,
		`{"lockout":{"threshold":3,"duration":"10m"},"sessions":{"refresh_ttl":"1h","max_age":"2h"},"backup":{"compression":6}}`)
	res.data(&s)
	if res.status != 200 || s.Lockout.Threshold != 3 || s.Lockout.Duration != "10m" || s.Sessions.RefreshTTL != "1h" ||
		s.Sessions.MaxAge != "2h" || s.Backup.Compression != 6 || s.Sources["lockout"] != "settings" ||
		s.Sources["sessions"] != "settings" || s.Sources["backup"] != "settings" || s.Sources["retention"] != "config" || s.UpdatedBy != "admin" {
		t.Fatalf("after the change: %d %s", res.status, res.raw)
	}

	// B: within policyTTL the new policy governs: three failures lock the
	// account for 10 minutes, so the right password is refused too.
	time.Sleep(policyTTL + 200*time.Millisecond)
	for range 3 {
		if code := loginB("viewer", "wrong-password-1"); code != http.StatusUnauthorized {
			t.Fatalf("bad password on B: %d", code)
		}
	}
	if code := loginB("viewer", goodPassword); code != http.StatusUnauthorized {
		t.Fatalf("the account is not locked on B after 3 failures (threshold 3): %d", code)
	}
	var lockedFor, refreshFor, sessionFor float64
	if err := e.pool.QueryRow(context.Background(), `SELECT extract(epoch FROM locked_until - now()) FROM users WHERE username = 'viewer'`).
		Scan(&lockedFor); err != nil {
		t.Fatal(err)
	}
	if lockedFor < 9*60 || lockedFor > 10*60+5 {
		t.Errorf("locked for %.0f s, want 10 min", lockedFor)
	}
	// Sessions opened on B last as set.
	if code := loginB("auditor", goodPassword); code != http.StatusOK {
		t.Fatalf("login on B: %d", code)
	}
	if err := e.pool.QueryRow(context.Background(), `
		SELECT extract(epoch FROM r.expires_at - r.created_at), extract(epoch FROM s.expires_at - s.created_at)
		FROM sessions s JOIN users u ON u.id = s.user_id JOIN refresh_tokens r ON r.session_id = s.id
		WHERE u.username = 'auditor' ORDER BY s.created_at DESC LIMIT 1`).Scan(&refreshFor, &sessionFor); err != nil {
		t.Fatal(err)
	}
	if refreshFor != 3600 || sessionFor != 7200 {
		t.Errorf("session on B: refresh token %.0f s, session %.0f s; want 3600 and 7200", refreshFor, sessionFor)
	}

	// Audited with the before/after difference.
	e.flushAudit()
	var summary string
	if err := e.pool.QueryRow(context.Background(), `SELECT summary FROM audit_log WHERE action = 'settings.update' AND status = 200 ORDER BY seq DESC LIMIT 1`).
		Scan(&summary); err != nil {
		t.Fatal(err)
	}
	var diff struct {
		Changes map[string]struct {
			Before, After map[string]any
		} `json:"changes"`
	}
	if err := json.Unmarshal([]byte(summary), &diff); err != nil {
		t.Fatal(err)
	}
	if c := diff.Changes["lockout"]; c.Before["threshold"] != float64(5) || c.After["threshold"] != float64(3) || c.After["duration"] != "10m" {
		t.Errorf("audited lockout diff: %s", summary)
	}
	if c := diff.Changes["sessions"]; c.Before["max_age"] != "168h" || c.After["max_age"] != "2h" {
		t.Errorf("audited sessions diff: %s", summary)
	}
	if c := diff.Changes["backup"]; c.After["compression"] != float64(6) {
		t.Errorf("audited backup diff: %s", summary)
	}
	if _, ok := diff.Changes["retention"]; ok {
		t.Errorf("retention unchanged but in the diff: %s", summary)
	}
}

// TestSettingsPolicyNeedsUserWrite: the lockout policy and session
// lifetimes act on every account, so system:write alone may change
// retention but not them (it could lock administrators out).
func TestSettingsPolicyNeedsUserWrite(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.tokens["admin"]
	if res := e.do("POST", "/api/v1/roles", admin, `{"name":"sysops","permissions":["system:read","system:write"]}`); res.status != 201 {
		t.Fatalf("create role: %d %s", res.status, res.raw)
	}
	if res := e.do("POST", "/api/v1/users", admin, `{"username":"sysop","password":"`+goodPassword+`","roles":["sysops"]}`); res.status != 201 {
		t.Fatalf("create user: %d %s", res.status, res.raw)
	}
	sysop := e.login("sysop").AccessToken
	for _, body := range []string{`{"lockout":{"threshold":3,"duration":"24h"}}`, `{"sessions":{"refresh_ttl":"5m"}}`} {
		res := e.do("PUT", "/api/v1/system/settings", sysop, body)
		if res.status != 403 || res.code() != CodeForbidden || !strings.Contains(string(res.raw), "user:write") {
			t.Errorf("%s by system:write only: %d %s", body, res.status, res.raw)
		}
	}
	if res := e.do("PUT", "/api/v1/system/settings", sysop, `{"retention":{"raw":"240h"}}`); res.status != 200 {
		t.Errorf("retention by system:write: %d %s", res.status, res.raw)
	}
	if res := e.do("PUT", "/api/v1/system/settings", admin, `{"lockout":{"threshold":4}}`); res.status != 200 {
		t.Errorf("lockout by an administrator: %d %s", res.status, res.raw)
	}
}
