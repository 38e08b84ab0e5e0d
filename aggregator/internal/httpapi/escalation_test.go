package httpapi

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

// Regression tests for issue 8 (privilege escalation through user, role and
// API token management): API.md's "No escalation" rule, end to end.

func jsonOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// escalationEnv adds to newEnv's users a user manager, mallory (user:read,
// user:write and a viewer's permissions, restricted to the site "lab"), and
// a role manager, rita (role:read, role:write and a viewer's permissions).
type escalationEnv struct {
	*env
	mallory, malloryID string // access token, user id
	rita, ritaID       string
}

func newEscalationEnv(t *testing.T) *escalationEnv {
	t.Helper()
	e := &escalationEnv{env: newEnv(t, nil)}
	e.role("user-managers", []string{"viewer"}, []string{"user:read", "user:write"})
	e.role("role-managers", []string{"viewer"}, []string{"role:read", "role:write"})
	e.malloryID = e.user("mallory", "user-managers")
	e.ok("PUT", "/api/v1/users/"+e.malloryID+"/scope", e.tokens["admin"], `{"sites":["lab"],"vm_groups":[]}`)
	e.mallory = e.login("mallory").AccessToken
	e.ritaID = e.user("rita", "role-managers")
	e.rita = e.login("rita").AccessToken
	return e
}

// ok sends a request that must succeed and returns its response.
func (e *escalationEnv) ok(method, path, token, body string) *response {
	e.t.Helper()
	res := e.do(method, path, token, body)
	if res.status != 200 && res.status != 201 {
		e.t.Fatalf("%s %s = %d %s", method, path, res.status, res.raw)
	}
	return res
}

// role creates a custom role as the admin and returns its id.
func (e *escalationEnv) role(name string, parents, perms []string) string {
	e.t.Helper()
	var r auth.Role
	e.ok("POST", "/api/v1/roles", e.tokens["admin"], jsonOf(map[string]any{"name": name, "parents": parents, "permissions": perms})).data(&r)
	return r.ID.String()
}

// user creates a user as the admin and returns its id.
func (e *escalationEnv) user(name string, roles ...string) string {
	e.t.Helper()
	var u auth.User
	e.ok("POST", "/api/v1/users", e.tokens["admin"], jsonOf(map[string]any{"username": name, "password": goodPassword, "roles": roles})).data(&u)
	return u.ID.String()
}

func (e *escalationEnv) getUser(id string) auth.User {
	e.t.Helper()
	var u auth.User
	e.ok("GET", "/api/v1/users/"+id, e.tokens["admin"], "").data(&u)
	return u
}

// refused checks that res is a 403 with code.
func refused(t *testing.T, what string, res *response, code string) {
	t.Helper()
	if res.status != 403 || res.code() != code {
		t.Errorf("%s = %d %s; want 403 %s", what, res.status, res.raw, code)
	}
}

type escalationData struct {
	Missing []string `json:"missing_permissions"`
	Scope   bool     `json:"scope_exceeded"`
}

func TestNoEscalationSelfRoles(t *testing.T) {
	e := newEscalationEnv(t)
	for _, roles := range []string{`["admin"]`, `["user-managers","operator"]`, `[]`} {
		res := e.do("PUT", "/api/v1/users/"+e.malloryID+"/roles", e.mallory, `{"roles":`+roles+`}`)
		refused(t, "mallory setting her own roles to "+roles, res, CodeSelfModification)
	}
	var me meResponse
	e.ok("GET", "/api/v1/auth/me", e.mallory, "").data(&me)
	if slices.Contains(me.Permissions, auth.PermRoleWrite) || !slices.Equal(me.Roles, []string{"user-managers"}) {
		t.Errorf("mallory after trying = %+v", me)
	}
	// Even an administrator cannot: someone else must.
	refused(t, "an admin setting their own roles", e.do("PUT", "/api/v1/users/"+e.users["admin"]+"/roles", e.tokens["admin"], `{"roles":["admin","viewer"]}`), CodeSelfModification)
	for _, lang := range Languages {
		res := e.do("PUT", "/api/v1/users/"+e.malloryID+"/roles", e.mallory, `{"roles":["admin"]}`, "Accept-Language", lang)
		if res.env.Message != messages[CodeSelfModification][lang] || res.env.Message == "" {
			t.Errorf("%s message = %q", lang, res.env.Message)
		}
	}
}

