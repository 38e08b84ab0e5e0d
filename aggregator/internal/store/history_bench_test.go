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
// rollup tier answers: one counter of one VM, all 15 counters of one VM,
// one counter of 1,000 VMs (every VM's own line: the *_lines figures), and
// one counter of a 1,000-VM cluster, all its VMs combined per hour (the
// cluster route with of=vms), from the cluster aggregates of migration 018
// and, in the same run, from the VMs' hourly rows. The fleet is
// BENCH_HISTORY_VMS VMs (default 10,000) × 15 counters with 30 days of
// hourly buckets, written with SQL in the rollup job's own output format
// (the figures are about reading), then packed by the store's own job
// (RunRollups, then PackHours for the rest of the closed days). Each
// figure is the p99 of 200 queries (50 for the cluster), on random VMs.
//
// The same run first measures the hourly rows alone (the layout before
// migration 016, through the previous SQL path): the *_hourly_rows figures;
// then, twice in turn, one entity's reads through a transaction with five
// round trips (the read before this session: *_tx) and in one round trip;
// the last figures printed are the ones of record.
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
	// p99 runs n queries and returns the 99th and 50th percentiles, ms.
	p99 := func(n int, q func() store.RangeQuery, wantSeries, wantPoints int) (float64, float64) {
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
		return float64(d[len(d)*99/100].Microseconds()) / 1000, float64(d[len(d)/2].Microseconds()) / 1000
	}
	figures := func(suffix string, nCluster int) {
		one, oneP50 := p99(200, func() store.RangeQuery {
			return store.RangeQuery{Site: "dc1", Source: "vc1", EntityKind: "vm", EntityID: "vm-" + strconv.Itoa(1+rng.IntN(nVMs)),
				Counters: []string{"cpu.ready.summation"}, From: from, To: to}
		}, 1, 720)
		vm, vmP50 := p99(200, func() store.RangeQuery {
			return store.RangeQuery{Site: "dc1", Source: "vc1", EntityKind: "vm", EntityID: "vm-" + strconv.Itoa(1+rng.IntN(nVMs)), From: from, To: to}
		}, 15, 720)
		if nCluster == 0 {
			fmt.Printf("figure: history_1counter_30d%s_p99_ms %.2f ms\n", suffix, one)
			fmt.Printf("figure: history_1vm_30d%s_p99_ms %.2f ms\n", suffix, vm)
			fmt.Printf("# p50: 1 counter %.2f ms, 1 VM %.2f ms; load average %s", oneP50, vmP50, loadavg())
			return
		}
		cluster, clusterP50 := p99(nCluster, func() store.RangeQuery {
			n := min(1000, len(ids))
			i := rng.IntN(len(ids) - n + 1)
			return store.RangeQuery{SeriesIDs: ids[i : i+n], Counters: []string{"cpu.usage.average"}, From: from, To: to}
		}, min(1000, len(ids)), 720)
		fmt.Printf("figure: history_1counter_30d%s_p99_ms %.2f ms\n", suffix, one)
		fmt.Printf("figure: history_1vm_30d%s_p99_ms %.2f ms\n", suffix, vm)
		fmt.Printf("figure: history_cluster_1000vm_30d_lines%s_p99_ms %.1f ms\n", suffix, cluster)
		fmt.Printf("figure: history_cluster_1000vm_30d_lines%s_p50_ms %.1f ms\n", suffix, clusterP50)
		fmt.Printf("# p50: 1 counter %.2f ms, 1 VM %.2f ms; load average %s", oneP50, vmP50, loadavg())
	}
	for b.Loop() {
		store.SetHourlyViaSQL(true)
		figures("_hourly_rows", 10)
		store.SetHourlyViaSQL(false)

		t0 := time.Now()
		if _, err := f.st.RunRollups(ctx, time.Now()); err != nil { // advances the watermark, packs the newest days
			b.Fatal(err)
		}
		rep, err := f.st.PackHours(ctx, time.Now(), int(to.Sub(from)/(24*time.Hour))+1) // the seeded days, newest first
		if err != nil {
			b.Fatal(err)
		}
		var days int
		var hourly, packed int64
		if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM samples_1h_packed WHERE day >= $1::date AND whole), pg_total_relation_size('samples_1h'),
			pg_total_relation_size('samples_1h_days')`, from).Scan(&days, &hourly, &packed); err != nil {
			b.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `ANALYZE samples_1h_days; ANALYZE samples_1h_packed`); err != nil {
			b.Fatal(err)
		}
		b.Logf("packed %d days (%d rows) in %s; hourly tier %d MB, packed copy %d MB", days, rep.Rows, time.Since(t0).Round(time.Millisecond), hourly>>20, packed>>20)
		fmt.Printf("figure: history_pack_day_%dvm_s %.1f s\n", nVMs, time.Since(t0).Seconds()/float64(days))
		fmt.Printf("figure: history_packed_copy_size_ratio %.2f x\n", float64(packed)/float64(hourly))
		// One entity's series as read before (a transaction, five round
		// trips) and now (one round trip), alternating in the same run.
		for range 2 {
			store.SetEntityViaTx(true)
			figures("_tx", 0)
			store.SetEntityViaTx(false)
			figures("", 0)
		}
		figures("", 50)

		// The cluster's answer (GET /clusters/{id}/metrics?of=vms): every
		// cluster of 1,000 VMs (vm-1..vm-1000 in domain-c1, ...), one
		// counter over 30 days, all VMs' values combined per hour; from
		// the cluster aggregates, and from the VMs' hourly rows (the path
		// without them) in the same run.
		if _, err := pool.Exec(ctx, `INSERT INTO inventory_objects (site, source, kind, moref, name, props, first_seen, observed_at)
			SELECT 'dc1', 'vc1', 'vm', 'vm-' || i, 'vm-' || i,
			       jsonb_build_object('cluster_id', 'domain-c' || ((i - 1) / 1000 + 1), 'num_cpu', 2, 'power_state', 'poweredOn'), now(), now()
			FROM generate_series(1, $1) i`, nVMs); err != nil {
			b.Fatal(err)
		}
		nClusters := (nVMs + 999) / 1000
		t0 = time.Now()
		crep, err := f.st.SyncClusters(ctx, time.Now(), nClusters)
		if err != nil || crep.Rebuilt != nClusters {
			b.Fatalf("cluster aggregates: %+v, %v", crep, err)
		}
		b.Logf("built the aggregates of %d clusters (%d rows) in %s", crep.Rebuilt, crep.Rows, time.Since(t0).Round(time.Millisecond))
		fmt.Printf("figure: history_cluster_build_1000vm_30d_s %.1f s\n", time.Since(t0).Seconds()/float64(nClusters))
		clusterP99 := func(n int, vmsOnly bool) (float64, float64) {
			var d []time.Duration
			for range n {
				q := store.ClusterVMQuery{Site: "dc1", Source: "vc1", Cluster: "domain-c" + strconv.Itoa(1+rng.IntN(nClusters)),
					Counters: []string{"cpu.usage.average"}, From: from, To: to, VMsOnly: vmsOnly}
				t0 := time.Now()
				res, err := f.st.QueryClusterVMs(ctx, q)
				d = append(d, time.Since(t0))
				want := store.ClusterPathRollup
				if vmsOnly {
					want = store.ClusterPathVMs
				}
				if err != nil || res.Path != want || len(res.Series) != 1 || len(res.Series[0].Points) != 720 || res.VMs != min(1000, nVMs) {
					b.Fatalf("cluster query: %s (%s), %d VMs, %d series, %v", res.Path, res.Reason, res.VMs, len(res.Series), err)
				}
			}
			slices.Sort(d)
			return float64(d[len(d)*99/100].Microseconds()) / 1000, float64(d[len(d)/2].Microseconds()) / 1000
		}
		vmsP99, vmsP50 := clusterP99(20, true)
		aggP99, aggP50 := clusterP99(200, false)
		fmt.Printf("figure: history_cluster_1000vm_30d_p99_ms %.1f ms\n", aggP99)
		fmt.Printf("figure: history_cluster_1000vm_30d_vms_p99_ms %.1f ms\n", vmsP99)
		fmt.Printf("figure: history_cluster_1000vm_30d_speedup %.0f x\n", vmsP99/aggP99)
		fmt.Printf("# cluster p50: aggregates %.2f ms, from the VMs %.1f ms; load average %s", aggP50, vmsP50, loadavg())
	}
}

// loadavg is /proc/loadavg, for the conditions of a figure ("" elsewhere).
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return string(b)
}
