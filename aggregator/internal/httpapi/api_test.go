package httpapi

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

func TestBadInputIsA4xxWithLocalizedFieldErrors(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BodyLimit = 2048 })
	admin := e.tokens["admin"]
	type fieldWant struct{ field, code string }
	cases := []struct {
		name, method, path, body, ctype string
		status                          int
		code                            string
		fields                          []fieldWant
	}{
		{"malformed JSON", "POST", "/api/v1/users", `{"username": "bob",`, "", 400, CodeInvalidJSON, nil},
		{"not JSON at all", "POST", "/api/v1/users", `username=bob`, "", 400, CodeInvalidJSON, nil},
		{"empty body", "POST", "/api/v1/users", ` `, "", 400, CodeInvalidJSON, nil},
		{"trailing data", "POST", "/api/v1/roles", `{"name":"a"} {"name":"b"}`, "", 400, CodeInvalidJSON, nil},
		{"wrong type", "POST", "/api/v1/users", `{"username": 42, "password": "x"}`, "", 422, CodeValidation, []fieldWant{{"username", FieldInvalidType}}},
		{"wrong element type", "PUT", "/api/v1/users/" + e.users["viewer"] + "/roles", `{"roles": [1]}`, "", 422, CodeValidation, []fieldWant{{"roles", FieldInvalidType}}},
		{"missing fields", "POST", "/api/v1/users", `{}`, "", 422, CodeValidation, []fieldWant{{"username", FieldRequired}, {"password", FieldRequired}}},
		{"unknown field", "POST", "/api/v1/users", `{"username":"bob","password":"x","is_admin":true}`, "", 422, CodeValidation, []fieldWant{{"is_admin", FieldUnknown}}},
		{"bad format", "POST", "/api/v1/users", `{"username":"b o b","email":"nope","password":"` + goodPassword + `"}`, "", 422, CodeValidation,
			[]fieldWant{{"username", FieldInvalidFormat}, {"email", FieldInvalidFormat}}},
		{"weak password", "POST", "/api/v1/users", `{"username":"bob","password":"short"}`, "", 422, CodeValidation,
			[]fieldWant{{"password", auth.PolicyTooShort}, {"password", auth.PolicyCharClasses}}},
		{"unknown role", "POST", "/api/v1/users", `{"username":"bob","password":"` + goodPassword + `","roles":["wizard"]}`, "", 422, CodeValidation, []fieldWant{{"roles", FieldUnknownRole}}},
		{"unknown permission", "POST", "/api/v1/roles", `{"name":"x","permissions":["vm:fly"]}`, "", 422, CodeValidation, []fieldWant{{"permissions[0]", FieldUnknownPermission}}},
		{"oversized body", "POST", "/api/v1/users", `{"username":"` + strings.Repeat("a", 4096) + `"}`, "", 413, CodeTooLarge, nil},
		{"wrong content type", "POST", "/api/v1/users", `{}`, "text/plain", 415, CodeUnsupportedMedia, nil},
		{"bad query type", "GET", "/api/v1/users?page=abc", ``, "", 422, CodeValidation, []fieldWant{{"page", FieldInvalidType}}},
		{"page size too big", "GET", "/api/v1/users?page_size=501", ``, "", 422, CodeValidation, []fieldWant{{"page_size", FieldOutOfRange}}},
		{"bad sort", "GET", "/api/v1/users?sort=password", ``, "", 422, CodeValidation, []fieldWant{{"sort", FieldInvalidValue}}},
		{"bad time", "GET", "/api/v1/audit-logs?from=yesterday", ``, "", 422, CodeValidation, []fieldWant{{"from", FieldInvalidFormat}}},
		{"bad cursor", "GET", "/api/v1/login-logs?cursor=-1", ``, "", 422, CodeValidation, []fieldWant{{"cursor", FieldInvalidFormat}}},
		{"malformed id", "GET", "/api/v1/users/not-a-uuid", ``, "", 404, CodeUserNotFound, nil},
		{"missing check param", "GET", "/api/v1/auth/check", ``, "", 422, CodeValidation, []fieldWant{{"permission", FieldRequired}}},
	}
	seen := map[string]map[string]string{} // code → lang → message
	for _, c := range cases {
		for _, lang := range []string{LangEN, LangZH, LangJA} {
			t.Run(c.name+" "+lang, func(t *testing.T) {
				headers := []string{"Accept-Language", lang}
				if c.ctype != "" {
					headers = append(headers, "Content-Type", c.ctype)
				}
				res := e.do(c.method, c.path, admin, c.body, headers...)
				if res.status != c.status || res.code() != c.code {
					t.Fatalf("= %d %s; want %d %s", res.status, res.raw, c.status, c.code)
				}
				if res.header.Get("Content-Language") != lang {
					t.Errorf("Content-Language = %q", res.header.Get("Content-Language"))
				}
				if res.env.Message != messages[c.code][lang] {
					t.Errorf("message = %q; want %q", res.env.Message, messages[c.code][lang])
				}
				var d errData
				res.data(&d)
				if d.RequestID == "" {
					t.Error("no request_id in error data")
				}
				for _, w := range c.fields {
					found := false
					for _, f := range d.Fields {
						if f.Field == w.field && f.Code == w.code {
							found = true
							if f.Message == "" || f.Message == f.Code {
								t.Errorf("field %s: no localized message", f.Field)
							}
							if seen[f.Code] == nil {
								seen[f.Code] = map[string]string{}
							}
							seen[f.Code][lang] = f.Message
						}
					}
					if !found {
						t.Errorf("no field error %s/%s in %s", w.field, w.code, res.raw)
					}
				}
			})
		}
	}
	for code, byLang := range seen {
		if byLang[LangEN] == byLang[LangZH] || byLang[LangEN] == byLang[LangJA] || byLang[LangZH] == byLang[LangJA] {
			t.Errorf("field code %s is not translated: %v", code, byLang)
		}
	}
	// Nothing above created a user.
	var n int
	_ = e.pool.QueryRow(context.Background(), `SELECT count(*) FROM users WHERE username = 'bob'`).Scan(&n)
	if n != 0 {
		t.Errorf("a refused request created a user")
	}
}

