package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/backup"
	"github.com/vmpulse/vmpulse/aggregator/internal/jobs"
)

// Backups is what the /backups routes and the maintenance mode need from
// the backup service; *backup.Service implements it.
type Backups interface {
	List(ctx context.Context) ([]backup.Backup, error)
	Get(ctx context.Context, id uuid.UUID) (backup.Backup, error)
	// Start begins a backup in the background.
	Start(ctx context.Context, req backup.Request) (backup.Backup, error)
	Open(ctx context.Context, id uuid.UUID) (*os.File, backup.Backup, error)
	Delete(ctx context.Context, id uuid.UUID) error
	// StartRestore checks a backup and restores it in the background.
	StartRestore(ctx context.Context, id uuid.UUID, by string) (backup.Restore, error)
	LastRestore(ctx context.Context) (backup.Restore, error)
	Schedule(ctx context.Context) (backup.Schedule, error)
	SetSchedule(ctx context.Context, sc backup.Schedule, by string) (backup.Schedule, error)
	ApplyRetention(ctx context.Context) ([]uuid.UUID, error)
	Health(ctx context.Context) (backup.Health, error)
	// ConfiguredCompression is the configuration's pg_dump -Z level (-1:
	// pg_dump's default), which the backup setting overrides.
	ConfiguredCompression() int
	// Maintenance is the maintenance state as this replica last saw it;
	// it must be cheap (it is asked on every request).
	Maintenance() backup.Maintenance
}

// backupStatus maps the backup service's codes to HTTP statuses.
var backupStatus = map[string]int{
	backup.CodeNotFound:      http.StatusNotFound,
	backup.CodeBusy:          http.StatusConflict,
	backup.CodeNotReady:      http.StatusConflict,
	backup.CodeInvalid:       http.StatusUnprocessableEntity,
	backup.CodeToolMissing:   http.StatusServiceUnavailable,
	backup.CodeDiskFull:      http.StatusInsufficientStorage,
	backup.CodeChecksum:      http.StatusConflict,
	backup.CodeFileMissing:   http.StatusConflict,
	backup.CodeSchemaNewer:   http.StatusConflict,
	backup.CodePauseTimeout:  http.StatusServiceUnavailable,
	backup.CodeFailed:        http.StatusInternalServerError,
	backup.CodeRestoreFailed: http.StatusInternalServerError,
	backup.CodeMaintenance:   http.StatusServiceUnavailable,
}

