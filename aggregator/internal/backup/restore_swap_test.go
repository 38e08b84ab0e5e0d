package backup_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/backup"
)

// TestMetricsRestoreSwapsLivePartition: a restore of a day whose raw
// partition exists (changed since the backup) swaps in the staged copy:
// the day equals the backup, the partition is attached with its primary
// key, nothing staged is left behind, and ingest writes into it after.
func TestMetricsRestoreSwapsLivePartition(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if err := f.st.EnsureSite(ctx, "dc1", ""); err != nil {
		t.Fatal(err)
	}
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	f.writeSamples(ctx, "dc1", 5, 60, day.Add(6*time.Hour), 1)
	snap := func() []string {
		rows, err := f.pool.Query(ctx, `SELECT x::text FROM samples x WHERE ts >= $1 AND ts < $2 ORDER BY 1`, day, day.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			_ = rows.Scan(&s)
			out = append(out, s)
		}
		return out
	}
	want := snap()
	b, err := f.svc.Create(ctx, backup.Request{Kind: backup.KindMetrics, From: day, To: day.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	partition := "samples_p" + day.Format("20060102")
	f.exec(`DELETE FROM `+partition+` WHERE ts < $1`, day.Add(6*time.Hour+10*time.Minute))
	f.writeSamples(ctx, "dc1", 5, 10, day.Add(12*time.Hour), 2)
	if got := snap(); slices.Equal(got, want) {
		t.Fatal("the day did not change after the backup")
	}
	if _, err := f.svc.RestoreNow(ctx, b.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if got := snap(); !slices.Equal(got, want) {
		t.Fatalf("the day after the restore: %d rows, want the backup's %d", len(got), len(want))
	}
	var attached bool
	var pkey string
	if err := f.pool.QueryRow(ctx, `SELECT c.relispartition, (SELECT conname FROM pg_constraint WHERE conrelid = c.oid AND contype = 'p')
		FROM pg_class c WHERE c.relname = $1`, partition).Scan(&attached, &pkey); err != nil {
		t.Fatal(err)
	}
	if !attached || pkey != partition+"_pkey" {
		t.Errorf("partition after the restore: attached %v, primary key %q", attached, pkey)
	}
	if n := f.count(`SELECT count(*) FROM pg_class WHERE relname LIKE 'vmp_restore%'`); n != 0 {
		t.Errorf("%d staging relations left behind", n)
	}
	if n := f.count(`SELECT count(*) FROM pg_constraint WHERE conname = 'vmp_restore_bounds'`); n != 0 {
		t.Errorf("the staging bound constraint is left on the partition")
	}
	f.writeSamples(ctx, "dc1", 5, 5, day.Add(20*time.Hour), 3)
	if n := f.count(`SELECT count(*) FROM samples WHERE ts >= $1 AND ts < $2`, day.Add(20*time.Hour), day.Add(24*time.Hour)); n != 25 {
		t.Errorf("ingest into the restored day: %d rows, want 25", n)
	}
}