func TestNoEscalationSelfScope(t *testing.T) {
	e := newEscalationEnv(t)
	for _, body := range []string{`{"sites":[],"vm_groups":[]}`, `{"sites":["lab","dc1"],"vm_groups":[]}`, `{"sites":["lab"],"vm_groups":[]}`} {
		refused(t, "mallory setting her own scope to "+body, e.do("PUT", "/api/v1/users/"+e.malloryID+"/scope", e.mallory, body), CodeSelfModification)
	}
	if u := e.getUser(e.malloryID); !slices.Equal(u.Scope.Sites, []string{"lab"}) {
		t.Errorf("mallory's scope after trying = %+v", u.Scope)
	}
}

// TestNoEscalationOverAdmin: a user:write holder cannot take over, lock
// out, delete, edit, demote or confine an administrator.
func TestNoEscalationOverAdmin(t *testing.T) {
	e := newEscalationEnv(t)
	admin := "/api/v1/users/" + e.users["admin"]
	for _, c := range []struct{ method, path, body string }{
		{"POST", admin + "/reset-password", ""},
		{"POST", admin + "/reset-password", `{"password":"Mall0ry-Owns-This-Now"}`},
		{"POST", admin + "/lock", ""},
		{"POST", admin + "/unlock", ""},
		{"DELETE", admin, ""},
		{"PUT", admin, `{"username":"admin","email":"mallory@example.com"}`},
		{"PUT", admin + "/roles", `{"roles":["viewer"]}`},
		{"PUT", admin + "/scope", `{"sites":["lab"],"vm_groups":[]}`},
	} {
		res := e.do(c.method, c.path, e.mallory, c.body)
		refused(t, "mallory: "+c.method+" "+c.path+" "+c.body, res, CodeEscalation)
		if strings.Contains(string(res.raw), "password\"") {
			t.Errorf("a refused reset answered a password: %s", res.raw)
		}
		var d escalationData
		if res.env.Data != nil {
			res.data(&d)
		}
		if len(d.Missing) > 0 || d.Scope {
			t.Errorf("the refusal tells what the admin holds: %s", res.raw)
		}
	}
	u := e.getUser(e.users["admin"])
	if u.Locked || u.Email != "admin@example.com" || !slices.Equal(u.Roles, []string{"admin"}) || !u.Scope.Unrestricted() {
		t.Errorf("the admin changed anyway: %+v", u)
	}
	e.login("admin") // the password still works
	// An operator is beyond mallory too (vm:write, alert:write, system:read).
	refused(t, "mallory resetting the operator's password", e.do("POST", "/api/v1/users/"+e.users["operator"]+"/reset-password", e.mallory, ""), CodeEscalation)
	// So is a viewer with a wider scope than hers.
	refused(t, "mallory locking an unrestricted viewer", e.do("POST", "/api/v1/users/"+e.users["viewer"]+"/lock", e.mallory, ""), CodeEscalation)
}

