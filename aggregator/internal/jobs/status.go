package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Job states in Status.State.
const (
	// StateIdle: not running, the last run (if any) succeeded.
	StateIdle = "idle"
	// StateRunning: a replica holds the job's lock.
	StateRunning = "running"
	// StateRetrying: the last run failed; the next run is a retry.
	StateRetrying = "retrying"
)

// Status is a job as every replica sees it.
type Status struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Schedule is the cron expression; "" runs only on request.
	Schedule string `json:"schedule"`
	State    string `json:"state"`
	// RunningOn names the replica running the job (when running).
	RunningOn      string          `json:"running_on"`
	LastStartedAt  *time.Time      `json:"last_started_at"`
	LastFinishedAt *time.Time      `json:"last_finished_at"`
	LastDurationMS *int64          `json:"last_duration_ms"`
	LastResult     string          `json:"last_result"`
	LastError      string          `json:"last_error"`
	LastSummary    json.RawMessage `json:"last_summary"`
	// ConsecutiveFailures counts the failed runs since the last success.
	ConsecutiveFailures int        `json:"consecutive_failures"`
	NextRunAt           *time.Time `json:"next_run_at"`
	RunRequestedAt      *time.Time `json:"run_requested_at"`
	RequestedBy         string     `json:"requested_by"`
	Runs                int64      `json:"runs"`
	Failures            int64      `json:"failures"`
	// Progress is the running job's last report (nil when none).
	Progress *Progress `json:"progress"`
}

// Progress is how far a running job is.
type Progress struct {
	Done int64 `json:"done"`
	// Total is 0 when unknown.
	Total     int64     `json:"total"`
	UpdatedAt time.Time `json:"updated_at"`
}

// RunRecord is one past or current run.
type RunRecord struct {
	ID         int64           `json:"id"`
	Replica    string          `json:"replica"`
	Trigger    string          `json:"trigger"`
	StartedAt  time.Time       `json:"started_at"`
	FinishedAt *time.Time      `json:"finished_at"`
	Result     string          `json:"result"`
	Error      string          `json:"error"`
	Summary    json.RawMessage `json:"summary"`
}

const statusCols = `name, description, schedule, running_on, last_started_at, last_finished_at, last_duration_ms, last_result,
	last_error, last_summary, consecutive_failures, next_run_at, run_requested_at, requested_by, runs, failures,
	progress_done, progress_total, progress_at,
	EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
		AND l.classid = hashtext('vmpulse.jobs')::oid AND l.objid = hashtext(jobs.name)::oid)`

func scanStatus(row pgx.Row) (Status, error) {
	var s Status
	var done, total *int64
	var at *time.Time
	var locked bool
	var sum []byte
	if err := row.Scan(&s.Name, &s.Description, &s.Schedule, &s.RunningOn, &s.LastStartedAt, &s.LastFinishedAt, &s.LastDurationMS,
		&s.LastResult, &s.LastError, &sum, &s.ConsecutiveFailures, &s.NextRunAt, &s.RunRequestedAt, &s.RequestedBy,
		&s.Runs, &s.Failures, &done, &total, &at, &locked); err != nil {
		return s, err
	}
	if len(sum) > 0 {
		s.LastSummary = sum
	}
	switch {
	case locked && s.RunningOn != "":
		s.State = StateRunning
		if done != nil && at != nil {
			s.Progress = &Progress{Done: *done, UpdatedAt: at.UTC()}
			if total != nil {
				s.Progress.Total = *total
			}
		}
	case s.ConsecutiveFailures > 0:
		s.State = StateRetrying
	default:
		s.State = StateIdle
	}
	if s.State != StateRunning {
		// A replica that died while running leaves its name behind.
		s.RunningOn = ""
	}
	for _, t := range []*time.Time{s.LastStartedAt, s.LastFinishedAt, s.NextRunAt, s.RunRequestedAt} {
		if t != nil {
			*t = t.UTC()
		}
	}
	return s, nil
}

// List returns every job this runner knows, in registration order.
func (r *Runner) List(ctx context.Context) ([]Status, error) {
	rows, err := r.pool.Query(ctx, `SELECT `+statusCols+` FROM jobs WHERE name = ANY($1)`, r.order)
	if err != nil {
		return nil, fmt.Errorf("jobs: list: %w", err)
	}
	got, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Status, error) { return scanStatus(row) })
	if err != nil {
		return nil, fmt.Errorf("jobs: list: %w", err)
	}
	by := map[string]Status{}
	for _, s := range got {
		by[s.Name] = s
	}
	out := make([]Status, 0, len(r.order))
	for _, name := range r.order {
		if s, ok := by[name]; ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// Get returns one job.
func (r *Runner) Get(ctx context.Context, name string) (Status, error) {
	if r.jobs[name] == nil {
		return Status{}, ErrNotFound
	}
	s, err := scanStatus(r.pool.QueryRow(ctx, `SELECT `+statusCols+` FROM jobs WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return s, ErrNotFound
	}
	if err != nil {
		return s, fmt.Errorf("jobs: get %s: %w", name, err)
	}
	return s, nil
}

// Runs returns a job's newest runs, newest first.
func (r *Runner) Runs(ctx context.Context, name string, limit int) ([]RunRecord, error) {
	if r.jobs[name] == nil {
		return nil, ErrNotFound
	}
	rows, err := r.pool.Query(ctx, `SELECT id, replica, trigger, started_at, finished_at, result, error, summary
		FROM job_runs WHERE job = $1 ORDER BY id DESC LIMIT $2`, name, limit)
	if err != nil {
		return nil, fmt.Errorf("jobs: runs of %s: %w", name, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RunRecord, error) {
		var rr RunRecord
		var sum []byte
		err := row.Scan(&rr.ID, &rr.Replica, &rr.Trigger, &rr.StartedAt, &rr.FinishedAt, &rr.Result, &rr.Error, &sum)
		if len(sum) > 0 {
			rr.Summary = sum
		}
		rr.StartedAt = rr.StartedAt.UTC()
		if rr.FinishedAt != nil {
			*rr.FinishedAt = rr.FinishedAt.UTC()
		}
		return rr, err
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: runs of %s: %w", name, err)
	}
	return out, nil
}
