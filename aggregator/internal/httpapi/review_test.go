package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

// Regression tests for the findings of the security review of the issue-8
// fixes (login log on a cancelled request, audit summary size, 413 audited,
// forced logout of a user who holds more).

func TestLoginSurvivesCancelledRequest(t *testing.T) {
	e := newEnv(t, nil)
	count := func() (n int) {
		_ = e.pool.QueryRow(context.Background(), `SELECT count(*) FROM login_log`).Scan(&n)
		return n
	}
	before := count()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client half-closed: the request's context is done
	req := httptest.NewRequest("POST", "/api/v1/auth/login", strings.NewReader(`{"username":"viewer","password":"`+goodPassword+`"}`)).WithContext(ctx)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.api.Handler().ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Errorf("login on a cancelled request = %d %s", rec.Code, rec.Body)
	}
	if got := count(); got != before+1 {
		t.Errorf("login log rows %d -> %d, want one more", before, got)
	}
}

func TestAuditSummaryIsCapped(t *testing.T) {
	e := newEnv(t, nil)
	huge := strings.Repeat("A", 500_000)
	if res := e.do("POST", "/api/v1/auth/login", "", `{"username":"`+huge+`","password":"x"}`); res.status != 422 {
		t.Fatalf("huge username = %d", res.status)
	}
	e.flushAudit()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT max(octet_length(summary::text)) FROM audit_log WHERE action = 'auth.login'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n > maxAuditSummary {
		t.Errorf("audit summary of %d bytes stored, cap %d", n, maxAuditSummary)
	}
}

func TestOversizedRequestIsAudited(t *testing.T) {
	e := newEnv(t, nil)
	body := `{"roles":["viewer"],"x":"` + strings.Repeat("y", 2<<20) + `"}`
	res := e.do("PUT", "/api/v1/users/"+e.users["viewer"]+"/roles", e.tokens["admin"], body)
	if res.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body = %d", res.status)
	}
	e.flushAudit()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'user.set_roles' AND status = 413`).Scan(&n); err != nil || n != 1 {
		t.Errorf("audit records of the 413: %d, %v", n, err)
	}
}

func TestForceLogoutNoEscalation(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.tokens["admin"]
	if res := e.do("POST", "/api/v1/roles", admin, `{"name":"session-admins","permissions":["`+auth.PermSessionAdmin+`"]}`); res.status != 201 {
		t.Fatalf("create role: %d %s", res.status, res.raw)
	}
	if res := e.do("POST", "/api/v1/users", admin, `{"username":"doorman","password":"`+goodPassword+`","roles":["session-admins"]}`); res.status != 201 {
		t.Fatalf("create user: %d %s", res.status, res.raw)
	}
	doorman := e.login("doorman").AccessToken
	res := e.do("GET", "/api/v1/sessions?page_size=500", admin, "")
	var page pageOf[auth.Session]
	res.data(&page)
	var adminSession, ownSession, viewerSession string
	for _, s := range page.Items {
		switch s.Username {
		case "admin":
			adminSession = s.ID.String()
		case "doorman":
			ownSession = s.ID.String()
		case "viewer":
			viewerSession = s.ID.String()
		}
	}
	if res := e.do("DELETE", "/api/v1/sessions/"+adminSession, doorman, ""); res.status != 403 || res.code() != CodeEscalation {
		t.Errorf("session admin logs out an administrator = %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/auth/me", admin, ""); res.status != 200 {
		t.Errorf("the administrator's session after the refusal = %d", res.status)
	}
	// A viewer holds vm:read, metric:read, alert:read, which the doorman
	// does not: also refused. Its own session it may end.
	if res := e.do("DELETE", "/api/v1/sessions/"+viewerSession, doorman, ""); res.status != 403 {
		t.Errorf("session admin logs out a viewer = %d %s", res.status, res.raw)
	}
	if res := e.do("DELETE", "/api/v1/sessions/"+viewerSession, admin, ""); res.status != 200 {
		t.Errorf("administrator logs out a viewer = %d %s", res.status, res.raw)
	}
	if res := e.do("DELETE", "/api/v1/sessions/"+ownSession, doorman, ""); res.status != 200 {
		t.Errorf("session admin ends its own session = %d %s", res.status, res.raw)
	}
}
