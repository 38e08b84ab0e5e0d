package vsphere

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/protocol"
)

// vcenterDefaults is vCenter's out-of-the-box historicalInterval: 5 min for
// a day, 30 min for a week, 2 h for a month, a day for a year, level 1.
var vcenterDefaults = []types.PerfInterval{
	{Key: 1, SamplingPeriod: 300, Name: "Past day", Length: 86400, Level: 1, Enabled: true},
	{Key: 2, SamplingPeriod: 1800, Name: "Past week", Length: 604800, Level: 1, Enabled: true},
	{Key: 3, SamplingPeriod: 7200, Name: "Past month", Length: 2592000, Level: 1, Enabled: true},
	{Key: 4, SamplingPeriod: 86400, Name: "Past year", Length: 31536000, Level: 1, Enabled: true},
}

// planCols are counters of levels 1 and 2, as vCenter defines them.
var planCols = []resolvedCounter{
	{key: 1, name: "cpu.usage.average", level: 1},
	{key: 2, name: "mem.active.average", level: 2},
	{key: 3, name: "mem.usage.average", level: 1},
}

func TestRetentionChain(t *testing.T) {
	r := retentionOf(append([]types.PerfInterval{
		{SamplingPeriod: 600, Name: "disabled", Length: 1 << 30, Level: 4, Enabled: false},
		{SamplingPeriod: 3600, Name: "shorter than the week", Length: 86400 * 3, Level: 1, Enabled: true},
	}, vcenterDefaults...))
	got := r.chain(IntervalRealtime, time.Hour)
	var periods []int32
	for _, l := range got {
		periods = append(periods, l.period)
	}
	if !slices.Equal(periods, []int32{20, 300, 1800, 7200, 86400}) {
		t.Fatalf("realtime chain %v (%s), want 20, 300, 1800, 7200, 86400", periods, describeChain(got))
	}
	if got[0].keep != time.Hour || got[0].level != 0 || got[1].keep != 24*time.Hour || got[4].keep != 365*24*time.Hour {
		t.Errorf("keeps: %s", describeChain(got))
	}
	hist := r.chain(IntervalHistorical, time.Hour)
	if len(hist) != 4 || hist[0].period != 300 || hist[0].keep != 24*time.Hour || hist[0].level != 1 {
		t.Errorf("5-minute chain: %s", describeChain(hist))
	}
	if c := (retention{}).chain(IntervalHistorical, time.Hour); len(c) != 1 || c[0].keep != 24*time.Hour {
		t.Errorf("5-minute chain without server intervals: %s", describeChain(c))
	}
}

// checkPlan checks what every plan must satisfy: segments coarsest first,
// contiguous from where the losses of every counter end to the native
// start; losses inside (from, native].
func checkPlan(t *testing.T, chain []perfLevel, p entityPlan, from time.Time) {
	t.Helper()
	pos := p.covered
	for i, s := range p.segments {
		if i > 0 && chain[s.level].period >= chain[p.segments[i-1].level].period {
			t.Errorf("segment %d at %ds after one at %ds: not coarsest first", i, chain[s.level].period, chain[p.segments[i-1].level].period)
		}
		if i == 0 && s.start.Before(from) || i > 0 && !s.start.Equal(p.segments[i-1].end) || !s.end.After(s.start) {
			t.Errorf("segment %d (%s, %s] not contiguous", i, s.start, s.end)
		}
		if i == 0 && s.start.Before(pos) {
			t.Errorf("segment %d starts at %s, before what the losses cover (%s)", i, s.start, pos)
		}
		if s.end.UnixMilli()%(int64(chain[s.level].period)*1000) != 0 {
			t.Errorf("segment %d ends at %s, off its %ds grid", i, s.end, chain[s.level].period)
		}
	}
	if n := len(p.segments); n > 0 && !p.native.Equal(p.segments[n-1].end) {
		t.Errorf("native starts at %s, last segment ends at %s", p.native, p.segments[n-1].end)
	}
	for _, l := range p.losses {
		if l.from.Before(from) || l.to.After(p.native) || !l.to.After(l.from) || len(l.counters) == 0 {
			t.Errorf("loss (%s, %s] %v outside (%s, %s]", l.from, l.to, l.counters, from, p.native)
		}
	}
}

