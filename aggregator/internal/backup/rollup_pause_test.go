package backup_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/backup"
)

// TestRestoreReplacesRollupsBeforePause: a metrics restore replaces the
// rollup rows of its range before maintenance mode, under the rollups'
// lock: when the pause begins, the restore has already written
// samples_5m and holds that lock (the rollup job skips, "busy"), no
// other replica saw anything yet; after the commit the rollups equal the
// backup's, and the rollup job, free again, rolls up what was ingested
// meanwhile.
func TestRestoreReplacesRollupsBeforePause(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if err := f.st.EnsureSite(ctx, "dc1", ""); err != nil {
		t.Fatal(err)
	}
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	f.writeSamples(ctx, "dc1", 5, 60, day.Add(6*time.Hour), 1)
	if _, err := f.st.RunRollups(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	rollups := func() []string {
		rows, err := f.pool.Query(ctx, `SELECT x::text FROM samples_5m x WHERE ts >= $1 AND ts < $2 ORDER BY 1`, day, day.Add(24*time.Hour))
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
	want := rollups()
	if len(want) == 0 {
		t.Fatal("seed: no 5-minute rollups")
	}
	b, err := f.svc.Create(ctx, backup.Request{Kind: backup.KindMetrics, From: day, To: day.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	f.exec(`UPDATE samples_5m SET vcnt = '{0}' WHERE ts >= $1 AND ts < $2`, day, day.Add(24*time.Hour))
	changed := rollups()

	var inPause struct {
		writtenBefore bool
		skipped       string
		seen          []string
	}
	backup.SetLoadHook(f.svc, func() {
		// The restore's own session holds samples_5m for writing: it
		// rewrote the range before the pause began.
		inPause.writtenBefore = f.count(`SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
			WHERE c.relname = 'samples_5m' AND l.mode = 'RowExclusiveLock' AND l.granted AND l.pid <> pg_backend_pid()`) > 0
		rep, err := f.st.RunRollups(ctx, time.Now())
		if err != nil {
			t.Error(err)
		}
		inPause.skipped = rep.Skipped
		inPause.seen = rollups()
	})
	r, err := f.svc.RestoreNow(ctx, b.ID, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if !inPause.writtenBefore {
		t.Error("the rollup range was not written before the pause")
	}
	if inPause.skipped != "busy" {
		t.Errorf("the rollup job during the restore: skipped %q, want busy", inPause.skipped)
	}
	if !slices.Equal(inPause.seen, changed) {
		t.Error("other sessions saw the restore's rollups before it committed")
	}
	if got := rollups(); !slices.Equal(got, want) {
		t.Fatalf("rollups after the restore: %d rows differ from the backup's %d", len(got), len(want))
	}
	t.Logf("ingest paused %d ms", *r.PausedMS)

	// The job is free again and rolls up what arrives.
	now := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	f.writeSamples(ctx, "dc1", 5, 15, now, 2)
	rep, err := f.st.RunRollups(ctx, time.Now())
	if err != nil || rep.Skipped != "" {
		t.Fatalf("rollups after the restore: %+v, %v", rep, err)
	}
	if n := f.count(`SELECT count(*) FROM samples_5m WHERE ts >= $1`, now); n == 0 {
		t.Error("nothing rolled up after the restore")
	}
}
