package httpapi

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
)

// auditRecords returns the operation-log records of a request id.
func (e *env) auditRecords(requestID string) []audit.Record {
	e.t.Helper()
	e.flushAudit()
	var page cursorOf[audit.Record]
	res := e.do("GET", "/api/v1/audit-logs?limit=500", e.tokens["auditor"], "")
	if res.status != 200 {
		e.t.Fatalf("audit-logs = %d %s", res.status, res.raw)
	}
	res.data(&page)
	var out []audit.Record
	for _, r := range page.Items {
		if r.RequestID == requestID {
			out = append(out, r)
		}
	}
	return out
}

// loginRecords returns the login-log records of a request id.
func (e *env) loginRecords(requestID string) []audit.LoginRecord {
	e.t.Helper()
	var page cursorOf[audit.LoginRecord]
	res := e.do("GET", "/api/v1/login-logs?limit=500", e.tokens["auditor"], "")
	if res.status != 200 {
		e.t.Fatalf("login-logs = %d %s", res.status, res.raw)
	}
	res.data(&page)
	var out []audit.LoginRecord
	for _, r := range page.Items {
		if r.RequestID == requestID {
			out = append(out, r)
		}
	}
	return out
}

// fieldErrors returns a response's field errors.
func (r *response) fieldErrors() []FieldError {
	var d errData
	if len(r.env.Data) > 0 {
		_ = json.Unmarshal(r.env.Data, &d)
	}
	return d.Fields
}

