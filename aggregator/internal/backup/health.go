package backup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Health is the backups' part of /system/health.
type Health struct {
	// Problems say what is wrong, each with its code: the newest backup or
	// restore failed (until a later one succeeds), pg_dump or pg_restore
	// is missing, a restore is running.
	Problems    []Problem   `json:"problems"`
	Maintenance Maintenance `json:"maintenance"`
	// LastSuccess is when the newest finished backup finished.
	LastSuccess *time.Time `json:"last_success_at"`
	LastBackup  *Backup    `json:"last_backup"`
	LastRestore *Restore   `json:"last_restore"`
}

// Problem is one reason the backups are not healthy.
type Problem struct {
	Code    string     `json:"code"`
	Message string     `json:"message"`
	At      *time.Time `json:"at,omitempty"`
}

// Health reads the state of the backups.
func (s *Service) Health(ctx context.Context) (Health, error) {
	h := Health{Problems: []Problem{}, Maintenance: s.Maintenance()}
	if h.Maintenance.Active {
		h.Problems = append(h.Problems, Problem{Code: CodeMaintenance, Message: "a restore is running: ingest is paused and the API answers 503",
			At: h.Maintenance.StartedAt})
	}
	for _, tool := range []string{"pg_dump", "pg_restore"} {
		if _, err := FindTool(s.opts.BinDir, tool); err != nil {
			h.Problems = append(h.Problems, Problem{Code: CodeToolMissing, Message: err.Error()})
		}
	}
	b, err := scanBackup(s.pool.QueryRow(ctx, `SELECT `+backupCols+` FROM backups WHERE status <> 'running' ORDER BY started_at DESC, id LIMIT 1`))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return h, fmt.Errorf("backup: health: %w", err)
	default:
		h.LastBackup = &b
		if b.Status == StatusFailed {
			h.Problems = append(h.Problems, Problem{Code: b.ErrorCode, Message: "the last backup failed: " + b.Error, At: b.FinishedAt})
		}
	}
	if err := s.pool.QueryRow(ctx, `SELECT max(finished_at) FROM backups WHERE status = 'done'`).Scan(&h.LastSuccess); err != nil {
		return h, fmt.Errorf("backup: health: %w", err)
	}
	if h.LastSuccess != nil {
		*h.LastSuccess = h.LastSuccess.UTC()
	}
	r, err := s.LastRestore(ctx)
	switch {
	case CodeOf(err, "") == CodeNotFound:
	case err != nil:
		return h, err
	default:
		h.LastRestore = &r
		if r.Phase == PhaseFailed {
			h.Problems = append(h.Problems, Problem{Code: r.ErrorCode, Message: "the last restore failed: " + r.Error, At: r.FinishedAt})
		}
	}
	return h, nil
}