// TestNoEscalationGrants: a user:write holder grants no role holding a
// permission they lack, and no scope wider than theirs.
func TestNoEscalationGrants(t *testing.T) {
	e := newEscalationEnv(t)
	// mallory's own users start in her scope.
	var vic auth.User
	e.ok("POST", "/api/v1/users", e.mallory, jsonOf(map[string]any{"username": "vic", "password": goodPassword, "roles": []string{"viewer"}})).data(&vic)
	if !slices.Equal(vic.Scope.Sites, []string{"lab"}) {
		t.Errorf("a user created by mallory has scope %+v; want hers", vic.Scope)
	}
	id := vic.ID.String()
	var d escalationData
	res := e.do("PUT", "/api/v1/users/"+id+"/roles", e.mallory, `{"roles":["viewer","operator"]}`)
	refused(t, "mallory granting operator", res, CodeEscalation)
	res.data(&d)
	if !slices.Equal(d.Missing, []string{"alert:write", "system:read", "vm:write"}) {
		t.Errorf("missing_permissions = %v", d.Missing)
	}
	refused(t, "mallory granting admin", e.do("PUT", "/api/v1/users/"+id+"/roles", e.mallory, `{"roles":["admin"]}`), CodeEscalation)
	refused(t, "mallory creating an admin", e.do("POST", "/api/v1/users", e.mallory, jsonOf(map[string]any{"username": "sock", "password": goodPassword, "roles": []string{"admin"}})), CodeEscalation)
	refused(t, "mallory creating a role-manager", e.do("POST", "/api/v1/users", e.mallory, jsonOf(map[string]any{"username": "sock", "password": goodPassword, "roles": []string{"role-managers"}})), CodeEscalation)
	if res := e.do("GET", "/api/v1/users?q=sock", e.tokens["admin"], ""); strings.Contains(string(res.raw), `"sock"`) {
		t.Errorf("a refused user was created: %s", res.raw)
	}
	gres := e.do("POST", "/api/v1/vm-groups", e.tokens["admin"], `{"name":"prod"}`)
	var prod struct {
		ID string `json:"id"`
	}
	gres.data(&prod)
	for _, body := range []string{`{"sites":[],"vm_groups":[]}`, `{"sites":["dc2"],"vm_groups":[]}`, `{"sites":["lab"],"vm_groups":["` + prod.ID + `"]}`} {
		res := e.do("PUT", "/api/v1/users/"+id+"/scope", e.mallory, body)
		refused(t, "mallory granting scope "+body, res, CodeEscalation)
		d = escalationData{}
		res.data(&d)
		if !d.Scope || len(d.Missing) != 0 {
			t.Errorf("scope refusal data = %s", res.raw)
		}
	}
	if u := e.getUser(id); !slices.Equal(u.Roles, []string{"viewer"}) || !slices.Equal(u.Scope.Sites, []string{"lab"}) {
		t.Errorf("vic after refused grants = %+v", u)
	}
}

// TestUserWriteManagesLesserUsers: a user:write holder manages a viewer
// whose permissions and scope are within theirs.
func TestUserWriteManagesLesserUsers(t *testing.T) {
	e := newEscalationEnv(t)
	var vic auth.User
	e.ok("POST", "/api/v1/users", e.mallory, jsonOf(map[string]any{"username": "vic", "password": goodPassword, "roles": []string{"viewer"}})).data(&vic)
	u := "/api/v1/users/" + vic.ID.String()
	e.ok("PUT", u, e.mallory, `{"username":"vic","display_name":"Vic"}`)
	e.ok("PUT", u+"/roles", e.mallory, `{"roles":["viewer","user-managers"]}`)
	e.ok("PUT", u+"/scope", e.mallory, `{"sites":["lab"],"vm_groups":[]}`)
	var reset struct {
		Generated bool
		Password  string
	}
	e.ok("POST", u+"/reset-password", e.mallory, "").data(&reset)
	if !reset.Generated || reset.Password == "" {
		t.Errorf("reset = %+v", reset)
	}
	e.ok("POST", u+"/lock", e.mallory, "")
	e.ok("POST", u+"/unlock", e.mallory, "")
	e.ok("DELETE", u, e.mallory, "")
	// Her own password goes through PUT /auth/password, which asks for the
	// current one.
	if res := e.do("POST", "/api/v1/users/"+e.malloryID+"/reset-password", e.mallory, ""); res.status != 409 || res.code() != CodeSelfOperation {
		t.Errorf("mallory resetting her own password = %d %s", res.status, res.raw)
	}
}