func TestPlanEntity(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 7, 0, time.UTC)
	chain := retentionOf(vcenterDefaults).chain(IntervalRealtime, time.Hour)
	names := func(ls []loss) [][]string {
		var out [][]string
		for _, l := range ls {
			out = append(out, l.counters)
		}
		return out
	}

	// Down 10 minutes: the realtime window still has it.
	p := planEntity(chain, planCols, now.Add(-10*time.Minute), now)
	if p.needsBackfill() || !p.native.Equal(now.Add(-10*time.Minute)) {
		t.Fatalf("10-minute outage planned %+v", p)
	}

	// Down 3 hours: the last hour at 20 s, the two before at 5 minutes,
	// without mem.active (level 2, the day interval keeps level 1).
	from := now.Add(-3 * time.Hour)
	p = planEntity(chain, planCols, from, now)
	checkPlan(t, chain, p, from)
	hourAgo := time.Date(2025, 1, 1, 11, 0, 0, 0, time.UTC) // the realtime window's first 20 s sample, on the 5-minute grid
	if len(p.segments) != 1 || p.segments[0].level != 1 || !p.segments[0].start.Equal(from) || !p.segments[0].end.Equal(hourAgo) || !p.native.Equal(hourAgo) {
		t.Fatalf("3-hour outage: segments %+v, native %s", p.segments, p.native)
	}
	if len(p.segments[0].counters) != 2 {
		t.Errorf("5-minute re-read asks for %v, want the two level-1 counters", p.segments[0].counters)
	}
	if len(p.losses) != 1 || !slices.Equal(p.losses[0].counters, []string{"mem.active.average"}) || !p.losses[0].from.Equal(from) || !p.losses[0].to.Equal(hourAgo) {
		t.Errorf("3-hour outage losses %+v", p.losses)
	}
	if !p.covered.Equal(from) {
		t.Errorf("covered %s, want the mark (level-1 counters are re-read)", p.covered)
	}

	// Down 40 days: a day at a time, then 2 h, 30 min, 5 min, 20 s.
	from = now.Add(-40 * 24 * time.Hour)
	p = planEntity(chain, planCols, from, now)
	checkPlan(t, chain, p, from)
	var periods []int32
	for _, s := range p.segments {
		periods = append(periods, chain[s.level].period)
	}
	if !slices.Equal(periods, []int32{86400, 7200, 1800, 300}) {
		t.Errorf("40-day outage reads at %v", periods)
	}
	if len(p.losses) != 1 || !slices.Equal(names(p.losses)[0], []string{"mem.active.average"}) || !p.losses[0].to.Equal(p.native) {
		t.Errorf("40-day outage losses %+v", p.losses)
	}

	// Down two years: the oldest year is gone for every counter.
	from = now.Add(-2 * 365 * 24 * time.Hour)
	p = planEntity(chain, planCols, from, now)
	checkPlan(t, chain, p, from)
	yearAgo := floorTime(now.Add(-365*24*time.Hour), 86400)
	if len(p.losses) != 2 || !p.losses[0].to.Equal(yearAgo) || !slices.Equal(p.losses[0].counters, []string{"cpu.usage.average", "mem.usage.average"}) ||
		!slices.Equal(p.losses[1].counters, []string{"mem.active.average"}) || !p.losses[1].to.Equal(p.native) {
		t.Errorf("2-year outage losses %+v", p.losses)
	}
	if !p.covered.Equal(yearAgo) || !p.segments[0].start.Equal(yearAgo) {
		t.Errorf("covered %s, first segment %+v; want both at %s", p.covered, p.segments[0], yearAgo)
	}

	// No historical interval: everything older than the hour is lost.
	rt := (retention{}).chain(IntervalRealtime, time.Hour)
	from = now.Add(-3 * time.Hour)
	p = planEntity(rt, planCols, from, now)
	checkPlan(t, rt, p, from)
	avail := floorTime(now.Add(-time.Hour), 20)
	if len(p.segments) != 0 || len(p.losses) != 1 || len(p.losses[0].counters) != 3 || !p.losses[0].to.Equal(avail) || !p.native.Equal(avail) || !p.covered.Equal(avail) {
		t.Errorf("without historical intervals: %+v", p)
	}

	// The 5-minute loop (clusters): level-2 counters never reach the day
	// interval, so they are not expected, and not lost either.
	hc := retentionOf(vcenterDefaults).chain(IntervalHistorical, time.Hour)
	from = now.Add(-3 * 24 * time.Hour)
	p = planEntity(hc, planCols, from, now)
	checkPlan(t, hc, p, from)
	if len(p.losses) != 0 || len(p.segments) != 1 || hc[p.segments[0].level].period != 1800 {
		t.Errorf("3-day cluster outage: %+v", p)
	}

	// Whatever the outage, the invariants hold.
	for d := time.Minute; d < 3*365*24*time.Hour; d = d*3/2 + 7*time.Second {
		from := now.Add(-d).Truncate(time.Millisecond) // marks are Unix ms
		checkPlan(t, chain, planEntity(chain, planCols, from, now), from)
		checkPlan(t, hc, planEntity(hc, planCols, from, now), from)
	}
}

// TestSplitByDay: a re-read spanning days is sent one UTC day per payload,
// every point once, in order.
func TestSplitByDay(t *testing.T) {
	day := int64(24 * 3600 * 1000)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	key := protocol.SeriesKey{Source: "vc", EntityKind: "vm", EntityID: "vm-1", Counters: []protocol.Counter{{Name: "a"}, {Name: "b"}}}
	var ts []int64
	var a, b []float64
	for i := int64(0); i < 3*24; i += 2 { // every 2 h over three days
		ts = append(ts, base-day/2+i*3600*1000)
		a, b = append(a, float64(i)), append(b, -float64(i))
	}
	in := &protocol.Samples{Series: []protocol.SeriesData{
		{Key: key, Timestamps: ts, Values: [][]float64{a, b}},
		{Key: protocol.SeriesKey{Source: "vc", EntityKind: "vm", EntityID: "vm-2"}, Timestamps: []int64{base + 5}, Values: [][]float64{}},
	}}
	parts := splitByDay(in)
	if len(parts) != 4 {
		t.Fatalf("%d payloads for points over 4 UTC days, want 4", len(parts))
	}
	var got []int64
	for _, p := range parts {
		first, last := int64(math.MaxInt64), int64(math.MinInt64)
		for _, sd := range p.Series {
			for i, x := range sd.Timestamps {
				first, last = min(first, x), max(last, x)
				if sd.Key.EntityID == "vm-1" {
					got = append(got, x)
					if sd.Values[0][i] != -sd.Values[1][i] {
						t.Fatalf("columns out of step at %d", x)
					}
				}
			}
		}
		if floorDiv(first, day) != floorDiv(last, day) {
			t.Errorf("payload spans %d..%d, more than one day", first, last)
		}
	}
	if !slices.Equal(got, ts) {
		t.Errorf("points after split %v, want %v", got, ts)
	}
	if one := splitByDay(&protocol.Samples{Series: in.Series[1:]}); len(one) != 1 || one[0] != nil && len(one[0].Series) != 1 {
		t.Errorf("one day split into %d payloads", len(one))
	}
}
