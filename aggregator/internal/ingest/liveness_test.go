package ingest_test

import (
	"context"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// crashedReplica never records a disconnect, as a replica killed with
// SIGKILL does not.
type crashedReplica struct{ ingest.Store }

func (crashedReplica) AgentDisconnected(context.Context, string) error { return nil }

// TestLivenessAfterReplicaCrash: the agent's replica dies without a word;
// the registry, as any other replica reads it (GET /agents, /system/health
// read store.Agents), shows the agent disconnected within LeaseIntervals
// heartbeat intervals of its last heartbeat, and not before.
func TestLivenessAfterReplicaCrash(t *testing.T) {
	h := newHarness(t, "", nil)
	id := h.enroll("dc1")
	h.stop()
	const every = 300 * time.Millisecond
	h.cfg.HeartbeatInterval = every
	h.cfg.DrainTimeout = time.Millisecond // no goodbye to speak of
	h.start(func(s ingest.Store) ingest.Store { return crashedReplica{s} })
	c := h.dial(id, 1)
	if c.Welcome.HeartbeatInterval != every {
		t.Fatalf("welcome says heartbeat every %s, want %s", c.Welcome.HeartbeatInterval, every)
	}
	ctx := store.AllSites(context.Background())
	connected := func() (bool, time.Time) {
		t.Helper()
		all, err := h.st.Agents(ctx)
		if err != nil || len(all) != 1 {
			t.Fatalf("agents: %d, %v", len(all), err)
		}
		var seen time.Time
		if all[0].LastSeen != nil {
			seen = *all[0].LastSeen
		}
		return all[0].Connected, seen
	}
	for range 4 {
		if err := protocol.WriteMessage(c.Control, &protocol.Heartbeat{SpoolDepth: 1}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(every)
		if ok, _ := connected(); !ok {
			t.Fatal("heartbeating agent not connected")
		}
	}
	h.stop() // the replica is gone; the registry still says connected
	if got := h.count(`SELECT count(*) FROM agents WHERE connected`); got != 1 {
		t.Fatalf("test premise: the crashed replica left connected set, got %d rows", got)
	}
	lease := store.LeaseIntervals * every
	const skew = 50 * time.Millisecond
	for deadline := time.Now().Add(lease + 5*time.Second); ; time.Sleep(20 * time.Millisecond) {
		before := time.Now()
		ok, seen := connected()
		after := time.Now()
		if ok && before.Sub(seen) > lease+skew {
			t.Fatalf("still connected %s after the last heartbeat (lease %s)", before.Sub(seen), lease)
		}
		if !ok {
			if after.Sub(seen) < lease-skew {
				t.Fatalf("disconnected %s after the last heartbeat, before the lease (%s) ran out", after.Sub(seen), lease)
			}
			t.Logf("heartbeat every %s: disconnected %s after the last heartbeat (bound %s)", every, after.Sub(seen).Round(time.Millisecond), lease)
			return
		}
		if after.After(deadline) {
			t.Fatalf("still connected %s after the last heartbeat", after.Sub(seen))
		}
	}
}
