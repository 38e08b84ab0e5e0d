package vsphere

import (
	"context"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/protocol"
)

// Small MaxObjectUpdates forces truncated results for the initial update
// and for a burst of changes; a burst within the debounce window arrives as
// one delta.
func TestInventoryTruncatedAndCoalesced(t *testing.T) {
	s := newSim(t)
	ctx := context.Background()
	sink := newMemSink()
	sess := newTestSession(t, s.ep)
	inv := NewInventory(sess, sink, InventoryConfig{Debounce: 2 * time.Second, MaxWait: time.Second, MaxObjectUpdates: 3}, testLog(t))
	runBG(t, inv.Run)
	full := sink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool { return i.Full })
	kinds := map[string]int{}
	for _, o := range full.Objects {
		kinds[o.Kind]++
	}
	t.Logf("full snapshot kinds: %v", kinds)
	for _, k := range []string{"vm", "host", "cluster", "datastore", "resourcepool", "datacenter", "folder"} {
		if kinds[k] == 0 {
			t.Errorf("no %s in a truncated full snapshot", k)
		}
	}

	names := []string{"DC0_H0_VM0", "DC0_H0_VM1", "DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1"}
	for _, n := range names {
		mustTask(t, ctx)(simVM(t, s, n).PowerOff(ctx))
	}
	delta := sink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool {
		off := 0
		for _, o := range i.Objects {
			if o.Kind == "vm" && o.Props["power_state"] == "poweredOff" {
				off++
			}
		}
		return !i.Full && off > 0
	})
	off := 0
	for _, o := range delta.Objects {
		if o.Kind == "vm" && o.Props["power_state"] == "poweredOff" {
			off++
		}
	}
	if off != len(names) {
		t.Errorf("first delta after a burst of %d power-offs carries %d of them", len(names), off)
	}

	inv.Resync()
	again := sink.waitInventory(t, 10*time.Second, func(i *protocol.Inventory) bool { return i.Full && i != full })
	if len(again.Objects) != len(full.Objects) {
		t.Errorf("resync snapshot has %d objects, first had %d", len(again.Objects), len(full.Objects))
	}
}

func TestRunLoops(t *testing.T) {
	s := newSim(t)
	sess := newTestSession(t, s.ep)
	invSink, perfSink, evSink := newMemSink(), newMemSink(), newMemSink()
	meta := newMemMeta()
	inv := NewInventory(sess, invSink, InventoryConfig{MaxWait: time.Second}, testLog(t))
	c := NewCollector(sess, inv, perfSink, meta, PerfConfig{RealtimeEvery: 200 * time.Millisecond, HistoricalEvery: 300 * time.Millisecond}, testLog(t))
	r := NewEventReader(sess, evSink, meta, EventsConfig{PollEvery: 200 * time.Millisecond, Lookback: time.Hour}, testLog(t))
	runBG(t, inv.Run)
	runBG(t, c.Run)
	stopEvents := runBG(t, r.Run)

	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		rt, hist := c.LastStats(IntervalRealtime), c.LastStats(IntervalHistorical)
		if rt.Values > 0 && hist.Values > 0 && len(eventsOf(evSink)) > 0 {
			t.Logf("realtime %+v", rt)
			t.Logf("historical %+v", hist)
			stopEvents()
			if meta.m[hwmMetaKey(sess.Source())] == nil || meta.m[eventMetaKey(sess.Source())] == nil {
				t.Fatal("checkpoints not persisted by the Run loops")
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("Run loops produced nothing: realtime %+v historical %+v events %d",
		c.LastStats(IntervalRealtime), c.LastStats(IntervalHistorical), len(eventsOf(evSink)))
}
