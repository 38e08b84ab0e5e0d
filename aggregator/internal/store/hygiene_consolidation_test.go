package store_test

import (
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// TestHygieneConsolidation: a VM whose disks vCenter says need
// consolidation is a warning, since the inventory observed the change to
// true (or its first_seen when it was true from the start); a VM
// reporting false, or not reporting the property (an older agent), is
// none; the finding ends when the property clears.
func TestHygieneConsolidation(t *testing.T) {
	f := newFixture(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	day := 24 * time.Hour
	t0 := now.Add(-10 * day)
	vm := func(id, name string, props map[string]any) protocol.InventoryObject {
		return vmObj(id, name, "/Datacenters/DC1/vm/"+name, "host-1", "", "poweredOn", "guestToolsRunning", 2, 2048, props)
	}
	later := vm("vm-2", "needs-later", map[string]any{"consolidation_needed": false})
	f.writeInventoryAt("dc1", f.agent, vcA, t0, true,
		vm("vm-1", "needs-born", map[string]any{"consolidation_needed": true}),
		later,
		vm("vm-3", "fine", map[string]any{"consolidation_needed": false}),
		vm("vm-4", "old-agent", nil),
	)
	later.Props["consolidation_needed"] = true
	changed := now.Add(-2 * day)
	f.writeInventoryAt("dc1", f.agent, vcA, changed, false, later)

	rep, err := f.st.Hygiene(f.ctx, store.HygieneQuery{Now: now, Kind: store.HygieneConsolidation})
	if err != nil {
		t.Fatal(err)
	}
	got := findingNames(rep.Findings)
	if len(got) != 2 || got[0] != "consolidation_needed:needs-born" || got[1] != "consolidation_needed:needs-later" || rep.Total != 2 ||
		rep.Counts[store.HygieneConsolidation] != 2 {
		t.Fatalf("findings %v, total %d, counts %v", got, rep.Total, rep.Counts)
	}
	born, lt := rep.Findings[0], rep.Findings[1]
	if born.Severity != store.SeverityWarning || !born.SinceFirstSeen || born.Since == nil {
		t.Errorf("needs-born: %+v", born)
	}
	if lt.SinceFirstSeen || lt.Since == nil || !lt.Since.Equal(changed) {
		t.Errorf("needs-later: since %v (first seen %v), want %v", lt.Since, lt.SinceFirstSeen, changed)
	}
	later.Props["consolidation_needed"] = false
	f.writeInventoryAt("dc1", f.agent, vcA, now.Add(-time.Hour), false, later)
	if rep, err = f.st.Hygiene(f.ctx, store.HygieneQuery{Now: now}); err != nil || rep.Counts[store.HygieneConsolidation] != 1 {
		t.Errorf("after consolidation: counts %v, %v", rep.Counts, err)
	}
}
