package httpapi

import (
	"context"
	"errors"
	"net/http"
	"regexp"

	"github.com/go-chi/chi/v5"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/jobs"
)

// JobRunner is what the /system/jobs routes need from the job runner;
// *jobs.Runner implements it.
type JobRunner interface {
	List(ctx context.Context) ([]jobs.Status, error)
	Get(ctx context.Context, name string) (jobs.Status, error)
	Runs(ctx context.Context, name string, limit int) ([]jobs.RunRecord, error)
	// Request asks for a run now, on whichever replica gets the job's lock.
	Request(ctx context.Context, name, by string) error
	// Reschedule replans a job whose schedule changed (the backup job).
	Reschedule(ctx context.Context, name string) error
}

// CodeJobNotFound is the 404 of an unknown job name.
const CodeJobNotFound = "JOB_NOT_FOUND"

var jobNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// jobsResource is /system/jobs.
type jobsResource struct{ a *API }

// Routes lists the job routes.
func (h *jobsResource) Routes() []Route {
	const tag = "system"
	return []Route{
		{Method: "GET", Pattern: "/system/jobs", Access: auth.PermSystemRead, Handle: h.list, Doc: Doc{Tag: tag,
			Summary: "The aggregator's jobs (partitions, rollups, retention, reorder, cleanup, backup) as every replica sees them: schedule, " +
				"state (idle, running, retrying), the replica running it, last run (start, end, duration, result, error, summary), " +
				"consecutive failures, next run, a pending run request and the running job's progress",
			Response: listSchema(ref("Job")), Errors: []int{401, 403, 503}}},
		{Method: "GET", Pattern: "/system/jobs/{name}", Access: auth.PermSystemRead, Handle: h.get, Doc: Doc{Tag: tag,
			Summary:  "One job and its 20 most recent runs (which replica, what triggered it, result, error, summary)",
			Response: ref("JobDetail"), Errors: []int{401, 403, 404, 503}, Codes: []string{CodeJobNotFound}}},
		{Method: "POST", Pattern: "/system/jobs/{name}/run", Access: auth.PermSystemWrite, Action: "job.run", Resource: "job", Handle: h.run,
			Doc: Doc{Tag: tag, Summary: "Run a job now: the first replica to take the job's lock runs it (at once when it is idle, right after the " +
				"current run otherwise); the answer is the job with its run request. The body, if any, is ignored",
				Response: ref("Job"), Status: http.StatusAccepted, Errors: []int{401, 403, 404, 503}, Codes: []string{CodeJobNotFound}}},
	}
}

func jobSchemas() map[string]any {
	t := dateTime
	job := objectSchema(map[string]any{
		"name": str, "description": str,
		"schedule":         desc(str, "cron expression (robfig/cron/v3: 5 fields or @every 1m, @hourly…), UTC unless CRON_TZ= prefixed; empty: on request only"),
		"state":            map[string]any{"type": "string", "enum": []string{jobs.StateIdle, jobs.StateRunning, jobs.StateRetrying}},
		"running_on":       desc(str, "the replica running the job (empty unless running)"),
		"last_started_at":  nullable(t, "null if never run"),
		"last_finished_at": nullable(t, "null if never finished"),
		"last_duration_ms": nullable(integer, "null if never finished"),
		"last_result":      map[string]any{"type": "string", "enum": []string{"", "ok", "failed"}},
		"last_error":       str,
		"last_summary":     nullable(map[string]any{"type": "object"}, "what the last run did, per job"),
		"consecutive_failures": desc(integer, "failed runs since the last success; a failed job is retried with exponential backoff "+
			"(never later than its next regular run)"),
		"next_run_at":      nullable(t, "the next regular run or retry; null when unscheduled"),
		"run_requested_at": nullable(t, "a pending run request"),
		"requested_by":     str,
		"runs":             integer, "failures": integer,
		"progress": nullable(objectSchema(map[string]any{"done": integer, "total": desc(integer, "0 when unknown"), "updated_at": t}),
			"the running job's last progress report"),
	})
	run := objectSchema(map[string]any{"id": integer, "replica": str, "trigger": desc(str, "schedule, or request by NAME"),
		"started_at": t, "finished_at": nullable(t, "null while running"), "result": str, "error": str,
		"summary": nullable(map[string]any{"type": "object"}, "")})
	return map[string]any{
		"Job":       job,
		"JobDetail": objectSchema(map[string]any{"job": ref("Job"), "runs": arrayOf(run)}),
	}
}

func (h *jobsResource) runner() (JobRunner, error) {
	if h.a.jobs == nil {
		return nil, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Err: errors.New("no job runner is wired")}
	}
	return h.a.jobs, nil
}

func jobError(err error) error {
	if errors.Is(err, jobs.ErrNotFound) {
		return newError(http.StatusNotFound, CodeJobNotFound)
	}
	return err
}

func pathJobName(r *http.Request) (string, error) {
	name := chi.URLParam(r, "name")
	if !jobNameRE.MatchString(name) {
		return "", newError(http.StatusNotFound, CodeJobNotFound)
	}
	setAuditResource(r, name)
	return name, nil
}

func (h *jobsResource) list(w http.ResponseWriter, r *http.Request) error {
	run, err := h.runner()
	if err != nil {
		return err
	}
	items, err := run.List(r.Context())
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, map[string]any{"items": nonNil(items)})
	return nil
}

func (h *jobsResource) get(w http.ResponseWriter, r *http.Request) error {
	run, err := h.runner()
	if err != nil {
		return err
	}
	name, err := pathJobName(r)
	if err != nil {
		return err
	}
	s, err := run.Get(r.Context(), name)
	if err != nil {
		return jobError(err)
	}
	runs, err := run.Runs(r.Context(), name, 20)
	if err != nil {
		return jobError(err)
	}
	writeData(w, r, http.StatusOK, map[string]any{"job": s, "runs": nonNil(runs)})
	return nil
}

func (h *jobsResource) run(w http.ResponseWriter, r *http.Request) error {
	run, err := h.runner()
	if err != nil {
		return err
	}
	name, err := pathJobName(r)
	if err != nil {
		return err
	}
	p, _ := auth.PrincipalFrom(r.Context())
	if err := run.Request(r.Context(), name, principalLabel(p)); err != nil {
		return jobError(err)
	}
	s, err := run.Get(r.Context(), name)
	if err != nil {
		return jobError(err)
	}
	writeData(w, r, http.StatusAccepted, s)
	return nil
}
