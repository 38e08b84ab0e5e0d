package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Replica is one aggregator replica as it registers itself
// (aggregator_replicas): what it runs, where it listens, when it started,
// its last heartbeat and its ingest counters since it started.
type Replica struct {
	ID              string
	Version         string
	Hostname        string
	IngestAddr      string
	HTTPAddr        string
	StartedAt       time.Time
	HeartbeatAt     time.Time
	HeartbeatEvery  time.Duration
	AgentsConnected int
	BatchesStored   int64
	SamplesStored   int64
	BatchesRejected int64
	// StoppedAt is set by a replica that shut down cleanly.
	StoppedAt *time.Time
	// Live is computed by the database's clock: not stopped, and a
	// heartbeat within LeaseIntervals heartbeat intervals.
	Live bool
}

// replicaKeep is how long the row of a replica that stopped (or died) is
// kept before HeartbeatReplica deletes it.
const replicaKeep = 7 * 24 * time.Hour

// HeartbeatReplica registers r or renews its row (heartbeat_at = now()),
// with its counters. Rows of replicas gone for a week are deleted.
func (s *Store) HeartbeatReplica(ctx context.Context, r Replica) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO aggregator_replicas (id, version, hostname, ingest_addr, http_addr, started_at, heartbeat_at, heartbeat_every,
			agents_connected, batches_stored, samples_stored, batches_rejected)
		VALUES ($1, $2, $3, $4, $5, $6, now(), $7::bigint * interval '1 millisecond', $8, $9, $10, $11)
		ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, hostname = EXCLUDED.hostname,
			ingest_addr = EXCLUDED.ingest_addr, http_addr = EXCLUDED.http_addr, started_at = EXCLUDED.started_at,
			heartbeat_at = now(), heartbeat_every = EXCLUDED.heartbeat_every, agents_connected = EXCLUDED.agents_connected,
			batches_stored = EXCLUDED.batches_stored, samples_stored = EXCLUDED.samples_stored,
			batches_rejected = EXCLUDED.batches_rejected, stopped_at = NULL`,
		r.ID, r.Version, r.Hostname, r.IngestAddr, r.HTTPAddr, r.StartedAt, r.HeartbeatEvery.Milliseconds(),
		r.AgentsConnected, r.BatchesStored, r.SamplesStored, r.BatchesRejected)
	if err != nil {
		return fmt.Errorf("store: replica heartbeat: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM aggregator_replicas WHERE heartbeat_at < now() - $1::bigint * interval '1 second'`,
		int64(replicaKeep/time.Second)); err != nil {
		return fmt.Errorf("store: replica cleanup: %w", err)
	}
	return nil
}

// StopReplica marks the replica stopped (a clean shutdown).
func (s *Store) StopReplica(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE aggregator_replicas SET stopped_at = now() WHERE id = $1`, id); err != nil {
		return fmt.Errorf("store: replica stop: %w", err)
	}
	return nil
}

// Replicas lists the replicas that were alive within since (live ones
// first, then by id).
func (s *Store) Replicas(ctx context.Context, since time.Duration) ([]Replica, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, version, hostname, ingest_addr, http_addr, started_at, heartbeat_at,
		       (extract(epoch FROM heartbeat_every) * 1000)::bigint, agents_connected, batches_stored, samples_stored,
		       batches_rejected, stopped_at,
		       stopped_at IS NULL AND heartbeat_at > now() - $2::int * heartbeat_every AS live
		FROM aggregator_replicas
		WHERE heartbeat_at > now() - $1::bigint * interval '1 second'
		ORDER BY live DESC, id`, int64(since/time.Second), LeaseIntervals)
	if err != nil {
		return nil, fmt.Errorf("store: replicas: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Replica, error) {
		var r Replica
		var every int64
		err := row.Scan(&r.ID, &r.Version, &r.Hostname, &r.IngestAddr, &r.HTTPAddr, &r.StartedAt, &r.HeartbeatAt, &every,
			&r.AgentsConnected, &r.BatchesStored, &r.SamplesStored, &r.BatchesRejected, &r.StoppedAt, &r.Live)
		r.HeartbeatEvery = time.Duration(every) * time.Millisecond
		r.StartedAt, r.HeartbeatAt = r.StartedAt.UTC(), r.HeartbeatAt.UTC()
		if r.StoppedAt != nil {
			t := r.StoppedAt.UTC()
			r.StoppedAt = &t
		}
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: replicas: %w", err)
	}
	return out, nil
}

// DeploymentIngest is what every replica together stored over a recent
// window, read from the ingest ledger (which each replica writes in the
// transaction of each batch), so it covers the whole deployment.
type DeploymentIngest struct {
	Window time.Duration
	// Batches and Samples stored in the window, and their rates.
	Batches, Samples             int64
	BatchesPerSec, SamplesPerSec float64
	// LagMedian and LagMax are the delay from a batch's newest sample to
	// its commit, over the samples batches of the window (nil without
	// any). Backfill after an outage shows in LagMax, not in the median.
	LagMedian, LagMax *time.Duration
	// NewestSample is the newest sample time stored anywhere in the
	// window (nil without any).
	NewestSample *time.Time
}

// LedgerKindSamples is the ingest_ledger kind of samples batches
// (protocol.KindSamples).
const LedgerKindSamples = 1

// DeploymentIngest sums the ingest ledger over the last window.
func (s *Store) DeploymentIngest(ctx context.Context, window time.Duration) (DeploymentIngest, error) {
	d := DeploymentIngest{Window: window}
	var med, mx *float64
	err := s.pool.QueryRow(ctx, `
		SELECT count(*), coalesce(sum(samples), 0),
		       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - last_ts)) FILTER (WHERE kind = $2 AND last_ts IS NOT NULL),
		       max(extract(epoch FROM received_at - last_ts)::float8) FILTER (WHERE kind = $2 AND last_ts IS NOT NULL),
		       max(last_ts) FILTER (WHERE kind = $2)
		FROM ingest_ledger WHERE received_at > now() - $1::bigint * interval '1 millisecond'`,
		window.Milliseconds(), LedgerKindSamples).Scan(&d.Batches, &d.Samples, &med, &mx, &d.NewestSample)
	if err != nil {
		return d, fmt.Errorf("store: deployment ingest: %w", err)
	}
	if secs := window.Seconds(); secs > 0 {
		d.BatchesPerSec, d.SamplesPerSec = float64(d.Batches)/secs, float64(d.Samples)/secs
	}
	toDur := func(f *float64) *time.Duration {
		if f == nil {
			return nil
		}
		v := time.Duration(max(*f, 0) * float64(time.Second)).Round(time.Millisecond)
		return &v
	}
	d.LagMedian, d.LagMax = toDur(med), toDur(mx)
	if d.NewestSample != nil {
		t := d.NewestSample.UTC()
		d.NewestSample = &t
	}
	return d, nil
}
