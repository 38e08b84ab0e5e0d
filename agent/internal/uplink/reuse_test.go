package uplink_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/agent/internal/spool"
	"github.com/vmpulse/vmpulse/agent/internal/uplink"
)

// The agent's VM is reverted to a snapshot after a batch was delivered: its
// spool hands out the same (epoch, seq) again for new data. The aggregator
// must not acknowledge that as a duplicate; the agent moves to a new epoch
// and both batches are stored.
func TestSpoolRolledBackReusesSeqAndNothingIsLost(t *testing.T) {
	agg := newAggregator(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id, err := uplink.Enroll(ctx, agg.addr, agg.token("lab"), "revert", "test", filepath.Join(dir, "identity"))
	if err != nil {
		t.Fatal(err)
	}
	spoolDir, snapshot := filepath.Join(dir, "spool"), filepath.Join(dir, "snapshot")
	sp, err := spool.Open(spoolDir, spool.Options{SyncInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	sp.Close()
	if err := os.CopyFS(snapshot, os.DirFS(spoolDir)); err != nil { // the VM snapshot
		t.Fatal(err)
	}

	deliver := func(at time.Time, seed uint64) {
		t.Helper()
		sp, err := spool.Open(spoolDir, spool.Options{SyncInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		b := samplesBatch(t, 20, at, seed)
		if err := sp.Append(b); err != nil {
			t.Fatal(err)
		}
		if b.Seq != 1 {
			t.Fatalf("seq %d, want 1", b.Seq)
		}
		c := uplink.New(uplink.Config{Addr: agg.addr, ServerName: "localhost", MaxBackoff: 500 * time.Millisecond}, id, sp)
		rctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = c.Run(rctx) }()
		deadline := time.Now().Add(30 * time.Second)
		for sp.Stats().Depth > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		stop()
		<-done
		if d := sp.Stats().Depth; d != 0 {
			t.Fatalf("batch not delivered (depth %d)", d)
		}
	}
	t1 := time.Now().Add(-time.Hour).Truncate(time.Second)
	deliver(t1, 1)
	if err := os.RemoveAll(spoolDir); err != nil { // revert
		t.Fatal(err)
	}
	if err := os.CopyFS(spoolDir, os.DirFS(snapshot)); err != nil {
		t.Fatal(err)
	}
	t2 := t1.Add(20 * time.Second)
	deliver(t2, 2)

	if n := agg.count(`SELECT count(*) FROM samples WHERE ts IN ($1, $2)`, t1, t2); n != 40 {
		t.Fatalf("rows = %d, want 40 (both batches)", n)
	}
	if n := agg.count(`SELECT count(DISTINCT epoch) FROM ingest_ledger`); n != 2 {
		t.Fatalf("ledger epochs = %d, want 2", n)
	}
	if n := agg.count(`SELECT count(*) FROM ingest_gaps`); n != 0 {
		t.Fatalf("%d gap records for a batch that was not lost", n)
	}
}