func TestNegotiateLang(t *testing.T) {
	for header, want := range map[string]string{
		"":                         LangEN,
		"zh-CN,zh;q=0.9,en;q=0.8":  LangZH,
		"ja":                       LangJA,
		"fr-FR, ja-JP;q=0.5":       LangJA,
		"en-US;q=0.4, zh-TW;q=0.6": LangZH,
		"de":                       LangEN,
		"ja;q=0, en":               LangEN,
	} {
		if got := negotiateLang(header); got != want {
			t.Errorf("negotiateLang(%q) = %s; want %s", header, got, want)
		}
	}
	for code := range messages {
		for _, l := range Languages {
			if messages[code][l] == "" {
				t.Errorf("message %s has no %s translation", code, l)
			}
		}
	}
	for code := range fieldMessages {
		for _, l := range Languages {
			if fieldMessages[code][l] == "" {
				t.Errorf("field message %s has no %s translation", code, l)
			}
		}
	}
}

func TestLoginSessionLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	// Unknown user and wrong password look the same.
	r1 := e.do("POST", "/api/v1/auth/login", "", `{"username":"ghost","password":"whatever-1A"}`)
	r2 := e.do("POST", "/api/v1/auth/login", "", `{"username":"viewer","password":"whatever-1A"}`)
	if r1.status != 401 || r2.status != 401 || r1.code() != CodeInvalidCredentials || r1.env.Message != r2.env.Message {
		t.Errorf("unknown user %d %s vs wrong password %d %s", r1.status, r1.raw, r2.status, r2.raw)
	}
	tok := e.login("viewer@example.com")
	me := e.do("GET", "/api/v1/auth/me", tok.AccessToken, "")
	var m meResponse
	me.data(&m)
	if me.status != 200 || m.Username != "viewer" || len(m.Roles) != 1 || m.Roles[0] != "viewer" || !m.Scope.Unrestricted || m.SessionID != tok.SessionID.String() {
		t.Errorf("me = %d %s", me.status, me.raw)
	}
	chk := e.do("GET", "/api/v1/auth/check?permission=vm:write", tok.AccessToken, "")
	if !strings.Contains(string(chk.raw), `"allowed":false`) {
		t.Errorf("check vm:write as viewer = %s", chk.raw)
	}
	// Refresh rotates; reuse ends the family.
	ref := e.do("POST", "/api/v1/auth/refresh", "", `{"refresh_token":"`+tok.RefreshToken+`"}`)
	var tok2 auth.Tokens
	ref.data(&tok2)
	if ref.status != 200 || tok2.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh = %d %s", ref.status, ref.raw)
	}
	reuse := e.do("POST", "/api/v1/auth/refresh", "", `{"refresh_token":"`+tok.RefreshToken+`"}`)
	if reuse.status != 401 || reuse.code() != CodeRefreshReused {
		t.Errorf("refresh reuse = %d %s", reuse.status, reuse.raw)
	}
	if res := e.do("GET", "/api/v1/auth/me", tok2.AccessToken, ""); res.status != 401 {
		t.Errorf("access token of a revoked family = %d", res.status)
	}
	// Logout ends the session at once.
	tok3 := e.login("viewer")
	if res := e.do("POST", "/api/v1/auth/logout", tok3.AccessToken, ""); res.status != 200 {
		t.Fatalf("logout = %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/auth/me", tok3.AccessToken, ""); res.status != 401 || res.code() != CodeUnauthenticated {
		t.Errorf("after logout = %d %s", res.status, res.raw)
	}
	// Password change through the API.
	tok4 := e.login("viewer")
	res := e.do("PUT", "/api/v1/auth/password", tok4.AccessToken, `{"current_password":"nope","new_password":"An0ther-Good-One"}`)
	if res.status != 422 || res.code() != CodeWrongPassword {
		t.Errorf("wrong current password = %d %s", res.status, res.raw)
	}
	res = e.do("PUT", "/api/v1/auth/password", tok4.AccessToken, `{"current_password":"`+goodPassword+`","new_password":"weak"}`)
	var d errData
	res.data(&d)
	if res.status != 422 || len(d.Fields) == 0 || d.Fields[0].Field != "new_password" {
		t.Errorf("weak new password = %d %s", res.status, res.raw)
	}
	if res := e.do("PUT", "/api/v1/auth/password", tok4.AccessToken, `{"current_password":"`+goodPassword+`","new_password":"An0ther-Good-One"}`); res.status != 200 {
		t.Errorf("password change = %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/auth/me", e.tokens["viewer"], ""); res.status != 401 {
		t.Errorf("other session after password change = %d; want 401", res.status)
	}
	// The login log saw all of it.
	var logs cursorOf[audit.LoginRecord]
	e.do("GET", "/api/v1/login-logs?user=viewer&result=failure", e.tokens["auditor"], "").data(&logs)
	if len(logs.Items) != 1 || logs.Items[0].Reason != "bad_password" || logs.Items[0].IP != "192.0.2.1" {
		t.Errorf("viewer failures in the login log = %+v", logs.Items)
	}
	logs = cursorOf[audit.LoginRecord]{}
	e.do("GET", "/api/v1/login-logs?user=ghost", e.tokens["auditor"], "").data(&logs)
	if len(logs.Items) != 1 || logs.Items[0].Reason != "unknown_user" || logs.Items[0].UserID != "" {
		t.Errorf("ghost in the login log = %+v", logs.Items)
	}
}

func TestLockoutAndAdminUnlock(t *testing.T) {
	e := newEnv(t, nil)
	for range 5 {
		e.do("POST", "/api/v1/auth/login", "", `{"username":"operator","password":"Wrong-Passw0rd"}`)
	}
	res := e.do("POST", "/api/v1/auth/login", "", `{"username":"operator","password":"`+goodPassword+`"}`)
	if res.status != 401 || res.code() != CodeInvalidCredentials {
		t.Fatalf("locked login = %d %s", res.status, res.raw)
	}
	var u auth.User
	e.do("GET", "/api/v1/users/"+e.users["operator"], e.tokens["admin"], "").data(&u)
	if u.LockedUntil == nil || u.FailedLogins != 5 {
		t.Errorf("user after lockout = %+v", u)
	}
	if res := e.do("POST", "/api/v1/users/"+e.users["operator"]+"/unlock", e.tokens["admin"], ""); res.status != 200 {
		t.Fatalf("unlock = %d %s", res.status, res.raw)
	}
	e.login("operator")
	// Locked out again, the window passes on the (injected) clock.
	for range 5 {
		e.do("POST", "/api/v1/auth/login", "", `{"username":"operator","password":"Wrong-Passw0rd"}`)
	}
	e.clock.Advance(29 * time.Minute)
	if res := e.do("POST", "/api/v1/auth/login", "", `{"username":"operator","password":"`+goodPassword+`"}`); res.status != 401 {
		t.Fatalf("login 29 minutes into the lockout = %d", res.status)
	}
	e.clock.Advance(2 * time.Minute)
	tok := e.login("operator")
	// An administrator's lock ends the user's sessions at once.
	admin := e.login("admin").AccessToken // the first admin token expired with the clock
	if res := e.do("GET", "/api/v1/auth/me", e.tokens["admin"], ""); res.status != 401 {
		t.Errorf("access token 31 minutes old = %d; want 401", res.status)
	}
	if res := e.do("POST", "/api/v1/users/"+e.users["operator"]+"/lock", admin, ""); res.status != 200 {
		t.Fatalf("lock = %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/auth/me", tok.AccessToken, ""); res.status != 401 {
		t.Errorf("locked user's session = %d; want 401", res.status)
	}
	if res := e.do("POST", "/api/v1/users/"+e.users["admin"]+"/lock", admin, ""); res.status != 409 || res.code() != CodeSelfOperation {
		t.Errorf("locking yourself = %d %s", res.status, res.raw)
	}
}

func TestLoginRateLimitHTTP(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Auth.LoginRate, c.Auth.LoginBurst = 0.001, 6 })
	// newEnv used 4 logins from 192.0.2.1; 2 remain in the burst.
	for range 2 {
		if res := e.do("POST", "/api/v1/auth/login", "", `{"username":"x","password":"y"}`); res.status != 401 {
			t.Fatalf("within burst = %d", res.status)
		}
	}
	res := e.do("POST", "/api/v1/auth/login", "", `{"username":"x","password":"y"}`, "Accept-Language", "ja-JP")
	if res.status != 429 || res.code() != CodeRateLimited || res.header.Get("Retry-After") == "" || res.env.Message != messages[CodeRateLimited][LangJA] {
		t.Errorf("over the limit = %d %v %s", res.status, res.header, res.raw)
	}
	// Another client (through a trusted proxy) is not limited.
	req := httptest.NewRequest("POST", "/api/v1/auth/login", strings.NewReader(`{"username":"x","password":"y"}`))
	req.RemoteAddr = "10.1.2.3:5555"
	req.Header.Set("X-Forwarded-For", "203.0.113.50")
	rec := httptest.NewRecorder()
	e.api.Handler().ServeHTTP(rec, req)
	if rec.Code != 401 {
		t.Errorf("other client = %d; want 401", rec.Code)
	}
}

