package ingest_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// replicaPair runs two ingest servers (replicas A and B) on one database,
// each with its own store (connection pool) and the same CA.
func replicaPair(t *testing.T) (a, b *harness) {
	t.Helper()
	a = newHarness(t, "", nil)
	a.stop()
	// A long agent heartbeat: a revocation must arrive by the relay, not
	// by the heartbeat check. Replica heartbeats follow the same interval
	// and are not waited for here.
	a.cfg.HeartbeatInterval = time.Minute
	a.cfg.Cluster = &ingest.Cluster{Pool: a.st.Pool(), Registry: a.st, ReplicaID: "replica-a", Version: "test-a",
		HTTPAddr: func() string { return "127.0.0.1:1" }}
	a.start(nil)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stB, err := store.Open(ctx, a.dsn, store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stB.Close)
	b = &harness{t: t, dsn: a.dsn, dir: a.dir, st: stB, ca: a.ca}
	b.cfg.HeartbeatInterval = time.Minute
	b.cfg.Cluster = &ingest.Cluster{Pool: stB.Pool(), Registry: stB, ReplicaID: "replica-b", Version: "test-b"}
	b.start(nil)
	waitFor(t, 10*time.Second, "both replicas listening for relayed commands", func() bool {
		return a.srv.RelayListening() && b.srv.RelayListening()
	})
	return a, b
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCommandThroughOtherReplica: an agent connected to replica B gets a
// command sent through replica A, A lists it as connected, and a
// revocation through A closes its connection on B at once (not at the
// next heartbeat). Both replicas list themselves in the registry.
func TestCommandThroughOtherReplica(t *testing.T) {
	a, b := replicaPair(t)
	id := a.enroll("s1")
	c := b.dial(id, 1) // the agent's connection is held by B

	if !slices.Contains(a.srv.Connected(), id.AgentID) {
		t.Fatalf("replica A does not list the agent connected to B: %v", a.srv.Connected())
	}
	cmd := protocol.Command{Name: "resync_inventory"}
	if !a.srv.SendCommand(id.AgentID, cmd) {
		t.Fatal("SendCommand through A: not delivered")
	}
	_ = c.Control.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := protocol.ReadMessage(c.Control)
	if err != nil {
		t.Fatalf("agent on B: no command: %v", err)
	}
	if got, ok := m.(*protocol.Command); !ok || got.Name != cmd.Name {
		t.Fatalf("agent on B got %#v, want the resync command", m)
	}

	// An agent no replica holds: refused at once.
	start := time.Now()
	if a.srv.SendCommand("00000000-0000-0000-0000-000000000000", cmd) {
		t.Fatal("a command to an unknown agent was reported delivered")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("refusing an unknown agent took %s", took)
	}

	// Revocation through A: B closes the connection at once.
	ctx := store.AllSites(context.Background())
	if err := a.st.RevokeAgent(ctx, id.AgentID); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	a.srv.Disconnect(id.AgentID)
	select {
	case <-c.QUIC.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the agent's connection to B is still open 5 s after the revocation through A")
	}
	var appErr *quic.ApplicationError
	if err := context.Cause(c.QUIC.Context()); !errors.As(err, &appErr) || appErr.ErrorCode != quic.ApplicationErrorCode(protocol.ErrCodeUnauthenticated) {
		t.Errorf("connection closed with %v, want the unauthenticated code", err)
	}
	t.Logf("revocation through A closed the connection on B after %s", time.Since(revoked).Round(time.Millisecond))

	reps, err := a.st.Replicas(context.Background(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]store.Replica{}
	for _, r := range reps {
		got[r.ID] = r
	}
	ra, rb := got["replica-a"], got["replica-b"]
	if !ra.Live || !rb.Live || ra.Version != "test-a" || rb.Version != "test-b" || ra.HTTPAddr != "127.0.0.1:1" ||
		ra.IngestAddr != a.addr || rb.IngestAddr != b.addr || ra.StartedAt.IsZero() || rb.HeartbeatAt.IsZero() {
		t.Fatalf("registry: %+v", reps)
	}

	// A replica that shuts down marks itself stopped.
	b.stop()
	reps, err = a.st.Replicas(context.Background(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		if r.ID == "replica-b" && (r.Live || r.StoppedAt == nil) {
			t.Errorf("replica B after shutdown: %+v", r)
		}
	}
}
