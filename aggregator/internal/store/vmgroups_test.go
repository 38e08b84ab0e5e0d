package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/access"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// change writes a partial inventory (only the objects given) of site dc1.
func (f *fixture) change(objs ...protocol.InventoryObject) {
	f.t.Helper()
	f.seq++
	time.Sleep(2 * time.Millisecond) // a newer observation time than the last write
	if _, err := f.st.WriteInventory(f.ctx, store.BatchMeta{AgentID: f.agent, Site: "dc1", Epoch: 1, Seq: f.seq, Kind: protocol.KindInventory},
		&protocol.Inventory{Source: vcA, At: time.Now().UnixMilli(), Objects: objs}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) members(ctx context.Context, id uuid.UUID) []string {
	f.t.Helper()
	vms, _, err := f.st.VMs(ctx, store.VMQuery{VMFilter: store.VMFilter{Group: id.String()}})
	if err != nil {
		f.t.Fatal(err)
	}
	return vmNames(vms)
}

// TestVMGroups: static and rule-based membership, membership that follows
// the inventory (a tag change, a vMotion) and the labels, groups as data
// scope, and forgetting a VM.
func TestVMGroups(t *testing.T) {
	f := inventoryFixture(t)
	ctx := f.ctx

	web, err := f.st.CreateVMGroup(ctx, store.GroupInput{Name: "web", Rule: store.GroupRule{NameGlob: "WEB-*"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.CreateVMGroup(ctx, store.GroupInput{Name: "web"}, "test"); !errors.Is(err, store.ErrGroupNameTaken) {
		t.Errorf("duplicate name: %v", err)
	}
	res, err := f.st.SetGroupMembers(ctx, web, []store.VMRef{{Source: vcA, Moref: "vm-4"}, {Source: vcA, Moref: "vm-404"}}, true, store.GroupChange{})
	if err != nil || res[0] != nil || !errors.Is(res[1], store.ErrNotFound) {
		t.Fatalf("add members: %v, %v", res, err)
	}
	if got := f.members(ctx, web); !slices.Equal(got, []string{"lonely", "web-01", "web-02"}) {
		t.Errorf("web = %v", got)
	}

	prod, _ := f.st.CreateVMGroup(ctx, store.GroupInput{Name: "prod", Rule: store.GroupRule{Tags: []string{"env/prod"}}}, "test")
	cluster, _ := f.st.CreateVMGroup(ctx, store.GroupInput{Name: "prod-cluster", Rule: store.GroupRule{Cluster: "Prod", Site: "dc1"}}, "test")
	if got := f.members(ctx, prod); !slices.Equal(got, []string{"db_01", "web-01"}) {
		t.Errorf("prod = %v", got)
	}
	if got := f.members(ctx, cluster); !slices.Equal(got, []string{"db_01", "web-01", "web-02"}) {
		t.Errorf("prod-cluster = %v", got)
	}
	// db_01 loses its tag, lonely moves into the cluster: both groups follow.
	f.change(vmObj("vm-3", "db_01", "/Datacenters/DC1/vm/db_01", "host-2", "domain-c1", "poweredOn", "guestToolsRunning", 8, 32768,
		map[string]any{"tags": []string{"env/test"}}),
		vmObj("vm-4", "lonely", "/Datacenters/DC1/vm/lonely", "host-1", "domain-c1", "suspended", "", 1, 1024, nil))
	if got := f.members(ctx, prod); !slices.Equal(got, []string{"web-01"}) {
		t.Errorf("prod after the tag change = %v", got)
	}
	if got := f.members(ctx, cluster); !slices.Equal(got, []string{"db_01", "lonely", "web-01", "web-02"}) {
		t.Errorf("prod-cluster after the vMotion = %v", got)
	}

	// Labels, and a rule on them.
	team := map[string]string{"team": "dba"}
	owner := "dba@example.com"
	if err := f.st.PatchVM(ctx, vcA, "vm-3", store.VMFieldsPatch{Owner: &owner, Labels: &team}, "test"); err != nil {
		t.Fatal(err)
	}
	dba, _ := f.st.CreateVMGroup(ctx, store.GroupInput{Name: "dba", Rule: store.GroupRule{Labels: team}}, "test")
	if got := f.members(ctx, dba); !slices.Equal(got, []string{"db_01"}) {
		t.Errorf("dba = %v", got)
	}
	d, err := f.st.VM(ctx, vcA, "vm-3")
	if err != nil || d.UserFields.Owner != owner || d.UserFields.Labels["team"] != "dba" || len(d.Groups) != 2 {
		t.Errorf("db_01 detail: %+v %+v, %v", d.UserFields, d.Groups, err)
	}
	// How it is in each group: by rule in both; added by hand to one of
	// them, by hand and by rule there.
	if errs, err := f.st.SetGroupMembers(ctx, dba, []store.VMRef{{Source: vcA, Moref: "vm-3"}}, true, store.GroupChange{}); err != nil || errs[0] != nil {
		t.Fatalf("add db_01 to dba by hand: %v %v", errs, err)
	}
	d, err = f.st.VM(ctx, vcA, "vm-3")
	how := map[string][2]bool{}
	for _, g := range d.Groups {
		how[g.Name] = [2]bool{g.Static, g.ByRule}
	}
	if err != nil || how["dba"] != [2]bool{true, true} || how["prod-cluster"] != [2]bool{false, true} {
		t.Errorf("db_01's groups (static, by rule): %v, %v", how, err)
	}
	if err := f.st.PatchVM(ctx, vcB, "vm-404", store.VMFieldsPatch{Owner: &owner}, "test"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("patch an unknown VM: %v", err)
	}

	// A scope of groups: their members and nothing else, whatever the site.
	byGroup := access.WithScope(context.Background(), access.Scope{VMGroups: []string{dba.String(), prod.String()}})
	if vms, _, err := f.st.VMs(byGroup, store.VMQuery{}); err != nil || !slices.Equal(vmNames(vms), []string{"db_01", "web-01"}) {
		t.Errorf("VMs by group scope = %v, %v", vmNames(vms), err)
	}
	if _, err := f.st.VM(byGroup, vcA, "vm-2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a VM outside the groups: %v", err)
	}
	if _, err := f.st.VM(byGroup, vcA, "vm-1"); err != nil {
		t.Errorf("a VM of a group: %v", err)
	}
	if hosts, total, err := f.st.Objects(byGroup, store.ObjectQuery{Kind: store.KindHost}); err != nil || total != 0 {
		t.Errorf("hosts by group scope = %v, %v", hosts, err)
	}
	mixed := access.WithScope(context.Background(), access.Scope{Sites: []string{"dc2"}, VMGroups: []string{dba.String()}})
	if vms, _, err := f.st.VMs(mixed, store.VMQuery{}); err != nil || !slices.Equal(vmNames(vms), []string{"db_01", "edge-01"}) {
		t.Errorf("VMs by site and group scope = %v, %v", vmNames(vms), err)
	}
	// A group-only scope sees its own groups, nothing else.
	if groups, err := f.st.VMGroups(byGroup); err != nil || len(groups) != 2 || groups[0].Name != "dba" || groups[1].Name != "prod" || groups[1].Members != 1 {
		t.Errorf("groups as seen by the group scope = %+v, %v", groups, err)
	}

	// Forget: refused for a live VM, done for one vCenter no longer has.
	if err := f.st.ForgetVM(ctx, vcA, "vm-4"); !errors.Is(err, store.ErrVMLive) {
		t.Errorf("forget a live VM: %v", err)
	}
	f.writeInventory("dc1", f.agent, vcA, vmObj("vm-1", "web-01", "/Datacenters/DC1/vm/web-01", "host-1", "domain-c1", "poweredOn", "", 1, 1, nil))
	if err := f.st.ForgetVM(byGroup, vcA, "vm-4"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("forget a VM outside the caller's scope: %v", err)
	}
	if err := f.st.ForgetVM(ctx, vcA, "vm-4"); err != nil {
		t.Errorf("forget a deleted VM: %v", err)
	}
	if err := f.st.ForgetVM(ctx, vcA, "vm-4"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("forget it again: %v", err)
	}
	if err := f.st.DeleteVMGroup(ctx, web); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.VMGroupByID(ctx, web); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted group: %v", err)
	}
}
