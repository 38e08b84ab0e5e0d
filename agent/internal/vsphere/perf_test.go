package vsphere

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/protocol"
)

// perfFixture is a simulator with a running inventory watcher.
type perfFixture struct {
	sim  *sim
	sess *Session
	inv  *Inventory
}

// nextSimSecond sleeps into the next wall-clock second. The collector
// asks for CSV results, whose timestamps have whole seconds (vCenter's
// samples lie on its 20-second grid); the simulator stamps its one sample
// with the request's time, so a cycle within the same second as the
// previous one finds nothing newer than the high-water mark.
func nextSimSecond() {
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second + 50*time.Millisecond).Sub(now))
}

func newPerfFixture(t *testing.T, maxQueryMetrics string) *perfFixture {
	t.Helper()
	s := newSim(t)
	ctx := context.Background()
	if maxQueryMetrics != "" {
		admin := s.admin(t)
		om := object.NewOptionManager(admin.Client, *admin.Client.ServiceContent.Setting)
		if err := om.Update(ctx, []types.BaseOptionValue{&types.OptionValue{Key: maxQueryMetricsOption, Value: maxQueryMetrics}}); err != nil {
			t.Fatal(err)
		}
	}
	sess := newTestSession(t, s.ep)
	invSink := newMemSink()
	inv := NewInventory(sess, invSink, InventoryConfig{MaxWait: time.Second}, testLog(t))
	runBG(t, inv.Run)
	invSink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool { return i.Full })
	return &perfFixture{sim: s, sess: sess, inv: inv}
}

func activeEntities(l EntityLister, kinds ...string) map[string]string {
	out := map[string]string{}
	for _, e := range l.Entities() {
		if e.Active && slices.Contains(kinds, e.Kind) {
			out[e.Ref.Value] = e.Kind
		}
	}
	return out
}

// newest returns entity → newest timestamp in the sink, checking every
// series' shape on the way.
func checkSeries(t *testing.T, sink *memSink, source string, want map[string]string) map[string]int64 {
	t.Helper()
	sink.mu.Lock()
	defer sink.mu.Unlock()
	newest := map[string]int64{}
	for _, s := range sink.samples {
		for _, sd := range s.Series {
			k := sd.Key
			if k.Source != source || want[k.EntityID] != k.EntityKind {
				t.Fatalf("unexpected series key %+v", k)
			}
			if len(sd.Timestamps) == 0 || len(sd.Values) != len(k.Counters) {
				t.Fatalf("%s: %d timestamps, %d columns for %d counters", k.EntityID, len(sd.Timestamps), len(sd.Values), len(k.Counters))
			}
			for _, col := range sd.Values {
				if len(col) != len(sd.Timestamps) {
					t.Fatalf("%s: column length %d, %d timestamps", k.EntityID, len(col), len(sd.Timestamps))
				}
			}
			if !slices.IsSorted(sd.Timestamps) {
				t.Fatalf("%s: timestamps not ascending: %v", k.EntityID, sd.Timestamps)
			}
			for _, c := range k.Counters {
				if c.Name == "bogus.counter.average" {
					t.Fatal("unknown counter became a column")
				}
				if c.Name == "cpu.usage.average" && c.Unit != "%" {
					t.Errorf("cpu.usage.average unit %q, want %%", c.Unit)
				}
			}
			newest[k.EntityID] = max(newest[k.EntityID], sd.Timestamps[len(sd.Timestamps)-1])
		}
	}
	return newest
}

func TestPerfRealtimeBatchesAndHWM(t *testing.T) {
	f := newPerfFixture(t, "10")
	ctx := context.Background()
	meta := newMemMeta()
	sink := newMemSink()
	cfg := PerfConfig{Counters: map[string][]string{"vm": append(slices.Clone(DefaultCounters["vm"]), "bogus.counter.average")}}
	c := NewCollector(f.sess, f.inv, sink, meta, cfg, testLog(t))

	st, err := c.Collect(ctx, IntervalRealtime)
	if err != nil {
		t.Fatal(err)
	}
	want := activeEntities(f.inv, "vm", "host")
	t.Logf("realtime cycle: %+v", st)
	if st.Entities != len(want) || st.Entities == 0 {
		t.Fatalf("queried %d entities, want %d", st.Entities, len(want))
	}
	if st.QueryMetricsN != 10 || st.LargestQuery > 10 || st.Queries < st.Entities {
		t.Fatalf("batching ignored maxQueryMetrics=10: %+v", st)
	}
	if st.Errors != 0 || st.Values == 0 {
		t.Fatalf("cycle stats %+v", st)
	}
	first := checkSeries(t, sink, f.sess.Source(), want)
	if len(first) != len(want) {
		t.Fatalf("series for %d entities, want %d", len(first), len(want))
	}
	persisted, err := decodeHWM(meta.m[hwmMetaKey(f.sess.Source())])
	if err != nil {
		t.Fatal(err)
	}
	for id, ts := range first {
		if persisted[hwmKey{id, IntervalRealtime}] != ts {
			t.Errorf("%s: persisted mark %d, newest sent %d", id, persisted[hwmKey{id, IntervalRealtime}], ts)
		}
	}

	// A restarted collector (same MetaStore) whose marks are 100 s old
	// re-reads the gap from the marks, with nothing at or before them.
	rewound := map[string]int64{}
	h := newHWM()
	for k, ts := range persisted {
		h.advance(k.entity, k.interval, ts-100_000)
		rewound[k.entity] = ts - 100_000
	}
	if err := meta.SetMeta(hwmMetaKey(f.sess.Source()), h.encode()); err != nil {
		t.Fatal(err)
	}
	sink2 := newMemSink()
	c2 := NewCollector(f.sess, f.inv, sink2, meta, cfg, testLog(t))
	if _, err := c2.Collect(ctx, IntervalRealtime); err != nil {
		t.Fatal(err)
	}
	perEntity := map[string][]int64{}
	sink2.mu.Lock()
	for _, s := range sink2.samples {
		for _, sd := range s.Series {
			if sd.Key.Instance == "" {
				perEntity[sd.Key.EntityID] = append(perEntity[sd.Key.EntityID], sd.Timestamps...)
			}
		}
	}
	sink2.mu.Unlock()
	for id := range want {
		ts := perEntity[id]
		if len(ts) < 4 {
			t.Errorf("%s: %d samples after a 100 s gap, want ≥ 4 (20 s interval)", id, len(ts))
		}
		for _, x := range ts {
			if x <= rewound[id] {
				t.Errorf("%s: sample %d at or before the mark %d", id, x, rewound[id])
			}
		}
	}

	// The next cycle sends only samples newer than everything sent so far.
	newest := checkSeries(t, sink2, f.sess.Source(), want)
	sink3 := newMemSink()
	c3 := NewCollector(f.sess, f.inv, sink3, meta, cfg, testLog(t))
	if _, err := c3.Collect(ctx, IntervalRealtime); err != nil {
		t.Fatal(err)
	}
	sink3.mu.Lock()
	for _, s := range sink3.samples {
		for _, sd := range s.Series {
			if sd.Timestamps[0] <= newest[sd.Key.EntityID] {
				t.Errorf("%s: duplicate timestamp %d (already sent up to %d)", sd.Key.EntityID, sd.Timestamps[0], newest[sd.Key.EntityID])
			}
		}
	}
	sink3.mu.Unlock()
}

