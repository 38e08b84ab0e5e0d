package backup_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/backup"
)

// benchVMs is the estate of BenchmarkBackupRestore: 5,000 VMs, the
// issue's target (VMPULSE_BENCH_VMS overrides it).
func benchVMs() int {
	if n, err := strconv.Atoi(os.Getenv("VMPULSE_BENCH_VMS")); err == nil && n > 0 {
		return n
	}
	return 5000
}

// BenchmarkBackupRestore makes a configuration + one day of metrics backup
// of benchVMs VMs (15 counters every 20 s: 4,320 raw rows per VM, and the
// day's 5 min rollups) and restores it, and reports both rates in MB of
// table data (heap, without indexes) per second, the dump's size, and how
// long ingest was paused by the restore (the rollup rows of the range are
// replaced before the pause, under the rollups' lock; see load.go).
func BenchmarkBackupRestore(b *testing.B) {
	// The service's log says where the restore's time goes (the pause's
	// steps: "restore swapped in").
	f := newFixture(b, func(o *backup.Options) { o.Logger = slog.New(slog.NewTextHandler(os.Stdout, nil)) })
	ctx := context.Background()
	vms := benchVMs()
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	if err := f.st.EnsurePartitions(ctx, day, day.AddDate(0, 0, 1)); err != nil {
		b.Fatal(err)
	}
	f.exec(`INSERT INTO series (site, source, entity_kind, entity_id, instance, counters, units)
		SELECT 'dc1', 'vc1', 'vm', 'vm-' || i, '', array_fill('c'::text, ARRAY[15]), array_fill('%'::text, ARRAY[15]) FROM generate_series(1, $1) i`, vms)
	f.exec(`INSERT INTO samples (series_id, ts, v)
		SELECT s.id, $1::timestamptz + i * interval '20 seconds',
			ARRAY(SELECT round((random() * 1000)::numeric, 1)::real FROM generate_series(1, 15) WHERE s.id > 0 AND i >= 0)
		FROM generate_series(0, 4319) i, series s ORDER BY i, s.id`, day)
	f.exec(`INSERT INTO samples_5m (series_id, ts, vmin, vmax, vsum, vcnt)
		SELECT s.id, $1::timestamptz + i * interval '5 minutes', array_fill(1::real, ARRAY[15]), array_fill(9::real, ARRAY[15]),
			array_fill(75::float8, ARRAY[15]), array_fill(15, ARRAY[15])
		FROM generate_series(0, 287) i, series s`, day)
	for i := 0; i < 20; i++ {
		f.exec(`INSERT INTO users (id, username, password_hash) VALUES (gen_random_uuid(), $1, 'x')`, fmt.Sprintf("user%d", i))
	}
	f.exec(`ANALYZE`)
	var dataBytes int64
	if err := f.pool.QueryRow(ctx, `SELECT sum(pg_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind = 'r' AND (c.relname IN ('series', 'samples_5m', 'samples_1h', 'samples_1d', 'samples_p`+day.Format("20060102")+`')
			OR c.relname = ANY($1))`, backup.ConfigTables).Scan(&dataBytes); err != nil {
		b.Fatal(err)
	}
	mb := float64(dataBytes) / (1 << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		bk, err := f.svc.Create(ctx, backup.Request{Kind: backup.KindMetrics, From: day, To: day.Add(24 * time.Hour)})
		if err != nil {
			b.Fatal(err)
		}
		backupTook := time.Since(start)
		start = time.Now()
		r, err := f.svc.RestoreNow(ctx, bk.ID, "bench")
		if err != nil {
			b.Fatal(err)
		}
		restoreTook := time.Since(start)
		b.StopTimer()
		fmt.Printf("backup: %.0f MB of table data (%d VMs x 1 day raw + 5m rollups + config) in %.1f s, dump %.0f MB; restore in %.1f s, checksum verified twice\n",
			mb, vms, backupTook.Seconds(), float64(bk.SizeBytes)/(1<<20), restoreTook.Seconds())
		fmt.Printf("figure: backup_mb_per_s %.1f MB/s\n", mb/backupTook.Seconds())
		fmt.Printf("figure: restore_mb_per_s %.1f MB/s\n", mb/restoreTook.Seconds())
		fmt.Printf("figure: restore_pause_s %.1f s (ingest paused: maintenance mode, agents spooling)\n", float64(*r.PausedMS)/1000)
		if err := os.Remove(f.svc.Path(bk)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