// TestAdminStillManagesEveryone: the rules take nothing from an
// administrator.
func TestAdminStillManagesEveryone(t *testing.T) {
	e := newEscalationEnv(t)
	admin := e.tokens["admin"]
	u := "/api/v1/users/" + e.malloryID
	e.ok("PUT", u+"/roles", admin, `{"roles":["admin"]}`)
	e.ok("PUT", u+"/scope", admin, `{"sites":[],"vm_groups":[]}`)
	e.ok("PUT", u, admin, `{"username":"mallory","display_name":"Mallory"}`)
	e.ok("POST", u+"/reset-password", admin, "")
	e.ok("POST", u+"/lock", admin, "")
	e.ok("POST", u+"/unlock", admin, "")
	e.ok("DELETE", u, admin, "")
	e.ok("POST", "/api/v1/users", admin, jsonOf(map[string]any{"username": "second", "password": goodPassword, "roles": []string{"admin"}}))
	id := e.role("heirs", []string{"admin"}, []string{"backup:admin"})
	e.ok("PUT", "/api/v1/roles/"+id+"/permissions", admin, `{"permissions":["backup:admin","system:write"]}`)
	e.ok("PUT", "/api/v1/roles/"+id, admin, `{"name":"heirs","parents":["operator"]}`)
	e.ok("DELETE", "/api/v1/roles/"+id, admin, "")
	e.ok("POST", "/api/v1/api-tokens", admin, `{"name":"all","permissions":["backup:admin","user:write"]}`)
}

// TestNoEscalationThroughRoles: a role:write holder cannot make a role hold
// a permission they lack, directly or through parents, nor touch a role
// beyond them.
func TestNoEscalationThroughRoles(t *testing.T) {
	e := newEscalationEnv(t)
	var d escalationData
	res := e.do("POST", "/api/v1/roles", e.rita, `{"name":"sneaky","permissions":["vm:read","user:write"]}`)
	refused(t, "rita creating a role with user:write", res, CodeEscalation)
	res.data(&d)
	if !slices.Equal(d.Missing, []string{"user:write"}) {
		t.Errorf("missing_permissions = %v", d.Missing)
	}
	refused(t, "rita creating a role inheriting admin", e.do("POST", "/api/v1/roles", e.rita, `{"name":"heir","parents":["admin"]}`), CodeEscalation)

	var small auth.Role
	e.ok("POST", "/api/v1/roles", e.rita, `{"name":"small","parents":["viewer"],"permissions":["role:read"]}`).data(&small)
	r := "/api/v1/roles/" + small.ID.String()
	refused(t, "rita adding backup:admin", e.do("PUT", r+"/permissions", e.rita, `{"permissions":["role:read","backup:admin"]}`), CodeEscalation)
	refused(t, "rita adding the parent operator", e.do("PUT", r, e.rita, `{"name":"small","parents":["viewer","operator"]}`), CodeEscalation)
	refused(t, "rita adding the parent user-managers", e.do("PUT", r, e.rita, `{"name":"small","parents":["user-managers"]}`), CodeEscalation)
	var got auth.Role
	e.ok("GET", r, e.rita, "").data(&got)
	if !slices.Equal(got.Permissions, []string{"role:read"}) || !slices.Equal(got.Parents, []string{"viewer"}) {
		t.Errorf("small after refused changes = %+v", got)
	}
	// Within her permissions, she manages roles.
	e.ok("PUT", r+"/permissions", e.rita, `{"permissions":["role:read","role:write"]}`)
	e.ok("PUT", r, e.rita, `{"name":"smaller","parents":[]}`)
	e.ok("DELETE", r, e.rita, "")

	// A role beyond her is out of reach, even to take from.
	big := "/api/v1/roles/" + e.role("big", nil, []string{"system:write"})
	refused(t, "rita emptying a bigger role", e.do("PUT", big+"/permissions", e.rita, `{"permissions":[]}`), CodeEscalation)
	refused(t, "rita renaming a bigger role", e.do("PUT", big, e.rita, `{"name":"bigger"}`), CodeEscalation)
	refused(t, "rita deleting a bigger role", e.do("DELETE", big, e.rita, ""), CodeEscalation)
}

