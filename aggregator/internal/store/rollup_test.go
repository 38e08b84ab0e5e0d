package store_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
	"github.com/vmpulse/vmpulse/protocol"
)

const day = 24 * time.Hour

var nan = math.NaN()

// fixture is a store with one enrolled agent whose batches it writes.
type fixture struct {
	t     testing.TB
	ctx   context.Context
	st    *store.Store
	agent string
	site  string
	seq   uint64
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := store.AllSites(t.Context())
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(st.Close)
	f := &fixture{t: t, ctx: ctx, st: st, site: "dc1"}
	f.agent = f.enroll("dc1")
	return f
}

func (f *fixture) enroll(site string) string {
	f.t.Helper()
	if err := f.st.EnsureSite(f.ctx, site, ""); err != nil {
		f.t.Fatal(err)
	}
	secret, _, err := f.st.CreateEnrollmentToken(f.ctx, site, time.Hour, "test")
	if err != nil {
		f.t.Fatal(err)
	}
	a, err := f.st.Enroll(f.ctx, secret, "agent-"+site, "test", func(string, string) (string, time.Time, error) {
		return "1", time.Now().Add(day), nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return a.ID
}

// write stores one samples batch of the fixture's agent.
func (f *fixture) write(series ...protocol.SeriesData) {
	f.t.Helper()
	f.seq++
	res, err := f.st.WriteSamples(f.ctx, store.BatchMeta{AgentID: f.agent, Site: f.site, Epoch: 1, Seq: f.seq, Kind: protocol.KindSamples},
		&protocol.Samples{Series: series})
	if err != nil || res.Duplicate {
		f.t.Fatalf("write batch %d: %+v, %v", f.seq, res, err)
	}
}

func (f *fixture) rollup() store.RollupReport {
	f.t.Helper()
	rep, err := f.st.RunRollups(f.ctx, time.Now().Add(time.Second))
	if err != nil {
		f.t.Fatalf("run rollups: %v", err)
	}
	if rep.Skipped != "" {
		f.t.Fatalf("run rollups skipped: %s", rep.Skipped)
	}
	return rep
}

var vmCounters = []protocol.Counter{{Name: "cpu", Unit: "%"}, {Name: "mem", Unit: "%"}, {Name: "net", Unit: "KBps"}}

// points builds a series of vm-1 from (offset, values...) rows.
func points(entity string, base time.Time, rows ...[]float64) protocol.SeriesData {
	sd := protocol.SeriesData{
		Key:    protocol.SeriesKey{Source: "vc1", EntityKind: "vm", EntityID: entity, Counters: vmCounters},
		Values: make([][]float64, len(vmCounters)),
	}
	for _, r := range rows {
		sd.Timestamps = append(sd.Timestamps, base.Add(time.Duration(r[0])*time.Second).UnixMilli())
		for c := range vmCounters {
			sd.Values[c] = append(sd.Values[c], r[c+1])
		}
	}
	return sd
}

// bucket is one rollup row, NULL elements as NaN.
type bucket struct {
	min, max, sum []float64
	cnt           []int32
}

func (f *fixture) bucket(table, entity string, ts time.Time) (bucket, bool) {
	f.t.Helper()
	var mn, mx []*float32
	var sm []*float64
	var b bucket
	err := f.st.Pool().QueryRow(f.ctx, `
		SELECT r.vmin, r.vmax, r.vsum, r.vcnt FROM `+table+` r JOIN series se ON se.id = r.series_id
		WHERE se.entity_id = $1 AND r.ts = $2`, entity, ts).Scan(&mn, &mx, &sm, &b.cnt)
	if err != nil {
		if strings.Contains(err.Error(), "no rows") {
			return b, false
		}
		f.t.Fatalf("read %s %s: %v", table, ts, err)
	}
	for i := range mn {
		b.min = append(b.min, f32(mn[i]))
		b.max = append(b.max, f32(mx[i]))
		if sm[i] == nil {
			b.sum = append(b.sum, nan)
		} else {
			b.sum = append(b.sum, *sm[i])
		}
	}
	return b, true
}

func f32(p *float32) float64 {
	if p == nil {
		return nan
	}
	return float64(*p)
}

func sameFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !(a[i] == b[i] || math.IsNaN(a[i]) && math.IsNaN(b[i]) || math.Abs(a[i]-b[i]) < 1e-6) {
			return false
		}
	}
	return true
}