func TestPerfHistoricalAndSinkFailure(t *testing.T) {
	f := newPerfFixture(t, "")
	ctx := context.Background()
	meta := newMemMeta()
	sink := newMemSink()
	sink.failNext = 1000
	c := NewCollector(f.sess, f.inv, sink, meta, PerfConfig{}, testLog(t))
	if _, err := c.Collect(ctx, IntervalHistorical); err == nil {
		t.Fatal("cycle with a failing sink reported success")
	}
	if meta.m[hwmMetaKey(f.sess.Source())] != nil {
		t.Fatal("high-water marks persisted although the sink refused the data")
	}
	sink.failNext = 0
	st, err := c.Collect(ctx, IntervalHistorical)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("historical cycle: %+v", st)
	// The simulator is vCenter 6.5 without the option: its default is 256.
	if st.QueryMetricsN != modernQueryMetrics {
		t.Errorf("limit without the vCenter option = %d, want %d", st.QueryMetricsN, modernQueryMetrics)
	}
	want := activeEntities(f.inv, "cluster", "datastore")
	got := checkSeries(t, sink, f.sess.Source(), want)
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("historical series for %d entities, want %d", len(got), len(want))
	}
}

func TestPerfContinuesAfterSessionLoss(t *testing.T) {
	f := newPerfFixture(t, "")
	ctx := context.Background()
	c := NewCollector(f.sess, f.inv, newMemSink(), newMemMeta(), PerfConfig{}, testLog(t))
	if _, err := c.Collect(ctx, IntervalRealtime); err != nil {
		t.Fatal(err)
	}
	conn, err := f.sess.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	terminate(t, f.sim, conn)
	nextSimSecond()
	// The first cycle may hit the dead session (or the inventory watcher
	// may already have logged in again); within a few cycles it works.
	var st Stats
	for i := range 5 {
		st, err = c.Collect(ctx, IntervalRealtime)
		if err == nil {
			break
		}
		t.Logf("cycle %d after session loss: %v", i, err)
	}
	if err != nil || st.Values == 0 {
		t.Fatalf("collector did not recover: %v %+v", err, st)
	}
	if conn2, _ := f.sess.Conn(ctx); conn2 == conn {
		t.Fatal("still on the terminated connection")
	}
}

// The default VM counters include the balloon (mem.vmmemctl.average),
// which the operators' overview ranks VMs by: every VM series has its
// column. (The simulator keeps no balloon data: the values are 0 in the
// CSV results the collector asks for; its normal results drop them.)
func TestPerfDefaultVMCountersIncludeBalloon(t *testing.T) {
	if !slices.Contains(DefaultCounters["vm"], "mem.vmmemctl.average") {
		t.Fatal("mem.vmmemctl.average is not a default VM counter")
	}
	f := newPerfFixture(t, "")
	sink := newMemSink()
	c := NewCollector(f.sess, f.inv, sink, newMemMeta(), PerfConfig{}, testLog(t))
	if _, err := c.Collect(context.Background(), IntervalRealtime); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	vms, withBalloon := 0, 0
	for _, s := range sink.samples {
		for _, sd := range s.Series {
			if sd.Key.EntityKind != "vm" {
				continue
			}
			vms++
			if slices.Contains(sd.Key.Counters, protocol.Counter{Name: "mem.vmmemctl.average", Unit: "KB"}) {
				withBalloon++
			}
		}
	}
	if vms == 0 || withBalloon != vms {
		t.Fatalf("%d of %d VM series have a mem.vmmemctl.average (KB) column", withBalloon, vms)
	}
}