func TestForcedLogout(t *testing.T) {
	e := newEnv(t, nil)
	var list pageOf[auth.Session]
	res := e.do("GET", "/api/v1/sessions?user=viewer", e.tokens["admin"], "")
	res.data(&list)
	if res.status != 200 || list.Total != 1 || list.Items[0].Username != "viewer" || list.Items[0].IP != "192.0.2.1" {
		t.Fatalf("sessions = %d %s", res.status, res.raw)
	}
	if res := e.do("DELETE", "/api/v1/sessions/"+list.Items[0].ID.String(), e.tokens["admin"], ""); res.status != 200 {
		t.Fatalf("force logout = %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/auth/me", e.tokens["viewer"], ""); res.status != 401 {
		t.Errorf("forced-out session = %d; want 401", res.status)
	}
	if res := e.do("DELETE", "/api/v1/sessions/"+list.Items[0].ID.String(), e.tokens["admin"], ""); res.status != 404 || res.code() != CodeSessionNotFound {
		t.Errorf("second force logout = %d %s", res.status, res.raw)
	}
}

func TestUsersAndRolesCRUD(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.tokens["admin"]
	res := e.do("POST", "/api/v1/roles", admin, `{"name":"vm-admins","description":"VM people","parents":["viewer"],"permissions":["vm:write"]}`)
	var role auth.Role
	res.data(&role)
	if res.status != 201 || !strings.Contains(strings.Join(role.Effective, ","), "vm:read,vm:write") {
		t.Fatalf("create role = %d %s", res.status, res.raw)
	}
	res = e.do("POST", "/api/v1/users", admin, `{"username":"carol","email":"carol@example.com","display_name":"Carol","password":"`+goodPassword+`","roles":["vm-admins"]}`)
	var carol auth.User
	res.data(&carol)
	if res.status != 201 || carol.Username != "carol" || len(carol.Roles) != 1 {
		t.Fatalf("create user = %d %s", res.status, res.raw)
	}
	if res := e.do("POST", "/api/v1/users", admin, `{"username":"CAROL","password":"`+goodPassword+`"}`); res.status != 409 || res.code() != CodeConflict {
		t.Errorf("duplicate user = %d %s", res.status, res.raw)
	}
	var perms struct{ Permissions []string }
	e.do("GET", "/api/v1/users/"+carol.ID.String()+"/permissions", admin, "").data(&perms)
	if strings.Join(perms.Permissions, ",") != "alert:read,metric:read,vm:read,vm:write" {
		t.Errorf("carol's permissions = %v", perms.Permissions)
	}
	if res := e.do("PUT", "/api/v1/users/"+carol.ID.String()+"/scope", admin, `{"sites":["lab","dc1"],"vm_groups":[]}`); res.status != 200 {
		t.Fatalf("set scope = %d %s", res.status, res.raw)
	}
	tok := e.login("carol")
	var me meResponse
	e.do("GET", "/api/v1/auth/me", tok.AccessToken, "").data(&me)
	if strings.Join(me.Scope.Sites, ",") != "dc1,lab" || me.Scope.Unrestricted {
		t.Errorf("carol's scope = %+v", me.Scope)
	}
	var list pageOf[auth.User]
	e.do("GET", "/api/v1/users?q=car&sort=-created_at&page_size=10", admin, "").data(&list)
	if list.Total != 1 || list.Items[0].ID != carol.ID {
		t.Errorf("search = %+v", list)
	}
	e.do("GET", "/api/v1/users?role=auditor", admin, "").data(&list)
	if list.Total != 1 || list.Items[0].Username != "auditor" {
		t.Errorf("filter by role = %+v", list)
	}
	if res := e.do("PUT", "/api/v1/roles/"+role.ID.String()+"/permissions", admin, `{"permissions":[]}`); res.status != 200 {
		t.Fatalf("set role permissions = %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/auth/check?permission=vm:write", tok.AccessToken, ""); !strings.Contains(string(res.raw), `"allowed":false`) {
		t.Errorf("role change not applied at once: %s", res.raw)
	}
	var reset struct {
		Generated bool
		Password  string
	}
	res = e.do("POST", "/api/v1/users/"+carol.ID.String()+"/reset-password", admin, "")
	res.data(&reset)
	if res.status != 200 || !reset.Generated || auth.CheckPassword(reset.Password, "carol", "") != nil {
		t.Fatalf("reset password = %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/auth/me", tok.AccessToken, ""); res.status != 401 {
		t.Errorf("session after a password reset = %d; want 401", res.status)
	}
	var builtinID string
	var roles struct{ Items []auth.Role }
	e.do("GET", "/api/v1/roles", admin, "").data(&roles)
	for _, r := range roles.Items {
		if r.Name == "admin" {
			builtinID = r.ID.String()
		}
	}
	if res := e.do("DELETE", "/api/v1/roles/"+builtinID, admin, ""); res.status != 409 || res.code() != CodeRoleBuiltin {
		t.Errorf("delete builtin = %d %s", res.status, res.raw)
	}
	// Nobody changes their own roles (the last administrator's are thus
	// safe from the API; auth's tests cover ErrLastAdmin itself).
	if res := e.do("PUT", "/api/v1/users/"+e.users["admin"]+"/roles", admin, `{"roles":["viewer"]}`); res.status != 403 || res.code() != CodeSelfModification {
		t.Errorf("demote yourself = %d %s", res.status, res.raw)
	}
	if res := e.do("DELETE", "/api/v1/users/"+carol.ID.String(), admin, ""); res.status != 200 {
		t.Errorf("delete user = %d %s", res.status, res.raw)
	}
	if res := e.do("DELETE", "/api/v1/roles/"+role.ID.String(), admin, ""); res.status != 200 {
		t.Errorf("delete role = %d %s", res.status, res.raw)
	}
	var tree struct{ Items []auth.PermissionGroup }
	e.do("GET", "/api/v1/permissions", admin, "").data(&tree)
	if len(tree.Items) != len(auth.Catalog) {
		t.Errorf("permission tree = %+v", tree)
	}
}

func TestAPITokens(t *testing.T) {
	e := newEnv(t, nil)
	// A token holds at most its owner's permissions (see escalation_test.go).
	res := e.do("POST", "/api/v1/api-tokens", e.tokens["operator"], `{"name":"ci","permissions":["vm:read"]}`)
	var created struct {
		Token    string
		APIToken auth.APIToken `json:"api_token"`
	}
	res.data(&created)
	if res.status != 201 || !strings.HasPrefix(created.Token, "vmp_") {
		t.Fatalf("create = %d %s", res.status, res.raw)
	}
	var me meResponse
	e.do("GET", "/api/v1/auth/me", created.Token, "").data(&me)
	if strings.Join(me.Permissions, ",") != "vm:read" || me.TokenID != created.APIToken.ID.String() {
		t.Errorf("token principal = %+v", me)
	}
	// A token cannot mint tokens, log out, or change the password.
	for _, c := range [][2]string{{"POST", "/api/v1/api-tokens"}, {"POST", "/api/v1/auth/logout"}, {"PUT", "/api/v1/auth/password"}} {
		if res := e.do(c[0], c[1], created.Token, `{"name":"x"}`); res.status != 403 || res.code() != CodeSessionRequired {
			t.Errorf("%s %s with an API token = %d %s", c[0], c[1], res.status, res.raw)
		}
	}
	var list struct{ Items []auth.APIToken }
	e.do("GET", "/api/v1/api-tokens", e.tokens["operator"], "").data(&list)
	if len(list.Items) != 1 || strings.Contains(string(e.do("GET", "/api/v1/api-tokens", e.tokens["operator"], "").raw), created.Token) {
		t.Errorf("list = %+v (must not show the secret)", list)
	}
	if res := e.do("DELETE", "/api/v1/api-tokens/"+created.APIToken.ID.String(), e.tokens["viewer"], ""); res.status != 404 {
		t.Errorf("revoking someone else's token = %d", res.status)
	}
	if res := e.do("DELETE", "/api/v1/api-tokens/"+created.APIToken.ID.String(), e.tokens["operator"], ""); res.status != 200 {
		t.Fatalf("revoke = %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/auth/me", created.Token, ""); res.status != 401 {
		t.Errorf("revoked token = %d", res.status)
	}
}

func TestAuditTrail(t *testing.T) {
	e := newEnv(t, nil)
	res := e.do("POST", "/api/v1/users", e.tokens["admin"], `{"username":"dave","password":"`+goodPassword+`","roles":["viewer"]}`,
		"X-Request-ID", "req-create-dave", "User-Agent", "audit-test/1.0")
	var dave auth.User
	res.data(&dave)
	if res.status != 201 || res.header.Get("X-Request-ID") != "req-create-dave" {
		t.Fatalf("create = %d %s", res.status, res.raw)
	}
	e.do("POST", "/api/v1/users", e.tokens["viewer"], `{"username":"eve","password":"`+goodPassword+`"}`, "X-Request-ID", "req-denied")
	e.do("GET", "/api/v1/users", e.tokens["admin"], "", "X-Request-ID", "req-read")
	e.flushAudit()

	var recs cursorOf[audit.Record]
	e.do("GET", "/api/v1/audit-logs?action=user.create", e.tokens["auditor"], "").data(&recs)
	byReq := map[string][]audit.Record{}
	for _, r := range recs.Items {
		byReq[r.RequestID] = append(byReq[r.RequestID], r)
	}
	if len(byReq["req-create-dave"]) != 1 {
		t.Fatalf("records of the create = %d; want exactly 1 (%+v)", len(byReq["req-create-dave"]), recs.Items)
	}
	r := byReq["req-create-dave"][0]
	if r.ActorName != "admin" || r.ActorType != "user" || r.ActorID != e.users["admin"] || r.ResourceType != "user" || r.ResourceID != dave.ID.String() ||
		r.Result != audit.ResultSuccess || r.Status != 201 || r.IP != "192.0.2.1" || r.UserAgent != "audit-test/1.0" || r.Source != "api" {
		t.Errorf("record = %+v", r)
	}
	var summary map[string]map[string]any
	_ = json.Unmarshal(r.Summary, &summary)
	if summary["request"]["password"] != "[REDACTED]" || summary["request"]["username"] != "dave" || strings.Contains(string(r.Summary), goodPassword) {
		t.Errorf("summary = %s; want the body with the password redacted", r.Summary)
	}
	if d := byReq["req-denied"]; len(d) != 1 || d[0].Result != audit.ResultDenied || d[0].Status != 403 || d[0].ActorName != "viewer" {
		t.Errorf("denied attempt records = %+v", d)
	}
	var reads cursorOf[audit.Record]
	e.do("GET", "/api/v1/audit-logs?actor=admin", e.tokens["auditor"], "").data(&reads)
	for _, rr := range reads.Items {
		if rr.RequestID == "req-read" {
			t.Error("a GET was audited")
		}
	}
	// Login attempts are audited too, with the attempted name.
	e.do("POST", "/api/v1/auth/login", "", `{"username":"nobody","password":"x"}`, "X-Request-ID", "req-bad-login")
	e.flushAudit()
	var logins cursorOf[audit.Record]
	e.do("GET", "/api/v1/audit-logs?action=auth.login&result=failure", e.tokens["auditor"], "").data(&logins)
	if len(logins.Items) != 1 || logins.Items[0].ActorName != "nobody" || logins.Items[0].ActorType != "anonymous" {
		t.Errorf("failed login records = %+v", logins.Items)
	}
	e.do("GET", "/api/v1/audit-logs?action=auth.login&result=success&actor=auditor", e.tokens["auditor"], "").data(&logins)
	if len(logins.Items) != 1 || logins.Items[0].ActorType != "user" || logins.Items[0].ActorID != e.users["auditor"] || logins.Items[0].ResourceType != "session" {
		t.Errorf("successful login records = %+v", logins.Items)
	}
	one := e.do("GET", fmt.Sprintf("/api/v1/audit-logs/%d", r.Seq), e.tokens["auditor"], "")
	if one.status != 200 {
		t.Errorf("get record = %d", one.status)
	}
	if res := e.do("GET", "/api/v1/audit-logs/999999", e.tokens["auditor"], ""); res.status != 404 || res.code() != CodeAuditNotFound {
		t.Errorf("missing record = %d %s", res.status, res.raw)
	}

	var v audit.VerifyResult
	e.do("GET", "/api/v1/audit-logs/verify", e.tokens["auditor"], "").data(&v)
	if !v.OK || v.Checked < 6 {
		t.Fatalf("verify = %+v", v)
	}
	if _, err := e.pool.Exec(context.Background(), `UPDATE audit_log SET result = 'success', status = 201 WHERE request_id = 'req-denied'`); err != nil {
		t.Fatal(err)
	}
	var denied audit.Record
	for _, rr := range recs.Items {
		if rr.RequestID == "req-denied" {
			denied = rr
		}
	}
	e.do("GET", "/api/v1/audit-logs/verify", e.tokens["auditor"], "").data(&v)
	if v.OK || v.BrokenAt == nil || *v.BrokenAt != denied.Seq {
		t.Errorf("verify after tampering = %+v; want broken at %d", v, denied.Seq)
	}

	// CSV export streams every record with a header row.
	exp := e.do("GET", "/api/v1/audit-logs/export?action=user.", e.tokens["auditor"], "")
	if exp.status != 200 || !strings.HasPrefix(exp.header.Get("Content-Type"), "text/csv") || !strings.Contains(exp.header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("export = %d %v", exp.status, exp.header)
	}
	rows, err := csv.NewReader(strings.NewReader(string(exp.raw))).ReadAll()
	if err != nil || len(rows) != 3 || rows[0][0] != "id" {
		t.Errorf("export rows = %v, %v", rows, err)
	}
	lexp := e.do("GET", "/api/v1/login-logs/export", e.tokens["auditor"], "")
	lrows, err := csv.NewReader(strings.NewReader(string(lexp.raw))).ReadAll()
	if err != nil || len(lrows) != 6 || lrows[0][3] != "username" {
		t.Errorf("login export rows = %d, %v", len(lrows), err)
	}
}

func TestCSVSafe(t *testing.T) {
	for in, want := range map[string]string{"=SUM(A1)": "'=SUM(A1)", "+1": "'+1", "@x": "'@x", "alice": "alice", "": ""} {
		if got := csvSafe(in); got != want {
			t.Errorf("csvSafe(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestMiddleware(t *testing.T) {
	e := newEnv(t, nil)
	a := e.api
	t.Run("panic recovery", func(t *testing.T) {
		h := a.begin(a.accessLog(a.recoverer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))))
		req := httptest.NewRequest("GET", "/x", nil)
		req.Header.Set("X-Request-ID", "req-panic")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 500 || !strings.Contains(rec.Body.String(), `"code":"INTERNAL_ERROR"`) || !strings.Contains(rec.Body.String(), `"request_id":"req-panic"`) {
			t.Errorf("panic = %d %s", rec.Code, rec.Body)
		}
		if logs := e.logs.String(); !strings.Contains(logs, "panic serving request") || !strings.Contains(logs, "request_id=req-panic") {
			t.Error("panic not logged with its request id")
		}
	})
	t.Run("request id", func(t *testing.T) {
		res := e.do("GET", "/healthz", "", "", "X-Request-ID", "bad id with spaces")
		if id := res.header.Get("X-Request-ID"); id == "" || strings.Contains(id, " ") {
			t.Errorf("request id = %q", id)
		}
	})
	t.Run("cors", func(t *testing.T) {
		res := e.do("OPTIONS", "/api/v1/users", "", "", "Origin", "https://ops.example.com", "Access-Control-Request-Method", "POST")
		if res.status != 204 || res.header.Get("Access-Control-Allow-Origin") != "https://ops.example.com" || !strings.Contains(res.header.Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Errorf("preflight = %d %v", res.status, res.header)
		}
		res = e.do("GET", "/healthz", "", "", "Origin", "https://evil.example.com")
		if res.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("foreign origin allowed: %v", res.header)
		}
	})
	t.Run("client ip", func(t *testing.T) {
		cases := []struct{ remote, xff, want string }{
			{"192.0.2.9:1000", "203.0.113.1", "192.0.2.9"},                          // untrusted peer: header ignored
			{"10.0.0.1:1000", "203.0.113.1", "203.0.113.1"},                         // trusted proxy
			{"10.0.0.1:1000", "198.51.100.7, 203.0.113.1, 10.0.0.2", "203.0.113.1"}, // right-most untrusted hop
			{"10.0.0.1:1000", "", "10.0.0.1"},
			{"10.0.0.1:1000", "garbage", "10.0.0.1"},
			{"[::ffff:192.0.2.3]:1000", "", "192.0.2.3"},
		}
		for _, c := range cases {
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = c.remote
			if c.xff != "" {
				req.Header.Set("X-Forwarded-For", c.xff)
			}
			if got := a.clientIP(req); got != c.want {
				t.Errorf("clientIP(%s, %q) = %s; want %s", c.remote, c.xff, got, c.want)
			}
		}
	})
	t.Run("access log", func(t *testing.T) {
		e.do("GET", "/api/v1/users", e.tokens["admin"], "", "X-Request-ID", "req-logged")
		line := ""
		for _, l := range strings.Split(e.logs.String(), "\n") {
			if strings.Contains(l, "request_id=req-logged") && strings.Contains(l, "http request") {
				line = l
			}
		}
		for _, want := range []string{"status=200", "route=/api/v1/users", "user=admin", "ip=192.0.2.1"} {
			if !strings.Contains(line, want) {
				t.Errorf("access log line %q lacks %s", line, want)
			}
		}
		if strings.Contains(e.logs.String(), goodPassword) {
			t.Error("a password reached the log")
		}
	})
	t.Run("timeout", func(t *testing.T) {
		h := withTimeout(time.Millisecond, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
			writeError(w, r, a.log, r.Context().Err())
		}))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 503 || !strings.Contains(rec.Body.String(), CodeTimeout) {
			t.Errorf("timeout = %d %s", rec.Code, rec.Body)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	cases := []struct {
		mutate func(*Config)
		field  string
	}{
		{func(c *Config) { c.Listen = "nope" }, "listen"},
		{func(c *Config) { c.Listen = "0.0.0.0:8443" }, "tls_cert_file"},
		{func(c *Config) { c.TLSCertFile = "cert.pem" }, "tls_cert_file"},
		{func(c *Config) { c.CORSOrigins = []string{"ops.example.com"} }, "cors_origins[0]"},
		{func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/33"} }, "trusted_proxies"},
		{func(c *Config) { c.BodyLimit = 10 }, "body_limit"},
		{func(c *Config) { c.ExportTimeout = time.Second }, "export_timeout"},
		{func(c *Config) { c.Auth.Algorithm = "none" }, "auth.algorithm"},
		{func(c *Config) { c.Auth.Algorithm = "HS256" }, "auth.algorithm"},
		{func(c *Config) { c.Auth.AccessTTL = 2 * time.Hour }, "auth.access_ttl"},
		{func(c *Config) { c.Auth.LockoutThreshold = -1 }, "auth.lockout_threshold"},
	}
	for _, c := range cases {
		cfg := Defaults()
		c.mutate(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.field+":") {
			t.Errorf("Validate = %v; want an error naming %s", err, c.field)
		}
	}
	cfg := Defaults()
	cfg.Listen, cfg.AllowPlainHTTP = "0.0.0.0:8080", true
	if err := cfg.Validate(); err != nil {
		t.Errorf("plain HTTP with allow_plain_http: %v", err)
	}
}