func (f *fixture) wantBucket(table string, ts time.Time, want bucket) {
	f.t.Helper()
	got, ok := f.bucket(table, "vm-1", ts)
	if !ok {
		f.t.Errorf("%s %s: no row", table, ts.Format(time.RFC3339))
		return
	}
	if !sameFloats(got.min, want.min) || !sameFloats(got.max, want.max) || !sameFloats(got.sum, want.sum) || !reflect.DeepEqual(got.cnt, want.cnt) {
		f.t.Errorf("%s %s:\n got min %v max %v sum %v cnt %v\nwant min %v max %v sum %v cnt %v", table, ts.Format(time.RFC3339),
			got.min, got.max, got.sum, got.cnt, want.min, want.max, want.sum, want.cnt)
	}
}

// testDay is a UTC midnight a few days back, inside the accepted range.
func testDay() time.Time { return time.Now().UTC().Truncate(day).Add(-3 * day) }

// writeHandComputed writes the data whose rollups the tests know by heart.
func (f *fixture) writeHandComputed(d time.Time) {
	f.write(points("vm-1", d,
		[]float64{0, 1, nan, 5},
		[]float64{20, 3, nan, nan},
		[]float64{40, 2, nan, 7},
		[]float64{300, 10, 4, nan},   // 00:05
		[]float64{3600, 100, nan, 1}, // 01:00
	))
}

func TestRollupValues(t *testing.T) {
	f := newFixture(t)
	d := testDay()
	f.writeHandComputed(d)
	rep := f.rollup()
	if rep.Batches != 1 || rep.Spans != 1 {
		t.Errorf("report: batches %d spans %d, want 1 and 1", rep.Batches, rep.Spans)
	}
	if rep.R5m.SourceRows != 5 || rep.R5m.Buckets != 3 || rep.R5m.Written != 3 {
		t.Errorf("5m report %+v, want 5 raw rows into 3 new buckets", rep.R5m)
	}
	if rep.R1h.Buckets != 2 || rep.R1d.Buckets != 1 {
		t.Errorf("1h report %+v, 1d report %+v, want 2 and 1 buckets", rep.R1h, rep.R1d)
	}
	f.wantBucket("samples_5m", d, bucket{min: []float64{1, nan, 5}, max: []float64{3, nan, 7}, sum: []float64{6, nan, 12}, cnt: []int32{3, 0, 2}})
	f.wantBucket("samples_5m", d.Add(5*time.Minute), bucket{min: []float64{10, 4, nan}, max: []float64{10, 4, nan}, sum: []float64{10, 4, nan}, cnt: []int32{1, 1, 0}})
	f.wantBucket("samples_5m", d.Add(time.Hour), bucket{min: []float64{100, nan, 1}, max: []float64{100, nan, 1}, sum: []float64{100, nan, 1}, cnt: []int32{1, 0, 1}})
	// 1 h from 5 min: sums and counts add up, so avg(cpu) is 16/4 = 4, not
	// the 6 that averaging the two 5-minute averages would give.
	f.wantBucket("samples_1h", d, bucket{min: []float64{1, 4, 5}, max: []float64{10, 4, 7}, sum: []float64{16, 4, 12}, cnt: []int32{4, 1, 2}})
	f.wantBucket("samples_1h", d.Add(time.Hour), bucket{min: []float64{100, nan, 1}, max: []float64{100, nan, 1}, sum: []float64{100, nan, 1}, cnt: []int32{1, 0, 1}})
	f.wantBucket("samples_1d", d, bucket{min: []float64{1, 4, 1}, max: []float64{100, 4, 7}, sum: []float64{116, 4, 13}, cnt: []int32{5, 1, 3}})

	// A series with fewer counters than others of its site keeps arrays of
	// its own length.
	short := protocol.SeriesData{
		Key:        protocol.SeriesKey{Source: "vc1", EntityKind: "host", EntityID: "host-1", Counters: vmCounters[:1]},
		Timestamps: []int64{d.UnixMilli(), d.Add(20 * time.Second).UnixMilli()},
		Values:     [][]float64{{5, 6}},
	}
	f.write(short)
	f.rollup()
	if got, ok := f.bucket("samples_1d", "host-1", d); !ok || !sameFloats(got.min, []float64{5}) || !sameFloats(got.sum, []float64{11}) || !reflect.DeepEqual(got.cnt, []int32{2}) {
		t.Errorf("1-counter series 1d bucket: %+v", got)
	}

	// Nothing new: nothing to do.
	if rep := f.rollup(); rep.Batches != 0 || rep.R5m.Buckets != 0 {
		t.Errorf("second run without new batches: %+v", rep)
	}
}

