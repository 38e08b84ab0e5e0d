package store_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// TestReadyPercent checks the derived CPU ready percentage against an
// independent computation over the samples written: realtime samples (20 s)
// and a stretch backfilled from vCenter's 5-minute history, a VM's
// aggregate (divided by its 2 vCPUs) and one vCPU instance (not divided),
// from raw samples and from the hourly rollups.
func TestReadyPercent(t *testing.T) {
	f := newFixture(t)
	d := time.Now().UTC().Truncate(day).Add(-2 * day)
	if err := f.st.EnsurePartitions(f.ctx, d, d.Add(day)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.Pool().Exec(f.ctx, `INSERT INTO inventory_objects (site, source, kind, moref, name, props, first_seen, observed_at)
		VALUES ('dc1', 'vc1', 'vm', 'vm-1', 'web-01', '{"num_cpu": 2}', now(), now())`); err != nil {
		t.Fatal(err)
	}
	// Realtime samples every 20 s until 01:00, the 5-minute history from
	// 01:05 to 02:00, realtime again from 02:00:20 to 03:00.
	type sample struct {
		t     time.Time
		iv    float64 // the interval the sample covers, s
		ready float64 // ms
	}
	rng := rand.New(rand.NewPCG(5, 6))
	var samples []sample
	add := func(from, to time.Time, iv time.Duration) {
		for ts := from; !ts.After(to); ts = ts.Add(iv) {
			samples = append(samples, sample{ts, iv.Seconds(), float64(float32(math.Round(rng.Float64() * iv.Seconds() * 50)))})
		}
	}
	add(d.Add(20*time.Second), d.Add(time.Hour), 20*time.Second)
	add(d.Add(65*time.Minute), d.Add(2*time.Hour), 5*time.Minute)
	add(d.Add(2*time.Hour+20*time.Second), d.Add(3*time.Hour), 20*time.Second)
	counters := []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}, {Name: store.CounterCPUReady, Unit: "ms"}}
	for _, inst := range []string{"", "0"} {
		sd := protocol.SeriesData{Key: protocol.SeriesKey{Source: "vc1", EntityKind: "vm", EntityID: "vm-1", Instance: inst, Counters: counters},
			Values: make([][]float64, 2)}
		for _, s := range samples {
			sd.Timestamps = append(sd.Timestamps, s.t.UnixMilli())
			sd.Values[0] = append(sd.Values[0], 1000)
			sd.Values[1] = append(sd.Values[1], s.ready)
		}
		f.write(sd)
	}
	f.rollup()

	std := func(x int) float64 {
		for _, v := range []int{86400, 7200, 1800, 300} {
			if x >= v {
				return float64(v)
			}
		}
		return 20
	}
	type acc struct{ ready, covered, min, max, pctSum, n float64 }
	expect := func(hourly bool, step time.Duration, agg store.Agg, vcpus float64) []store.Point {
		bin := func(t time.Time) time.Time {
			st := int64(step / time.Second)
			return time.Unix(t.Unix()/st*st, 0).UTC()
		}
		byHour := map[time.Time]*acc{}
		var hours []time.Time
		for _, s := range samples {
			h := bin(s.t)
			if byHour[h] == nil {
				byHour[h] = &acc{min: math.Inf(1), max: math.Inf(-1)}
				hours = append(hours, h)
			}
			a := byHour[h]
			a.ready += s.ready
			a.n++
			if !hourly { // each sample with its own interval
				a.covered += s.iv
				a.min, a.max, a.pctSum = math.Min(a.min, s.ready/s.iv), math.Max(a.max, s.ready/s.iv), a.pctSum+s.ready/s.iv
			}
		}
		var out []store.Point
		for _, h := range hours {
			a := byHour[h]
			if hourly { // the bucket's rule: the largest interval not above 3600 s ÷ count
				var mn, mx = math.Inf(1), math.Inf(-1)
				iv := std(3600 / int(a.n))
				for _, s := range samples {
					if bin(s.t).Equal(h) {
						mn, mx = math.Min(mn, s.ready), math.Max(mx, s.ready)
					}
				}
				a.covered, a.min, a.max, a.pctSum = a.n*iv, mn/iv, mx/iv, a.ready/iv
			}
			// hundredths of a percent: ms ÷ (s × 1000) × 100 × 100
			v := map[store.Agg]float64{store.AggAvg: a.ready / a.covered * 10 / vcpus, store.AggMin: a.min * 10 / vcpus,
				store.AggMax: a.max * 10 / vcpus, store.AggSum: a.pctSum * 10 / vcpus, store.AggCount: a.n}[agg]
			out = append(out, store.Point{T: h, V: v})
		}
		return out
	}

	for _, tc := range []struct {
		name   string
		step   time.Duration
		res    store.Resolution
		hourly bool
	}{{"raw", 1220 * time.Second, store.ResolutionRaw, false}, {"1h rollup", time.Hour, store.Resolution1h, true}} {
		for _, agg := range []store.Agg{store.AggAvg, store.AggMin, store.AggMax, store.AggSum, store.AggCount} {
			step := tc.step
			res, err := f.st.QueryRange(f.ctx, store.RangeQuery{EntityKind: "vm", EntityID: "vm-1", From: d, To: d.Add(4 * time.Hour), Step: step, Agg: agg,
				Counters: []string{"cpu.usage.average", store.MetricCPUReadyPercent}})
			if err != nil {
				t.Fatal(err)
			}
			if res.Resolution != tc.res {
				t.Fatalf("%s: answered by %s", tc.name, res.Resolution)
			}
			if len(res.Series) != 4 || res.Series[0].Counter != "cpu.usage.average" || res.Series[1].Counter != store.MetricCPUReadyPercent ||
				res.Series[1].Unit != "%" || res.Series[1].Instance != "" || res.Series[3].Counter != store.MetricCPUReadyPercent || res.Series[3].Instance != "0" {
				t.Fatalf("%s %s: series %+v", tc.name, agg, res.Series)
			}
			for _, c := range []struct {
				sp    store.SeriesPoints
				vcpus float64
			}{{res.Series[1], 2}, {res.Series[3], 1}} {
				if want := expect(tc.hourly, step, agg, c.vcpus); !samePoints(c.sp.Points, want) {
					t.Errorf("%s %s instance %q:\n got %v\nwant %v", tc.name, agg, c.sp.Instance, c.sp.Points, want)
				}
			}
		}
	}
	// Only the derived metric: the series without cpu.ready.summation give
	// nothing.
	res, err := f.st.QueryRange(f.ctx, store.RangeQuery{EntityKind: "vm", EntityID: "vm-1", Instances: []string{""}, From: d, To: d.Add(4 * time.Hour),
		Counters: []string{store.MetricCPUReadyPercent}})
	if err != nil || len(res.Series) != 1 || res.Series[0].Counter != store.MetricCPUReadyPercent {
		t.Fatalf("derived alone: %+v, %v", res.Series, err)
	}
}
