package httpapi

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

// scopedUser creates a user with roles and a data scope (as the admin) and
// returns its access token.
func (e *env) scopedUser(name, roles, scope string) string {
	e.t.Helper()
	admin := e.tokens["admin"]
	res := e.do("POST", "/api/v1/users", admin, `{"username":"`+name+`","password":"`+goodPassword+`","roles":`+roles+`}`)
	if res.status != 201 {
		e.t.Fatalf("create %s: %d %s", name, res.status, res.raw)
	}
	var u struct {
		ID string `json:"id"`
	}
	res.data(&u)
	if res := e.do("PUT", "/api/v1/users/"+u.ID+"/scope", admin, scope); res.status != 200 {
		e.t.Fatalf("scope of %s: %d %s", name, res.status, res.raw)
	}
	return e.login(name).AccessToken
}

func (e *env) vmNames(token, query string) []string {
	e.t.Helper()
	res := e.do("GET", "/api/v1/vms?"+query, token, "")
	if res.status != 200 {
		e.t.Fatalf("/vms?%s = %d %s", query, res.status, res.raw)
	}
	var p pageOf[VM]
	res.data(&p)
	return vmNamesOf(p.Items)
}

func TestVMGroupsAPI(t *testing.T) {
	e := newEnv(t, nil)
	e.inventory()
	admin := e.tokens["admin"]
	east1, east3, west1 := objectID(vcEast, "vm-1"), objectID(vcEast, "vm-3"), objectID(vcWest, "vm-1")

	res := e.do("POST", "/api/v1/vm-groups", admin, `{"name":"web","description":"front ends","rule":{"name_glob":"web-*"}}`)
	if res.status != 201 {
		t.Fatalf("create group: %d %s", res.status, res.raw)
	}
	var g VMGroup
	res.data(&g)
	if got := e.vmNames(admin, "group="+g.ID); !slices.Equal(got, []string{"web-01", "web-02"}) {
		t.Errorf("members by rule = %v", got)
	}
	res = e.do("POST", "/api/v1/vm-groups/"+g.ID+"/members", admin, `{"vms":["`+east3+`","`+west1+`","`+objectID(vcEast, "vm-404")+`"]}`)
	if res.status != 200 || !strings.Contains(string(res.raw), `"done":2,"failed":1`) || !strings.Contains(string(res.raw), CodeVMNotFound) {
		t.Errorf("add members: %d %s", res.status, res.raw)
	}
	if got := e.vmNames(admin, "group="+g.ID); !slices.Equal(got, []string{"db-01", "edge-01", "web-01", "web-02"}) {
		t.Errorf("members = %v", got)
	}
	if res := e.do("POST", "/api/v1/vm-groups", admin, `{"name":"web"}`); res.status != 409 || res.code() != CodeGroupNameTaken {
		t.Errorf("duplicate name = %d %s", res.status, res.raw)
	}

	// A user scoped to dc-east sees the group's dc-east members only, and
	// cannot add dc-west's VM.
	ops := e.scopedUser("east-ops", `["operator"]`, `{"sites":["dc-east"],"vm_groups":[]}`)
	if got := e.vmNames(ops, "group="+g.ID); !slices.Equal(got, []string{"db-01", "web-01", "web-02"}) {
		t.Errorf("members for the dc-east user = %v", got)
	}
	res = e.do("GET", "/api/v1/vm-groups/"+g.ID, ops, "")
	if res.status != 200 || !strings.Contains(string(res.raw), `"members":3`) {
		t.Errorf("group for the dc-east user: %d %s", res.status, res.raw)
	}
	res = e.do("DELETE", "/api/v1/vm-groups/"+g.ID+"/members", ops, `{"vms":["`+west1+`"]}`)
	if res.status != 200 || !strings.Contains(string(res.raw), `"failed":1`) {
		t.Errorf("dc-east user removes dc-west's VM: %d %s", res.status, res.raw)
	}
	// A scoped user's rule must name one of its sites.
	if res := e.do("POST", "/api/v1/vm-groups", ops, `{"name":"all-db","rule":{"name_glob":"db-*"}}`); res.status != 403 || res.code() != CodeEscalation {
		t.Errorf("scoped rule without a site = %d %s", res.status, res.raw)
	}
	if res := e.do("POST", "/api/v1/vm-groups", ops, `{"name":"east-db","rule":{"name_glob":"db-*","site":"dc-east"}}`); res.status != 201 {
		t.Errorf("scoped rule on its site = %d %s", res.status, res.raw)
	}

	// A group as data scope: only its members; and a group in a scope is
	// closed to scoped editors.
	byGroup := e.scopedUser("web-viewer", `["viewer"]`, `{"sites":[],"vm_groups":["`+g.ID+`"]}`)
	if got := e.vmNames(byGroup, ""); !slices.Equal(got, []string{"db-01", "edge-01", "web-01", "web-02"}) {
		t.Errorf("VMs by group scope = %v", got)
	}
	if res := e.do("GET", "/api/v1/vms/"+url.PathEscape(east1)+"/metrics", byGroup, ""); res.status != 200 {
		t.Errorf("history of a member by group scope = %d", res.status)
	}
	if res := e.do("GET", "/api/v1/hosts", byGroup, ""); !strings.Contains(string(res.raw), `"total":0`) {
		t.Errorf("hosts by group scope: %s", res.raw)
	}
	if res := e.do("PUT", "/api/v1/vm-groups/"+g.ID, ops, `{"name":"web","rule":{"site":"dc-east","name_glob":"*"}}`); res.status != 403 || res.code() != CodeEscalation {
		t.Errorf("scoped edit of a group in a scope = %d %s", res.status, res.raw)
	}
	res = e.do("PUT", "/api/v1/users/"+e.users["viewer"]+"/scope", admin, `{"sites":[],"vm_groups":["00000000-0000-0000-0000-000000000000"]}`)
	if res.status != 422 || !strings.Contains(string(res.raw), FieldUnknownGroup) {
		t.Errorf("scope with an unknown group = %d %s", res.status, res.raw)
	}

	// User fields.
	res = e.do("PATCH", "/api/v1/vms/"+url.PathEscape(east1), ops, `{"owner":"web-team@example.com","labels":{"tier":"web","app/name":"shop"}}`)
	var d VMDetail
	res.data(&d)
	if res.status != 200 || d.Owner != "web-team@example.com" || d.Labels["tier"] != "web" || len(d.Groups) != 1 || d.Groups[0].Name != "web" {
		t.Errorf("patch: %d %s", res.status, res.raw)
	}
	if res := e.do("PATCH", "/api/v1/vms/"+url.PathEscape(east1), ops, `{"labels":{"bad key":"x"}}`); res.status != 422 {
		t.Errorf("bad label key = %d %s", res.status, res.raw)
	}
	if res := e.do("PATCH", "/api/v1/vms/"+url.PathEscape(east1), ops, `{"name":"renamed"}`); res.status != 422 {
		t.Errorf("a vSphere field = %d %s", res.status, res.raw)
	}
	if res := e.do("DELETE", "/api/v1/vms/"+url.PathEscape(east1), ops, ""); res.status != 409 || res.code() != CodeVMLive {
		t.Errorf("forget a live VM = %d %s", res.status, res.raw)
	}
	res = e.do("POST", "/api/v1/vms/batch", ops, `{"vms":["`+east1+`","`+east3+`"],"action":"set_labels","labels":{"env":"prod"}}`)
	if res.status != 200 || !strings.Contains(string(res.raw), `"done":2`) {
		t.Errorf("batch labels: %d %s", res.status, res.raw)
	}
	res = e.do("POST", "/api/v1/vms/batch", ops, `{"vms":["`+east1+`"],"action":"forget"}`)
	if res.status != 200 || !strings.Contains(string(res.raw), CodeVMLive) {
		t.Errorf("batch forget of a live VM: %d %s", res.status, res.raw)
	}
	if res := e.do("POST", "/api/v1/vms/batch", ops, `{"vms":["`+east1+`"],"action":"explode"}`); res.status != 422 {
		t.Errorf("batch with an unknown action = %d %s", res.status, res.raw)
	}
	if res := e.do("DELETE", "/api/v1/vm-groups/"+g.ID, admin, ""); res.status != 200 {
		t.Errorf("delete group = %d %s", res.status, res.raw)
	}
	// The deleted group left the scope that named it: that user now has an
	// empty group list, and no VM.
	if res := e.do("GET", "/api/v1/auth/me", byGroup, ""); strings.Contains(string(res.raw), g.ID) {
		t.Errorf("deleted group still in a scope: %s", res.raw)
	}
}