func TestRollupLateData(t *testing.T) {
	f := newFixture(t)
	d := testDay()
	f.writeHandComputed(d)
	f.rollup()
	// An offline site syncs a point for 00:01 after the bucket was rolled
	// up, and a point for a bucket of another day.
	f.write(points("vm-1", d, []float64{60, 0.5, 8, nan}, []float64{2*86400 + 30, 42, 42, 42}))
	rep := f.rollup()
	if rep.Batches != 1 {
		t.Errorf("late run: batches %d, want 1", rep.Batches)
	}
	// The ledger knows the batch's bounds, not its gaps: every stored
	// bucket from d 00:00 to d+2 00:05 is recomputed (4), and two of them
	// changed or are new.
	if rep.R5m.Buckets != 4 || rep.R5m.Written != 2 || rep.R1h.Written != 2 || rep.R1d.Written != 2 {
		t.Errorf("late run: 5m %+v 1h %+v 1d %+v; want 4 buckets recomputed, 2 written per tier", rep.R5m, rep.R1h, rep.R1d)
	}
	f.wantBucket("samples_5m", d, bucket{min: []float64{0.5, 8, 5}, max: []float64{3, 8, 7}, sum: []float64{6.5, 8, 12}, cnt: []int32{4, 1, 2}})
	f.wantBucket("samples_1h", d, bucket{min: []float64{0.5, 4, 5}, max: []float64{10, 8, 7}, sum: []float64{16.5, 12, 12}, cnt: []int32{5, 2, 2}})
	f.wantBucket("samples_1d", d, bucket{min: []float64{0.5, 4, 1}, max: []float64{100, 8, 7}, sum: []float64{116.5, 12, 13}, cnt: []int32{6, 2, 3}})
	f.wantBucket("samples_1d", d.Add(2*day), bucket{min: []float64{42, 42, 42}, max: []float64{42, 42, 42}, sum: []float64{42, 42, 42}, cnt: []int32{1, 1, 1}})
	// The untouched hour is still right.
	f.wantBucket("samples_1h", d.Add(time.Hour), bucket{min: []float64{100, nan, 1}, max: []float64{100, nan, 1}, sum: []float64{100, nan, 1}, cnt: []int32{1, 0, 1}})
}

// dump returns every rollup row as text, for comparing runs.
func (f *fixture) dump() string {
	f.t.Helper()
	var b strings.Builder
	for _, tbl := range []string{"samples_5m", "samples_1h", "samples_1d"} {
		rows, err := f.st.Pool().Query(f.ctx, `SELECT series_id, ts, vmin::text, vmax::text, vsum::text, vcnt::text FROM `+tbl+` ORDER BY 1, 2`)
		if err != nil {
			f.t.Fatal(err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				f.t.Fatal(err)
			}
			fmt.Fprintln(&b, tbl, vals)
		}
		rows.Close()
	}
	return b.String()
}

func TestRollupIdempotent(t *testing.T) {
	f := newFixture(t)
	d := testDay()
	f.writeHandComputed(d)
	f.write(points("vm-2", d.Add(-time.Hour), []float64{0, 1, 2, 3}, []float64{7200, 4, 5, 6}))
	first := f.rollup()
	before := f.dump()
	// Forget the watermark: the next run sees every batch again.
	if _, err := f.st.Pool().Exec(f.ctx, `UPDATE rollup_state SET received_until = '-infinity'`); err != nil {
		t.Fatal(err)
	}
	again := f.rollup()
	if again.Batches != 2 || again.R5m.Buckets != first.R5m.Buckets || again.R1h.Buckets != first.R1h.Buckets || again.R1d.Buckets != first.R1d.Buckets {
		t.Errorf("rerun recomputed %+v, first run %+v", again, first)
	}
	if again.R5m.Written+again.R1h.Written+again.R1d.Written != 0 {
		t.Errorf("rerun rewrote rows: 5m %d, 1h %d, 1d %d", again.R5m.Written, again.R1h.Written, again.R1d.Written)
	}
	if after := f.dump(); after != before {
		t.Errorf("rerun changed the rollups:\nbefore\n%s\nafter\n%s", before, after)
	}
}

