package backup

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/aggregator/internal/jobs"
)

// Schedule is the backup schedule and the retention of backups.
type Schedule struct {
	Enabled bool `json:"enabled"`
	// Cron is when scheduled backups run (robfig/cron/v3 standard syntax,
	// UTC unless prefixed with CRON_TZ=).
	Cron string `json:"cron"`
	Kind string `json:"kind"`
	// MetricsDays is the range of a scheduled metrics backup: the last N
	// whole days up to the end of today.
	MetricsDays int `json:"metrics_days"`
	// KeepLast keeps the newest N finished backups; KeepDays deletes those
	// older than N days. 0 disables a limit; both apply when both are set.
	KeepLast  int       `json:"keep_last"`
	KeepDays  int       `json:"keep_days"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

// Validate checks a schedule.
func (sc *Schedule) Validate() map[string]string {
	bad := map[string]string{}
	if _, err := jobs.Parse(sc.Cron); err != nil {
		bad["cron"] = "a cron expression (5 fields, or @daily, @every 6h)"
	}
	if sc.Kind != KindConfig && sc.Kind != KindMetrics {
		bad["kind"] = "config or metrics"
	}
	if sc.MetricsDays < 1 || sc.MetricsDays > MaxRangeDays {
		bad["metrics_days"] = fmt.Sprintf("1..%d", MaxRangeDays)
	}
	if sc.KeepLast < 0 || sc.KeepLast > 10000 {
		bad["keep_last"] = "0..10000"
	}
	if sc.KeepDays < 0 || sc.KeepDays > 36500 {
		bad["keep_days"] = "0..36500"
	}
	return bad
}

// Schedule reads the schedule.
func (s *Service) Schedule(ctx context.Context) (Schedule, error) {
	var sc Schedule
	err := s.pool.QueryRow(ctx, `SELECT enabled, cron, kind, metrics_days, keep_last, keep_days, updated_at, updated_by FROM backup_schedule`).
		Scan(&sc.Enabled, &sc.Cron, &sc.Kind, &sc.MetricsDays, &sc.KeepLast, &sc.KeepDays, &sc.UpdatedAt, &sc.UpdatedBy)
	if err != nil {
		return sc, fmt.Errorf("backup: read schedule: %w", err)
	}
	sc.UpdatedAt = sc.UpdatedAt.UTC()
	return sc, nil
}

// SetSchedule replaces the schedule (validated by the caller) and returns
// the previous one.
func (s *Service) SetSchedule(ctx context.Context, sc Schedule, by string) (prev Schedule, err error) {
	if prev, err = s.Schedule(ctx); err != nil {
		return prev, err
	}
	if _, err := s.pool.Exec(ctx, `UPDATE backup_schedule SET enabled = $1, cron = $2, kind = $3, metrics_days = $4, keep_last = $5, keep_days = $6,
		updated_at = now(), updated_by = $7`, sc.Enabled, sc.Cron, sc.Kind, sc.MetricsDays, sc.KeepLast, sc.KeepDays, by); err != nil {
		return prev, fmt.Errorf("backup: write schedule: %w", err)
	}
	return prev, nil
}

// ApplyRetention deletes the finished backups beyond the schedule's
// KeepLast newest and those older than KeepDays (failed records older than
// KeepDays too), and returns their ids, oldest first.
func (s *Service) ApplyRetention(ctx context.Context) ([]uuid.UUID, error) {
	sc, err := s.Schedule(ctx)
	if err != nil {
		return nil, err
	}
	if sc.KeepLast == 0 && sc.KeepDays == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+backupCols+` FROM (
			SELECT *, row_number() OVER (PARTITION BY status = 'done' ORDER BY started_at DESC, id) AS rank FROM backups WHERE status <> 'running'
		) b
		WHERE ($1 > 0 AND status = 'done' AND rank > $1) OR ($2 > 0 AND started_at < now() - $2 * interval '1 day')
		ORDER BY started_at, id`, sc.KeepLast, sc.KeepDays)
	if err != nil {
		return nil, fmt.Errorf("backup: retention: %w", err)
	}
	old, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Backup, error) { return scanBackup(r) })
	if err != nil {
		return nil, fmt.Errorf("backup: retention: %w", err)
	}
	var removed []uuid.UUID
	for _, b := range old {
		if err := s.remove(ctx, b); err != nil {
			return removed, err
		}
		removed = append(removed, b.ID)
	}
	return removed, nil
}

// Job is the scheduled backup as a job of the runner: its schedule is the
// backup schedule's (none while disabled); it makes a backup of the
// scheduled kind and applies retention.
func (s *Service) Job() jobs.Job {
	return jobs.Job{
		Name:        jobs.JobBackup,
		Description: "Scheduled backup (GET/PUT /backups/schedule), then backup retention",
		Timeout:     12 * time.Hour,
		ScheduleFunc: func(ctx context.Context) (string, error) {
			sc, err := s.Schedule(ctx)
			if err != nil || !sc.Enabled {
				return "", err
			}
			return sc.Cron, nil
		},
		Func: func(ctx context.Context, run *jobs.Run) (any, error) {
			sc, err := s.Schedule(ctx)
			if err != nil {
				return nil, err
			}
			req := Request{Kind: sc.Kind, By: "schedule", Trigger: "schedule", Progress: run.Progress}
			if sc.Kind == KindMetrics {
				end := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
				req.From, req.To = end.AddDate(0, 0, -sc.MetricsDays), end
			}
			b, err := s.Create(ctx, req)
			if err != nil {
				return map[string]any{"backup": b.ID, "code": CodeOf(err, CodeFailed)}, err
			}
			return map[string]any{"backup": b.ID, "kind": b.Kind, "size_bytes": b.SizeBytes, "duration_ms": b.DurationMS}, nil
		},
	}
}
