package jobs_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/jobs"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), pgtest.NewDatabase(t), store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// start runs r until the test ends.
func start(t testing.TB, r *jobs.Runner) {
	t.Helper()
	if err := r.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTwoRunnersNeverOverlap: two runners (two replicas) on one database,
// the same job due every second and requested over and over: it never runs
// on both at once, and both replicas take turns over time.
func TestTwoRunnersNeverOverlap(t *testing.T) {
	st := openStore(t)
	var inside, maxInside, runs atomic.Int64
	var mu sync.Mutex
	byReplica := map[string]int{}
	job := func(replica string) jobs.Job {
		return jobs.Job{Name: "slow", Schedule: "@every 1s", RunAtStart: true, Func: func(ctx context.Context, _ *jobs.Run) (any, error) {
			n := inside.Add(1)
			defer inside.Add(-1)
			for {
				m := maxInside.Load()
				if n <= m || maxInside.CompareAndSwap(m, n) {
					break
				}
			}
			runs.Add(1)
			mu.Lock()
			byReplica[replica]++
			mu.Unlock()
			time.Sleep(150 * time.Millisecond)
			return nil, nil
		}}
	}
	var runners []*jobs.Runner
	for _, name := range []string{"a", "b"} {
		r, err := jobs.New(st.Pool(), jobs.Options{Replica: name, Tick: 10 * time.Millisecond, Logger: testLogger(t)}, job(name))
		if err != nil {
			t.Fatal(err)
		}
		runners = append(runners, r)
		start(t, r)
	}
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		if err := runners[i%2].Request(context.Background(), "slow", "test"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
	}
	if got := maxInside.Load(); got != 1 {
		t.Errorf("the job ran %d times at once", got)
	}
	if runs.Load() < 5 {
		t.Errorf("only %d runs in 3 s", runs.Load())
	}
	mu.Lock()
	t.Logf("runs by replica: %v", byReplica)
	mu.Unlock()
	// The record agrees: no run of the job overlaps another.
	rows, err := st.Pool().Query(context.Background(), `SELECT count(*) FROM job_runs a JOIN job_runs b ON a.id < b.id AND a.job = b.job
		WHERE a.started_at < coalesce(b.finished_at, 'infinity') AND b.started_at < coalesce(a.finished_at, 'infinity') AND a.finished_at IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d pairs of recorded runs overlap", n)
		}
	}
}

// TestFailingJobVisibleAndRetried: a failed run shows its error, the
// number of consecutive failures and a retry due after the backoff; the
// retries run by themselves, the backoff doubles, and a success clears the
// failure.
func TestFailingJobVisibleAndRetried(t *testing.T) {
	st := openStore(t)
	var calls atomic.Int64
	var times []time.Time
	var mu sync.Mutex
	r, err := jobs.New(st.Pool(), jobs.Options{Replica: "a", Tick: 10 * time.Millisecond, RetryBase: 300 * time.Millisecond, Logger: testLogger(t)},
		jobs.Job{Name: "flaky", Func: func(ctx context.Context, _ *jobs.Run) (any, error) {
			mu.Lock()
			times = append(times, time.Now())
			mu.Unlock()
			if calls.Add(1) <= 2 {
				return nil, errors.New("disk on fire")
			}
			return map[string]int{"fixed": 1}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	ctx := context.Background()
	if err := r.Request(ctx, "flaky", "alice"); err != nil {
		t.Fatal(err)
	}
	var s jobs.Status
	waitFor(t, 5*time.Second, "the first failure", func() bool {
		s, err = r.Get(ctx, "flaky")
		return err == nil && s.LastResult == "failed"
	})
	if s.State != jobs.StateRetrying || s.ConsecutiveFailures != 1 || s.LastError != "disk on fire" || s.NextRunAt == nil {
		t.Errorf("after the first failure: %+v", s)
	} else if d := s.NextRunAt.Sub(*s.LastFinishedAt); d < 250*time.Millisecond || d > 400*time.Millisecond {
		t.Errorf("retry planned %s after the failure, want the 300ms backoff", d)
	}
	waitFor(t, 10*time.Second, "the success", func() bool {
		s, err = r.Get(ctx, "flaky")
		return err == nil && s.LastResult == "ok"
	})
	if s.State != jobs.StateIdle || s.ConsecutiveFailures != 0 || s.LastError != "" || s.Runs != 3 || s.Failures != 2 || string(s.LastSummary) != `{"fixed": 1}` {
		t.Errorf("after the success: %+v (summary %s)", s, s.LastSummary)
	}
	if s.NextRunAt != nil {
		t.Errorf("an unscheduled job has a next run after success: %v", s.NextRunAt)
	}
	mu.Lock()
	if len(times) == 3 {
		first, second := times[1].Sub(times[0]), times[2].Sub(times[1])
		if first < 300*time.Millisecond || second < 600*time.Millisecond {
			t.Errorf("retries after %s and %s, want at least 300ms and 600ms", first, second)
		}
	}
	mu.Unlock()
	runs, err := r.Runs(ctx, "flaky", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 || runs[0].Result != "ok" || runs[1].Result != "failed" || runs[2].Trigger != "request by alice" || runs[1].Trigger != "schedule" {
		t.Errorf("runs: %+v", runs)
	}
}

// TestRequestRunsNow: a job due in an hour runs at once when requested,
// and the run says who asked for it; its schedule is kept.
func TestRequestRunsNow(t *testing.T) {
	st := openStore(t)
	ran := make(chan struct{}, 10)
	r, err := jobs.New(st.Pool(), jobs.Options{Replica: "a", Tick: time.Hour, Logger: testLogger(t)},
		jobs.Job{Name: "hourly", Schedule: "@every 1h", Func: func(ctx context.Context, run *jobs.Run) (any, error) {
			ran <- struct{}{}
			return nil, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	ctx := context.Background()
	s, err := r.Get(ctx, "hourly")
	if err != nil || s.NextRunAt == nil || time.Until(*s.NextRunAt) < 50*time.Minute || s.Runs != 0 {
		t.Fatalf("before: %+v, %v", s, err)
	}
	if err := r.Request(ctx, "hourly", "bob"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("the requested run did not start")
	}
	waitFor(t, 5*time.Second, "the run's record", func() bool {
		s, err = r.Get(ctx, "hourly")
		return err == nil && s.Runs == 1 && s.State == jobs.StateIdle
	})
	if s.RunRequestedAt != nil || s.LastResult != "ok" || s.NextRunAt == nil || time.Until(*s.NextRunAt) < 50*time.Minute {
		t.Errorf("after: %+v", s)
	}
	if err := r.Request(ctx, "nope", "bob"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("unknown job: %v", err)
	}
}

// TestRunningStateAndProgress: while a job runs, every runner on the
// database reports it running on the replica that holds it, with its
// progress.
func TestRunningStateAndProgress(t *testing.T) {
	st := openStore(t)
	release := make(chan struct{})
	reported := make(chan struct{})
	job := jobs.Job{Name: "long", Func: func(ctx context.Context, run *jobs.Run) (any, error) {
		run.Progress(ctx, 40, 100)
		close(reported)
		<-release
		return nil, nil
	}}
	a, err := jobs.New(st.Pool(), jobs.Options{Replica: "a", Tick: 10 * time.Millisecond, Logger: testLogger(t)}, job)
	if err != nil {
		t.Fatal(err)
	}
	start(t, a)
	// b only looks: it has the job too, but never gets to run it here.
	b, err := jobs.New(st.Pool(), jobs.Options{Replica: "b", Tick: time.Hour, Logger: testLogger(t)}, job)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.Request(ctx, "long", "test"); err != nil {
		t.Fatal(err)
	}
	<-reported
	s, err := b.Get(ctx, "long")
	if err != nil || s.State != jobs.StateRunning || s.RunningOn != "a" || s.Progress == nil || s.Progress.Done != 40 || s.Progress.Total != 100 {
		t.Errorf("while running, seen from b: %+v %v", s, err)
	}
	close(release)
	waitFor(t, 5*time.Second, "the end of the run", func() bool {
		s, err = b.Get(ctx, "long")
		return err == nil && s.State == jobs.StateIdle && s.Runs == 1
	})
	if s.RunningOn != "" || s.Progress != nil {
		t.Errorf("after: %+v", s)
	}
}

// TestScheduleValidation: a bad cron expression is refused when the job is
// registered.
func TestScheduleValidation(t *testing.T) {
	if _, err := jobs.New(nil, jobs.Options{}, jobs.Job{Name: "x", Schedule: "61 * * * *", Func: func(context.Context, *jobs.Run) (any, error) { return nil, nil }}); err == nil {
		t.Error("a bad schedule was accepted")
	}
	next, err := jobs.Next("0 3 * * *", time.Date(2026, 1, 1, 4, 0, 0, 0, time.UTC))
	if err != nil || !next.Equal(time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)) {
		t.Errorf("Next = %v, %v", next, err)
	}
}
