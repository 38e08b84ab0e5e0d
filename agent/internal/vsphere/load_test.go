package vsphere

import (
	"context"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/agent/internal/vcload"
	"github.com/vmpulse/vmpulse/protocol"
)

// countedSession is a test session whose calls to the simulator are
// counted.
func countedSession(t *testing.T, s *sim) (*Session, *vcload.Counter) {
	t.Helper()
	sess := newTestSession(t, s.ep)
	c := &vcload.Counter{}
	sess.WrapTransport = c.Wrap
	return sess, c
}

// With default settings, an idle inventory watcher keeps one
// WaitForUpdatesEx open instead of returning every few seconds; a tag
// refresh and a resync cancel it with CancelWaitForUpdates, and shutdown
// does not wait for it.
func TestInventoryLongWaitIdle(t *testing.T) {
	s := newSim(t)
	ctx := context.Background()
	sink := newMemSink()
	sess, calls := countedSession(t, s)
	inv := NewInventory(sess, sink, InventoryConfig{Debounce: 200 * time.Millisecond}, testLog(t))
	stop := make(chan struct{})
	cancel := runBG(t, func(ctx context.Context) error {
		defer close(stop)
		return inv.Run(ctx)
	})
	sink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool { return i.Full })

	time.Sleep(500 * time.Millisecond) // the tag refresh after the snapshot, then the wait
	before := calls.Snapshot()
	time.Sleep(7 * time.Second)
	idle := calls.Snapshot().Sub(before)
	if n := idle.Total(nil).Calls; n > 1 {
		t.Errorf("idle for 7 s, the watcher made %d calls (%v); want at most the one open wait", n, idle)
	}

	// A change arrives within 5 s through the open wait.
	vm := simVM(t, s, "DC0_H0_VM0")
	start := time.Now()
	mustTask(t, ctx)(vm.PowerOff(ctx))
	sink.waitInventory(t, 5*time.Second, func(i *protocol.Inventory) bool {
		o := findObj(i, vm.Reference().Value)
		return !i.Full && o != nil && o.Props["power_state"] == "poweredOff"
	})
	t.Logf("power-off visible after %s", time.Since(start).Round(time.Millisecond))

	// A tag refresh cancels the wait and reads the tags at once.
	time.Sleep(300 * time.Millisecond)
	before = calls.Snapshot()
	inv.RefreshTags()
	deadline := time.Now().Add(3 * time.Second)
	for calls.Snapshot().Sub(before)["REST GET /rest/com/vmware/cis/tagging/category"].Calls == 0 &&
		calls.Snapshot().Sub(before)["REST GET /api/cis/tagging/category"].Calls == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("RefreshTags did not read tags within 3 s: %v", calls.Snapshot().Sub(before))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := calls.Snapshot().Sub(before)["CancelWaitForUpdates"].Calls; got != 1 {
		t.Errorf("RefreshTags: %d CancelWaitForUpdates calls, want 1", got)
	}

	// A resync cancels the wait too.
	nFull := 0
	sink.mu.Lock()
	for _, i := range sink.inv {
		if i.Full {
			nFull++
		}
	}
	sink.mu.Unlock()
	inv.Resync()
	sink.waitInventory(t, 3*time.Second, func(i *protocol.Inventory) bool {
		if i.Full {
			nFull--
		}
		return i.Full && nFull < 0
	})

	// Shutdown does not wait for vCenter.
	start = time.Now()
	cancel()
	select {
	case <-stop:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2 s of cancellation")
	}
	t.Logf("stopped in %s", time.Since(start).Round(time.Millisecond))
}

