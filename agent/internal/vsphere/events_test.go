package vsphere

import (
	"context"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"

	"github.com/vmpulse/vmpulse/protocol"
)

func simVM(t *testing.T, s *sim, name string) *object.VirtualMachine {
	t.Helper()
	ctx := context.Background()
	finder := find.NewFinder(s.admin(t).Client)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	finder.SetDatacenter(dc)
	vm, err := finder.VirtualMachine(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

func eventsOf(sink *memSink) []protocol.Event {
	sink.mu.Lock()
	defer sink.mu.Unlock()
	return append([]protocol.Event(nil), sink.events...)
}

func TestEventsOnceAcrossRestart(t *testing.T) {
	s := newSim(t)
	ctx := context.Background()
	sess := newTestSession(t, s.ep)
	meta := newMemMeta()
	sink := newMemSink()
	cfg := EventsConfig{PageSize: 3} // small pages exercise paging
	started := time.Now().UnixMilli()
	r := NewEventReader(sess, sink, meta, cfg, testLog(t))

	if _, err := r.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	// Without lookback only events from start-up on arrive (our own login).
	for _, e := range eventsOf(sink) {
		if e.Time < started {
			t.Fatalf("first start without lookback delivered an older event: %+v", e)
		}
	}

	vm := simVM(t, s, "DC0_H0_VM0")
	mustTask(t, ctx)(vm.PowerOff(ctx))
	if _, err := r.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	got := eventsOf(sink)
	var off *protocol.Event
	for i, e := range got {
		if e.Type == "VmPoweredOffEvent" {
			off = &got[i]
		}
	}
	if off == nil {
		t.Fatalf("no VmPoweredOffEvent among %d events: %+v", len(got), got)
	}
	if off.User != testUser || off.EntityKind != "vm" || off.EntityID != vm.Reference().Value ||
		off.EntityName != "DC0_H0_VM0" || off.Datacenter != "DC0" || off.Source != sess.Source() || off.Message == "" {
		t.Errorf("power-off event fields wrong: %+v", *off)
	}

	if n, err := r.Poll(ctx); err != nil || n != 0 {
		t.Fatalf("second poll: %d events, %v; want none", n, err)
	}

	// Restart with the same MetaStore: nothing is delivered again.
	sink2 := newMemSink()
	r2 := NewEventReader(sess, sink2, meta, cfg, testLog(t))
	if n, err := r2.Poll(ctx); err != nil || n != 0 {
		t.Fatalf("after restart: %d events redelivered, %v", n, err)
	}

	// A refused page is not checkpointed and comes again.
	mustTask(t, ctx)(vm.PowerOn(ctx))
	sink2.failNext = 1
	if _, err := r2.Poll(ctx); err == nil {
		t.Fatal("poll with a failing sink reported success")
	}
	if _, err := r2.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	keys := map[int64]bool{}
	on := false
	for _, e := range eventsOf(sink2) {
		if keys[e.Key] {
			t.Errorf("event %d delivered twice", e.Key)
		}
		keys[e.Key] = true
		for _, old := range got {
			if old.Key == e.Key {
				t.Errorf("event %d (%s) redelivered after restart", e.Key, e.Type)
			}
		}
		on = on || e.Type == "VmPoweredOnEvent"
	}
	if !on {
		t.Errorf("VmPoweredOnEvent missing after retry: %+v", eventsOf(sink2))
	}
}

func TestEventsLookbackAndSessionLoss(t *testing.T) {
	s := newSim(t)
	ctx := context.Background()
	sess := newTestSession(t, s.ep)
	sink := newMemSink()
	r := NewEventReader(sess, sink, newMemMeta(), EventsConfig{Lookback: time.Hour}, testLog(t))
	n, err := r.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("lookback of 1h delivered none of the simulator's start-up events")
	}

	conn, err := sess.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	terminate(t, s, conn)
	mustTask(t, ctx)(simVM(t, s, "DC0_H0_VM1").PowerOff(ctx))
	var total int
	for range 3 {
		n, err = r.Poll(ctx)
		total += n
		if err == nil && total > 0 {
			break
		}
	}
	if total == 0 {
		t.Fatalf("no events after session loss: %v", err)
	}
}
