package vsphere

import (
	"testing"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/protocol"
)

// setConsolidationNeeded sets a simulator VM's runtime.consolidationNeeded
// as vCenter does after a snapshot removal that left redo logs, notifying
// waiting property collectors.
func setConsolidationNeeded(t *testing.T, s *sim, ref types.ManagedObjectReference, v bool) {
	t.Helper()
	reg := s.model.Map()
	vm, ok := reg.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		t.Fatalf("no simulator VM %s", ref.Value)
	}
	ctx := simulator.NewContext()
	reg.WithLock(ctx, vm, func() {
		reg.Update(ctx, vm, []types.PropertyChange{{Name: "runtime.consolidationNeeded", Val: v}})
	})
}

// runtime.consolidationNeeded is sent as the VM prop consolidation_needed
// in the full snapshot and in the delta that follows a change.
func TestInventoryConsolidationNeeded(t *testing.T) {
	s := newSim(t)
	vm := simVM(t, s, "DC0_H0_VM0")
	id := vm.Reference().Value
	setConsolidationNeeded(t, s, vm.Reference(), true)

	sink := newMemSink()
	sess := newTestSession(t, s.ep)
	inv := NewInventory(sess, sink, InventoryConfig{Debounce: 200 * time.Millisecond}, testLog(t))
	runBG(t, inv.Run)
	full := sink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool { return i.Full })
	if o := findObj(full, id); o == nil || o.Props["consolidation_needed"] != true {
		t.Fatalf("full snapshot: %s props %v, want consolidation_needed true", id, o)
	}
	other := simVM(t, s, "DC0_H0_VM1").Reference().Value
	if o := findObj(full, other); o == nil || o.Props["consolidation_needed"] == true {
		t.Fatalf("full snapshot: %s consolidation_needed %v", other, o)
	}

	// Consolidated: the delta says so through the open wait.
	setConsolidationNeeded(t, s, vm.Reference(), false)
	sink.waitInventory(t, 5*time.Second, func(i *protocol.Inventory) bool {
		o := findObj(i, id)
		return !i.Full && o != nil && o.Props["consolidation_needed"] == false
	})
	setConsolidationNeeded(t, s, vm.Reference(), true)
	sink.waitInventory(t, 5*time.Second, func(i *protocol.Inventory) bool {
		o := findObj(i, id)
		return !i.Full && o != nil && o.Props["consolidation_needed"] == true
	})
}
