package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

// TestRoutePermissionMatrix calls every route of the table as every
// built-in role and checks it is allowed or refused with 403 exactly as the
// route's declared permission and API.md's role definitions say.
func TestRoutePermissionMatrix(t *testing.T) {
	e := newEnv(t, nil)
	roles := auth.BuiltinRoles()
	has := func(role auth.BuiltinRole, perm string) bool { return slices.Contains(role.Permissions, perm) }
	for _, rt := range e.api.routes {
		path := "/api/v1" + strings.ReplaceAll(rt.Pattern, "{id}", uuid.NewString())
		if strings.HasPrefix(rt.Pattern, "/audit-logs/{id}") {
			path = "/api/v1/audit-logs/1"
		}
		body := ""
		if rt.mutating() || rt.Query {
			body = "{}"
		}
		for _, role := range roles {
			t.Run(rt.Method+" "+rt.Pattern+" as "+role.Name, func(t *testing.T) {
				token := e.tokens[role.Name]
				if rt.Pattern == "/auth/logout" {
					token = e.login(role.Name).AccessToken // keep the role's main session
				}
				res := e.do(rt.Method, path, token, body)
				allowed := rt.Access == AccessPublic || rt.Access == AccessRefresh || rt.Access == AccessAuthenticated || has(role, rt.Access)
				if allowed && (res.status == http.StatusForbidden || res.status == http.StatusUnauthorized || res.status >= 500) {
					t.Errorf("%s must be allowed for %s, got %d %s", rt.Access, role.Name, res.status, res.raw)
				}
				if !allowed && (res.status != http.StatusForbidden || res.code() != CodeForbidden) {
					t.Errorf("%s must be refused for %s with 403, got %d %s", rt.Access, role.Name, res.status, res.raw)
				}
			})
		}
		if rt.Access != AccessPublic && rt.Access != AccessRefresh {
			t.Run(rt.Method+" "+rt.Pattern+" anonymous", func(t *testing.T) {
				res := e.do(rt.Method, path, "", body)
				if res.status != http.StatusUnauthorized || res.code() != CodeUnauthenticated || res.header.Get("WWW-Authenticate") == "" {
					t.Errorf("anonymous call = %d %s; want 401 %s", res.status, res.raw, CodeUnauthenticated)
				}
			})
		}
	}
}

// TestBuiltinRolesMatchAPIDoc pins the built-in roles to API.md.
func TestBuiltinRolesMatchAPIDoc(t *testing.T) {
	want := map[string][]string{
		auth.RoleAdmin:    auth.AllPermissions(),
		auth.RoleOperator: {"vm:read", "vm:write", "metric:read", "alert:read", "alert:write", "system:read"},
		auth.RoleViewer:   {"vm:read", "metric:read", "alert:read"},
		auth.RoleAuditor:  {"audit:read"},
	}
	for _, r := range auth.BuiltinRoles() {
		got := slices.Clone(r.Permissions)
		w := slices.Clone(want[r.Name])
		sort.Strings(got)
		sort.Strings(w)
		if !slices.Equal(got, w) {
			t.Errorf("role %s = %v; want %v", r.Name, got, w)
		}
	}
}

// TestRouteTableRules: a route without a permission (or a mutating route
// without an audit action) makes the API refuse to start.
func TestRouteTableRules(t *testing.T) {
	ok := func(http.ResponseWriter, *http.Request) error { return nil }
	cases := []struct {
		name  string
		route Route
		want  string
	}{
		{"no access", Route{Method: "GET", Pattern: "/vms", Handle: ok, Doc: Doc{Summary: "x"}}, "declares no access rule"},
		{"unknown permission", Route{Method: "GET", Pattern: "/vms", Access: "vm:fly", Handle: ok, Doc: Doc{Summary: "x"}}, "unknown permission"},
		{"no audit action", Route{Method: "POST", Pattern: "/vms", Access: auth.PermVMWrite, Handle: ok, Doc: Doc{Summary: "x"}}, "no audit action"},
		{"undocumented", Route{Method: "GET", Pattern: "/vms", Access: auth.PermVMRead, Handle: ok}, "not documented"},
	}
	for _, c := range cases {
		err := checkRoutes([]Route{c.route})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: checkRoutes = %v; want %q", c.name, err, c.want)
		}
	}
	good := Route{Method: "GET", Pattern: "/vms", Access: auth.PermVMRead, Handle: ok, Doc: Doc{Summary: "x"}}
	if err := checkRoutes([]Route{good, good}); err == nil {
		t.Error("duplicate route accepted")
	}
	a := &API{}
	if err := checkRoutes(a.routeTable()); err != nil {
		t.Errorf("the real route table: %v", err)
	}
}

// TestOpenAPIInSync: every served route is documented and every documented
// operation is served.
func TestOpenAPIInSync(t *testing.T) {
	e := newEnv(t, nil)
	res := e.do("GET", "/api/v1/openapi.json", "", "")
	if res.status != 200 {
		t.Fatalf("openapi.json: %d", res.status)
	}
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(res.raw, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
			if strings.HasPrefix(path, "/api/v1/") && op["x-vmpulse-permission"] == nil {
				t.Errorf("%s %s: no x-vmpulse-permission", method, path)
			}
		}
	}
	served := map[string]bool{}
	err := chi.Walk(e.api.handler.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		served[method+" "+strings.TrimSuffix(route, "/")] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for r := range served {
		if !documented[r] {
			t.Errorf("served but not documented: %s", r)
		}
	}
	for r := range documented {
		if !served[r] {
			t.Errorf("documented but not served: %s", r)
		}
	}
	if len(served) < 30 {
		t.Errorf("only %d routes served", len(served))
	}
	// Every $ref resolves.
	var full map[string]any
	_ = json.Unmarshal(res.raw, &full)
	schemas := full["components"].(map[string]any)["schemas"].(map[string]any)
	for _, ref := range refsIn(full) {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		if _, ok := schemas[name]; !ok {
			t.Errorf("dangling $ref %s", ref)
		}
	}
}

func refsIn(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok && k == "$ref" {
				out = append(out, s)
			}
			out = append(out, refsIn(val)...)
		}
	case []any:
		for _, val := range x {
			out = append(out, refsIn(val)...)
		}
	}
	return out
}

func TestHealthAndReadiness(t *testing.T) {
	e := newEnv(t, nil)
	if res := e.do("GET", "/healthz", "", ""); res.status != 200 {
		t.Errorf("healthz = %d", res.status)
	}
	if res := e.do("GET", "/readyz", "", ""); res.status != 200 {
		t.Errorf("readyz = %d %s", res.status, res.raw)
	}
	e.api.ready = func(context.Context) error { return context.DeadlineExceeded }
	if res := e.do("GET", "/readyz", "", ""); res.status != 503 || res.code() != CodeUnavailable {
		t.Errorf("readyz with the database down = %d %s; want 503", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/nope", "", ""); res.status != 404 || res.code() != CodeNotFound {
		t.Errorf("unknown route = %d %s", res.status, res.raw)
	}
	if res := e.do("PATCH", "/api/v1/users", e.tokens["admin"], "{}"); res.status != 405 || res.code() != CodeMethodNotAllowed {
		t.Errorf("wrong method = %d %s", res.status, res.raw)
	}
}
