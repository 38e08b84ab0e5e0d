package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// Names of the built-in jobs.
const (
	JobPartitions = "partitions"
	JobRollups    = "rollups"
	JobRetention  = "retention"
	JobReorder    = "reorder"
	JobCleanup    = "cleanup"
	JobBackup     = "backup"
	// JobVCenterEvents appends the vCenter events agents forwarded to the
	// tamper-evident operation log (audit.AppendVCenterEvents).
	JobVCenterEvents = "vcenter-events"
)

// MaintenanceConfig configures the built-in maintenance jobs.
type MaintenanceConfig struct {
	// Schedules by job name (JobPartitions, …); a missing entry takes the
	// default of DefaultSchedules.
	Schedules map[string]string
	// PartitionsAhead is how many daily partitions beyond today are kept.
	PartitionsAhead int
	// Retention returns the retention per tier; it is read at every run, so
	// a changed setting applies without a restart.
	Retention func(ctx context.Context) (store.Retention, error)
	// ReorderGrace is how long after its day ends a raw partition counts as
	// closed (late data still arrives for a while); default 2h.
	ReorderGrace time.Duration
	// ReorderPerRun bounds the partitions reordered by one run (each is
	// locked while it is rewritten); default 2.
	ReorderPerRun int
}

// DefaultSchedules are the built-in jobs' schedules.
var DefaultSchedules = map[string]string{
	JobPartitions: "@every 1h",
	JobRollups:    "@every 1m",
	JobRetention:  "@every 1h",
	JobReorder:    "17 * * * *",
	JobCleanup:    "@every 1h",
	// Short, so a vCenter event is in the operation log within seconds;
	// a run with nothing pending is two index probes.
	JobVCenterEvents: "@every 10s",
}

// Maintenance returns the built-in maintenance jobs over st: partition
// creation, rollups, retention, reordering of closed raw partitions and
// the cleanup of expired credentials.
func Maintenance(st *store.Store, cfg MaintenanceConfig) []Job {
	sched := func(name string) string {
		if s, ok := cfg.Schedules[name]; ok {
			return s
		}
		return DefaultSchedules[name]
	}
	if cfg.ReorderGrace <= 0 {
		cfg.ReorderGrace = 2 * time.Hour
	}
	if cfg.ReorderPerRun <= 0 {
		cfg.ReorderPerRun = 2
	}
	if cfg.PartitionsAhead <= 0 {
		cfg.PartitionsAhead = 3
	}
	return []Job{
		{Name: JobPartitions, Schedule: sched(JobPartitions), RunAtStart: true, Timeout: 10 * time.Minute,
			Description: "Create the raw samples table's daily partitions ahead (plain PostgreSQL; TimescaleDB makes chunks itself)",
			Func: func(ctx context.Context, _ *Run) (any, error) {
				now := time.Now()
				if err := st.EnsurePartitions(ctx, now.AddDate(0, 0, -1), now.AddDate(0, 0, cfg.PartitionsAhead)); err != nil {
					return nil, err
				}
				return map[string]any{"ahead_days": cfg.PartitionsAhead, "timescaledb": st.Timescale()}, nil
			}},
		{Name: JobRollups, Schedule: sched(JobRollups), RunAtStart: true, Timeout: 30 * time.Minute,
			Description: "Recompute the 5 min, 1 h and 1 day rollups of the batches received since the last run",
			Func: func(ctx context.Context, _ *Run) (any, error) {
				rep, err := st.RunRollups(ctx, time.Now())
				if err != nil {
					return nil, err
				}
				return map[string]any{"skipped": rep.Skipped, "batches": rep.Batches, "spans": rep.Spans,
					"buckets_5m": rep.R5m.Buckets, "buckets_1h": rep.R1h.Buckets, "buckets_1d": rep.R1d.Buckets,
					"raw_rows": rep.R5m.SourceRows}, nil
			}},
		{Name: JobRetention, Schedule: sched(JobRetention), RunAtStart: true, Timeout: time.Hour,
			Description: "Drop raw partitions and delete rollup buckets older than each tier's retention",
			Func: func(ctx context.Context, _ *Run) (any, error) {
				r := store.DefaultRetention
				if cfg.Retention != nil {
					var err error
					if r, err = cfg.Retention(ctx); err != nil {
						return nil, err
					}
				}
				rep, err := st.ApplyRetention(ctx, time.Now(), r)
				if err != nil {
					return nil, err
				}
				tier := func(keep time.Duration, removed any) map[string]any {
					return map[string]any{"keep": keep.String(), "removed": removed}
				}
				return map[string]any{
					"raw": tier(r.Raw, rep.DroppedPartitions), "5m": tier(r.R5m, rep.Deleted5m),
					"1h": tier(r.R1h, rep.Deleted1h), "1d": tier(r.R1d, rep.Deleted1d),
				}, nil
			}},
		{Name: JobReorder, Schedule: sched(JobReorder), Timeout: 2 * time.Hour,
			Description: "Rewrite closed raw partitions in primary-key order (CLUSTER), so that one series' rows share pages",
			Func: func(ctx context.Context, run *Run) (any, error) {
				return reorder(ctx, st, run, time.Now().Add(-cfg.ReorderGrace), cfg.ReorderPerRun)
			}},
		{Name: JobCleanup, Schedule: sched(JobCleanup), Timeout: 10 * time.Minute,
			Description: "Delete expired enrollment tokens, refresh tokens and sessions, forget expired agent certificates, trim job history",
			Func: func(ctx context.Context, _ *Run) (any, error) {
				return cleanup(ctx, st)
			}},
		{Name: JobVCenterEvents, Schedule: sched(JobVCenterEvents), RunAtStart: true, Timeout: 10 * time.Minute,
			Description: "Append the vCenter events agents forwarded to the tamper-evident operation log, once each, in vCenter-time order",
			Func: func(ctx context.Context, _ *Run) (any, error) {
				return audit.AppendVCenterEvents(ctx, st.Pool(), audit.VCenterOptions{})
			}},
	}
}

