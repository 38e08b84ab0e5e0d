package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/backup"
	"github.com/vmpulse/vmpulse/aggregator/internal/jobs"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// ops are the job runner and the backup service of a test API: real, on
// the test's database. The runner's loop runs only when a test starts it.
type ops struct {
	t       testing.TB
	jobs    *jobs.Runner
	backups *backup.Service
	// failing makes the job "test.flaky" fail while set.
	failing atomic.Bool
	// hold, when set, holds a restore in maintenance mode until closed.
	hold atomic.Pointer[chan struct{}]
}

func newOps(t testing.TB, st *store.Store, log *slog.Logger) *ops {
	t.Helper()
	o := &ops{t: t}
	svc, err := backup.New(st, backup.Options{Dir: t.TempDir(), Compression: 1, Logger: log, PollInterval: 50 * time.Millisecond,
		BeforeLoad: func() {
			if h := o.hold.Load(); h != nil {
				<-*h
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	o.backups = svc
	flaky := jobs.Job{Name: "test.flaky", Description: "fails while the test says so", Func: func(context.Context, *jobs.Run) (any, error) {
		if o.failing.Load() {
			return nil, errors.New("flaky: the test made it fail")
		}
		return map[string]any{"ok": true}, nil
	}}
	list := append(jobs.Maintenance(st, jobs.MaintenanceConfig{Retention: func(ctx context.Context) (store.Retention, error) {
		return jobs.StoredRetention(ctx, st.Pool(), store.DefaultRetention)
	}}), svc.Job(), flaky)
	if o.jobs, err = jobs.New(st.Pool(), jobs.Options{Replica: "test-replica", Tick: 20 * time.Millisecond, RetryBase: 200 * time.Millisecond, Logger: log}, list...); err != nil {
		t.Fatal(err)
	}
	if err := o.jobs.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return o
}

// start runs the job runner until the test ends.
func (o *ops) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = o.jobs.Run(ctx) }()
	o.t.Cleanup(func() { cancel(); <-done })
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestJobsAPI: the jobs are listed with their schedules; a run requested
// through the API runs (on the replica holding the lock), says who asked,
// and is audited; an unknown job is a 404; a failing job shows its error,
// its retry and degrades /system/health until it succeeds.
func TestJobsAPI(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.tokens["admin"]
	res := e.do("GET", "/api/v1/system/jobs", e.tokens["operator"], "")
	if res.status != 200 {
		t.Fatalf("list: %d %s", res.status, res.raw)
	}
	var list struct {
		Items []jobs.Status `json:"items"`
	}
	res.data(&list)
	names := map[string]jobs.Status{}
	for _, j := range list.Items {
		names[j.Name] = j
	}
	for _, n := range []string{jobs.JobPartitions, jobs.JobRollups, jobs.JobRetention, jobs.JobReorder, jobs.JobCleanup, jobs.JobBackup} {
		if _, ok := names[n]; !ok {
			t.Errorf("job %s not listed: %s", n, res.raw)
		}
	}
	if j := names[jobs.JobRollups]; j.Schedule != "@every 1m" || j.NextRunAt == nil || j.State != jobs.StateIdle {
		t.Errorf("rollups: %+v", j)
	}
	if j := names[jobs.JobBackup]; j.Schedule != "" || j.NextRunAt != nil {
		t.Errorf("backup (schedule disabled): %+v", j)
	}

	if res := e.do("POST", "/api/v1/system/jobs/nope/run", admin, ""); res.status != 404 || res.code() != CodeJobNotFound {
		t.Errorf("unknown job: %d %s", res.status, res.raw)
	}
	if res := e.do("POST", "/api/v1/system/jobs/cleanup/run", e.tokens["operator"], ""); res.status != 403 {
		t.Errorf("run by an operator: %d %s", res.status, res.raw)
	}
	res = e.do("POST", "/api/v1/system/jobs/cleanup/run", admin, "")
	if res.status != 202 {
		t.Fatalf("run: %d %s", res.status, res.raw)
	}
	var st jobs.Status
	res.data(&st)
	if st.RunRequestedAt == nil || st.RequestedBy != "admin" {
		t.Errorf("after the request: %+v", st)
	}
	e.ops.start()
	var detail struct {
		Job  jobs.Status      `json:"job"`
		Runs []jobs.RunRecord `json:"runs"`
	}
	eventually(t, "the requested run", func() bool {
		res := e.do("GET", "/api/v1/system/jobs/cleanup", admin, "")
		res.data(&detail)
		return len(detail.Runs) > 0 && detail.Runs[0].FinishedAt != nil
	})
	if r := detail.Runs[0]; r.Trigger != "request by admin" || r.Result != "ok" || r.Replica != "test-replica" || !strings.Contains(string(r.Summary), "refresh_tokens") {
		t.Errorf("the run: %+v %s", r, r.Summary)
	}
	e.flushAudit()
	var action, resource, result string
	if err := e.pool.QueryRow(context.Background(), `SELECT action, resource_id, result FROM audit_log WHERE action = 'job.run' AND status = 202`).
		Scan(&action, &resource, &result); err != nil || resource != "cleanup" || result != "success" {
		t.Errorf("audit of the run: %s %s %s %v", action, resource, result, err)
	}

	// A failing job: visible, retried, and in /system/health.
	e.ops.failing.Store(true)
	if res := e.do("POST", "/api/v1/system/jobs/test.flaky/run", admin, ""); res.status != 202 {
		t.Fatalf("run flaky: %d %s", res.status, res.raw)
	}
	var flaky jobs.Status
	eventually(t, "the failure", func() bool {
		res := e.do("GET", "/api/v1/system/jobs/test.flaky", admin, "")
		res.data(&detail)
		flaky = detail.Job
		return flaky.ConsecutiveFailures >= 2 // the first run and a retry
	})
	if flaky.State != jobs.StateRetrying || !strings.Contains(flaky.LastError, "the test made it fail") || flaky.NextRunAt == nil {
		t.Errorf("failing job: %+v", flaky)
	}
	res = e.do("GET", "/api/v1/system/health", admin, "")
	var h Health
	res.data(&h)
	if h.Status != HealthDegraded || h.Components.Jobs == nil || h.Components.Jobs.Status != HealthDegraded ||
		len(h.Components.Jobs.Failing) != 1 || h.Components.Jobs.Failing[0] != "test.flaky" {
		t.Errorf("health with a failing job: %s", res.raw)
	}
	e.ops.failing.Store(false)
	eventually(t, "the retry that succeeds", func() bool {
		res := e.do("GET", "/api/v1/system/jobs/test.flaky", admin, "")
		res.data(&detail)
		return detail.Job.LastResult == "ok"
	})
	if detail.Job.ConsecutiveFailures != 0 || detail.Job.State != jobs.StateIdle || detail.Job.Failures < 2 {
		t.Errorf("recovered job: %+v", detail.Job)
	}
	res = e.do("GET", "/api/v1/system/health", admin, "")
	res.data(&h)
	if h.Components.Jobs == nil || h.Components.Jobs.Status != HealthOK {
		t.Errorf("health after recovery: %s", res.raw)
	}
}
