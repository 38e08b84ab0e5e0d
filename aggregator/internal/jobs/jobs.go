// Package jobs runs the aggregator's named periodic jobs — partition
// creation, rollups, retention, reordering closed partitions, backups,
// credential cleanup — on every replica, with each job run by one replica at
// a time.
//
// Coordination is PostgreSQL only: every job has a row in the jobs table
// (schedule, next run, last run, result, error, progress), and a replica
// runs a due job only while it holds the job's session-level advisory lock
// (pg_try_advisory_lock(hashtext('vmpulse.jobs'), hashtext(name))) on the
// runner's own connection. A replica that dies loses its connection and so
// its locks; the job is due again on the other replicas at once. What a run
// did is written to the row, so every replica shows the same.
//
// Schedules are cron expressions parsed by github.com/robfig/cron/v3 in the
// standard five-field syntax plus its descriptors (@every 1m, @hourly,
// @daily), evaluated in UTC unless prefixed with CRON_TZ=Area/City. A failed
// run is retried with exponential backoff (Options.RetryBase doubling up to
// Options.RetryMax), never later than the next regular run; the row counts
// the consecutive failures and shows the error until a run succeeds.
//
// Why not River (riverqueue/river): River is a queue of job rows, one per
// run, with its own schema and migrations, leader election and a client to
// run. What the API shows here is the other way round — a fixed set of named
// jobs with their schedule, last run and next run — and the only
// coordination needed is "one replica at a time", which one advisory lock
// per job gives, with no extra tables beyond the two in migration 011 and no
// dependency to keep up to date.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/robfig/cron/v3"
)

// ErrNotFound is returned for a job name the runner does not know.
var ErrNotFound = errors.New("jobs: no such job")

// Func is a job's work. It reports progress through run and returns a
// summary of what it did (marshalled to JSON for the API; nil for none).
// ctx ends at the job's timeout, at shutdown, or when the runner loses its
// database connection (and with it the job's lock).
type Func func(ctx context.Context, run *Run) (summary any, err error)

// Job is a named job.
type Job struct {
	// Name identifies the job (URL-safe: letters, digits, -, _, .).
	Name        string
	Description string
	// Schedule is a cron expression; "" runs the job only on request.
	Schedule string
	// ScheduleFunc, when set, is read instead of Schedule each time the
	// next run is planned (the backup schedule is kept in its own table).
	ScheduleFunc func(ctx context.Context) (string, error)
	// RunAtStart makes a job new to the database due at once rather than
	// at its first scheduled time.
	RunAtStart bool
	// Timeout bounds a run; 0 means one hour.
	Timeout time.Duration
	Func    Func
}

// Options configure a Runner.
type Options struct {
	// Replica names this aggregator in the jobs' rows (running_on);
	// default hostname:pid.
	Replica string
	// Tick is how often the runner looks for due jobs; default 5s. A run
	// requested on this replica starts at once.
	Tick time.Duration
	// RetryBase and RetryMax bound the backoff of a failed job; defaults
	// 30s and 30m. MaxRetries bounds the retries of a job without a
	// schedule; default 5.
	RetryBase, RetryMax time.Duration
	MaxRetries          int
	Logger              *slog.Logger
}

// Runner runs jobs. Its methods are safe for concurrent use.
type Runner struct {
	pool *pgxpool.Pool
	opts Options
	log  *slog.Logger
	jobs map[string]*Job
	// order is the jobs' names in registration order.
	order []string
	wake  chan struct{}

	lockMu   sync.Mutex // serializes use of lockConn
	lockConn *pgx.Conn

	mu      sync.Mutex
	running map[string]context.CancelFunc
	wg      sync.WaitGroup
}

// Parse parses a cron expression the way the runner does.
func Parse(spec string) (cron.Schedule, error) {
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("jobs: schedule %q: %w", spec, err)
	}
	return s, nil
}

// Next returns the first time after now that spec fires, in UTC unless the
// spec names a zone; zero for "".
func Next(spec string, now time.Time) (time.Time, error) {
	if spec == "" {
		return time.Time{}, nil
	}
	s, err := Parse(spec)
	if err != nil {
		return time.Time{}, err
	}
	return s.Next(now.UTC()).UTC(), nil
}