// backupAPIError is the API error of a backup service error (errorFor).
func backupAPIError(e *backup.Error) *Error {
	status, ok := backupStatus[e.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	out := &Error{Status: status, Code: e.Code, Err: e}
	if status < 500 || status == http.StatusServiceUnavailable || status == http.StatusInsufficientStorage {
		// The reason is for the operator (a path, a version, a size);
		// it names nothing secret.
		out.Data = map[string]any{"detail": e.Err.Error()}
	}
	return out
}

// backupsResource is /backups.
type backupsResource struct{ a *API }

// Routes lists the backup routes.
func (h *backupsResource) Routes() []Route {
	const tag = "backups"
	perm := auth.PermBackupAdmin
	item := ref("Backup")
	common := []int{401, 403, 503}
	with := func(codes ...int) []int { return append(append([]int{}, common...), codes...) }
	return []Route{
		{Method: "GET", Pattern: "/backups", Access: perm, Handle: h.list, Doc: Doc{Tag: tag,
			Summary: "List backups, newest first", Response: objectSchema(map[string]any{"items": arrayOf(item), "total": integer}), Errors: common}},
		{Method: "POST", Pattern: "/backups", Access: perm, Action: "backup.create", Resource: "backup", Handle: h.create, Doc: Doc{Tag: tag,
			Summary: "Start a backup (pg_dump, custom format) in the background: kind config (users, roles, API tokens, VM groups, settings, " +
				"alert rules and channels, the operation and login logs) or metrics (the configuration plus series, raw samples and rollups " +
				"of [from, to), rounded out to whole UTC days). Follow it with GET /backups/{id} (bytes_done of bytes_estimate)",
			Body: ref("BackupCreate"), Response: item, Status: http.StatusAccepted, Errors: with(409, 422),
			Codes: []string{backup.CodeBusy, backup.CodeToolMissing, backup.CodeInvalid}}},
		{Method: "GET", Pattern: "/backups/schedule", Access: perm, Handle: h.getSchedule, Doc: Doc{Tag: tag,
			Summary:  "The backup schedule (cron, kind, range of a metrics backup) and retention (keep_last, keep_days), and the next run",
			Response: ref("BackupSchedule"), Errors: common}},
		{Method: "PUT", Pattern: "/backups/schedule", Access: perm, Action: "backup.schedule.update", Resource: "backup_schedule", Handle: h.putSchedule,
			Doc: Doc{Tag: tag, Summary: "Change the schedule and retention (fields left out keep their value); retention applies at once. " +
				"The audit record has the before/after difference",
				Body: ref("BackupScheduleInput"), Response: ref("BackupSchedule"), Errors: with(422)}},
		{Method: "GET", Pattern: "/backups/restore", Access: perm, DuringMaintenance: true, Handle: h.restoreStatus, Doc: Doc{Tag: tag,
			Summary: "The newest restore (phase verifying, pausing, restoring, done or failed; bytes done of total and an ETA; how long ingest " +
				"was paused; the error) and the maintenance mode. The only route served while a restore runs",
			Response: ref("RestoreStatus"), Errors: []int{401, 403}}},
		{Method: "GET", Pattern: "/backups/{id}", Access: perm, Handle: h.get, Doc: Doc{Tag: tag,
			Summary:  "A backup: kind, range, status, size, SHA-256, schema version, tables, duration, error, who started it, progress",
			Response: item, Errors: with(404), Codes: []string{backup.CodeNotFound}}},
		{Method: "GET", Pattern: "/backups/{id}/download", Access: perm, Action: "backup.download", Resource: "backup", Export: true, Handle: h.download,
			Doc: Doc{Tag: tag, Summary: "Download a finished backup's dump (application/octet-stream; Range requests resume a download, " +
				"the ETag is the SHA-256). Audited",
				Response: objectSchema(nil), Errors: with(404, 409), Codes: []string{backup.CodeNotFound, backup.CodeNotReady, backup.CodeFileMissing}}},
		{Method: "POST", Pattern: "/backups/{id}/restore", Access: perm, Action: "backup.restore", Resource: "backup", Handle: h.restore, Doc: Doc{Tag: tag,
			Summary: "Restore a backup in the background. The dump is checked against its size and SHA-256 and its schema version before " +
				"anything is touched; then maintenance mode (every replica stops acknowledging ingest — agents keep spooling — and the API " +
				"answers 503 MAINTENANCE but for GET /backups/restore), one transaction, and ingest resumes by itself. Sessions of users the " +
				"backup does not have end. Follow it with GET /backups/restore",
			Response: ref("Restore"), Status: http.StatusAccepted, Errors: with(404, 409),
			Codes: []string{backup.CodeNotFound, backup.CodeBusy, backup.CodeNotReady, backup.CodeToolMissing, backup.CodeChecksum,
				backup.CodeFileMissing, backup.CodeSchemaNewer}}},
		{Method: "DELETE", Pattern: "/backups/{id}", Access: perm, Action: "backup.delete", Resource: "backup", Handle: h.delete, Doc: Doc{Tag: tag,
			Summary: "Delete a backup's file and record (not while it runs)", Response: objectSchema(nil), Errors: with(404, 409),
			Codes: []string{backup.CodeNotFound, backup.CodeBusy}}},
	}
}

func backupSchemas() map[string]any {
	t := dateTime
	kind := map[string]any{"type": "string", "enum": []string{backup.KindConfig, backup.KindMetrics}}
	restore := objectSchema(map[string]any{"id": uuidStr, "backup_id": uuidStr,
		"phase":       map[string]any{"type": "string", "enum": []string{backup.PhaseVerifying, backup.PhasePausing, backup.PhaseRestoring, backup.PhaseDone, backup.PhaseFailed}},
		"bytes_total": desc(integer, "the dump's size"), "bytes_done": desc(integer, "of the dump read in this phase (checksum, then load)"),
		"eta_seconds": nullable(integer, "estimate for the current phase"),
		"started_at":  t, "finished_at": nullable(t, ""), "paused_ms": nullable(integer, "how long ingest was paused"),
		"error_code": str, "error": str, "created_by": str, "replica": str})
	maint := objectSchema(map[string]any{"active": boolean, "reason": str, "restore_id": nullable(uuidStr, ""), "started_at": nullable(t, "")})
	return map[string]any{
		"Backup": objectSchema(map[string]any{"id": uuidStr, "kind": kind,
			"status": map[string]any{"type": "string", "enum": []string{backup.StatusRunning, backup.StatusDone, backup.StatusFailed}},
			"from":   nullable(t, "metrics backups: start of the range (a UTC midnight)"), "to": nullable(t, "metrics backups: end of the range"),
			"file": desc(str, "file name in the backup directory"), "size_bytes": integer,
			"bytes_done": desc(integer, "written so far"), "bytes_estimate": desc(integer, "size of the tables dumped (uncompressed, with indexes): an upper bound"),
			"sha256": str, "schema_version": desc(integer, "the database's migration version when dumped"), "tables": strList,
			"started_at": t, "finished_at": nullable(t, ""), "duration_ms": nullable(integer, ""),
			"error_code": desc(str, "BACKUP_DISK_FULL, BACKUP_TOOL_MISSING, BACKUP_FAILED…"), "error": str,
			"created_by": str, "trigger": desc(str, "api or schedule"), "replica": str, "note": str}),
		"BackupCreate": objectSchema(map[string]any{"kind": kind, "from": desc(t, "metrics: start of the range"),
			"to": desc(t, "metrics: end of the range"), "note": str}, "kind"),
		"BackupSchedule": objectSchema(map[string]any{"enabled": boolean,
			"cron": desc(str, "robfig/cron/v3 standard syntax (e.g. 0 3 * * *, @daily, @every 12h), UTC unless CRON_TZ= prefixed"),
			"kind": kind, "metrics_days": desc(integer, "metrics backups cover the last N whole days"),
			"keep_last": desc(integer, "keep the newest N finished backups; 0: no limit"), "keep_days": desc(integer, "delete backups older than N days; 0: no limit"),
			"updated_at": t, "updated_by": str, "next_run_at": nullable(t, "null while disabled")}),
		"BackupScheduleInput": objectSchema(map[string]any{"enabled": boolean, "cron": str, "kind": kind, "metrics_days": integer,
			"keep_last": integer, "keep_days": integer}),
		"Restore":       restore,
		"Maintenance":   maint,
		"RestoreStatus": objectSchema(map[string]any{"restore": nullable(restore, "null if no restore ever ran"), "maintenance": maint}),
	}
}

// svc is the backup service for a caller allowed the whole fleet: a
// backup holds every site's configuration and metrics and a restore
// rewrites them, so a caller whose data scope is limited to some sites is
// refused (403 AUTH_SCOPE_RESTRICTED), whatever its permissions.
func (h *backupsResource) svc(r *http.Request) (Backups, error) {
	if p, ok := auth.PrincipalFrom(r.Context()); ok && !p.Scope.Unrestricted() {
		return nil, newError(http.StatusForbidden, CodeScopeRestricted)
	}
	if h.a.backups == nil {
		return nil, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Err: errors.New("no backup service is wired")}
	}
	return h.a.backups, nil
}