// ReorderReport is what the reorder job did.
type ReorderReport struct {
	Reordered []string `json:"reordered"`
	// Pending counts the closed partitions still in arrival order.
	Pending int `json:"pending"`
	// Skipped lists partitions whose lock was not granted in time (busy).
	Skipped []string `json:"skipped,omitempty"`
}

// reorder CLUSTERs up to perRun raw partitions whose day ended before
// closedBefore and that are not clustered yet, newest first (recent days
// are read most). Rows arrive time-interleaved — every series at one
// timestamp, then the next — so one series' day is spread over as many
// pages as it has samples; in primary-key order (series_id, ts) they are
// contiguous. CLUSTER takes an exclusive lock on the partition while it
// rewrites it: readers of that day and late data for it wait, so the lock
// is asked for with a timeout and a busy partition is left for next time.
func reorder(ctx context.Context, st *store.Store, run *Run, closedBefore time.Time, perRun int) (ReorderReport, error) {
	rep := ReorderReport{Reordered: []string{}}
	if st.Timescale() {
		return rep, nil // compression orders chunks (segmentby/orderby)
	}
	parts, err := st.Partitions(ctx)
	if err != nil {
		return rep, err
	}
	pool := st.Pool()
	var todo []string
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		if p.Day.Add(24 * time.Hour).After(closedBefore) {
			continue
		}
		var clustered bool
		err := pool.QueryRow(ctx, `SELECT coalesce(bool_or(i.indisclustered), false) FROM pg_index i WHERE i.indrelid = $1::regclass AND i.indisprimary`,
			p.Name).Scan(&clustered)
		if err != nil {
			return rep, fmt.Errorf("jobs: reorder: inspect %s: %w", p.Name, err)
		}
		if !clustered {
			todo = append(todo, p.Name)
		}
	}
	for i, name := range todo {
		if i >= perRun {
			rep.Pending = len(todo) - i
			break
		}
		run.Progress(ctx, int64(i), int64(min(len(todo), perRun)))
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '10s'`); err != nil {
				return err
			}
			var idx string
			if err := tx.QueryRow(ctx, `SELECT i.indexrelid::regclass::text FROM pg_index i WHERE i.indrelid = $1::regclass AND i.indisprimary`,
				name).Scan(&idx); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `CLUSTER `+pgx.Identifier{name}.Sanitize()+` USING `+pgx.Identifier{idx}.Sanitize())
			return err
		})
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "55P03": // lock_not_available
			rep.Skipped = append(rep.Skipped, name)
			continue
		case errors.As(err, &pgErr) && pgErr.Code == "42P01": // dropped by retention meanwhile
			continue
		case err != nil:
			return rep, fmt.Errorf("jobs: reorder %s: %w", name, err)
		}
		if _, err := pool.Exec(ctx, `ANALYZE `+pgx.Identifier{name}.Sanitize()); err != nil {
			return rep, fmt.Errorf("jobs: reorder: analyze %s: %w", name, err)
		}
		rep.Reordered = append(rep.Reordered, name)
	}
	return rep, nil
}

// CleanupReport is what the cleanup job removed.
type CleanupReport struct {
	EnrollmentTokens int64 `json:"enrollment_tokens"`
	RefreshTokens    int64 `json:"refresh_tokens"`
	Sessions         int64 `json:"sessions"`
	// AgentPrevCerts counts agents whose superseded certificate (kept
	// during a renewal) was forgotten because it has expired.
	AgentPrevCerts int64 `json:"agent_prev_certs"`
	// ExpiredAgentCerts counts unrevoked agents whose certificate has
	// expired: they cannot connect until enrolled again.
	ExpiredAgentCerts int64 `json:"expired_agent_certs"`
	JobRuns           int64 `json:"job_runs"`
}

// Cleanup horizons: expired credentials are kept this long after they
// expire (or end), for the online-users and agent views, then deleted.
const (
	enrollmentTokenKeep = 7 * 24 * time.Hour
	sessionKeep         = 30 * 24 * time.Hour
	jobRunsKeep         = 100
)

// cleanup deletes expired enrollment tokens (a week after they expired),
// refresh tokens once expired (a used one must outlive its own expiry only
// for reuse detection, which an expired token no longer needs), sessions
// a month after they expired or were revoked (their refresh tokens go with
// them), the superseded certificate serial an agent kept through a renewal
// once even its current certificate has expired, and all but the newest
// job runs of each job.
func cleanup(ctx context.Context, st *store.Store) (CleanupReport, error) {
	var rep CleanupReport
	pool := st.Pool()
	steps := []struct {
		n    *int64
		sql  string
		args []any
	}{
		{&rep.EnrollmentTokens, `DELETE FROM enrollment_tokens WHERE expires_at < now() - $1::bigint * interval '1 second'`,
			[]any{int64(enrollmentTokenKeep / time.Second)}},
		{&rep.RefreshTokens, `DELETE FROM refresh_tokens WHERE expires_at < now()`, nil},
		{&rep.Sessions, `DELETE FROM sessions WHERE least(expires_at, coalesce(revoked_at, 'infinity')) < now() - $1::bigint * interval '1 second'`,
			[]any{int64(sessionKeep / time.Second)}},
		{&rep.JobRuns, `DELETE FROM job_runs r WHERE r.id < (SELECT min(id) FROM (SELECT id FROM job_runs x WHERE x.job = r.job ORDER BY id DESC LIMIT $1) k)`,
			[]any{jobRunsKeep}},
		// A superseded certificate never outlives the current one (it was
		// issued earlier, with the same lifetime).
		{&rep.AgentPrevCerts, `UPDATE agents SET prev_cert_serial = NULL WHERE prev_cert_serial IS NOT NULL AND cert_not_after < now()`, nil},
	}
	for _, s := range steps {
		tag, err := pool.Exec(ctx, s.sql, s.args...)
		if err != nil {
			return rep, fmt.Errorf("jobs: cleanup: %w", err)
		}
		*s.n = tag.RowsAffected()
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM agents WHERE revoked_at IS NULL AND cert_not_after < now()`).Scan(&rep.ExpiredAgentCerts); err != nil {
		return rep, fmt.Errorf("jobs: cleanup: %w", err)
	}
	return rep, nil
}
