package vsphere

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/agent/internal/vcload"
	"github.com/vmpulse/vmpulse/protocol"
)

// countersOf returns, per entity kind, the counter names of the series
// sent after the first skip payloads.
func countersOf(sink *memSink, skip int) map[string][]string {
	sink.mu.Lock()
	defer sink.mu.Unlock()
	out := map[string][]string{}
	for _, s := range sink.samples[skip:] {
		for _, sd := range s.Series {
			var names []string
			for _, c := range sd.Key.Counters {
				names = append(names, c.Name)
			}
			if prev, ok := out[sd.Key.EntityKind]; ok && !slices.Equal(prev, names) {
				out[sd.Key.EntityKind+"!mixed"] = names
			}
			out[sd.Key.EntityKind] = names
		}
	}
	return out
}

func payloads(sink *memSink) int {
	sink.mu.Lock()
	defer sink.mu.Unlock()
	return len(sink.samples)
}

// A pushed counter set shows in the next cycle's samples: the named
// counters the server knows become the kind's columns, unknown ones are
// named in the error, kinds not pushed keep their set, and an empty push
// restores the agent's own set.
func TestSetCountersNextCycle(t *testing.T) {
	f := newPerfFixture(t, "")
	ctx := context.Background()
	sink := newMemSink()
	c := NewCollector(f.sess, f.inv, sink, newMemMeta(), PerfConfig{}, testLog(t))
	if _, err := c.Collect(ctx, IntervalRealtime); err != nil {
		t.Fatal(err)
	}
	before := countersOf(sink, 0)
	if !slices.Equal(before["vm"], DefaultCounters["vm"]) {
		t.Fatalf("first cycle vm counters %v, want the defaults", before["vm"])
	}

	err := c.SetCounters(ctx, map[string][]string{
		"vm":      {"mem.usage.average", "cpu.usage.average", "bogus.counter.average"},
		"network": {"net.usage.average"},
	})
	var uc *UnknownCountersError
	if !errors.As(err, &uc) {
		t.Fatalf("SetCounters: %v, want an *UnknownCountersError", err)
	}
	if !slices.Equal(uc.Counters["vm"], []string{"bogus.counter.average"}) || !slices.Equal(uc.Kinds, []string{"network"}) || len(uc.Counters) != 1 {
		t.Fatalf("unknown: kinds %v counters %v", uc.Kinds, uc.Counters)
	}
	t.Logf("error: %v", err)

	n := payloads(sink)
	nextSimSecond()
	if _, err := c.Collect(ctx, IntervalRealtime); err != nil {
		t.Fatal(err)
	}
	after := countersOf(sink, n)
	if want := []string{"mem.usage.average", "cpu.usage.average"}; !slices.Equal(after["vm"], want) || after["vm!mixed"] != nil {
		t.Errorf("next cycle vm counters %v (mixed %v), want %v", after["vm"], after["vm!mixed"], want)
	}
	if !slices.Equal(after["host"], DefaultCounters["host"]) {
		t.Errorf("host counters %v changed by a push that left host out", after["host"])
	}

	// The whole overlay is replaced: without "vm" the defaults return.
	if err := c.SetCounters(ctx, map[string][]string{"host": {"cpu.usage.average"}}); err != nil {
		t.Fatalf("SetCounters: %v", err)
	}
	n = payloads(sink)
	nextSimSecond()
	if _, err := c.Collect(ctx, IntervalRealtime); err != nil {
		t.Fatal(err)
	}
	again := countersOf(sink, n)
	if !slices.Equal(again["vm"], DefaultCounters["vm"]) || !slices.Equal(again["host"], []string{"cpu.usage.average"}) {
		t.Errorf("after the second push: vm %v host %v", again["vm"], again["host"])
	}
}

// Before any cycle, SetCounters reads the counter info itself, so that
// the caller still learns which names are unknown.
func TestSetCountersBeforeFirstCycle(t *testing.T) {
	f := newPerfFixture(t, "")
	ctx := context.Background()
	sink := newMemSink()
	c := NewCollector(f.sess, f.inv, sink, newMemMeta(), PerfConfig{}, testLog(t))
	err := c.SetCounters(ctx, map[string][]string{"datastore": {"nope.nope.latest", "disk.used.latest"}})
	var uc *UnknownCountersError
	if !errors.As(err, &uc) || !slices.Equal(uc.Counters["datastore"], []string{"nope.nope.latest"}) {
		t.Fatalf("SetCounters before a cycle: %v", err)
	}
	if _, err := c.Collect(ctx, IntervalHistorical); err != nil {
		t.Fatal(err)
	}
	if got := countersOf(sink, 0)["datastore"]; !slices.Equal(got, []string{"disk.used.latest"}) {
		t.Errorf("datastore counters %v, want [disk.used.latest]", got)
	}
}