func TestRollupSiteScoped(t *testing.T) {
	f := newFixture(t)
	d := testDay()
	f.writeHandComputed(d)
	other := &fixture{t: t, ctx: f.ctx, st: f.st, site: "dc2"}
	other.agent = other.enroll("dc2")
	// dc2's series use another source (sources belong to one site).
	sd := points("vm-9", d, []float64{0, 1, 1, 1})
	sd.Key.Source = "vc2"
	other.write(sd)
	f.rollup()
	// Corrupt dc1's bucket, then let only dc2 send: dc1's bucket must not be
	// recomputed (it is not dirty), dc2's is.
	if _, err := f.st.Pool().Exec(f.ctx, `UPDATE samples_5m SET vcnt = '{99,99,99}' WHERE series_id = (SELECT id FROM series WHERE entity_id = 'vm-1')`); err != nil {
		t.Fatal(err)
	}
	sd = points("vm-9", d, []float64{20, 2, 2, 2})
	sd.Key.Source = "vc2"
	other.write(sd)
	rep := f.rollup()
	if rep.R5m.Buckets != 1 {
		t.Errorf("recomputed %d 5m buckets, want only dc2's one", rep.R5m.Buckets)
	}
	if got, _ := f.bucket("samples_5m", "vm-1", d); !reflect.DeepEqual(got.cnt, []int32{99, 99, 99}) {
		t.Errorf("dc1's bucket was recomputed for a dc2 batch: cnt %v", got.cnt)
	}
	if got, _ := f.bucket("samples_5m", "vm-9", d); !reflect.DeepEqual(got.cnt, []int32{2, 2, 2}) {
		t.Errorf("dc2's bucket cnt %v, want [2 2 2]", got.cnt)
	}
}

func TestRollupLockAndOpenTransactions(t *testing.T) {
	f := newFixture(t)
	d := testDay()
	// Another aggregator is running the job: this one steps aside.
	tx, err := f.st.Pool().Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(f.ctx, `SELECT pg_advisory_xact_lock(hashtext('vmpulse.rollups'))`); err != nil {
		t.Fatal(err)
	}
	rep, err := f.st.RunRollups(f.ctx, time.Now())
	if err != nil || rep.Skipped != "busy" {
		t.Errorf("with the lock held elsewhere: %+v, %v; want skipped busy", rep, err)
	}
	if err := tx.Rollback(f.ctx); err != nil {
		t.Fatal(err)
	}
	// While another transaction stays open, a batch committed after it
	// began must wait: an ingest transaction that old could still commit a
	// ledger row dated before the batch's.
	open, err := f.st.Pool().Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open.Exec(f.ctx, `SELECT 1`); err != nil {
		t.Fatal(err)
	}
	f.writeHandComputed(d)
	if rep = f.rollup(); rep.Batches != 0 {
		t.Errorf("rolled up %d batches received after an open transaction began", rep.Batches)
	}
	if err := open.Rollback(f.ctx); err != nil {
		t.Fatal(err)
	}
	if rep = f.rollup(); rep.Batches != 1 || rep.R5m.Buckets != 3 {
		t.Errorf("after the transaction ended: %+v, want the batch rolled up", rep)
	}
}