func (h *backupsResource) list(w http.ResponseWriter, r *http.Request) error {
	svc, err := h.svc(r)
	if err != nil {
		return err
	}
	items, err := svc.List(r.Context())
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, map[string]any{"items": nonNil(items), "total": len(items)})
	return nil
}

// backupCreate is the body of POST /backups.
type backupCreate struct {
	Kind *string    `json:"kind"`
	From *time.Time `json:"from"`
	To   *time.Time `json:"to"`
	Note *string    `json:"note"`
}

func (b *backupCreate) validate(v *fieldErrors) {
	if !v.required("kind", b.Kind != nil) {
		return
	}
	switch *b.Kind {
	case backup.KindConfig:
	case backup.KindMetrics:
		from, to := v.required("from", b.From != nil), v.required("to", b.To != nil)
		if from && to {
			if !b.To.After(*b.From) {
				v.add("to", FieldInvalidValue, map[string]any{"allowed": "a time after from"})
			} else if b.To.Sub(*b.From) > backup.MaxRangeDays*24*time.Hour {
				v.add("to", FieldOutOfRange, map[string]any{"min": "from", "max": fmt.Sprintf("from + %d days", backup.MaxRangeDays)})
			}
		}
	default:
		v.add("kind", FieldInvalidValue, map[string]any{"allowed": "config, metrics"})
	}
	if b.Note != nil {
		v.maxLen("note", *b.Note, 500)
	}
}

