package store_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// BenchmarkHistory measures history queries over 30 days, which the hourly
// rollup tier answers: one counter of one VM, all 15 counters of one VM, and
// one counter of 1,000 VMs (a cluster). The fleet is BENCH_HISTORY_VMS VMs
// (default 10,000) × 15 counters with 30 days of hourly buckets, written
// with SQL (the rollup job's own output format), since the figures are
// about reading. Each figure is the p99 of 200 queries (50 for the
// cluster), on random VMs.
func BenchmarkHistory(b *testing.B) {
	nVMs := 10000
	if s := os.Getenv("BENCH_HISTORY_VMS"); s != "" {
		nVMs, _ = strconv.Atoi(s)
	}
	f := newFixture(b)
	ctx, pool := f.ctx, f.st.Pool()
	counters := []string{"cpu.usage.average", "cpu.ready.summation", "cpu.costop.summation", "mem.usage.average", "mem.vmmemctl.average",
		"mem.swapped.average", "mem.active.average", "disk.read.average", "disk.write.average", "disk.maxTotalLatency.latest",
		"disk.numberReadAveraged.average", "disk.numberWriteAveraged.average", "net.received.average", "net.transmitted.average", "net.usage.average"}
	to := time.Now().UTC().Truncate(time.Hour)
	from := to.Add(-30 * 24 * time.Hour)
	start := time.Now()
	if _, err := pool.Exec(ctx, `INSERT INTO series (site, source, entity_kind, entity_id, instance, counters, units)
		SELECT 'dc1', 'vc1', 'vm', 'vm-' || i, '', $1::text[], array_fill('%'::text, ARRAY[15]) FROM generate_series(1, $2) i`, counters, nVMs); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO samples_1h (series_id, ts, vmin, vmax, vsum, vcnt)
		SELECT s.id, t, array_fill((s.id % 100)::real, ARRAY[15]), array_fill((s.id % 100 + 50)::real, ARRAY[15]),
		       array_fill(((s.id % 100) * 180)::float8, ARRAY[15]), array_fill(180, ARRAY[15])
		FROM series s, generate_series($1::timestamptz, $2::timestamptz - interval '1 hour', interval '1 hour') t
		ORDER BY s.id, t`, from, to); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE series; ANALYZE samples_1h`); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d VMs × 15 counters × 30 days of hourly buckets in %s", nVMs, time.Since(start).Round(time.Second))
	var ids []int64
	rows, err := pool.Query(ctx, `SELECT id FROM series ORDER BY id`)
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var id int64
		_ = rows.Scan(&id)
		ids = append(ids, id)
	}
	rows.Close()

	rng := rand.New(rand.NewPCG(1, 2))
	p99 := func(n int, q func() store.RangeQuery, wantSeries, wantPoints int) float64 {
		var d []time.Duration
		for range n {
			rq := q()
			t0 := time.Now()
			res, err := f.st.QueryRange(ctx, rq)
			d = append(d, time.Since(t0))
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Series) != wantSeries || len(res.Series[0].Points) != wantPoints || res.Resolution != store.Resolution1h {
				b.Fatalf("%d series of %d points from %s", len(res.Series), len(res.Series[0].Points), res.Resolution)
			}
		}
		slices.Sort(d)
		return float64(d[len(d)*99/100].Microseconds()) / 1000
	}
	for b.Loop() {
		one := p99(200, func() store.RangeQuery {
			return store.RangeQuery{Site: "dc1", Source: "vc1", EntityKind: "vm", EntityID: "vm-" + strconv.Itoa(1+rng.IntN(nVMs)),
				Counters: []string{"cpu.ready.summation"}, From: from, To: to}
		}, 1, 720)
		vm := p99(200, func() store.RangeQuery {
			return store.RangeQuery{Site: "dc1", Source: "vc1", EntityKind: "vm", EntityID: "vm-" + strconv.Itoa(1+rng.IntN(nVMs)), From: from, To: to}
		}, 15, 720)
		cluster := p99(50, func() store.RangeQuery {
			n := min(1000, len(ids))
			i := rng.IntN(len(ids) - n + 1)
			return store.RangeQuery{SeriesIDs: ids[i : i+n], Counters: []string{"cpu.usage.average"}, From: from, To: to}
		}, min(1000, len(ids)), 720)
		fmt.Printf("figure: history_1counter_30d_p99_ms %.2f ms\n", one)
		fmt.Printf("figure: history_1vm_30d_p99_ms %.2f ms\n", vm)
		fmt.Printf("figure: history_cluster_1000vm_30d_p99_ms %.1f ms\n", cluster)
	}
}
