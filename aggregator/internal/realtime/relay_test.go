package realtime

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
	"github.com/vmpulse/vmpulse/protocol"
)

func testPool(t *testing.T, dsn string) (*store.Store, *pgxpool.Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(st.Close)
	return st, st.Pool()
}

// TestRelayBetweenReplicas: two hubs on one database, as two aggregator
// replicas. What replica A's ingest publishes reaches a subscriber on B,
// through PostgreSQL, and reaches A's own subscriber exactly once.
func TestRelayBetweenReplicas(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	st, poolA := testPool(t, dsn)
	_, poolB := testPool(t, dsn)
	a := startHub(t, Options{Pool: poolA, Relay: true})
	b := startHub(t, Options{Pool: poolB, Relay: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, h := range []*Hub{a, b} {
		if err := h.WaitRelay(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// A batch of 2,000 VMs: many notifications.
	p := ingesttest.Samples("vc-a", 2000, 1, time.Now().Add(-time.Minute).UnixMilli(), 3)
	watched := []Entity{
		{Site: "dc1", Source: "vc-a", Kind: "vm", ID: p.Series[0].Key.EntityID},
		{Site: "dc1", Source: "vc-a", Kind: "vm", ID: p.Series[1999].Key.EntityID},
	}
	subA, subB := a.Subscribe(16), b.Subscribe(16)
	for _, s := range []*Subscription{subA, subB} {
		if _, err := s.Add(watched, nil, 100); err != nil {
			t.Fatal(err)
		}
	}
	// Committed through the store's write path, published as ingest does.
	if err := st.EnsureSite(ctx, "dc1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := st.WriteSamples(ctx, store.BatchMeta{AgentID: "00000000-0000-0000-0000-000000000001", Site: "dc1", Epoch: 1, Seq: 1,
		Kind: protocol.KindSamples}, p); err != nil {
		t.Fatal(err)
	}
	committed := time.Now()
	a.PublishSamples("dc1", "00000000-0000-0000-0000-000000000001", p)

	want := 2 * len(ingesttest.DefaultCounters)
	for name, s := range map[string]*Subscription{"A (local)": subA, "B (relayed)": subB} {
		n := 0
		for n < want {
			d := recv(t, s)
			n += len(d.Samples)
			if d.Origin != a.ID() {
				t.Fatalf("%s: origin %s, want A's %s", name, d.Origin, a.ID())
			}
		}
		if n != want {
			t.Fatalf("%s received %d samples, want %d", name, n, want)
		}
		t.Logf("%s: all samples %s after commit", name, time.Since(committed).Round(time.Millisecond))
	}
	// A hears its own notifications back and ignores them: nothing twice.
	// A counts what it sent once its NOTIFY returns, which B may hear
	// first: wait for the counters to settle.
	settled := func(sa, sb Stats) bool {
		return sa.RelaySent >= 2 && sa.RelayOwnSkipped == sa.RelaySent && sb.RelayReceived == sa.RelaySent
	}
	deadline := time.Now().Add(5 * time.Second)
	sa, sb := a.Stats(), b.Stats()
	for !settled(sa, sb) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		sa, sb = a.Stats(), b.Stats()
	}
	if !settled(sa, sb) || sa.Received != 0 {
		t.Fatalf("stats A %+v, B %+v", sa, sb)
	}
	quiet(t, subA)
	quiet(t, subB)
	t.Logf("%d notifications for %d values", sa.RelaySent, p.Count())
}

// TestRelayReconnects: a LISTEN connection killed by the server is
// re-established, and relaying resumes.
func TestRelayReconnects(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	_, poolA := testPool(t, dsn)
	_, poolB := testPool(t, dsn)
	a := startHub(t, Options{Pool: poolA, Relay: true})
	b := startHub(t, Options{Pool: poolB, Relay: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.WaitRelay(ctx); err != nil {
		t.Fatal(err)
	}
	// Terminate every LISTEN backend of this database.
	if _, err := poolA.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'`); err != nil {
		t.Fatal(err)
	}
	for b.Stats().RelayErrors == 0 || !b.Stats().RelayListening {
		if ctx.Err() != nil {
			t.Fatalf("B did not reconnect: %+v", b.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := b.Subscribe(4)
	s.Add([]Entity{{Site: "dc1", Source: "vc", Kind: "vm", ID: "vm-1"}}, nil, 10)
	a.PublishSamples("dc1", "x", samples("vc", time.Now().UnixMilli(), "vm-1"))
	if d := recv(t, s); len(d.Samples) != 2 {
		t.Fatalf("after reconnecting B got %+v", d)
	}
}
