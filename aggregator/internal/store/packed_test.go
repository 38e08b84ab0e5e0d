package store_test

import (
	"cmp"
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/access"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// rawPoint is one value written through the ingest path, as stored (float4).
type rawPoint struct {
	entity  string
	counter int
	t       time.Time
	v       float64
}

// randomSeries writes n samples of entity at random times in [from, to),
// with random values and some counters missing, and returns what it wrote.
func (f *fixture) randomSeries(rng *rand.Rand, entity string, from, to time.Time, n int) []rawPoint {
	f.t.Helper()
	var out []rawPoint
	span := int64(to.Sub(from) / time.Second)
	seen := map[int64]bool{}
	var rows [][]float64
	for len(rows) < n {
		off := rng.Int64N(span)
		if seen[off] {
			continue
		}
		seen[off] = true
		r := []float64{float64(off)}
		for c := range vmCounters {
			v := math.Round(rng.Float64()*10000) / 100
			if rng.IntN(5) == 0 {
				v = nan
			} else {
				out = append(out, rawPoint{entity, c, from.Add(time.Duration(off) * time.Second), float64(float32(v))})
			}
			r = append(r, v)
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b []float64) int { return cmp.Compare(a[0], b[0]) }) // timestamps ascend
	for len(rows) > 0 {                                                                // a few batches, as an agent sends them
		k := min(len(rows), 50)
		f.write(points(entity, from, rows[:k]...))
		rows = rows[k:]
	}
	return out
}

// expectHourly computes, from the raw points, what a query of the hourly
// tier answers: every hour bucket overlapping [from, to) counts whole, and
// the buckets are combined per step aligned to the Unix epoch.
func expectHourly(raw []rawPoint, entity string, counter int, from, to time.Time, step time.Duration, agg store.Agg) []store.Point {
	type acc struct {
		min, max, sum float64
		n             int
	}
	byStep := map[int64]*acc{}
	lo := from.Truncate(time.Hour)
	for _, p := range raw {
		h := p.t.Truncate(time.Hour)
		if p.entity != entity || p.counter != counter || h.Before(lo) || !h.Before(to) {
			continue
		}
		s := h.Unix() / int64(step/time.Second) * int64(step/time.Second)
		a := byStep[s]
		if a == nil {
			a = &acc{min: p.v, max: p.v}
			byStep[s] = a
		}
		a.min, a.max, a.sum, a.n = math.Min(a.min, p.v), math.Max(a.max, p.v), a.sum+p.v, a.n+1
	}
	var out []store.Point
	for s := lo.Unix() / int64(step/time.Second) * int64(step/time.Second); s < to.Unix(); s += int64(step / time.Second) {
		a := byStep[s]
		if a == nil {
			continue
		}
		v := map[store.Agg]float64{store.AggAvg: a.sum / float64(a.n), store.AggMin: a.min, store.AggMax: a.max,
			store.AggSum: a.sum, store.AggCount: float64(a.n)}[agg]
		out = append(out, store.Point{T: time.Unix(s, 0).UTC(), V: v})
	}
	return out
}

// TestHourlyPackedMatchesRaw checks the packed hourly tier against an
// independent computation over the raw samples written through the ingest
// path, for every aggregation and several steps, over ranges that cross
// packed and unpacked days, before and after late data lands in a packed
// day; and that it answers what the hourly rows alone answer.
func TestHourlyPackedMatchesRaw(t *testing.T) {
	f := newFixture(t)
	rng := rand.New(rand.NewPCG(7, 14))
	today := time.Now().UTC().Truncate(day)
	from := today.Add(-5 * day)
	if err := f.st.EnsurePartitions(f.ctx, from, today); err != nil {
		t.Fatal(err)
	}
	var raw []rawPoint
	end := today.Add(time.Hour)
	if now := time.Now().Add(-time.Minute); now.Before(end) {
		end = now
	}
	raw = append(raw, f.randomSeries(rng, "vm-1", from, end, 900)...)
	raw = append(raw, f.randomSeries(rng, "vm-2", from.Add(30*time.Hour), today.Add(-day), 400)...)
	f.rollup()
	rep, err := f.st.PackHours(f.ctx, time.Now(), 10)
	if err != nil {
		t.Fatal(err)
	}
	var packed int
	if err := f.st.Pool().QueryRow(f.ctx, `SELECT count(*) FROM samples_1h_packed WHERE day >= $1::date AND day < $2::date AND whole`, from, today).Scan(&packed); err != nil {
		t.Fatal(err)
	}
	if packed != 5 {
		t.Fatalf("%d of the 5 closed days are packed (report %+v)", packed, rep)
	}

	check := func(stage string) {
		t.Helper()
		for _, step := range []time.Duration{time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour} {
			for _, agg := range []store.Agg{store.AggAvg, store.AggMin, store.AggMax, store.AggSum, store.AggCount} {
				qFrom, qTo := from.Add(90*time.Minute), today.Add(50*time.Minute) // unaligned, into today (unpacked)
				q := store.RangeQuery{EntityKind: "vm", EntityID: "", From: qFrom, To: qTo, Step: step, Agg: agg}
				for _, entity := range []string{"vm-1", "vm-2"} {
					q.EntityID = entity
					res, err := f.st.QueryRange(f.ctx, q)
					if err != nil {
						t.Fatal(err)
					}
					if res.Resolution != store.Resolution1h {
						t.Fatalf("answered by %s", res.Resolution)
					}
					store.SetHourlyViaSQL(true)
					viaSQL, err := f.st.QueryRange(f.ctx, q)
					store.SetHourlyViaSQL(false)
					if err != nil {
						t.Fatal(err)
					}
					if len(res.Series) != len(viaSQL.Series) {
						t.Fatalf("%s %s %s step %s: %d series, the hourly rows give %d", stage, entity, agg, step, len(res.Series), len(viaSQL.Series))
					}
					for i, sp := range res.Series {
						want := expectHourly(raw, entity, i, qFrom, qTo, step, agg)
						if sp.Counter != vmCounters[i].Name || sp.Unit != vmCounters[i].Unit || sp.EntityID != entity {
							t.Fatalf("series %d: %+v", i, sp)
						}
						for name, w := range map[string][]store.Point{"raw": want, "hourly rows": viaSQL.Series[i].Points} {
							if !samePoints(sp.Points, w) {
								t.Errorf("%s %s %s %s step %s: packed answer differs from the %s\n got %v\nwant %v", stage, entity, sp.Counter, agg, step, name, sp.Points, w)
							}
						}
					}
				}
			}
		}
	}
	check("packed")

	// The packed path and the derived metric read within the caller's data
	// scope: another site's user sees nothing of dc1.
	other := access.WithScope(context.Background(), access.Scope{Sites: []string{"dc2"}})
	for _, counters := range [][]string{nil, {store.MetricCPUReadyPercent}} {
		res, err := f.st.QueryRange(other, store.RangeQuery{EntityKind: "vm", EntityID: "vm-1", From: from, To: today, Step: time.Hour, Counters: counters})
		if err != nil || len(res.Series) != 0 || res.Resolution != store.Resolution1h {
			t.Errorf("scoped to dc2, counters %v: %+v, %v", counters, res, err)
		}
	}

	// Several series and counters at once (one scan per counter position):
	// the same as the hourly rows, series by series.
	for _, counters := range [][]string{nil, {"cpu", "net"}, {"mem"}} {
		q := store.RangeQuery{EntityKind: "vm", EntityID: "", Site: "dc1", Counters: counters, From: from, To: today.Add(time.Hour), Step: 2 * time.Hour}
		var ids []int64
		for _, e := range []string{"vm-1", "vm-2"} {
			q.EntityID = e
			r, err := f.st.QueryRange(f.ctx, q)
			if err != nil || len(r.Series) == 0 {
				t.Fatalf("%s: %+v, %v", e, r, err)
			}
			ids = append(ids, r.Series[0].SeriesID)
		}
		q.EntityKind, q.EntityID, q.SeriesIDs = "", "", ids
		res, err := f.st.QueryRange(f.ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		store.SetHourlyViaSQL(true)
		viaSQL, err := f.st.QueryRange(f.ctx, q)
		store.SetHourlyViaSQL(false)
		if err != nil {
			t.Fatal(err)
		}
		want := 6
		if counters != nil {
			want = 2 * len(counters)
		}
		if len(res.Series) != want || len(viaSQL.Series) != want {
			t.Fatalf("counters %v: %d series, hourly rows %d, want %d", counters, len(res.Series), len(viaSQL.Series), want)
		}
		for i := range res.Series {
			a, b := res.Series[i], viaSQL.Series[i]
			if a.SeriesID != b.SeriesID || a.Counter != b.Counter || !samePoints(a.Points, b.Points) {
				t.Errorf("counters %v, series %d: %s/%s %v\nhourly rows: %s/%s %v", counters, i, a.EntityID, a.Counter, a.Points, b.EntityID, b.Counter, b.Points)
			}
		}
	}

	// Late data for a packed day: the run that rolls it up repacks the day.
	late := from.Add(2 * day)
	raw = append(raw, f.randomSeries(rng, "vm-1", late.Add(3*time.Hour), late.Add(5*time.Hour), 40)...)
	rr := f.rollup()
	if rr.Pack.Repacked != 1 {
		t.Errorf("late data: pack report %+v, want 1 site-day repacked", rr.Pack)
	}
	check("after late data")
}

func samePoints(a, b []store.Point) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].T.Equal(b[i].T) || math.Abs(a[i].V-b[i].V) > 1e-9*math.Max(1, math.Abs(b[i].V)) {
			return false
		}
	}
	return true
}