// New makes a runner for jobs; call Sync, then Run.
func New(pool *pgxpool.Pool, opts Options, jobs ...Job) (*Runner, error) {
	if opts.Replica == "" {
		host, _ := os.Hostname()
		opts.Replica = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if opts.Tick <= 0 {
		opts.Tick = 5 * time.Second
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = 30 * time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 30 * time.Minute
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 5
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Runner{pool: pool, opts: opts, log: opts.Logger, jobs: map[string]*Job{}, wake: make(chan struct{}, 1),
		running: map[string]context.CancelFunc{}}
	for i := range jobs {
		j := jobs[i]
		if j.Name == "" || j.Func == nil {
			return nil, fmt.Errorf("jobs: job %q has no name or no func", j.Name)
		}
		if r.jobs[j.Name] != nil {
			return nil, fmt.Errorf("jobs: job %q registered twice", j.Name)
		}
		if _, err := Next(j.Schedule, time.Now()); err != nil {
			return nil, err
		}
		if j.Timeout <= 0 {
			j.Timeout = time.Hour
		}
		r.jobs[j.Name] = &j
		r.order = append(r.order, j.Name)
	}
	return r, nil
}

// Names lists the jobs in registration order.
func (r *Runner) Names() []string { return slices.Clone(r.order) }

// Replica is the name this runner writes into the rows it runs.
func (r *Runner) Replica() string { return r.opts.Replica }

// schedule returns the job's current schedule.
func (r *Runner) schedule(ctx context.Context, j *Job) (string, error) {
	if j.ScheduleFunc == nil {
		return j.Schedule, nil
	}
	spec, err := j.ScheduleFunc(ctx)
	if err != nil {
		return "", fmt.Errorf("jobs: %s: read schedule: %w", j.Name, err)
	}
	if _, err := Parse(spec); spec != "" && err != nil {
		return "", err
	}
	return spec, nil
}

// Sync writes every job's row: new jobs are inserted, due at once
// (RunAtStart) or at their first scheduled time; a job whose schedule
// changed is replanned from now. Every replica runs it at start, with the
// same configuration.
func (r *Runner) Sync(ctx context.Context) error {
	now := time.Now()
	for _, name := range r.order {
		j := r.jobs[name]
		spec, err := r.schedule(ctx, j)
		if err != nil {
			return err
		}
		next, _ := Next(spec, now)
		first := nullTime(next)
		if j.RunAtStart {
			first = &now
		}
		if _, err := r.pool.Exec(ctx, `
			INSERT INTO jobs (name, description, schedule, next_run_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, schedule = EXCLUDED.schedule,
				next_run_at = CASE WHEN jobs.schedule IS DISTINCT FROM EXCLUDED.schedule OR jobs.next_run_at IS NULL
					THEN $5 ELSE jobs.next_run_at END,
				updated_at = now()
			WHERE (jobs.description, jobs.schedule) IS DISTINCT FROM (EXCLUDED.description, EXCLUDED.schedule) OR jobs.next_run_at IS NULL`,
			j.Name, j.Description, spec, first, nullTime(next)); err != nil {
			return fmt.Errorf("jobs: sync %s: %w", j.Name, err)
		}
	}
	return nil
}

// Reschedule re-reads a job's schedule (ScheduleFunc) and plans its next
// run from now. The API calls it after changing the backup schedule.
func (r *Runner) Reschedule(ctx context.Context, name string) error {
	j := r.jobs[name]
	if j == nil {
		return ErrNotFound
	}
	spec, err := r.schedule(ctx, j)
	if err != nil {
		return err
	}
	next, _ := Next(spec, time.Now())
	if _, err := r.pool.Exec(ctx, `UPDATE jobs SET schedule = $2, next_run_at = $3, updated_at = now() WHERE name = $1`,
		name, spec, nullTime(next)); err != nil {
		return fmt.Errorf("jobs: reschedule %s: %w", name, err)
	}
	return nil
}

// Request asks for a run of the job as soon as possible, on whichever
// replica gets its lock first (this one is woken at once). A request made
// while the job runs is served by another run right after.
func (r *Runner) Request(ctx context.Context, name, by string) error {
	if r.jobs[name] == nil {
		return ErrNotFound
	}
	if _, err := r.pool.Exec(ctx, `UPDATE jobs SET run_requested_at = now(), requested_by = $2, updated_at = now() WHERE name = $1`, name, by); err != nil {
		return fmt.Errorf("jobs: request %s: %w", name, err)
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

// Run looks for due jobs every Options.Tick (and when a run is requested
// here) and runs each in its own goroutine while holding its lock, until
// ctx ends; then it cancels the running jobs and waits for them.
func (r *Runner) Run(ctx context.Context) error {
	defer func() {
		r.mu.Lock()
		for _, cancel := range r.running {
			cancel()
		}
		r.mu.Unlock()
		r.wg.Wait()
		r.lockMu.Lock()
		if r.lockConn != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			r.lockConn.Close(cctx)
			cancel()
			r.lockConn = nil
		}
		r.lockMu.Unlock()
	}()
	t := time.NewTicker(r.opts.Tick)
	defer t.Stop()
	for {
		if err := r.tick(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("jobs: tick failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.wake:
		}
	}
}

// tick checks the lock connection and starts every due job not running
// here whose lock it gets.
func (r *Runner) tick(ctx context.Context) error {
	if err := r.checkLockConn(ctx); err != nil {
		return err
	}
	rows, err := r.pool.Query(ctx, `SELECT name FROM jobs WHERE name = ANY($1) AND (run_requested_at IS NOT NULL OR next_run_at <= now())
		ORDER BY coalesce(run_requested_at, next_run_at)`, r.order)
	if err != nil {
		return fmt.Errorf("jobs: due jobs: %w", err)
	}
	due, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("jobs: due jobs: %w", err)
	}
	for _, name := range due {
		r.mu.Lock()
		_, busy := r.running[name]
		r.mu.Unlock()
		if busy {
			continue
		}
		ok, err := r.lock(ctx, name)
		if err != nil {
			return err
		}
		if !ok {
			continue // another replica runs it
		}
		trigger, still, err := r.stillDue(ctx, name)
		if err != nil || !still {
			r.unlock(name)
			if err != nil {
				return err
			}
			continue // it ran elsewhere between the query and the lock
		}
		jctx, cancel := context.WithCancel(ctx)
		r.mu.Lock()
		r.running[name] = cancel
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() {
				r.mu.Lock()
				delete(r.running, name)
				r.mu.Unlock()
				cancel()
				r.unlock(name)
			}()
			r.run(jctx, r.jobs[name], trigger)
		}()
	}
	return nil
}

// checkLockConn (re)connects the connection that holds the job locks. If
// it broke, the locks it held are gone: the jobs running under them are
// cancelled, since another replica may start them.
func (r *Runner) checkLockConn(ctx context.Context) error {
	r.lockMu.Lock()
	defer r.lockMu.Unlock()
	if r.lockConn != nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := r.lockConn.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		r.log.Warn("jobs: lock connection lost; cancelling running jobs", "err", err)
		r.lockConn.Close(context.Background())
		r.lockConn = nil
		r.mu.Lock()
		for _, cancel := range r.running {
			cancel()
		}
		r.mu.Unlock()
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, r.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("jobs: lock connection: %w", err)
	}
	r.lockConn = conn
	return nil
}

func (r *Runner) lock(ctx context.Context, name string) (bool, error) {
	r.lockMu.Lock()
	defer r.lockMu.Unlock()
	if r.lockConn == nil {
		return false, nil
	}
	var ok bool
	if err := r.lockConn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext('vmpulse.jobs'), hashtext($1))`, name).Scan(&ok); err != nil {
		return false, fmt.Errorf("jobs: lock %s: %w", name, err)
	}
	return ok, nil
}

func (r *Runner) unlock(name string) {
	r.lockMu.Lock()
	defer r.lockMu.Unlock()
	if r.lockConn == nil {
		return // the connection, and the lock with it, is gone
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.lockConn.Exec(ctx, `SELECT pg_advisory_unlock(hashtext('vmpulse.jobs'), hashtext($1))`, name); err != nil {
		r.log.Warn("jobs: unlock failed; dropping the lock connection", "job", name, "err", err)
		r.lockConn.Close(ctx)
		r.lockConn = nil
	}
}

// stillDue re-reads the row under the lock and says what triggered the
// run: "request by NAME" or "schedule".
func (r *Runner) stillDue(ctx context.Context, name string) (string, bool, error) {
	var requested, next *time.Time
	var by string
	var now time.Time
	err := r.pool.QueryRow(ctx, `SELECT run_requested_at, requested_by, next_run_at, now() FROM jobs WHERE name = $1`, name).
		Scan(&requested, &by, &next, &now)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("jobs: read %s: %w", name, err)
	}
	switch {
	case requested != nil:
		if by == "" {
			by = "unknown"
		}
		return "request by " + by, true, nil
	case next != nil && !next.After(now):
		return "schedule", true, nil
	}
	return "", false, nil
}

// run runs one job under its lock and records the outcome.
func (r *Runner) run(ctx context.Context, j *Job, trigger string) {
	log := r.log.With("job", j.Name)
	var started time.Time
	var runID int64
	err := r.pool.QueryRow(ctx, `
		WITH upd AS (
			UPDATE jobs SET running_on = $2, last_started_at = now(), run_requested_at = NULL,
				progress_done = NULL, progress_total = NULL, progress_at = NULL, updated_at = now()
			WHERE name = $1 RETURNING last_started_at)
		INSERT INTO job_runs (job, replica, trigger, started_at) SELECT $1, $2, $3, last_started_at FROM upd
		RETURNING id, started_at`, j.Name, r.opts.Replica, trigger).Scan(&runID, &started)
	if err != nil {
		log.Error("jobs: cannot record the start of a run; not running it", "err", err)
		return
	}
	log.Debug("job started", "trigger", trigger)
	run := &Run{r: r, job: j.Name}
	rctx, cancel := context.WithTimeout(ctx, j.Timeout)
	summary, runErr := safeCall(rctx, j.Func, run)
	cancel()
	took := time.Since(started)

	var sum any // SQL NULL unless there is a summary
	if summary != nil {
		if b, err := json.Marshal(summary); err != nil {
			log.Warn("jobs: summary does not marshal", "err", err)
		} else if string(b) != "null" {
			sum = string(b)
		}
	}
	// The record is written even when ctx ended (shutdown): the outcome
	// must not be lost.
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer wcancel()
	var failures int
	if err := r.pool.QueryRow(wctx, `SELECT consecutive_failures FROM jobs WHERE name = $1`, j.Name).Scan(&failures); err != nil {
		log.Error("jobs: read job state", "err", err)
	}
	now := time.Now()
	spec, specErr := r.schedule(wctx, j)
	if specErr != nil {
		log.Warn("jobs: schedule unreadable; keeping the job's last", "err", specErr)
		spec = j.Schedule
	}
	next, _ := Next(spec, now)
	result, errText := "ok", ""
	if runErr != nil {
		result, errText = "failed", truncate(runErr.Error(), 2000)
		failures++
		retry := r.backoff(failures)
		switch {
		case next.IsZero() && failures > r.opts.MaxRetries:
			// An unscheduled job gives up; a request runs it again.
		case next.IsZero() || now.Add(retry).Before(next):
			next = now.Add(retry)
		}
		log.Warn("job failed", "took", took.Round(time.Millisecond), "failures", failures, "retry_at", next, "err", runErr)
	} else {
		failures = 0
		log.Debug("job done", "took", took.Round(time.Millisecond))
	}
	// The job's row and the run's row change together, so that readers
	// never see a finished job whose run is still open.
	if err := pgx.BeginFunc(wctx, r.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(wctx, `
			UPDATE jobs SET running_on = '', last_finished_at = $2, last_duration_ms = $3, last_result = $4, last_error = $5,
				last_summary = $6, consecutive_failures = $7, runs = runs + 1, failures = failures + $8::int,
				next_run_at = $9, schedule = $10, updated_at = now()
			WHERE name = $1`,
			j.Name, now, took.Milliseconds(), result, errText, sum, failures, boolInt(runErr != nil), nullTime(next), spec); err != nil {
			return fmt.Errorf("job: %w", err)
		}
		if _, err := tx.Exec(wctx, `UPDATE job_runs SET finished_at = $2, result = $3, error = $4, summary = $5 WHERE id = $1`,
			runID, now, result, errText, sum); err != nil {
			return fmt.Errorf("run: %w", err)
		}
		return nil
	}); err != nil {
		log.Error("jobs: cannot record the outcome of a run", "err", err)
	}
}

// backoff is the delay before retry number n (n ≥ 1).
func (r *Runner) backoff(n int) time.Duration {
	d := r.opts.RetryBase
	for i := 1; i < n && d < r.opts.RetryMax; i++ {
		d *= 2
	}
	return min(d, r.opts.RetryMax)
}

// safeCall runs f, turning a panic into an error.
func safeCall(ctx context.Context, f Func, run *Run) (summary any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("jobs: panic: %v\n%s", p, debug.Stack())
		}
	}()
	return f(ctx, run)
}

// Run is a job's handle on its current run.
type Run struct {
	r    *Runner
	job  string
	mu   sync.Mutex
	last time.Time
}

// Progress records how far the run is (done of total; total 0 if
// unknown), at most once a second.
func (run *Run) Progress(ctx context.Context, done, total int64) {
	run.mu.Lock()
	if time.Since(run.last) < time.Second {
		run.mu.Unlock()
		return
	}
	run.last = time.Now()
	run.mu.Unlock()
	var t *int64
	if total > 0 {
		t = &total
	}
	if _, err := run.r.pool.Exec(ctx, `UPDATE jobs SET progress_done = $2, progress_total = $3, progress_at = now() WHERE name = $1`,
		run.job, done, t); err != nil {
		run.r.log.Debug("jobs: progress not recorded", "job", run.job, "err", err)
	}
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
