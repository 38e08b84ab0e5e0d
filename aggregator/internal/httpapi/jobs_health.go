package httpapi

import (
	"context"
	"fmt"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/backup"
)

// JobsHealth is the jobs' part of /system/health: degraded while any job's
// last run failed (it is being retried).
type JobsHealth struct {
	Status  string   `json:"status"`
	Reasons []string `json:"reasons"`
	// Failing and Running name jobs.
	Failing []string `json:"failing"`
	Running []string `json:"running"`
}

// BackupsHealth is the backups' part of /system/health: degraded while the
// newest backup or restore failed, pg_dump or pg_restore is missing, or a
// restore is running.
type BackupsHealth struct {
	Status string `json:"status"`
	backup.Health
}

// opsHealth fills the jobs and backups components (when wired).
func (a *API) opsHealth(ctx context.Context, c *HealthComponents) {
	if a.jobs != nil {
		h := &JobsHealth{Status: HealthOK, Reasons: []string{}, Failing: []string{}, Running: []string{}}
		jctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		list, err := a.jobs.List(jctx)
		cancel()
		if err != nil {
			a.log.Warn("health: jobs failed", "err", err)
			h.Status = HealthDegraded
			h.Reasons = append(h.Reasons, "the jobs could not be read")
		}
		for _, j := range list {
			if j.State == "running" {
				h.Running = append(h.Running, j.Name)
			}
			if j.ConsecutiveFailures > 0 {
				h.Status = HealthDegraded
				h.Failing = append(h.Failing, j.Name)
				h.Reasons = append(h.Reasons, fmt.Sprintf("job %s failed %s in a row: %.200s", j.Name, plural(j.ConsecutiveFailures, "time"), j.LastError))
			}
		}
		c.Jobs = h
	}
	if a.backups != nil {
		h := &BackupsHealth{Status: HealthOK}
		bctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		bh, err := a.backups.Health(bctx)
		cancel()
		h.Health = bh
		if h.Problems == nil {
			h.Problems = []backup.Problem{}
		}
		if err != nil {
			a.log.Warn("health: backups failed", "err", err)
			h.Problems = append(h.Problems, backup.Problem{Code: CodeUnavailable, Message: "the backups could not be read"})
		}
		if len(h.Problems) > 0 {
			h.Status = HealthDegraded
		}
		c.Backups = h
	}
}

// opsOK reports whether the jobs and backups components (if any) are ok.
func (c *HealthComponents) opsOK() bool {
	return (c.Jobs == nil || c.Jobs.Status == HealthOK) && (c.Backups == nil || c.Backups.Status == HealthOK)
}

func opsHealthSchemas() map[string]any {
	status := map[string]any{"type": "string", "enum": []string{HealthOK, HealthDegraded}}
	return map[string]any{
		"JobsHealth": objectSchema(map[string]any{"status": status, "reasons": strList,
			"failing": desc(strList, "jobs whose last run failed (retrying)"), "running": strList}),
		"BackupsHealth": objectSchema(map[string]any{"status": status,
			"problems": arrayOf(objectSchema(map[string]any{"code": desc(str, "MAINTENANCE, BACKUP_TOOL_MISSING, or the failed backup's or restore's code "+
				"(BACKUP_DISK_FULL, BACKUP_CHECKSUM_MISMATCH, BACKUP_SCHEMA_NEWER…)"), "message": str, "at": nullable(dateTime, "")})),
			"maintenance": ref("Maintenance"), "last_success_at": nullable(dateTime, "the newest successful backup"),
			"last_backup": nullable(ref("Backup"), ""), "last_restore": nullable(ref("Restore"), "")}),
	}
}