// TestHostileBytesKeepTheAuditTrail: whatever bytes a request carries (NUL
// and invalid UTF-8 in body fields, in headers, in path segments), it is
// refused with a 4xx or served, never a 500, and its audit and login-log
// records are written, the hostile bytes escaped; so are its neighbours'.
// The chain verifies afterwards.
func TestHostileBytesKeepTheAuditTrail(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.tokens["admin"]

	t.Run("NUL in the login username", func(t *testing.T) {
		for i, body := range []string{
			`{"username":"ad\u0000min","password":"` + goodPassword + `"}`,
			"{\"username\":\"ad\x00min\",\"password\":\"x\"}", // a raw NUL
		} {
			id := []string{"req-nul-login-escaped", "req-nul-login-raw"}[i]
			res := e.do("POST", "/api/v1/auth/login", "", body, "X-Request-ID", id)
			if res.status != 422 || res.code() != CodeValidation {
				t.Fatalf("login with NUL = %d %s; want 422", res.status, res.raw)
			}
			if f := res.fieldErrors(); len(f) != 1 || f[0].Field != "username" || f[0].Code != FieldInvalidText || f[0].Params["reason"] != "nul" {
				t.Errorf("field errors = %+v; want username/invalid_text (nul)", f)
			}
			logins := e.loginRecords(id)
			if len(logins) != 1 || logins[0].Username != `ad\x00min` || logins[0].Result != "failure" || logins[0].Reason != loginInvalidRequest {
				t.Errorf("login log = %+v; want one failure for ad\\x00min", logins)
			}
			recs := e.auditRecords(id)
			if len(recs) != 1 || recs[0].Action != "auth.login" || recs[0].ActorName != `ad\x00min` || recs[0].Status != 422 || recs[0].Result != audit.ResultFailure {
				t.Errorf("audit records = %+v", recs)
			}
		}
	})

	t.Run("User-Agent 0xff on login", func(t *testing.T) {
		res := e.do("POST", "/api/v1/auth/login", "", `{"username":"viewer","password":"`+goodPassword+`"}`,
			"X-Request-ID", "req-ua-login", "User-Agent", "curl/8\xff\xfe")
		if res.status != 200 {
			t.Fatalf("login with a 0xff user agent = %d %s; want 200", res.status, res.raw)
		}
		if l := e.loginRecords("req-ua-login"); len(l) != 1 || l[0].Result != "success" || l[0].UserAgent != `curl/8\xff\xfe` {
			t.Errorf("login log = %+v", l)
		}
		res = e.do("POST", "/api/v1/auth/login", "", `{"username":"viewer","password":"Wr0ng-Password"}`,
			"X-Request-ID", "req-ua-login-bad", "User-Agent", "\xff")
		if res.status != 401 {
			t.Errorf("failed login with a 0xff user agent = %d %s; want 401", res.status, res.raw)
		}
		if l := e.loginRecords("req-ua-login-bad"); len(l) != 1 || l[0].Reason != "bad_password" || l[0].UserAgent != `\xff` {
			t.Errorf("login log = %+v", l)
		}
		if r := e.auditRecords("req-ua-login-bad"); len(r) != 1 || r[0].UserAgent != `\xff` {
			t.Errorf("audit records = %+v", r)
		}
	})

	t.Run("hostile body fields are 422 naming the field", func(t *testing.T) {
		viewer := "/api/v1/users/" + e.users["viewer"]
		cases := []struct {
			name, method, path, body, field, reason string
		}{
			{"NUL in display name", "POST", "/api/v1/users", `{"username":"bob","password":"` + goodPassword + `","display_name":"B\u0000b"}`, "display_name", "nul"},
			{"invalid UTF-8 in display name", "POST", "/api/v1/users", "{\"username\":\"bob\",\"password\":\"" + goodPassword + "\",\"display_name\":\"B\xffb\"}", "display_name", "invalid_utf8"},
			{"lone surrogate in display name", "POST", "/api/v1/users", `{"username":"bob","password":"` + goodPassword + `","display_name":"B\ud800b"}`, "display_name", "lone_surrogate"},
			{"NUL in email", "POST", "/api/v1/users", `{"username":"bob","password":"` + goodPassword + `","email":"bob\u0000@example.com"}`, "email", "nul"},
			{"invalid UTF-8 in email", "PUT", viewer, "{\"username\":\"viewer\",\"email\":\"v\xc3@example.com\"}", "email", "invalid_utf8"},
			{"NUL in display name on update", "PUT", viewer, `{"username":"viewer","display_name":"\u0000"}`, "display_name", "nul"},
			{"NUL in role description", "POST", "/api/v1/roles", `{"name":"r1","description":"d\u0000"}`, "description", "nul"},
			{"invalid UTF-8 in role description", "POST", "/api/v1/roles", "{\"name\":\"r1\",\"description\":\"\xfe\"}", "description", "invalid_utf8"},
			{"NUL in API token name", "POST", "/api/v1/api-tokens", `{"name":"t\u0000"}`, "name", "nul"},
			{"invalid UTF-8 in API token name", "POST", "/api/v1/api-tokens", "{\"name\":\"t\xff\"}", "name", "invalid_utf8"},
			{"nested array element", "PUT", viewer + "/roles", `{"roles":["viewer","\u0000"]}`, "roles[1]", "nul"},
			{"member name", "POST", "/api/v1/roles", `{"name":"r1","desc\u0000":"x"}`, `desc\x00`, "nul"},
		}
		for _, c := range cases {
			for _, lang := range Languages {
				res := e.do(c.method, c.path, admin, c.body, "Accept-Language", lang)
				f := res.fieldErrors()
				if res.status != 422 || res.code() != CodeValidation || len(f) != 1 || f[0].Field != c.field || f[0].Code != FieldInvalidText ||
					f[0].Params["reason"] != c.reason || f[0].Message != fieldMessages[FieldInvalidText][lang] {
					t.Errorf("%s (%s) = %d %s; want 422 %s/%s (%s)", c.name, lang, res.status, res.raw, c.field, FieldInvalidText, c.reason)
				}
			}
		}
		res := e.do("GET", "/api/v1/users?q=bob", admin, "")
		var users pageOf[map[string]any]
		res.data(&users)
		if users.Total != 0 {
			t.Errorf("a refused body created a user: %s", res.raw)
		}
	})

	t.Run("hostile query values are 422", func(t *testing.T) {
		for q, reason := range map[string]string{"q=a%00b": "nul", "q=%ff%fe": "invalid_utf8"} {
			res := e.do("GET", "/api/v1/users?"+q, admin, "")
			if f := res.fieldErrors(); res.status != 422 || len(f) != 1 || f[0].Field != "q" || f[0].Code != FieldInvalidText || f[0].Params["reason"] != reason {
				t.Errorf("?%s = %d %s; want 422 q/invalid_text (%s)", q, res.status, res.raw, reason)
			}
		}
	})

	t.Run("admin update with a 0xff User-Agent is audited", func(t *testing.T) {
		res := e.do("PUT", "/api/v1/users/"+e.users["viewer"], admin, `{"username":"viewer","display_name":"Vera"}`,
			"X-Request-ID", "req-ua-put", "User-Agent", "Mozilla\xff\x00/5.0")
		if res.status != 200 {
			t.Fatalf("update = %d %s", res.status, res.raw)
		}
		recs := e.auditRecords("req-ua-put")
		if len(recs) != 1 || recs[0].Action != "user.update" || recs[0].UserAgent != `Mozilla\xff\x00/5.0` || recs[0].ActorName != "admin" || recs[0].Status != 200 {
			t.Errorf("audit records = %+v; want the update with the user agent escaped", recs)
		}
	})

	t.Run("an admin call between two hostile logins", func(t *testing.T) {
		ids := []string{"req-between-1", "req-between-admin", "req-between-2"}
		hostileLogin := func(id string) {
			res := e.do("POST", "/api/v1/auth/login", "", `{"username":"x\u0000y","password":"p"}`, "X-Request-ID", id, "User-Agent", "\xff\x00")
			if res.status >= 500 {
				t.Errorf("hostile login = %d %s", res.status, res.raw)
			}
		}
		hostileLogin(ids[0])
		if res := e.do("POST", "/api/v1/users/"+e.users["operator"]+"/lock", admin, "", "X-Request-ID", ids[1]); res.status != 200 {
			t.Errorf("lock = %d %s", res.status, res.raw)
		}
		hostileLogin(ids[2])
		for _, id := range ids {
			if recs := e.auditRecords(id); len(recs) != 1 {
				t.Errorf("audit records of %s = %+v; want 1", id, recs)
			}
		}
		for _, id := range []string{ids[0], ids[2]} {
			if l := e.loginRecords(id); len(l) != 1 || l[0].Username != `x\x00y` || l[0].UserAgent != `\xff\x00` {
				t.Errorf("login log of %s = %+v", id, l)
			}
		}
	})

	t.Run("hostile path segment on a mutating route", func(t *testing.T) {
		for i, path := range []string{"/api/v1/users/%FF%FE", "/api/v1/users/%00/lock", "/api/v1/api-tokens/%FF%FE"} {
			id := []string{"req-path-1", "req-path-2", "req-path-3"}[i]
			method := map[int]string{0: "PUT", 1: "POST", 2: "DELETE"}[i]
			body := map[int]string{0: `{"username":"viewer"}`}[i]
			res := e.do(method, path, admin, body, "X-Request-ID", id)
			if res.status < 400 || res.status >= 500 {
				t.Errorf("%s %s = %d %s; want a 4xx", method, path, res.status, res.raw)
			}
			recs := e.auditRecords(id)
			want := []string{`\xff\xfe`, `\x00`, `\xff\xfe`}[i]
			if len(recs) != 1 || recs[0].ResourceID != want || recs[0].Status != res.status || recs[0].Result != audit.ResultFailure {
				t.Errorf("audit records of %s %s = %+v; want one with resource %s", method, path, recs, want)
			}
		}
	})

	t.Run("nosniff on every response", func(t *testing.T) {
		for _, c := range []struct{ path, token string }{
			{"/api/v1/openapi.json", ""},
			{"/api/v1/audit-logs/export", e.tokens["auditor"]},
			{"/api/v1/login-logs/export", e.tokens["auditor"]},
			{"/healthz", ""},
			{"/api/v1/no-such-route", ""},
		} {
			res := e.do("GET", c.path, c.token, "")
			if res.status >= 500 || res.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s = %d, X-Content-Type-Options %q; want nosniff", c.path, res.status, res.header.Get("X-Content-Type-Options"))
			}
		}
		exp := e.do("GET", "/api/v1/audit-logs/export", e.tokens["auditor"], "")
		if !strings.Contains(string(exp.raw), `Mozilla\xff\x00/5.0`) {
			t.Errorf("the export lacks the escaped user agent")
		}
	})

	// The boundary escaped everything already: the writer had nothing to
	// escape and nothing failed.
	if s := e.api.audit.Stats(); s.Failed != 0 || s.Sanitized != 0 || s.Fallbacks != 0 {
		t.Errorf("audit writer stats = %+v; want nothing failed or left to escape", s)
	}
	if s := e.api.logs.LoginStats(); s.Failed != 0 {
		t.Errorf("login log stats = %+v; want nothing failed", s)
	}
	var v audit.VerifyResult
	e.do("GET", "/api/v1/audit-logs/verify", e.tokens["auditor"], "").data(&v)
	if !v.OK || v.Checked < 20 {
		t.Errorf("verify = %+v; want an intact chain", v)
	}
}