// With the inventory watcher as its Announcer (as the agent runs it), the
// event reader makes no calls while vCenter has no new events, and
// delivers a new event within PollEvery; the only open request is the
// watcher's WaitForUpdatesEx.
func TestEventsAnnouncedNotPolled(t *testing.T) {
	s := newSim(t)
	ctx := context.Background()
	sess, calls := countedSession(t, s)
	sink := newMemSink()
	inv := NewInventory(sess, sink, InventoryConfig{Debounce: 200 * time.Millisecond}, testLog(t))
	runBG(t, inv.Run)
	sink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool { return i.Full })
	r := NewEventReader(sess, sink, newMemMeta(), EventsConfig{PollEvery: 2 * time.Second, Announcer: inv}, testLog(t))
	runBG(t, r.Run)

	time.Sleep(3 * time.Second) // open the collector, read, follow
	before := calls.Snapshot()
	time.Sleep(6 * time.Second)
	if idle := calls.Snapshot().Sub(before); idle.Total(nil).Calls > 1 {
		t.Errorf("idle for 6 s with PollEvery 2 s, the watcher and the reader made %d calls (%v); want at most the one open wait", idle.Total(nil).Calls, idle)
	}

	for round := range 3 {
		vm := simVM(t, s, "DC0_H0_VM0")
		start := time.Now()
		if round%2 == 0 {
			mustTask(t, ctx)(vm.PowerOff(ctx))
		} else {
			mustTask(t, ctx)(vm.PowerOn(ctx))
		}
		want := map[bool]string{true: "VmPoweredOffEvent", false: "VmPoweredOnEvent"}[round%2 == 0]
		for {
			n := 0
			for _, e := range eventsOf(sink) {
				if e.Type == want && e.EntityID == vm.Reference().Value {
					n++
				}
			}
			if n == round/2+1 {
				break
			}
			if time.Since(start) > 2*time.Second+time.Second/2 {
				t.Fatalf("round %d: %s not delivered within PollEvery (2 s)", round, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("round %d: %s delivered after %s", round, want, time.Since(start).Round(time.Millisecond))
	}
	if reads := calls.Snapshot()["ReadNextEvents"].Calls; reads > 12 {
		t.Errorf("%d ReadNextEvents calls for 3 announced changes; the reader polls", reads)
	}
	if n := calls.Snapshot()["CreateCollectorForEvents"].Calls; n != 1 {
		t.Errorf("%d event collectors created; want one, long-lived", n)
	}
	if n := calls.Snapshot()["CreatePropertyCollector"].Calls; n != 1 {
		t.Errorf("%d property collectors created; want the watcher's only", n)
	}
}

// After the session is lost, the reader opens a new collector on the new
// session and the watcher follows it there: events are announced again.
func TestEventsAnnouncedAfterRelogin(t *testing.T) {
	s := newSim(t)
	ctx := context.Background()
	sess, calls := countedSession(t, s)
	sink := newMemSink()
	inv := NewInventory(sess, sink, InventoryConfig{Debounce: 200 * time.Millisecond}, testLog(t))
	runBG(t, inv.Run)
	sink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool { return i.Full })
	r := NewEventReader(sess, sink, newMemMeta(), EventsConfig{PollEvery: time.Second, Announcer: inv}, testLog(t))
	runBG(t, r.Run)
	time.Sleep(2 * time.Second)

	// Kill the session on the server: both parts log in again.
	admin := s.admin(t)
	conn, err := sess.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	us, err := conn.Client.SessionManager.UserSession(ctx)
	if err != nil || us == nil {
		t.Fatalf("own session: %v %v", us, err)
	}
	if err := admin.SessionManager.TerminateSession(ctx, []string{us.Key}); err != nil {
		t.Fatal(err)
	}
	vm := simVM(t, s, "DC0_H0_VM1")
	mustTask(t, ctx)(vm.PowerOff(ctx)) // wakes the watcher, which finds its session gone
	deadline := time.Now().Add(20 * time.Second)
	for findEventFor(eventsOf(sink), "VmPoweredOffEvent", vm.Reference().Value) == nil {
		if time.Now().After(deadline) {
			t.Fatal("power-off after a lost session not delivered within 20 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Now announced on the new session: quiet, then prompt.
	time.Sleep(3 * time.Second)
	before := calls.Snapshot()
	time.Sleep(4 * time.Second)
	if idle := calls.Snapshot().Sub(before); idle.Total(nil).Calls > 1 {
		t.Errorf("after the re-login, idle for 4 s: %d calls (%v); the reader polls", idle.Total(nil).Calls, idle)
	}
	start := time.Now()
	mustTask(t, ctx)(vm.PowerOn(ctx))
	for findEventFor(eventsOf(sink), "VmPoweredOnEvent", vm.Reference().Value) == nil {
		if time.Since(start) > 2*time.Second {
			t.Fatal("power-on after the re-login not delivered within 2 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func findEventFor(evs []protocol.Event, typ, entity string) *protocol.Event {
	for i := range evs {
		if evs[i].Type == typ && evs[i].EntityID == entity {
			return &evs[i]
		}
	}
	return nil
}
