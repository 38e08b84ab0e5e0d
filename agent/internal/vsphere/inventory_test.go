package vsphere

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/protocol"
)

func findObj(inv *protocol.Inventory, id string) *protocol.InventoryObject {
	for i := range inv.Objects {
		if inv.Objects[i].ID == id {
			return &inv.Objects[i]
		}
	}
	return nil
}

func TestInventoryFullThenDeltas(t *testing.T) {
	s := newSim(t)
	ctx := context.Background()
	admin := s.admin(t)
	finder := find.NewFinder(admin.Client)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	finder.SetDatacenter(dc)
	allVMs, err := finder.VirtualMachineList(ctx, "*")
	if err != nil {
		t.Fatal(err)
	}
	clusterVM, err := finder.VirtualMachine(ctx, "DC0_C0_RP0_VM0")
	if err != nil {
		t.Fatal(err)
	}
	offVM, err := finder.VirtualMachine(ctx, "DC0_H0_VM1")
	if err != nil {
		t.Fatal(err)
	}
	mustTask(t, ctx)(offVM.PowerOff(ctx))

	// A custom attribute set before the watcher starts.
	cfm := object.NewCustomFieldsManager(admin.Client)
	def, err := cfm.Add(ctx, "owner", "VirtualMachine", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfm.Set(ctx, clusterVM.Reference(), def.Key, "alice"); err != nil {
		t.Fatal(err)
	}

	sink := newMemSink()
	sess := newTestSession(t, s.ep)
	// Default MaxWait (1 min): the wait returns on changes, not on a timer.
	inv := NewInventory(sess, sink, InventoryConfig{Debounce: 300 * time.Millisecond}, testLog(t))
	runBG(t, inv.Run)

	full := sink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool { return i.Full })
	if full.Source == "" || full.Source != sess.Source() {
		t.Fatalf("full snapshot source %q, session source %q", full.Source, sess.Source())
	}
	nVM := 0
	for _, o := range full.Objects {
		if o.Kind == "vm" {
			nVM++
		}
	}
	if nVM != len(allVMs) {
		t.Fatalf("full snapshot has %d VMs, simulator has %d", nVM, len(allVMs))
	}
	off := findObj(full, offVM.Reference().Value)
	if off == nil || off.Props["power_state"] != "poweredOff" {
		t.Fatalf("powered-off VM missing or wrong: %+v", off)
	}
	vm := findObj(full, clusterVM.Reference().Value)
	if vm == nil {
		t.Fatal("cluster VM missing from snapshot")
	}
	if vm.Props["power_state"] != "poweredOn" || vm.Path != "/DC0/vm/DC0_C0_RP0_VM0" || vm.Name != "DC0_C0_RP0_VM0" {
		t.Errorf("cluster VM basics wrong: name %q path %q props %v", vm.Name, vm.Path, vm.Props)
	}
	host := findObj(full, vm.Props["host_id"].(string))
	if host == nil || host.Kind != "host" || host.Props["cluster_id"] == nil {
		t.Fatalf("VM's host missing or not in a cluster: %+v", host)
	}
	if vm.Props["cluster_id"] != host.Props["cluster_id"] {
		t.Errorf("VM cluster_id %v, host cluster %v", vm.Props["cluster_id"], host.Props["cluster_id"])
	}
	if cl := findObj(full, vm.Props["cluster_id"].(string)); cl == nil || cl.Kind != "cluster" {
		t.Errorf("cluster object missing: %+v", cl)
	}
	if ds, _ := vm.Props["datastore_ids"].([]string); len(ds) == 0 {
		t.Errorf("datastore_ids empty: %v", vm.Props["datastore_ids"])
	}
	if vm.Props["num_cpu"] == nil || vm.Props["memory_mb"] == nil || vm.Props["uuid"] == nil || vm.Props["resource_pool_id"] == nil {
		t.Errorf("hardware/uuid/pool props missing: %v", vm.Props)
	}
	if ca, _ := vm.Props["custom_attributes"].(map[string]string); ca["owner"] != "alice" {
		t.Errorf("custom_attributes = %v, want owner=alice", vm.Props["custom_attributes"])
	}
	if tg, ok := vm.Props["tags"].([]string); !ok || len(tg) != 0 {
		t.Errorf("tags before any tagging = %#v, want empty list", vm.Props["tags"])
	}
	if ents := inv.Entities(); len(ents) == 0 {
		t.Error("Entities() empty after the full snapshot")
	}

	// Power off: a delta arrives within 5 s.
	start := time.Now()
	mustTask(t, ctx)(clusterVM.PowerOff(ctx))
	sink.waitInventory(t, 5*time.Second, func(i *protocol.Inventory) bool {
		o := findObj(i, clusterVM.Reference().Value)
		return !i.Full && o != nil && o.Props["power_state"] == "poweredOff"
	})
	t.Logf("power-off delta after %s", time.Since(start))

	// Tag: visible after a tag refresh.
	rc := rest.NewClient(admin.Client)
	if err := rc.Login(ctx, s.srv.URL.User); err != nil {
		t.Fatal(err)
	}
	tm := tags.NewManager(rc)
	catID, err := tm.CreateCategory(ctx, &tags.Category{Name: "env", Cardinality: "SINGLE", AssociableTypes: []string{"VirtualMachine"}})
	if err != nil {
		t.Fatal(err)
	}
	tagID, err := tm.CreateTag(ctx, &tags.Tag{Name: "prod", CategoryID: catID})
	if err != nil {
		t.Fatal(err)
	}
	if err := tm.AttachTag(ctx, tagID, clusterVM.Reference()); err != nil {
		t.Fatal(err)
	}
	// The refresh interrupts the wait (CancelWaitForUpdates). Tags are
	// read over vAPI (REST) and have no 5 s promise; on a loaded CI
	// machine the read took longer than 5 s once.
	inv.RefreshTags()
	sink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool {
		o := findObj(i, clusterVM.Reference().Value)
		return o != nil && slices.Equal(o.Props["tags"].([]string), []string{"env/prod"})
	})

	// Destroy: a Deleted entry.
	mustTask(t, ctx)(offVM.Destroy(ctx))
	sink.waitInventory(t, 5*time.Second, func(i *protocol.Inventory) bool {
		o := findObj(i, offVM.Reference().Value)
		return !i.Full && o != nil && o.Deleted && o.Kind == "vm"
	})
}

