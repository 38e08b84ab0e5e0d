package httpapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// GET /system/info lists every replica of the database's registry, and
// /system/health sums the ingest of all of them (the ledger) and reports a
// replica that stopped heartbeating without shutting down.
func TestSystemReplicasAndDeploymentIngest(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	pool := e.store.Pool()
	started := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	for _, r := range []store.Replica{
		{ID: "agg-1:100", Version: "1.0.0", Hostname: "agg-1", IngestAddr: "10.0.0.1:7443", HTTPAddr: "10.0.0.1:8080", StartedAt: started,
			HeartbeatEvery: 10 * time.Second, AgentsConnected: 3, BatchesStored: 40, SamplesStored: 4000},
		{ID: "agg-2:200", Version: "1.0.0", Hostname: "agg-2", StartedAt: started, HeartbeatEvery: 10 * time.Second, AgentsConnected: 1},
	} {
		if err := e.store.HeartbeatReplica(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	// Both live; 30 batches of 100 samples in the last minute, stored by
	// either replica (the ledger does not say which), newest samples 20 s
	// before their commit, one backfill batch 2 h late.
	if _, err := pool.Exec(ctx, `
		INSERT INTO ingest_ledger (agent_id, epoch, seq, kind, first_ts, last_ts, rows, samples, bytes, received_at)
		SELECT gen_random_uuid(), 1, i, 1, now() - interval '40 seconds', now() - interval '20 seconds', 10, 100, 1000, now()
		FROM generate_series(1, 29) i
		UNION ALL SELECT gen_random_uuid(), 1, 1, 1, now() - interval '3 hours', now() - interval '2 hours', 10, 100, 1000, now()
		UNION ALL SELECT gen_random_uuid(), 1, 1, 1, now() - interval '3 hours', now() - interval '2 hours', 10, 100, 1000, now() - interval '10 minutes'`); err != nil {
		t.Fatal(err)
	}
	status, h := e.health()
	d := h.Components.Deployment
	if status != 200 || d.Status != HealthOK || d.ReplicasLive != 2 || d.ReplicasLost != 0 || d.Batches != 30 || d.Samples != 3000 ||
		d.WindowSeconds != 60 || d.SamplesPerSec != 50 || d.BatchesPerSec != 0.5 {
		t.Fatalf("deployment health = %d %+v", status, d)
	}
	if d.LagMedianMS == nil || *d.LagMedianMS < 19_000 || *d.LagMedianMS > 21_000 || d.LagMaxMS == nil || *d.LagMaxMS < 7_190_000 ||
		d.NewestSampleAt == nil {
		t.Errorf("deployment lag = median %v max %v newest %v", d.LagMedianMS, d.LagMaxMS, d.NewestSampleAt)
	}

	// agg-2 dies without a word (no heartbeat for a minute); agg-3 shut
	// down cleanly.
	if err := e.store.HeartbeatReplica(ctx, store.Replica{ID: "agg-3:300", StartedAt: started, HeartbeatEvery: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.StopReplica(ctx, "agg-3:300"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE aggregator_replicas SET heartbeat_at = now() - interval '1 minute' WHERE id = 'agg-2:200'`); err != nil {
		t.Fatal(err)
	}
	_, h = e.health()
	d = h.Components.Deployment
	if h.Status != HealthDegraded || d.Status != HealthDegraded || d.ReplicasLive != 1 || d.ReplicasLost != 1 ||
		len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0], "agg-2:200") {
		t.Errorf("a lost replica: %s %+v", h.Status, d)
	}

	res := e.do("GET", "/api/v1/system/info", e.tokens["operator"], "")
	if res.status != 200 {
		t.Fatalf("info = %d %s", res.status, res.raw)
	}
	var info systemInfoData
	res.data(&info)
	states := map[string]replicaInfo{}
	for _, r := range info.Replicas {
		states[r.ID] = r
	}
	if len(info.Replicas) != 3 || info.Replicas[0].ID != "agg-1:100" || states["agg-1:100"].State != ReplicaLive ||
		states["agg-2:200"].State != ReplicaLost || states["agg-3:300"].State != ReplicaStopped || states["agg-3:300"].StoppedAt == nil {
		t.Fatalf("replicas = %+v", info.Replicas)
	}
	r1 := states["agg-1:100"]
	if r1.Version != "1.0.0" || r1.Hostname != "agg-1" || r1.IngestAddr != "10.0.0.1:7443" || r1.HTTPAddr != "10.0.0.1:8080" ||
		!r1.StartedAt.Equal(started) || r1.LastHeartbeatAt.Before(started) || r1.AgentsConnected != 3 || r1.BatchesStored != 40 ||
		r1.SamplesStored != 4000 || r1.HeartbeatSeconds != 10 {
		t.Errorf("replica agg-1 = %+v", r1)
	}

	// A median lag over 5 minutes degrades the deployment too.
	if _, err := pool.Exec(ctx, `DELETE FROM ingest_ledger; DELETE FROM aggregator_replicas WHERE id = 'agg-2:200';
		INSERT INTO ingest_ledger (agent_id, epoch, seq, kind, first_ts, last_ts, samples, received_at)
		SELECT gen_random_uuid(), 1, i, 1, now() - interval '11 minutes', now() - interval '10 minutes', 100, now() FROM generate_series(1, 5) i`); err != nil {
		t.Fatal(err)
	}
	if _, h = e.health(); h.Components.Deployment.Status != HealthDegraded || len(h.Components.Deployment.Reasons) != 1 ||
		!strings.Contains(h.Components.Deployment.Reasons[0], "median ingest lag 10m") {
		t.Errorf("lagging deployment: %+v", h.Components.Deployment)
	}
}