// TestPackRetention checks that retention removes packed days with the
// hourly buckets they copy.
func TestPackRetention(t *testing.T) {
	f := newFixture(t)
	today := time.Now().UTC().Truncate(day)
	if err := f.st.EnsurePartitions(f.ctx, today.Add(-4*day), today); err != nil {
		t.Fatal(err)
	}
	f.write(points("vm-1", today.Add(-4*day), []float64{0, 1, 2, 3}, []float64{86400, 4, 5, 6}, []float64{2 * 86400, 7, 8, 9}))
	f.rollup()
	if _, err := f.st.PackHours(f.ctx, time.Now(), 10); err != nil {
		t.Fatal(err)
	}
	count := func() (days, rows int) {
		t.Helper()
		if err := f.st.Pool().QueryRow(f.ctx, `SELECT (SELECT count(*) FROM samples_1h_packed WHERE day >= $1::date AND whole), (SELECT count(*) FROM samples_1h_days)`,
			today.Add(-4*day)).Scan(&days, &rows); err != nil {
			t.Fatal(err)
		}
		return days, rows
	}
	if d, r := count(); d != 4 || r != 9 {
		t.Fatalf("before retention: %d packed days, %d rows; want 4 and 9", d, r)
	}
	// Keep the hourly tier 3 days: the day 4 days back goes (3 rows).
	if _, err := f.st.ApplyRetention(f.ctx, time.Now(), store.Retention{R1h: 3*day + time.Hour}); err != nil {
		t.Fatal(err)
	}
	if d, r := count(); d != 3 || r != 6 {
		t.Errorf("after retention: %d packed days, %d rows; want 3 and 6", d, r)
	}
}