func (h *backupsResource) create(w http.ResponseWriter, r *http.Request) error {
	svc, err := h.svc(r)
	if err != nil {
		return err
	}
	var body backupCreate
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	p, _ := auth.PrincipalFrom(r.Context())
	req := backup.Request{Kind: *body.Kind, Note: deref(body.Note), By: principalLabel(p), Trigger: "api"}
	if body.From != nil && body.To != nil {
		req.From, req.To = *body.From, *body.To
	}
	b, err := svc.Start(r.Context(), req)
	if err != nil {
		return err
	}
	setAuditResource(r, b.ID.String())
	writeData(w, r, http.StatusAccepted, b)
	return nil
}

func (h *backupsResource) get(w http.ResponseWriter, r *http.Request) error {
	svc, err := h.svc(r)
	if err != nil {
		return err
	}
	id, err := pathID(r, backup.CodeNotFound)
	if err != nil {
		return err
	}
	b, err := svc.Get(r.Context(), id)
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, b)
	return nil
}

func (h *backupsResource) download(w http.ResponseWriter, r *http.Request) error {
	svc, err := h.svc(r)
	if err != nil {
		return err
	}
	id, err := pathID(r, backup.CodeNotFound)
	if err != nil {
		return err
	}
	f, b, err := svc.Open(r.Context(), id)
	if err != nil {
		return err
	}
	defer f.Close()
	name := fmt.Sprintf("vmpulse-%s-%s-%s.dump", b.Kind, b.StartedAt.Format("20060102-150405"), b.ID.String()[:8])
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("ETag", `"`+b.SHA256+`"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	if rg := r.Header.Get("Range"); rg != "" {
		addAuditSummary(r, "range", rg)
	}
	modified := b.StartedAt
	if b.FinishedAt != nil {
		modified = *b.FinishedAt
	}
	// ServeContent answers Range (206, resumable), If-Range against the
	// ETag, and HEAD-like conditional requests.
	http.ServeContent(w, r, name, modified, f)
	return nil
}

func (h *backupsResource) delete(w http.ResponseWriter, r *http.Request) error {
	svc, err := h.svc(r)
	if err != nil {
		return err
	}
	id, err := pathID(r, backup.CodeNotFound)
	if err != nil {
		return err
	}
	if err := svc.Delete(r.Context(), id); err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, struct{}{})
	return nil
}

func (h *backupsResource) restore(w http.ResponseWriter, r *http.Request) error {
	svc, err := h.svc(r)
	if err != nil {
		return err
	}
	id, err := pathID(r, backup.CodeNotFound)
	if err != nil {
		return err
	}
	p, _ := auth.PrincipalFrom(r.Context())
	rs, err := svc.StartRestore(r.Context(), id, principalLabel(p))
	if err != nil {
		return err
	}
	addAuditSummary(r, "restore", rs.ID.String())
	writeData(w, r, http.StatusAccepted, restoreView(rs, h.a.now()))
	return nil
}

// restoreData is a restore with its ETA.
type restoreData struct {
	backup.Restore
	ETASeconds *int64 `json:"eta_seconds"`
}

func restoreView(r backup.Restore, now time.Time) restoreData {
	out := restoreData{Restore: r}
	if r.FinishedAt == nil && r.BytesDone > 0 && r.BytesTotal > r.BytesDone {
		elapsed := now.Sub(r.StartedAt).Seconds()
		if elapsed > 0 {
			eta := int64(float64(r.BytesTotal-r.BytesDone) / (float64(r.BytesDone) / elapsed))
			out.ETASeconds = &eta
		}
	}
	return out
}

func (h *backupsResource) restoreStatus(w http.ResponseWriter, r *http.Request) error {
	svc, err := h.svc(r)
	if err != nil {
		return err
	}
	// The restore first: it is marked done after maintenance ends, so a
	// done restore is never shown beside an active maintenance mode.
	out := map[string]any{"restore": nil}
	rs, err := svc.LastRestore(r.Context())
	switch {
	case backup.CodeOf(err, "") == backup.CodeNotFound:
	case err != nil:
		return err
	default:
		out["restore"] = restoreView(rs, h.a.now())
	}
	out["maintenance"] = svc.Maintenance()
	writeData(w, r, http.StatusOK, out)
	return nil
}

// scheduleData is the schedule with the backup job's next run.
type scheduleData struct {
	backup.Schedule
	NextRunAt *time.Time `json:"next_run_at"`
}

func (h *backupsResource) scheduleView(ctx context.Context, sc backup.Schedule) scheduleData {
	out := scheduleData{Schedule: sc}
	if h.a.jobs != nil {
		if st, err := h.a.jobs.Get(ctx, jobs.JobBackup); err == nil {
			out.NextRunAt = st.NextRunAt
		}
	} else if sc.Enabled {
		if next, err := jobs.Next(sc.Cron, h.a.now()); err == nil {
			out.NextRunAt = &next
		}
	}
	return out
}

func (h *backupsResource) getSchedule(w http.ResponseWriter, r *http.Request) error {
	svc, err := h.svc(r)
	if err != nil {
		return err
	}
	sc, err := svc.Schedule(r.Context())
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, h.scheduleView(r.Context(), sc))
	return nil
}

// scheduleInput is the body of PUT /backups/schedule; a field left out
// keeps its value.
type scheduleInput struct {
	Enabled     *bool   `json:"enabled"`
	Cron        *string `json:"cron"`
	Kind        *string `json:"kind"`
	MetricsDays *int    `json:"metrics_days"`
	KeepLast    *int    `json:"keep_last"`
	KeepDays    *int    `json:"keep_days"`
}

func (b *scheduleInput) validate(v *fieldErrors) {
	if b.Enabled == nil && b.Cron == nil && b.Kind == nil && b.MetricsDays == nil && b.KeepLast == nil && b.KeepDays == nil {
		v.add("enabled", FieldRequired, nil)
	}
	if b.Cron != nil {
		v.maxLen("cron", *b.Cron, 200)
	}
}

func (b *scheduleInput) apply(sc *backup.Schedule) {
	set := func(dst *int, src *int) {
		if src != nil {
			*dst = *src
		}
	}
	if b.Enabled != nil {
		sc.Enabled = *b.Enabled
	}
	if b.Cron != nil {
		sc.Cron = *b.Cron
	}
	if b.Kind != nil {
		sc.Kind = *b.Kind
	}
	set(&sc.MetricsDays, b.MetricsDays)
	set(&sc.KeepLast, b.KeepLast)
	set(&sc.KeepDays, b.KeepDays)
}

func (h *backupsResource) putSchedule(w http.ResponseWriter, r *http.Request) error {
	svc, err := h.svc(r)
	if err != nil {
		return err
	}
	var body scheduleInput
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	ctx := r.Context()
	sc, err := svc.Schedule(ctx)
	if err != nil {
		return err
	}
	body.apply(&sc)
	if bad := sc.Validate(); len(bad) > 0 {
		var v fieldErrors
		for _, f := range []string{"cron", "kind", "metrics_days", "keep_last", "keep_days"} {
			if why, ok := bad[f]; ok {
				v.add(f, FieldInvalidValue, map[string]any{"allowed": why})
			}
		}
		return v.err()
	}
	p, _ := auth.PrincipalFrom(ctx)
	prev, err := svc.SetSchedule(ctx, sc, principalLabel(p))
	if err != nil {
		return err
	}
	addAuditSummary(r, "changes", diffFields(prev, sc, "updated_at", "updated_by"))
	if h.a.jobs != nil {
		if err := h.a.jobs.Reschedule(ctx, jobs.JobBackup); err != nil && !errors.Is(err, jobs.ErrNotFound) {
			return err
		}
	}
	if _, err := svc.ApplyRetention(ctx); err != nil {
		h.a.log.Warn("backup retention after a schedule change failed", "err", err)
	}
	now, err := svc.Schedule(ctx)
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, h.scheduleView(ctx, now))
	return nil
}

// maintenanceGate answers 503 MAINTENANCE while a restore runs (as this
// replica last saw the maintenance row; it polls it every second), before
// anything touches the database, for every route but the restore's status.
func (a *API) maintenanceGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.backups != nil {
			if m := a.backups.Maintenance(); m.Active {
				e := &Error{Status: http.StatusServiceUnavailable, Code: CodeMaintenance}
				e.Data = map[string]any{"restore_id": m.RestoreID, "since": m.StartedAt, "status": "/api/v1/backups/restore",
					"retry_after_seconds": 30}
				writeError(w, r, a.log, e)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
