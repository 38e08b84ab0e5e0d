package ingest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/protocol"
)

// privateCluster starts a PostgreSQL cluster of this test's own (the shared
// one serves other packages in parallel and must not be stopped).
func privateCluster(t *testing.T) (dsn string, pg func(cmd string)) {
	t.Helper()
	script, err := filepath.Abs("../../../scripts/pg.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "vmpulse-pg-outage.")
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		out, err := exec.Command(script, args...).Output()
		if err != nil {
			stderr := ""
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("pg.sh %v: %v\n%s", args, err, stderr)
		}
		return strings.TrimSpace(string(out))
	}
	dsn = run("start", dir)
	t.Cleanup(func() { run("stop", dir) })
	return dsn, func(cmd string) { run(cmd, dir) }
}

func TestDatabaseDownMidStream(t *testing.T) {
	dsn, pg := privateCluster(t)
	h := newHarness(t, dsn, nil)
	c := h.dial(h.enroll("dc1"), 1)
	d := mustOpen(t, c)
	want := 0
	batch := func(seq uint64) *protocol.Batch {
		p := ingesttest.Samples("vc-a", 20, 3, t0+int64(seq)*60_000, seq)
		want += p.Count()
		return ingesttest.MustBatch(protocol.KindSamples, p, 1, seq)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		sendAndAck(t, d, batch(seq))
	}

	pg("pause")
	acks := make(chan protocol.Ack, 16)
	errs := make(chan error, 1)
	go func() {
		for {
			a, err := d.Recv()
			if err != nil {
				errs <- err
				return
			}
			acks <- a
		}
	}()
	for seq := uint64(4); seq <= 8; seq++ {
		if err := d.Send(batch(seq)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case a := <-acks:
		t.Fatalf("ack %+v while the database is down", a)
	case err := <-errs:
		t.Fatalf("stream failed while the database is down: %v", err)
	case <-time.After(3 * time.Second):
	}
	if h.srv.Stats.StoreRetries.Load() == 0 {
		t.Fatal("no store retries counted during the outage")
	}

	pg("resume")
	for seq := uint64(4); seq <= 8; seq++ {
		select {
		case a := <-acks:
			if a.Seq != seq || a.Status != protocol.AckStored {
				t.Fatalf("after recovery: ack %+v, want seq %d stored", a, seq)
			}
		case err := <-errs:
			t.Fatalf("stream failed after recovery: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatalf("no ack for seq %d within 30s of the database coming back", seq)
		}
	}
	if got := h.count(`SELECT count(*) FROM samples_named`); got != int64(want) {
		t.Fatalf("stored %d samples, want %d", got, want)
	}
}
