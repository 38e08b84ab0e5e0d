package vsphere

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/protocol"
)

// setHistoricalIntervals replaces the simulator's
// PerformanceManager.historicalInterval, as an administrator would.
func setHistoricalIntervals(t *testing.T, f *perfFixture, ivs []types.PerfInterval) {
	t.Helper()
	admin := f.sim.admin(t)
	reg := f.sim.model.Map()
	pm, ok := reg.Get(*admin.Client.ServiceContent.PerfManager).(*simulator.PerformanceManager)
	if !ok {
		t.Fatal("simulator has no PerformanceManager")
	}
	reg.WithLock(simulator.NewContext(), pm, func() { pm.HistoricalInterval = ivs })
}

// TestPerfOutageBeyondRealtimeWindow stops the agent for six hours against
// a vCenter that keeps 20 s samples for an hour, 5 min samples (level 2)
// for two hours and 30 min samples (level 1) for four. The simulator
// answers any time range, so what it would have aged out is told apart by
// what the agent asks for: nothing older than the settings allow.
//
// After the outage the agent re-reads the last hour at 20 s, the hour
// before at 5 minutes, the two before that at 30 minutes, each interval
// with the counters its level keeps (the others NaN, in the same series),
// and records the rest as gap records per counter set: the oldest two
// hours for every counter, and longer for the counters the coarser
// intervals do not keep. A gap the sink refuses stops the entity's
// collection for the cycle, so that no mark moves past an unrecorded loss.
func TestPerfOutageBeyondRealtimeWindow(t *testing.T) {
	f := newPerfFixture(t, "")
	setHistoricalIntervals(t, f, []types.PerfInterval{
		{Key: 1, SamplingPeriod: 300, Name: "Past day", Length: 2 * 3600, Level: 2, Enabled: true},
		{Key: 2, SamplingPeriod: 1800, Name: "Past week", Length: 4 * 3600, Level: 1, Enabled: true},
		{Key: 3, SamplingPeriod: 7200, Name: "Past month", Length: 2592000, Level: 1, Enabled: false},
		{Key: 4, SamplingPeriod: 86400, Name: "Past year", Length: 31536000, Level: 1, Enabled: false},
	})
	ctx := context.Background()
	now := time.Now()
	stop := now.Add(-6 * time.Hour).Truncate(20 * time.Second)
	want := activeEntities(f.inv, "vm", "host")
	src := f.sess.Source()

	// The agent collected until stop, then was down.
	meta := newMemMeta()
	h := newHWM()
	for id := range want {
		h.advance(id, IntervalRealtime, stop.UnixMilli())
	}
	if err := meta.SetMeta(hwmMetaKey(src), h.encode()); err != nil {
		t.Fatal(err)
	}
	sink := newMemSink()
	c := NewCollector(f.sess, f.inv, sink, meta, PerfConfig{}, testLog(t))
	c.now = func() time.Time { return now }

	// The boundaries the settings imply.
	avail0 := floorTime(now.Add(-time.Hour), 20)     // oldest 20 s sample
	e1 := ceilTime(avail0, 300)                      // 5 min samples up to here, 20 s after
	avail1 := floorTime(now.Add(-2*time.Hour), 300)  // oldest 5 min sample
	e2 := ceilTime(avail1, 1800)                     // 30 min samples up to here
	avail2 := floorTime(now.Add(-4*time.Hour), 1800) // oldest 30 min sample: older is lost
	t.Logf("stop %s, lost to %s, 30 min to %s, 5 min to %s, 20 s after", stop.UTC(), avail2.UTC(), e2.UTC(), e1.UTC())

	// The sink refuses the first gap record: nothing of those entities
	// may be collected past it.
	sink.failNext = 1
	st, err := c.Collect(ctx, IntervalRealtime)
	if err == nil {
		t.Fatal("cycle whose gap record the sink refused reported success")
	}
	if st.Backfill.Failed != len(want) || len(sink.samples) != 0 {
		t.Fatalf("after a refused gap record: %+v, %d sample payloads; want every entity sitting the cycle out", st.Backfill, len(sink.samples))
	}
	if marks, _ := decodeHWM(meta.m[hwmMetaKey(src)]); marks[hwmKey{firstKey(want), IntervalRealtime}] != stop.UnixMilli() {
		t.Fatalf("mark moved to %d after a refused gap record, want %d", marks[hwmKey{firstKey(want), IntervalRealtime}], stop.UnixMilli())
	}

	st, err = c.Collect(ctx, IntervalRealtime)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cycle: %+v", st)
	if st.Backfill.Entities != len(want) || st.Backfill.Failed != 0 || st.Backfill.Values == 0 {
		t.Errorf("backfill stats %+v, want %d entities re-read", st.Backfill, len(want))
	}

	// Gap records: per kind, one per counter set, from the mark to where
	// the coarsest interval keeping the counter begins.
	c.mu.Lock()
	counters := c.state.counters
	c.mu.Unlock()
	lostTo := func(rc resolvedCounter) time.Time {
		switch {
		case rc.level <= 1:
			return avail2
		case rc.level <= 2:
			return e2
		}
		return e1
	}
	type gapKey struct {
		kind     string
		from, to int64
	}
	wantGaps := map[gapKey][]string{}
	for _, kind := range []string{"vm", "host"} {
		for _, rc := range counters[kind] {
			k := gapKey{kind, stop.UnixMilli(), lostTo(rc).UnixMilli()}
			wantGaps[k] = append(wantGaps[k], rc.name)
		}
	}
	sink.mu.Lock()
	gaps := slices.Clone(sink.gaps)
	sink.mu.Unlock()
	if len(gaps) != len(wantGaps) || st.Backfill.Gaps != len(gaps) {
		t.Errorf("%d gap records (stats: %d), want %d", len(gaps), st.Backfill.Gaps, len(wantGaps))
	}
	for _, g := range gaps {
		k := gapKey{g.EntityKind, g.First, g.Last}
		var ids []string
		for id, kind := range want {
			if kind == g.EntityKind {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		if g.Reason != ReasonBeyondRetention || g.Source != src || g.Interval != IntervalRealtime || !slices.Equal(g.EntityIDs, ids) ||
			!slices.Equal(g.Counters, wantGaps[k]) || g.FromSeq != 0 || g.Batches != 0 {
			t.Errorf("gap record %+v; want %s %v of %v over (%s, %s]", g, g.EntityKind, wantGaps[k], ids, time.UnixMilli(k.from).UTC(), time.UnixMilli(k.to).UTC())
		}
		if _, err := protocol.NewBatch(protocol.KindGap, protocol.CodecZstd, g); err != nil {
			t.Errorf("gap record does not encode: %v", err)
		}
	}

	// Samples: per entity aggregate, 30 min, then 5 min, then 20 s apart,
	// nothing older than the 30 min interval keeps, each with the counters
	// its interval's level keeps.
	type point struct {
		ts      int64
		present []bool
	}
	byEntity := map[string][]point{}
	cols := map[string][]protocol.Counter{}
	sink.mu.Lock()
	for _, s := range sink.samples {
		for _, sd := range s.Series {
			if sd.Key.Instance != "" {
				continue
			}
			id := sd.Key.EntityID
			if prev, ok := cols[id]; ok && !slices.Equal(prev, sd.Key.Counters) {
				t.Errorf("%s: samples in two series, counters %v and %v", id, prev, sd.Key.Counters)
			}
			cols[id] = sd.Key.Counters
			for i, ts := range sd.Timestamps {
				p := point{ts: ts}
				for _, col := range sd.Values {
					p.present = append(p.present, !math.IsNaN(col[i]))
				}
				byEntity[id] = append(byEntity[id], p)
			}
		}
	}
	sink.mu.Unlock()
	for id, kind := range want {
		pts := byEntity[id]
		slices.SortFunc(pts, func(a, b point) int { return int(a.ts - b.ts) })
		var n1800, n300, n20 int
		for i, p := range pts {
			ts := time.UnixMilli(p.ts)
			if i > 0 && p.ts == pts[i-1].ts {
				t.Fatalf("%s: sample at %s sent twice", id, ts.UTC())
			}
			var step int32
			switch {
			case !ts.After(avail2):
				t.Fatalf("%s: sample at %s, older than vCenter keeps any (%s)", id, ts.UTC(), avail2.UTC())
			case !ts.After(e2):
				step, n1800 = 1800, n1800+1
			case !ts.After(e1):
				step, n300 = 300, n300+1
			default:
				n20++
			}
			if step > 0 && p.ts%(int64(step)*1000) != 0 {
				t.Errorf("%s: sample at %s off the %d s grid", id, ts.UTC(), step)
			}
			// (The simulator has no values for some counters at all: only
			// what the interval does not keep is checked for absence.)
			some := false
			for c, rc := range counters[kind] {
				keeps := step == 0 || step == 300 && rc.level <= 2 || step == 1800 && rc.level <= 1
				if p.present[c] && !keeps {
					t.Errorf("%s at %s (%d s): %s present, but the interval's level does not keep it", id, ts.UTC(), step, rc.name)
				}
				some = some || p.present[c]
			}
			if !some {
				t.Errorf("%s at %s (%d s): no value", id, ts.UTC(), step)
			}
		}
		if w := int(e2.Sub(avail2) / (30 * time.Minute)); n1800 != w {
			t.Errorf("%s: %d samples at 30 min, want %d", id, n1800, w)
		}
		if w := int(e1.Sub(e2) / (5 * time.Minute)); n300 != w {
			t.Errorf("%s: %d samples at 5 min, want %d", id, n300, w)
		}
		if w := int(now.Sub(e1)/(20*time.Second)) - 1; n20 < w {
			t.Errorf("%s: %d samples at 20 s, want at least %d (the realtime hour)", id, n20, w)
		}
	}

	// The next cycle has nothing left to re-read or record.
	sink.mu.Lock()
	sink.gaps, sink.samples = nil, nil
	sink.mu.Unlock()
	c.now = time.Now
	st, err = c.Collect(ctx, IntervalRealtime)
	if err != nil {
		t.Fatal(err)
	}
	if st.Backfill != (BackfillStats{}) || len(sink.gaps) != 0 {
		t.Errorf("second cycle re-read again: %+v, %d gaps", st.Backfill, len(sink.gaps))
	}
}

// TestPerfInactiveEntityIsNotAnOutage: a VM powered off for days (its mark
// that old) while the agent kept collecting is not an outage: it is read
// from the realtime window on, with no gap record.
func TestPerfInactiveEntityIsNotAnOutage(t *testing.T) {
	f := newPerfFixture(t, "")
	ctx := context.Background()
	want := activeEntities(f.inv, "vm", "host")
	src := f.sess.Source()
	now := time.Now()
	meta := newMemMeta()
	h := newHWM()
	old := firstKey(want)
	for id := range want {
		h.advance(id, IntervalRealtime, now.Add(-20*time.Second).UnixMilli())
	}
	h.marks[hwmKey{old, IntervalRealtime}] = now.Add(-72 * time.Hour).UnixMilli()
	if err := meta.SetMeta(hwmMetaKey(src), h.encode()); err != nil {
		t.Fatal(err)
	}
	sink := newMemSink()
	c := NewCollector(f.sess, f.inv, sink, meta, PerfConfig{}, testLog(t))
	st, err := c.Collect(ctx, IntervalRealtime)
	if err != nil {
		t.Fatal(err)
	}
	if st.Backfill != (BackfillStats{}) || len(sink.gaps) != 0 {
		t.Fatalf("an entity inactive for days was taken for an outage: %+v, %d gaps", st.Backfill, len(sink.gaps))
	}
	oldest := int64(math.MaxInt64)
	for _, s := range sink.samples {
		for _, sd := range s.Series {
			if sd.Key.EntityID == old {
				oldest = min(oldest, sd.Timestamps[0])
			}
		}
	}
	if got := time.UnixMilli(oldest); got.Before(now.Add(-time.Hour)) || got.After(now.Add(-55*time.Minute)) {
		t.Errorf("%s re-read from %s, want the start of the realtime window (%s)", old, got.UTC(), now.Add(-time.Hour).UTC())
	}
}

// firstKey returns the smallest key of m.
func firstKey(m map[string]string) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks[0]
}