// cycleStarts records the start of every realtime cycle Run begins.
type cycleStarts struct {
	mu     sync.Mutex
	starts []time.Time
}

func (s *cycleStarts) since(t time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, st := range s.starts {
		if st.After(t) {
			n++
		}
	}
	return n
}

// An interval change changes the running loop's period at once: from a
// 1-hour period (one cycle, then nothing), to 200 ms (many cycles), and
// back to the configured one (SetIntervals(0, 0)).
func TestSetIntervalsChangesPeriod(t *testing.T) {
	f := newPerfFixture(t, "")
	c := NewCollector(f.sess, f.inv, newMemSink(), newMemMeta(), PerfConfig{RealtimeEvery: time.Hour, HistoricalEvery: time.Hour}, testLog(t))
	var starts cycleStarts
	done, quit := make(chan struct{}), make(chan struct{})
	go func() { // watches LastStats for new cycle starts
		defer close(done)
		var last time.Time
		for {
			select {
			case <-quit:
				return
			default:
			}
			if st := c.LastStats(IntervalRealtime); !st.Start.IsZero() && !st.Start.Equal(last) {
				last = st.Start
				starts.mu.Lock()
				starts.starts = append(starts.starts, st.Start)
				starts.mu.Unlock()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	cancel := runBG(t, c.Run)
	t.Cleanup(func() { cancel(); close(quit); <-done })

	deadline := time.Now().Add(10 * time.Second)
	for starts.since(time.Time{}) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if starts.since(time.Time{}) != 1 {
		t.Fatalf("%d realtime cycles after the start, want 1", starts.since(time.Time{}))
	}
	time.Sleep(time.Second)
	if n := starts.since(time.Time{}); n != 1 {
		t.Fatalf("%d realtime cycles within a second of a 1-hour period", n)
	}

	changed := time.Now()
	c.SetIntervals(200*time.Millisecond, 0)
	if got := c.Every(IntervalRealtime); got != 200*time.Millisecond {
		t.Fatalf("Every(realtime) = %s", got)
	}
	if got := c.Every(IntervalHistorical); got != time.Hour {
		t.Fatalf("Every(historical) = %s, want the configured hour", got)
	}
	time.Sleep(3 * time.Second)
	if n := starts.since(changed); n < 5 {
		t.Fatalf("%d realtime cycles in 3 s after the period became 200 ms", n)
	} else {
		t.Logf("%d realtime cycles in 3 s at 200 ms", n)
	}

	c.SetIntervals(0, 0)
	if got := c.Every(IntervalRealtime); got != time.Hour {
		t.Fatalf("Every(realtime) after a reset = %s, want the configured hour", got)
	}
	time.Sleep(500 * time.Millisecond) // a cycle in flight may finish
	reset := time.Now()
	time.Sleep(2 * time.Second)
	if n := starts.since(reset); n != 0 {
		t.Fatalf("%d realtime cycles after the period went back to 1 hour", n)
	}
}

// A shorter poll interval applies to the wait in progress: an event is
// delivered within seconds although the reader was set to poll hourly.
func TestSetPollEvery(t *testing.T) {
	s := newSim(t)
	ctx := context.Background()
	sess := newTestSession(t, s.ep)
	sink := newMemSink()
	r := NewEventReader(sess, sink, newMemMeta(), EventsConfig{PollEvery: time.Hour, Poll: true}, testLog(t))
	runBG(t, r.Run)
	time.Sleep(1500 * time.Millisecond) // the first poll is done (it delivers the reader's own login)
	first := len(eventsOf(sink))

	vm := simVM(t, s, "DC0_H0_VM0")
	mustTask(t, ctx)(vm.PowerOff(ctx))
	time.Sleep(time.Second)
	if n := len(eventsOf(sink)); n != first {
		t.Fatalf("%d events delivered with an hourly poll: %+v", n-first, eventsOf(sink)[first:])
	}
	r.SetPollEvery(100 * time.Millisecond)
	if r.PollEvery() != 100*time.Millisecond {
		t.Fatalf("PollEvery = %s", r.PollEvery())
	}
	deadline := time.Now().Add(5 * time.Second)
	for !slices.ContainsFunc(eventsOf(sink), func(e protocol.Event) bool { return e.Type == "VmPoweredOffEvent" }) {
		if time.Now().After(deadline) {
			t.Fatal("no VmPoweredOffEvent within 5 s of SetPollEvery(100ms)")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.SetPollEvery(0)
	if r.PollEvery() != time.Hour {
		t.Fatalf("PollEvery after a reset = %s, want the configured hour", r.PollEvery())
	}
}

// SetTagInterval and SetMaxWait reach the running watcher: a shorter tag
// interval re-reads the tags without waiting for the old one, and a
// bounded MaxWait makes the idle watcher's wait return (and be sent
// again) at the new bound, where an unbounded one sends nothing.
func TestInventorySetTagIntervalAndMaxWait(t *testing.T) {
	s := newSim(t)
	sink := newMemSink()
	sess, calls := countedSession(t, s)
	inv := NewInventory(sess, sink, InventoryConfig{Debounce: 200 * time.Millisecond, TagInterval: time.Hour, MaxWait: -1}, testLog(t))
	if inv.MaxWait() != 0 || inv.TagInterval() != time.Hour {
		t.Fatalf("initial MaxWait %s TagInterval %s", inv.MaxWait(), inv.TagInterval())
	}
	runBG(t, inv.Run)
	sink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool { return i.Full })
	time.Sleep(500 * time.Millisecond)

	tagReads := func(st map[string]int64) int64 { return st["cat"] }
	readsSince := func(before vcload.Stats) map[string]int64 {
		d := calls.Snapshot().Sub(before)
		return map[string]int64{
			"cat":    d["REST GET /rest/com/vmware/cis/tagging/category"].Calls + d["REST GET /api/cis/tagging/category"].Calls,
			"wait":   d["WaitForUpdatesEx"].Calls,
			"cancel": d["CancelWaitForUpdates"].Calls,
		}
	}

	before := calls.Snapshot()
	time.Sleep(2 * time.Second)
	if got := readsSince(before); got["wait"] != 0 || tagReads(got) != 0 {
		t.Fatalf("idle with no bound and hourly tags: %v", got)
	}

	before = calls.Snapshot()
	inv.SetTagInterval(300 * time.Millisecond)
	time.Sleep(2 * time.Second)
	got := readsSince(before)
	if tagReads(got) < 3 {
		t.Fatalf("tags read %d times in 2 s at a 300 ms interval: %v", tagReads(got), got)
	}
	inv.SetTagInterval(0)
	if inv.TagInterval() != time.Hour {
		t.Fatalf("TagInterval after a reset = %s", inv.TagInterval())
	}
	time.Sleep(500 * time.Millisecond) // a refresh due before the reset may still run

	before = calls.Snapshot()
	inv.SetMaxWait(time.Second)
	time.Sleep(3500 * time.Millisecond)
	got = readsSince(before)
	if got["cancel"] != 1 || got["wait"] < 3 || tagReads(got) != 0 {
		t.Fatalf("after SetMaxWait(1s), in 3.5 s: %v; want 1 cancel, ≥ 3 waits, no tag read", got)
	}
	t.Logf("after SetMaxWait(1s), in 3.5 s: %v", got)
	inv.SetMaxWait(0)
	time.Sleep(1500 * time.Millisecond) // the 1-second wait open at the change returns
	before = calls.Snapshot()
	time.Sleep(2 * time.Second)
	if got := readsSince(before); got["wait"] != 0 {
		t.Fatalf("after SetMaxWait(0): %v; want no wait returning", got)
	}
}

// ApplyCollection sets every part; zero values restore the agent's own.
func TestApplyCollection(t *testing.T) {
	f := newPerfFixture(t, "")
	ctx := context.Background()
	c := NewCollector(f.sess, f.inv, newMemSink(), newMemMeta(), PerfConfig{}, testLog(t))
	r := NewEventReader(f.sess, newMemSink(), newMemMeta(), EventsConfig{}, testLog(t))
	err := ApplyCollection(ctx, &protocol.CollectionSettings{
		Revision: 3, RealtimeInterval: time.Minute, HistoricalInterval: 10 * time.Minute,
		EventsPoll: 30 * time.Second, TagInterval: 15 * time.Minute,
		Counters: map[string][]string{"vm": {"cpu.usage.average"}},
	}, c, f.inv, r)
	if err != nil {
		t.Fatal(err)
	}
	if c.Every(IntervalRealtime) != time.Minute || c.Every(IntervalHistorical) != 10*time.Minute ||
		r.PollEvery() != 30*time.Second || f.inv.TagInterval() != 15*time.Minute {
		t.Fatalf("applied: %s %s %s %s", c.Every(IntervalRealtime), c.Every(IntervalHistorical), r.PollEvery(), f.inv.TagInterval())
	}
	if err := ApplyCollection(ctx, &protocol.CollectionSettings{Revision: 4}, c, f.inv, r); err != nil {
		t.Fatal(err)
	}
	if c.Every(IntervalRealtime) != 20*time.Second || c.Every(IntervalHistorical) != 5*time.Minute ||
		r.PollEvery() != 10*time.Second || f.inv.TagInterval() != 5*time.Minute {
		t.Fatalf("reset: %s %s %s %s", c.Every(IntervalRealtime), c.Every(IntervalHistorical), r.PollEvery(), f.inv.TagInterval())
	}
}
