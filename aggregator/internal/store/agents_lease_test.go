package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
	"github.com/vmpulse/vmpulse/protocol"
)

// TestLivenessSurvivesCrashedReplica: a replica registers an agent
// connected and renews its lease at each heartbeat, then crashes (nothing
// ever clears connected). The read paths of GET /agents and /system/health
// (Agents, AgentByID) report it connected while the lease runs and
// disconnected from LeaseIntervals heartbeat intervals after its last
// heartbeat on, whoever reads.
func TestLivenessSurvivesCrashedReplica(t *testing.T) {
	ctx := store.AllSites(context.Background())
	dsn := pgtest.NewDatabase(t)
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.EnsureSite(ctx, "dc1", ""); err != nil {
		t.Fatal(err)
	}
	secret, _, err := st.CreateEnrollmentToken(ctx, "dc1", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	a, err := st.Enroll(ctx, secret, "agent", "1", (&serials{}).sign)
	if err != nil {
		t.Fatal(err)
	}
	// Another replica: its own pool on the same database.
	other, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	const every = 300 * time.Millisecond
	lease := store.LeaseIntervals * every

	// read is what GET /agents and /system/health see on either replica:
	// the listing and the lookup must agree.
	read := func(s *store.Store) store.Agent {
		t.Helper()
		all, err := s.Agents(ctx)
		if err != nil || len(all) != 1 {
			t.Fatalf("agents: %d, %v", len(all), err)
		}
		one, err := s.AgentByID(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		// The two reads are two queries: the lease may run out between
		// them. That is the only disagreement allowed — the listing (read
		// first) connected, the lookup (read after) not, at the lease's end.
		if one.Connected != all[0].Connected {
			age := time.Duration(0)
			if one.LastSeen != nil {
				age = time.Since(*one.LastSeen)
			}
			if one.Connected || age < lease-50*time.Millisecond {
				t.Fatalf("AgentByID says connected=%v, Agents says %v (%s after the last heartbeat)", one.Connected, all[0].Connected, age)
			}
		}
		return one
	}
	if read(other).Connected {
		t.Fatal("enrolled agent that never said hello is connected")
	}

	if err := st.AgentConnectedEvery(ctx, a.ID, "1", "127.0.0.1:1", 1, "s1", every); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if revoked, err := st.AgentHeartbeatEvery(ctx, a.ID, &protocol.Heartbeat{SpoolDepth: 1}, every); err != nil || revoked {
			t.Fatalf("heartbeat: revoked=%v err=%v", revoked, err)
		}
		if !read(other).Connected {
			t.Fatal("heartbeating agent is not connected")
		}
		time.Sleep(every)
	}

	// The replica holding the connection dies here: no more heartbeats, and
	// nothing clears connected. Each read is checked against the age of the
	// last heartbeat measured around it (database and test share a clock),
	// so the check holds however slowly this machine runs.
	const skew = 50 * time.Millisecond
	var wentDown time.Duration
	for deadline := time.Now().Add(lease + 5*time.Second); ; {
		before := time.Now()
		ag := read(other)
		after := time.Now()
		if ag.LastSeen == nil {
			t.Fatal("last_seen is null after heartbeats")
		}
		switch {
		case ag.Connected && before.Sub(*ag.LastSeen) > lease+skew:
			t.Fatalf("still connected %s after the last heartbeat (lease %s)", before.Sub(*ag.LastSeen), lease)
		case !ag.Connected && after.Sub(*ag.LastSeen) < lease-skew:
			t.Fatalf("disconnected only %s after the last heartbeat (lease %s)", after.Sub(*ag.LastSeen), lease)
		}
		if !ag.Connected {
			wentDown = after.Sub(*ag.LastSeen)
			break
		}
		if after.After(deadline) {
			t.Fatalf("agent of a crashed replica still connected after %s", after.Sub(*ag.LastSeen))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("heartbeat interval %s: shown disconnected %s after the last heartbeat (bound: %d intervals = %s)",
		every, wentDown.Round(time.Millisecond), store.LeaseIntervals, lease)
	if read(st).Connected {
		t.Fatal("the replica that wrote the lease disagrees")
	}

	// The agent reconnects to a surviving replica: live again at its hello.
	if err := other.AgentConnectedEvery(ctx, a.ID, "1", "127.0.0.1:2", 1, "s1", every); err != nil {
		t.Fatal(err)
	}
	if !read(st).Connected {
		t.Fatal("agent not connected after a hello on another replica")
	}
	// A clean disconnect ends the lease at once.
	if err := other.AgentDisconnected(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if read(st).Connected {
		t.Fatal("agent connected after a clean disconnect")
	}
	// Revocation wins over a running lease.
	if _, err := other.AgentHeartbeatEvery(ctx, a.ID, &protocol.Heartbeat{}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeAgent(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if read(other).Connected {
		t.Fatal("revoked agent connected")
	}
}

// TestDefaultLease: the heartbeat-interval-less registry writes lease for
// LeaseIntervals default heartbeat intervals, and agent_is_live judges a
// row whose last heartbeat is older than that (as a crashed replica leaves
// it) not live.
func TestDefaultLease(t *testing.T) {
	ctx := store.AllSites(context.Background())
	dsn := pgtest.NewDatabase(t)
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.EnsureSite(ctx, "dc1", ""); err != nil {
		t.Fatal(err)
	}
	secret, _, err := st.CreateEnrollmentToken(ctx, "dc1", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	a, err := st.Enroll(ctx, secret, "agent", "1", (&serials{}).sign)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AgentConnected(ctx, a.ID, "1", "127.0.0.1:1", 1, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AgentHeartbeat(ctx, a.ID, &protocol.Heartbeat{}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var lease time.Duration
	if err := conn.QueryRow(ctx, `SELECT lease_until - last_seen FROM agents WHERE id = $1`, a.ID).Scan(&lease); err != nil {
		t.Fatal(err)
	}
	if want := store.LeaseIntervals * store.DefaultHeartbeatInterval; lease != want {
		t.Fatalf("lease %s after a heartbeat, want %s", lease, want)
	}
	// The row as a replica that crashed 31 s after that heartbeat leaves it.
	if _, err := conn.Exec(ctx, `UPDATE agents SET last_seen = last_seen - interval '31 seconds',
		lease_until = lease_until - interval '31 seconds' WHERE id = $1`, a.ID); err != nil {
		t.Fatal(err)
	}
	got, err := st.AgentByID(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Connected {
		t.Fatal("connected 31 s after the last heartbeat with a 10 s interval")
	}
	var raw bool
	if err := conn.QueryRow(ctx, `SELECT connected FROM agents WHERE id = $1`, a.ID).Scan(&raw); err != nil || !raw {
		t.Fatalf("test premise: the connected column should still be true (crashed replica), got %v, %v", raw, err)
	}
}
