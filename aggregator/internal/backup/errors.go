package backup

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Error codes of the backup service. The REST API uses them as its machine
// codes; the backups and restores tables record them with the error text.
const (
	// CodeNotFound: no such backup.
	CodeNotFound = "BACKUP_NOT_FOUND"
	// CodeBusy: another backup or restore is running (on any replica).
	CodeBusy = "BACKUP_BUSY"
	// CodeNotReady: the backup is running or failed; it has no file.
	CodeNotReady = "BACKUP_NOT_READY"
	// CodeInvalid: a bad request (kind, time range).
	CodeInvalid = "BACKUP_INVALID"
	// CodeToolMissing: pg_dump or pg_restore cannot be found or run.
	CodeToolMissing = "BACKUP_TOOL_MISSING"
	// CodeDiskFull: no space left for the dump file, or in the database
	// during a restore.
	CodeDiskFull = "BACKUP_DISK_FULL"
	// CodeChecksum: the dump file is not the one written (its SHA-256 or
	// size differ): corrupted or truncated. Nothing was touched.
	CodeChecksum = "BACKUP_CHECKSUM_MISMATCH"
	// CodeFileMissing: the dump file is gone from the backup directory.
	CodeFileMissing = "BACKUP_FILE_MISSING"
	// CodeSchemaNewer: the dump comes from a newer aggregator (a higher
	// schema version) than this one.
	CodeSchemaNewer = "BACKUP_SCHEMA_NEWER"
	// CodePauseTimeout: not every replica stopped ingest in time.
	CodePauseTimeout = "RESTORE_PAUSE_TIMEOUT"
	// CodeFailed: the dump failed for another reason (see the error).
	CodeFailed = "BACKUP_FAILED"
	// CodeRestoreFailed: the restore failed and was rolled back.
	CodeRestoreFailed = "RESTORE_FAILED"
	// CodeMaintenance: a restore is running; the API is in maintenance
	// mode.
	CodeMaintenance = "MAINTENANCE"
)

// Error is an error of the backup service with its code.
type Error struct {
	Code string
	Err  error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return "backup: " + e.Code
	}
	return "backup: " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func newErr(code string, format string, args ...any) *Error {
	return &Error{Code: code, Err: fmt.Errorf(format, args...)}
}

// CodeOf returns err's code: its own if it is an *Error, CodeDiskFull for
// ENOSPC or PostgreSQL's disk_full, else fallback.
func CodeOf(err error, fallback string) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if isDiskFull(err) {
		return CodeDiskFull
	}
	return fallback
}

func isDiskFull(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "53100" // disk_full
}