// TestNoEscalationThroughAPITokens: a token's permissions are a subset of
// its owner's, at creation and at every use; a token acts with its own.
func TestNoEscalationThroughAPITokens(t *testing.T) {
	e := newEscalationEnv(t)
	var d escalationData
	res := e.do("POST", "/api/v1/api-tokens", e.tokens["viewer"], `{"name":"ci","permissions":["vm:read","vm:write","backup:admin"]}`)
	refused(t, "a viewer's token with vm:write", res, CodeEscalation)
	res.data(&d)
	if !slices.Equal(d.Missing, []string{"backup:admin", "vm:write"}) {
		t.Errorf("missing_permissions = %v", d.Missing)
	}
	// The owner loses a permission: so does the token, at its next use.
	var created struct{ Token string }
	e.ok("POST", "/api/v1/api-tokens", e.tokens["operator"], `{"name":"ci","permissions":["vm:read","vm:write"]}`).data(&created)
	e.ok("PUT", "/api/v1/users/"+e.users["operator"]+"/roles", e.tokens["admin"], `{"roles":["viewer"]}`)
	var me meResponse
	e.ok("GET", "/api/v1/auth/me", created.Token, "").data(&me)
	if !slices.Equal(me.Permissions, []string{"vm:read"}) {
		t.Errorf("token permissions after the owner lost vm:write = %v", me.Permissions)
	}
	// An admin's user:write token acts as a user:write holder, not as the admin.
	e.ok("POST", "/api/v1/api-tokens", e.tokens["admin"], `{"name":"users","permissions":["user:read","user:write"]}`).data(&created)
	refused(t, "an admin's user:write token resetting a viewer", e.do("POST", "/api/v1/users/"+e.users["viewer"]+"/reset-password", created.Token, ""), CodeEscalation)
	refused(t, "an admin's token changing the admin's roles", e.do("PUT", "/api/v1/users/"+e.users["admin"]+"/roles", created.Token, `{"roles":["admin"]}`), CodeSelfModification)
}

// TestOpenAPIListsEscalationCodes: every route under the rule documents
// its codes, and every documented code has a message in each language.
func TestOpenAPIListsEscalationCodes(t *testing.T) {
	e := newEnv(t, nil)
	var doc struct {
		Paths map[string]map[string]struct {
			Codes []string `json:"x-vmpulse-error-codes"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(e.do("GET", "/api/v1/openapi.json", "", "").raw, &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"post /users":                     {CodeEscalation},
		"put /users/{id}":                 {CodeEscalation},
		"delete /users/{id}":              {CodeEscalation, CodeSelfOperation},
		"post /users/{id}/reset-password": {CodeEscalation, CodeSelfOperation},
		"post /users/{id}/lock":           {CodeEscalation, CodeSelfOperation},
		"post /users/{id}/unlock":         {CodeEscalation},
		"put /users/{id}/roles":           {CodeEscalation, CodeSelfModification},
		"put /users/{id}/scope":           {CodeEscalation, CodeSelfModification},
		"post /roles":                     {CodeEscalation},
		"put /roles/{id}":                 {CodeEscalation},
		"put /roles/{id}/permissions":     {CodeEscalation},
		"delete /roles/{id}":              {CodeEscalation},
		"post /api-tokens":                {CodeEscalation},
	}
	for route, codes := range want {
		method, path, _ := strings.Cut(route, " ")
		got := doc.Paths["/api/v1"+path][method].Codes
		for _, c := range codes {
			if !slices.Contains(got, c) {
				t.Errorf("%s documents %v; want %s", route, got, c)
			}
		}
	}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			for _, c := range op.Codes {
				for _, lang := range Languages {
					if messages[c][lang] == "" {
						t.Errorf("%s %s: code %s has no %s message", method, path, c, lang)
					}
				}
			}
		}
	}
}