func TestQueryRange(t *testing.T) {
	f := newFixture(t)
	d := testDay()
	f.writeHandComputed(d)
	f.write(points("vm-1", d.Add(-40*day), []float64{0, 7, 7, 7}))
	f.rollup()

	type pt = store.Point
	cases := []struct {
		name    string
		q       store.RangeQuery
		res     store.Resolution
		step    time.Duration
		counter string
		want    []pt
	}{
		{"1h range is raw", store.RangeQuery{From: d, To: d.Add(time.Hour), Counters: []string{"cpu"}},
			store.ResolutionRaw, 20 * time.Second, "cpu", []pt{{d, 1}, {d.Add(20 * time.Second), 3}, {d.Add(40 * time.Second), 2}, {d.Add(5 * time.Minute), 10}}},
		{"a step under 5m is raw", store.RangeQuery{From: d, To: d.Add(time.Hour), Step: time.Minute, Agg: store.AggMax, Counters: []string{"cpu"}},
			store.ResolutionRaw, time.Minute, "cpu", []pt{{d, 3}, {d.Add(5 * time.Minute), 10}}},
		{"2 day range is 5m", store.RangeQuery{From: d, To: d.Add(2 * day), Counters: []string{"cpu"}},
			store.Resolution5m, 5 * time.Minute, "cpu", []pt{{d, 2}, {d.Add(5 * time.Minute), 10}, {d.Add(time.Hour), 100}}},
		{"explicit 1h step uses 1h buckets, avg is sum/count", store.RangeQuery{From: d, To: d.Add(2 * day), Step: time.Hour, Counters: []string{"cpu"}},
			store.Resolution1h, time.Hour, "cpu", []pt{{d, 4}, {d.Add(time.Hour), 100}}},
		{"30 day range is 1h", store.RangeQuery{From: d.Add(-27 * day), To: d.Add(3 * day), Agg: store.AggCount, Counters: []string{"net"}},
			store.Resolution1h, time.Hour, "net", []pt{{d, 2}, {d.Add(time.Hour), 1}}},
		{"200 day range is 1d", store.RangeQuery{From: d.Add(-197 * day), To: d.Add(3 * day), Agg: store.AggMin, Counters: []string{"cpu"}},
			store.Resolution1d, day, "cpu", []pt{{d.Add(-40 * day), 7}, {d, 1}}},
		{"sum over a day", store.RangeQuery{From: d, To: d.Add(day), Step: day, Agg: store.AggSum, Counters: []string{"net"}},
			store.Resolution1d, day, "net", []pt{{d, 13}}},
		{"mem has one value in the hour", store.RangeQuery{From: d, To: d.Add(2 * time.Hour), Step: 10 * time.Minute, Agg: store.AggAvg, Counters: []string{"mem"}},
			store.Resolution5m, 10 * time.Minute, "mem", []pt{{d, 4}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.q.EntityKind, c.q.EntityID = "vm", "vm-1"
			res, err := f.st.QueryRange(f.ctx, c.q)
			if err != nil {
				t.Fatal(err)
			}
			if res.Resolution != c.res || res.Step != c.step {
				t.Errorf("answered by %s step %s, want %s step %s", res.Resolution, res.Step, c.res, c.step)
			}
			if len(res.Series) != 1 {
				t.Fatalf("got %d series, want 1: %+v", len(res.Series), res.Series)
			}
			sp := res.Series[0]
			if sp.Counter != c.counter || sp.EntityID != "vm-1" || sp.Site != "dc1" || sp.Source != "vc1" {
				t.Errorf("series %+v", sp)
			}
			if len(sp.Points) != len(c.want) {
				t.Fatalf("points %v, want %v", sp.Points, c.want)
			}
			for i := range c.want {
				if !sp.Points[i].T.Equal(c.want[i].T) || math.Abs(sp.Points[i].V-c.want[i].V) > 1e-6 {
					t.Errorf("point %d = %v, want %v", i, sp.Points[i], c.want[i])
				}
			}
		})
	}

	t.Run("all counters, by series id, units", func(t *testing.T) {
		res, err := f.st.QueryRange(f.ctx, store.RangeQuery{EntityKind: "vm", EntityID: "vm-1", From: d, To: d.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Series) != 3 || res.Series[0].Counter != "cpu" || res.Series[2].Counter != "net" || res.Series[2].Unit != "KBps" {
			t.Fatalf("series %+v", res.Series)
		}
		byID, err := f.st.QueryRange(f.ctx, store.RangeQuery{SeriesIDs: []int64{res.Series[0].SeriesID}, Counters: []string{"net"}, From: d, To: d.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if len(byID.Series) != 1 || !reflect.DeepEqual(byID.Series[0].Points, res.Series[2].Points) {
			t.Errorf("by id: %+v, want %+v", byID.Series, res.Series[2])
		}
		none, err := f.st.QueryRange(f.ctx, store.RangeQuery{EntityKind: "vm", EntityID: "vm-1", Instances: []string{"vmnic0"}, From: d, To: d.Add(time.Hour)})
		if err != nil || len(none.Series) != 0 {
			t.Errorf("instance filter: %+v, %v", none.Series, err)
		}
	})

	t.Run("invalid queries", func(t *testing.T) {
		for _, q := range []store.RangeQuery{
			{From: d, To: d.Add(time.Hour)},
			{EntityKind: "vm", EntityID: "vm-1", From: d, To: d},
			{EntityKind: "vm", EntityID: "vm-1", From: d, To: d.Add(time.Hour), Agg: "median"},
			{EntityKind: "vm", EntityID: "vm-1", From: d, To: d.Add(30 * day), Step: time.Second},
		} {
			if _, err := f.st.QueryRange(f.ctx, q); !errors.Is(err, store.ErrInvalidQuery) {
				t.Errorf("%+v: err %v, want ErrInvalidQuery", q, err)
			}
		}
	})
}

func TestRetention(t *testing.T) {
	f := newFixture(t)
	now := time.Now().UTC().Truncate(time.Hour)
	old, mid := now.Add(-20*day), now.Add(-3*day)
	f.write(points("vm-1", old, []float64{0, 1, 1, 1}, []float64{3600, 2, 2, 2}))
	f.write(points("vm-1", mid, []float64{0, 3, 3, 3}))
	f.rollup()
	rep, err := f.st.ApplyRetention(f.ctx, now, store.Retention{Raw: 10 * day, R5m: 15 * day, R1h: 30 * day})
	if err != nil {
		t.Fatal(err)
	}
	wantPart := "samples_p" + old.Format("20060102")
	if !containsStr(rep.DroppedPartitions, wantPart) {
		t.Errorf("dropped %v, want %s among them", rep.DroppedPartitions, wantPart)
	}
	if containsStr(rep.DroppedPartitions, "samples_p"+mid.Format("20060102")) {
		t.Errorf("dropped %v, including a partition 3 days old", rep.DroppedPartitions)
	}
	if rep.Deleted5m != 2 || rep.Deleted1h != 0 || rep.Deleted1d != 0 {
		t.Errorf("deleted 5m %d 1h %d 1d %d, want 2 0 0", rep.Deleted5m, rep.Deleted1h, rep.Deleted1d)
	}
	var raw, r5 int
	if err := f.st.Pool().QueryRow(f.ctx, `SELECT (SELECT count(*) FROM samples), (SELECT count(*) FROM samples_5m)`).Scan(&raw, &r5); err != nil {
		t.Fatal(err)
	}
	if raw != 1 || r5 != 1 {
		t.Errorf("left %d raw rows and %d 5m rows, want 1 and 1 (the 3-day-old ones)", raw, r5)
	}
	if _, ok := f.bucket("samples_1h", "vm-1", old); !ok {
		t.Error("1h bucket of 20 days ago was deleted with a 30-day retention")
	}

	// A 2-hour range 20 days back would be raw, but raw and 5m are gone
	// there: the hourly tier answers.
	q, err := f.st.QueryRange(f.ctx, store.RangeQuery{EntityKind: "vm", EntityID: "vm-1", Counters: []string{"cpu"}, From: old, To: old.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if q.Resolution != store.Resolution1h || len(q.Series) != 1 || len(q.Series[0].Points) != 2 || q.Series[0].Points[1].V != 2 {
		t.Errorf("query after retention: %s %+v, want two hourly points from 1h", q.Resolution, q.Series)
	}

	// Data arriving later than raw retention is stored but not rolled up
	// over the kept hourly bucket: rebuilding it from the lone late row
	// would lose what the trimmed tiers held.
	f.write(points("vm-1", old, []float64{60, 50, 50, 50}))
	if rep := f.rollup(); rep.Batches != 1 || rep.R5m.Buckets != 0 || rep.R1h.Buckets != 0 {
		t.Errorf("late data behind retention was rolled up: %+v", rep)
	}
	if b, _ := f.bucket("samples_1h", "vm-1", old); !reflect.DeepEqual(b.cnt, []int32{1, 1, 1}) || b.max[0] != 1 {
		t.Errorf("kept 1h bucket changed: %+v", b)
	}
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// The TimescaleDB migration hard-codes the retention policies; they must be
// DefaultRetention's.
func TestTimescaleRetentionDefaults(t *testing.T) {
	ms, err := store.RenderMigrations(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	var sql string
	for _, m := range ms {
		if strings.HasPrefix(m.Name, "003") {
			sql = m.SQL
		}
	}
	r := store.DefaultRetention
	for table, d := range map[string]time.Duration{"samples": r.Raw, "samples_5m": r.R5m, "samples_1h": r.R1h, "samples_1d": r.R1d} {
		want := fmt.Sprintf("add_retention_policy('%s', drop_after => INTERVAL '%d days')", table, d/day)
		if !strings.Contains(sql, want) {
			t.Errorf("003 lacks %s", want)
		}
	}
	plain, err := store.RenderMigrations(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range plain {
		if strings.Contains(m.SQL, "timescaledb.") || strings.Contains(m.SQL, "add_retention_policy") {
			t.Errorf("%s without TimescaleDB mentions TimescaleDB", m.Name)
		}
	}
}
