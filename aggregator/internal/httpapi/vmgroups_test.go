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
	// The group itself spans both sites (a rule without a site, a member
	// of dc-west): to the dc-east user it does not exist.
	if res := e.do("GET", "/api/v1/vm-groups/"+g.ID, ops, ""); res.status != 404 {
		t.Errorf("a group beyond the dc-east user's sites: %d %s", res.status, res.raw)
	}
	if res := e.do("DELETE", "/api/v1/vm-groups/"+g.ID+"/members", ops, `{"vms":["`+west1+`"]}`); res.status != 404 {
		t.Errorf("dc-east user removes dc-west's VM: %d %s", res.status, res.raw)
	}
	// A scoped user's rule must name one of its sites.
	if res := e.do("POST", "/api/v1/vm-groups", ops, `{"name":"all-db","rule":{"name_glob":"db-*"}}`); res.status != 403 || res.code() != CodeEscalation {
		t.Errorf("scoped rule without a site = %d %s", res.status, res.raw)
	}
	res = e.do("POST", "/api/v1/vm-groups", ops, `{"name":"east-db","rule":{"name_glob":"db-*","site":"dc-east"}}`)
	if res.status != 201 || !strings.Contains(string(res.raw), `"members":1`) {
		t.Errorf("scoped rule on its site = %d %s", res.status, res.raw)
	}
	var eastDB VMGroup
	res.data(&eastDB)

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
	e.scopedUser("db-viewer", `["viewer"]`, `{"sites":[],"vm_groups":["`+eastDB.ID+`"]}`)
	if res := e.do("PUT", "/api/v1/vm-groups/"+eastDB.ID, ops, `{"name":"east-db","rule":{"site":"dc-east","name_glob":"*"}}`); res.status != 403 || res.code() != CodeEscalation {
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
	// A client that escapes the id's colon (a browser's encodeURIComponent)
	// reaches the same VM, and the audit record names it decoded, as
	// vCenter events in the same log do.
	escaped := strings.ReplaceAll(url.PathEscape(east1), ":", "%3A")
	if res := e.do("PATCH", "/api/v1/vms/"+escaped, ops, `{"description":"front end"}`, "X-Request-ID", "req-vm-escaped"); res.status != 200 {
		t.Errorf("patch with an escaped id = %d %s", res.status, res.raw)
	}
	if recs := e.auditRecords("req-vm-escaped"); len(recs) != 1 || recs[0].ResourceID != east1 {
		t.Errorf("audit of a patch with an escaped id = %+v; want resource %s", recs, east1)
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
	// A group that is a scope: deleting it would empty that scope (which
	// means everything), so nobody may; changing it needs user:write.
	if res := e.do("DELETE", "/api/v1/vm-groups/"+g.ID, admin, ""); res.status != 409 || res.code() != CodeGroupInScope {
		t.Errorf("delete a group in a scope = %d %s", res.status, res.raw)
	}
	if got := e.vmNames(byGroup, ""); len(got) != 4 {
		t.Errorf("VMs by group scope after the refused delete = %v", got)
	}
	operator := e.tokens["operator"] // vm:write, unrestricted, no user:write
	if res := e.do("PUT", "/api/v1/vm-groups/"+g.ID, operator, `{"name":"web","rule":{"name_glob":"*"}}`); res.status != 403 || res.code() != CodeEscalation {
		t.Errorf("operator widens a group in a scope = %d %s", res.status, res.raw)
	}
	if res := e.do("POST", "/api/v1/vm-groups/"+g.ID+"/members", operator, `{"vms":["`+objectID(vcEast, "vm-2")+`"]}`); res.status != 403 {
		t.Errorf("operator adds a member to a group in a scope = %d %s", res.status, res.raw)
	}
	if got := e.vmNames(byGroup, ""); !slices.Equal(got, []string{"db-01", "edge-01", "web-01", "web-02"}) {
		t.Errorf("VMs by group scope after the refused changes = %v", got)
	}
	if res := e.do("PUT", "/api/v1/vm-groups/"+g.ID, admin, `{"name":"web","rule":{"labels":{"team":"x"}}}`); res.status != 422 || !strings.Contains(string(res.raw), FieldLabelRuleScope) {
		t.Errorf("a label rule on a group in a scope = %d %s", res.status, res.raw)
	}
	if res := e.do("PUT", "/api/v1/vm-groups/"+g.ID, admin, `{"name":"web","rule":{"name_glob":"web-01"}}`); res.status != 200 {
		t.Errorf("admin narrows a group in a scope = %d %s", res.status, res.raw)
	}
	// Label rules cannot become scopes.
	res = e.do("POST", "/api/v1/vm-groups", admin, `{"name":"team-x","rule":{"labels":{"team":"x"}}}`)
	var tx VMGroup
	res.data(&tx)
	res = e.do("PUT", "/api/v1/users/"+e.users["viewer"]+"/scope", admin, `{"sites":[],"vm_groups":["`+tx.ID+`"]}`)
	if res.status != 422 || !strings.Contains(string(res.raw), FieldLabelRuleScope) {
		t.Errorf("a label-rule group as a scope = %d %s", res.status, res.raw)
	}

	// Another site's group is invisible to a site-scoped user, and cannot
	// be changed by one.
	res = e.do("POST", "/api/v1/vm-groups", admin, `{"name":"west-secret","rule":{"site":"dc-west","host":"esx9"}}`)
	var west VMGroup
	res.data(&west)
	if res := e.do("GET", "/api/v1/vm-groups", ops, ""); strings.Contains(string(res.raw), "west-secret") || strings.Contains(string(res.raw), "dc-west") {
		t.Errorf("dc-east user lists dc-west's group: %s", res.raw)
	}
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/api/v1/vm-groups/" + west.ID, ""},
		{"PUT", "/api/v1/vm-groups/" + west.ID, `{"name":"renamed","rule":{}}`},
		{"DELETE", "/api/v1/vm-groups/" + west.ID, ""},
		{"POST", "/api/v1/vm-groups/" + west.ID + "/members", `{"vms":["` + east1 + `"]}`},
	} {
		if res := e.do(c.method, c.path, ops, c.body); res.status != 404 || res.code() != CodeGroupNotFound {
			t.Errorf("dc-east user %s dc-west's group = %d %s", c.method, res.status, res.raw)
		}
	}
	if res := e.do("GET", "/api/v1/vm-groups/"+west.ID, admin, ""); !strings.Contains(string(res.raw), `"west-secret"`) {
		t.Errorf("dc-west's group after the refused changes: %s", res.raw)
	}
	// A group outside every scope can be deleted.
	if res := e.do("DELETE", "/api/v1/vm-groups/"+west.ID, admin, ""); res.status != 200 {
		t.Errorf("delete a group = %d %s", res.status, res.raw)
	}
}