// mustTask waits for a task-returning call to succeed.
func mustTask(t *testing.T, ctx context.Context) func(*object.Task, error) {
	return func(task *object.Task, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := task.WaitForResult(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInventoryRecoversFromLostSession(t *testing.T) {
	s := newSim(t)
	ctx := context.Background()
	sink := newMemSink()
	sess := newTestSession(t, s.ep)
	inv := NewInventory(sess, sink, InventoryConfig{Debounce: 200 * time.Millisecond, MaxWait: time.Second}, testLog(t))
	runBG(t, inv.Run)
	first := sink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool { return i.Full })

	conn, err := sess.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	terminate(t, s, conn)

	// The watcher notices, logs in again and re-sends a full snapshot.
	sink.waitInventory(t, 20*time.Second, func(i *protocol.Inventory) bool { return i.Full && i != first })
	conn2, err := sess.Conn(ctx)
	if err != nil || conn2.Gen == conn.Gen {
		t.Fatalf("no new session generation: %v", err)
	}
}

// terminate ends conn's session from an operator's client.
func terminate(t *testing.T, s *sim, conn *Conn) {
	t.Helper()
	ctx := context.Background()
	admin := s.admin(t)
	us, err := conn.Client.SessionManager.UserSession(ctx)
	if err != nil || us == nil {
		t.Fatalf("user session: %v %v", us, err)
	}
	if err := admin.SessionManager.TerminateSession(ctx, []string{us.Key}); err != nil {
		t.Fatal(err)
	}
}

// A paged initial retrieval must not show the collector a partial entity
// list: before this, the first realtime cycle at 5,000 VMs queried only
// the 884 entities of the first pages, and the others missed that slot.
func TestInventoryEntitiesOnlyWhenComplete(t *testing.T) {
	s := newSim(t)
	sink := newMemSink()
	sess := newTestSession(t, s.ep)
	// Three objects per page: the simulator's inventory takes many pages.
	inv := NewInventory(sess, sink, InventoryConfig{Debounce: 200 * time.Millisecond, MaxWait: time.Second, MaxObjectUpdates: 3}, testLog(t))
	type page struct {
		truncated bool
		entities  int
	}
	var mu sync.Mutex
	var pages []page
	inv.afterPage = func(truncated bool) {
		mu.Lock()
		defer mu.Unlock()
		pages = append(pages, page{truncated, len(inv.Entities())})
	}
	runBG(t, inv.Run)
	full := sink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool { return i.Full })

	want := 0
	for _, o := range full.Objects {
		switch o.Kind {
		case "vm", "host", "cluster", "datastore":
			want++
		}
	}
	mu.Lock()
	defer mu.Unlock()
	paged := 0
	for i, p := range pages {
		if !p.truncated {
			break
		}
		paged++
		if p.entities != 0 {
			t.Fatalf("page %d of the initial retrieval: Entities() has %d entities, want none until it is complete", i, p.entities)
		}
	}
	if paged < 3 {
		t.Fatalf("only %d truncated pages: the test needs a paged retrieval (%+v)", paged, pages)
	}
	if got := pages[paged].entities; got != want || want == 0 {
		t.Fatalf("after the last page Entities() has %d entities, the snapshot %d", got, want)
	}
}

// Renaming or moving a folder changes the path of everything below it:
// the delta carries those objects with their new paths.
func TestInventoryFolderRenameUpdatesChildPaths(t *testing.T) {
	s := newSim(t)
	ctx := context.Background()
	admin := s.admin(t)
	finder := find.NewFinder(admin.Client)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	finder.SetDatacenter(dc)
	folders, err := dc.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	web, err := folders.VmFolder.CreateFolder(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	vm, err := finder.VirtualMachine(ctx, "DC0_H0_VM0")
	if err != nil {
		t.Fatal(err)
	}
	mustTask(t, ctx)(web.MoveInto(ctx, []types.ManagedObjectReference{vm.Reference()}))

	sink := newMemSink()
	sess := newTestSession(t, s.ep)
	inv := NewInventory(sess, sink, InventoryConfig{Debounce: 200 * time.Millisecond, MaxWait: time.Second}, testLog(t))
	runBG(t, inv.Run)
	full := sink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool { return i.Full })
	if o := findObj(full, vm.Reference().Value); o == nil || o.Path != "/DC0/vm/web/DC0_H0_VM0" {
		t.Fatalf("VM in the full snapshot: %+v", o)
	}

	mustTask(t, ctx)(web.Rename(ctx, "frontend"))
	sink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool {
		o := findObj(i, vm.Reference().Value)
		return !i.Full && o != nil && o.Path == "/DC0/vm/frontend/DC0_H0_VM0"
	})
}
