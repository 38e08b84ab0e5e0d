package store_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// TestHourlyEntityUnpackedHours checks the one-round-trip read of an
// entity's hourly history where packed days meet hours not packed yet (the
// current hours of today, and a day left unpacked in the middle): the
// answer equals the hourly rows' and the raw samples'.
func TestHourlyEntityUnpackedHours(t *testing.T) {
	f := newFixture(t)
	rng := rand.New(rand.NewPCG(5, 6))
	now := time.Now().UTC()
	from := now.Truncate(day).Add(-3 * day)
	if err := f.st.EnsurePartitions(f.ctx, from, now); err != nil {
		t.Fatal(err)
	}
	raw := f.randomSeries(rng, "vm-1", from, now.Add(-time.Minute), 600)
	f.rollup()
	if _, err := f.st.PackHours(f.ctx, time.Now(), 10); err != nil {
		t.Fatal(err)
	}
	// Unpack the middle day, as if it had not been packed yet.
	mid := from.Add(day)
	for _, sql := range []string{`DELETE FROM samples_1h_days WHERE day = $1::date`, `DELETE FROM samples_1h_packed WHERE day = $1::date`} {
		if _, err := f.st.Pool().Exec(f.ctx, sql, mid); err != nil {
			t.Fatal(err)
		}
	}
	var unpacked int
	if err := f.st.Pool().QueryRow(f.ctx, `SELECT count(*) FROM samples_1h s WHERE s.ts >= $1 AND NOT EXISTS (
		SELECT 1 FROM samples_1h_packed p WHERE p.day = (s.ts AT TIME ZONE 'UTC')::date AND s.ts < p.packed_until)`, from).Scan(&unpacked); err != nil {
		t.Fatal(err)
	}
	if unpacked < 24 {
		t.Fatalf("only %d hourly rows outside the packed copy: the test would not read any", unpacked)
	}
	for _, step := range []time.Duration{time.Hour, 3 * time.Hour} {
		for _, agg := range []store.Agg{store.AggAvg, store.AggMin, store.AggMax, store.AggSum, store.AggCount} {
			q := store.RangeQuery{EntityKind: "vm", EntityID: "vm-1", From: from.Add(30 * time.Minute), To: now, Step: step, Agg: agg}
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
			if len(res.Series) != len(vmCounters) || len(viaSQL.Series) != len(vmCounters) {
				t.Fatalf("%d series, the hourly rows give %d", len(res.Series), len(viaSQL.Series))
			}
			for i, sp := range res.Series {
				want := expectHourly(raw, "vm-1", i, q.From, q.To, step, agg)
				if !samePoints(sp.Points, want) || !samePoints(sp.Points, viaSQL.Series[i].Points) {
					t.Errorf("%s %s step %s: %d points, raw %d, hourly rows %d", sp.Counter, agg, step, len(sp.Points), len(want), len(viaSQL.Series[i].Points))
				}
			}
		}
	}
}