// TestPackHoursParts follows one day through the packed copy: its closed
// hours copied as parts while it is open, late data repacking it, and the
// day packed whole once closed; every answer against the raw samples.
func TestPackHoursParts(t *testing.T) {
	f := newFixture(t)
	rng := rand.New(rand.NewPCG(3, 9))
	y := time.Now().UTC().Truncate(day).Add(-day)
	if err := f.st.EnsurePartitions(f.ctx, y, y.Add(day)); err != nil {
		t.Fatal(err)
	}
	raw := f.randomSeries(rng, "vm-1", y, y.Add(day), 500)
	f.rollup()
	// Start over as if the clock were early in the day: PackHours takes
	// the earlier of the rollup watermark and now.
	if _, err := f.st.Pool().Exec(f.ctx, `DELETE FROM samples_1h_days; DELETE FROM samples_1h_packed`); err != nil {
		t.Fatal(err)
	}
	state := func() (until time.Time, whole bool, parts int) {
		t.Helper()
		if err := f.st.Pool().QueryRow(f.ctx, `SELECT p.packed_until, p.whole, (SELECT count(DISTINCT h0) FROM samples_1h_days WHERE day = p.day)
			FROM samples_1h_packed p WHERE p.day = $1::date`, y).Scan(&until, &whole, &parts); err != nil {
			t.Fatal(err)
		}
		return until, whole, parts
	}
	answer := func(stage string) {
		t.Helper()
		for _, agg := range []store.Agg{store.AggAvg, store.AggMin, store.AggMax, store.AggSum, store.AggCount} {
			for _, step := range []time.Duration{time.Hour, 4 * time.Hour} {
				res, err := f.st.QueryRange(f.ctx, store.RangeQuery{EntityKind: "vm", EntityID: "vm-1", From: y, To: y.Add(day), Step: step, Agg: agg})
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Series) != 3 {
					t.Fatalf("%s: %d series", stage, len(res.Series))
				}
				for i, sp := range res.Series {
					if want := expectHourly(raw, "vm-1", i, y, y.Add(day), step, agg); !samePoints(sp.Points, want) {
						t.Errorf("%s: %s %s step %s:\n got %v\nwant %v", stage, sp.Counter, agg, step, sp.Points, want)
					}
				}
			}
		}
	}
	if rep, err := f.st.PackHours(f.ctx, y.Add(6*time.Hour+5*time.Minute), 3); err != nil || rep.Hours != 0 {
		t.Fatalf("at 06:05 (hour 05 not closed for 10 minutes): %+v, %v; want nothing copied", rep, err)
	}
	rep, err := f.st.PackHours(f.ctx, y.Add(6*time.Hour+15*time.Minute), 3)
	if err != nil {
		t.Fatal(err)
	}
	if until, whole, parts := state(); !until.Equal(y.Add(6*time.Hour)) || whole || parts != 1 || rep.Hours != 6 {
		t.Fatalf("at 06:15: copied until %s, whole %v, %d parts, report %+v; want 06:00, one part of 6 hours", until, whole, parts, rep)
	}
	answer("06:15")
	if _, err := f.st.PackHours(f.ctx, y.Add(14*time.Hour+30*time.Minute), 3); err != nil {
		t.Fatal(err)
	}
	if until, whole, parts := state(); !until.Equal(y.Add(12*time.Hour)) || whole || parts != 2 {
		t.Fatalf("at 14:30: copied until %s, whole %v, %d parts; want 12:00 in 2 parts", until, whole, parts)
	}
	answer("14:30")

	// Late data for a copied hour: the rollup run repacks the day's copied
	// hours for the site, then packs the (by now closed) day whole.
	raw = append(raw, f.randomSeries(rng, "vm-1", y.Add(2*time.Hour), y.Add(3*time.Hour), 30)...)
	rr := f.rollup()
	if rr.Pack.Repacked != 1 || rr.Pack.Days < 1 {
		t.Errorf("late run: pack report %+v, want 1 site-day repacked and the day packed whole", rr.Pack)
	}
	if until, whole, parts := state(); !until.Equal(y.Add(day)) || !whole || parts != 1 {
		t.Errorf("closed: copied until %s, whole %v, %d parts; want the whole day in one part", until, whole, parts)
	}
	answer("closed")
}
