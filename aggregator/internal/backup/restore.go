package backup

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
)

// Phases of a restore.
const (
	PhaseVerifying = "verifying"
	PhasePausing   = "pausing"
	PhaseRestoring = "restoring"
	PhaseDone      = "done"
	PhaseFailed    = "failed"
)

// Restore is a restore's state.
type Restore struct {
	ID         uuid.UUID  `json:"id"`
	BackupID   uuid.UUID  `json:"backup_id"`
	Phase      string     `json:"phase"`
	BytesTotal int64      `json:"bytes_total"`
	BytesDone  int64      `json:"bytes_done"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	// PausedMS is how long ingest was paused (maintenance mode).
	PausedMS  *int64 `json:"paused_ms"`
	ErrorCode string `json:"error_code"`
	Error     string `json:"error"`
	CreatedBy string `json:"created_by"`
	Replica   string `json:"replica"`
}

const restoreCols = `id, backup_id, phase, bytes_total, bytes_done, started_at, finished_at, paused_ms, error_code, error, created_by, replica`

func scanRestore(row pgx.Row) (Restore, error) {
	var r Restore
	err := row.Scan(&r.ID, &r.BackupID, &r.Phase, &r.BytesTotal, &r.BytesDone, &r.StartedAt, &r.FinishedAt, &r.PausedMS,
		&r.ErrorCode, &r.Error, &r.CreatedBy, &r.Replica)
	r.StartedAt = r.StartedAt.UTC()
	if r.FinishedAt != nil {
		*r.FinishedAt = r.FinishedAt.UTC()
	}
	return r, err
}

// LastRestore returns the newest restore (CodeNotFound when none ran).
func (s *Service) LastRestore(ctx context.Context) (Restore, error) {
	r, err := scanRestore(s.pool.QueryRow(ctx, `SELECT `+restoreCols+` FROM backup_restores ORDER BY started_at DESC, id LIMIT 1`))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, newErr(CodeNotFound, "no restore has run")
	}
	if err != nil {
		return r, fmt.Errorf("backup: last restore: %w", err)
	}
	return r, nil
}

// GetRestore returns one restore.
func (s *Service) GetRestore(ctx context.Context, id uuid.UUID) (Restore, error) {
	r, err := scanRestore(s.pool.QueryRow(ctx, `SELECT `+restoreCols+` FROM backup_restores WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, newErr(CodeNotFound, "no restore %s", id)
	}
	if err != nil {
		return r, fmt.Errorf("backup: restore %s: %w", id, err)
	}
	return r, nil
}

// preflight checks what can be checked at once: the backup is finished,
// pg_restore is there, the file is there and has the recorded size.
func (s *Service) preflight(ctx context.Context, id uuid.UUID) (Backup, string, error) {
	b, err := s.Get(ctx, id)
	if err != nil {
		return b, "", err
	}
	if b.Status != StatusDone {
		return b, "", newErr(CodeNotReady, "backup %s is %s", id, b.Status)
	}
	tool, err := FindTool(s.opts.BinDir, "pg_restore")
	if err != nil {
		return b, "", err
	}
	fi, err := os.Stat(s.Path(b))
	if errors.Is(err, fs.ErrNotExist) {
		return b, "", newErr(CodeFileMissing, "%s is gone from %s", b.File, s.opts.Dir)
	}
	if err != nil {
		return b, "", fmt.Errorf("backup: %w", err)
	}
	if fi.Size() != b.SizeBytes {
		return b, "", newErr(CodeChecksum, "%s is %d bytes, the backup wrote %d (truncated or replaced)", b.File, fi.Size(), b.SizeBytes)
	}
	return b, tool, nil
}

// StartRestore checks the backup (CheckRestore's checks but the hash),
// takes the backup lock and runs the restore in the background; its
// progress and outcome are in LastRestore. Failures found at once are
// returned and recorded as a failed restore too.
func (s *Service) StartRestore(ctx context.Context, id uuid.UUID, by string) (Restore, error) {
	r, lock, b, tool, err := s.beginRestore(ctx, id, by)
	if err != nil {
		return r, err
	}
	s.background(ctx, func(ctx context.Context) {
		defer lock.release()
		if _, err := s.restore(ctx, r, b, tool, lock); err != nil {
			s.log.Warn("restore failed", "restore", r.ID, "backup", b.ID, "err", err)
		}
	})
	return r, nil
}

// RestoreNow restores a backup and returns when done (tools, tests).
func (s *Service) RestoreNow(ctx context.Context, id uuid.UUID, by string) (Restore, error) {
	r, lock, b, tool, err := s.beginRestore(ctx, id, by)
	if err != nil {
		return r, err
	}
	defer lock.release()
	return s.restore(ctx, r, b, tool, lock)
}

func (s *Service) beginRestore(ctx context.Context, id uuid.UUID, by string) (Restore, *opLock, Backup, string, error) {
	b, tool, err := s.preflight(ctx, id)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Code != CodeNotFound && e.Code != CodeNotReady {
			// Refused for the file or the tools: visible as a failed
			// restore (and in /system/health), not only in the answer.
			r := Restore{ID: uuid.New(), BackupID: id, Phase: PhaseFailed, CreatedBy: by, Replica: s.opts.Replica}
			if _, ierr := s.pool.Exec(ctx, `INSERT INTO backup_restores (id, backup_id, phase, finished_at, error_code, error, created_by, replica)
				VALUES ($1, $2, 'failed', now(), $3, $4, $5, $6)`, r.ID, id, e.Code, truncate(err.Error(), 2000), by, s.opts.Replica); ierr != nil {
				s.log.Warn("backup: cannot record a refused restore", "err", ierr)
			}
			s.auditEvent(ctx, "backup.restore", id.String(), by, err, map[string]any{"restore": r.ID})
		}
		return Restore{}, nil, b, "", err
	}
	lock, err := s.tryOpLock(ctx)
	if err != nil {
		return Restore{}, nil, b, "", err
	}
	r, err := scanRestore(s.pool.QueryRow(ctx, `INSERT INTO backup_restores (id, backup_id, phase, bytes_total, created_by, replica)
		VALUES ($1, $2, 'verifying', $3, $4, $5) RETURNING `+restoreCols, uuid.New(), id, b.SizeBytes, by, s.opts.Replica))
	if err != nil {
		lock.release()
		return r, nil, b, "", fmt.Errorf("backup: record restore: %w", err)
	}
	return r, lock, b, tool, nil
}

// restore runs a restore whose record and lock exist: verify, read the
// manifest, pause every replica, load, resume.
func (s *Service) restore(ctx context.Context, r Restore, b Backup, tool string, lock *opLock) (Restore, error) {
	log := s.log.With("restore", r.ID, "backup", b.ID)
	log.Info("restore started", "by", r.CreatedBy, "bytes", b.SizeBytes)
	phase := func(p string) {
		if _, err := s.pool.Exec(ctx, `UPDATE backup_restores SET phase = $2, bytes_done = 0 WHERE id = $1`, r.ID, p); err != nil {
			log.Debug("restore phase not recorded", "err", err)
		}
	}
	progress := func(n int64) {
		if _, err := s.pool.Exec(ctx, `UPDATE backup_restores SET bytes_done = $2 WHERE id = $1`, r.ID, n); err != nil {
			log.Debug("restore progress not recorded", "err", err)
		}
	}
	var pausedAt time.Time
	var reappend []audit.Record
	err := func() error {
		// 1. The file must be the one written, before anything is touched.
		n, sum, err := hashFile(ctx, s.Path(b), progress)
		if err != nil {
			return fmt.Errorf("read %s: %w", b.File, err)
		}
		if n != b.SizeBytes || sum != b.SHA256 {
			return newErr(CodeChecksum, "%s: SHA-256 %s (%d bytes), the backup wrote %s (%d bytes)", b.File, sum, n, b.SHA256, b.SizeBytes)
		}
		// 2. What it holds, and from which schema.
		man, err := readManifest(ctx, tool, s.Path(b))
		if err != nil {
			return err
		}
		if ours := SchemaVersion(); man.SchemaVersion > ours {
			return newErr(CodeSchemaNewer, "the dump is from schema version %d; this aggregator knows up to %d: upgrade it first", man.SchemaVersion, ours)
		}
		if man.BackupID != b.ID.String() {
			return newErr(CodeChecksum, "the dump's manifest names backup %s, not %s", man.BackupID, b.ID)
		}
		// 3. Load it into staging tables in the restore's transaction
		// while ingest goes on, checking its SHA-256 again.
		pl, err := s.stageRestore(ctx, tool, b, man, progress)
		if err != nil {
			return err
		}
		defer pl.close(ctx)
		// 4. Maintenance: every replica stops committing.
		phase(PhasePausing)
		pausedAt = time.Now()
		if err := s.enterMaintenance(ctx, r, lock); err != nil {
			return err
		}
		log.Info("restore: every replica paused ingest", "waited", time.Since(pausedAt))
		defer s.leaveMaintenance(context.WithoutCancel(ctx), lock, log)
		// 5. Swap the staged data in and commit.
		phase(PhaseRestoring)
		if s.loadHook != nil {
			s.loadHook()
		}
		recs, lerr := s.commitRestore(ctx, pl)
		reappend = recs
		return lerr
	}()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var paused *int64
	if !pausedAt.IsZero() {
		ms := time.Since(pausedAt).Milliseconds()
		paused = &ms
	}
	code, msg, result := "", "", PhaseDone
	if err != nil {
		code, msg, result = CodeOf(err, CodeRestoreFailed), truncate(err.Error(), 2000), PhaseFailed
	}
	out, uerr := scanRestore(s.pool.QueryRow(wctx, `UPDATE backup_restores SET phase = $2, finished_at = now(), paused_ms = $3, error_code = $4, error = $5,
		bytes_done = CASE WHEN $2 = 'done' THEN bytes_total ELSE bytes_done END
		WHERE id = $1 RETURNING `+restoreCols, r.ID, result, paused, code, msg))
	if uerr != nil {
		log.Error("backup: cannot record the restore's outcome", "err", uerr)
		out = r
	}
	// The operation log is never rewound (ModeChain): the records the dump
	// lacked go back on, after the dump's, before the restore's own.
	for _, rec := range reappend {
		if s.opts.Audit == nil {
			log.Error("restore: no audit writer to append the operation log's newer records to", "records", len(reappend))
			break
		}
		s.opts.Audit(wctx, rec)
	}
	s.auditEvent(wctx, "backup.restore", b.ID.String(), r.CreatedBy, err, map[string]any{"restore": r.ID, "paused_ms": paused,
		"audit_records_reappended": len(reappend)})
	if err != nil {
		log.Warn("restore failed; nothing was changed", "code", code, "err", err)
		if code == CodeRestoreFailed {
			return out, &Error{Code: code, Err: err}
		}
		return out, err
	}
	log.Info("restore done", "paused", time.Duration(*paused)*time.Millisecond)
	return out, nil
}

// enterMaintenance sets the maintenance row, pauses this replica and waits
// until every replica has paused (the ingest lock, exclusively, on the
// backup lock's connection).
func (s *Service) enterMaintenance(ctx context.Context, r Restore, lock *opLock) error {
	s.restoring.Store(true)
	if _, err := s.pool.Exec(ctx, `UPDATE maintenance SET active = true, reason = 'restore', restore_id = $1, started_at = now(),
		generation = generation + 1`, r.ID); err != nil {
		s.restoring.Store(false)
		return fmt.Errorf("enter maintenance: %w", err)
	}
	if err := s.CheckMaintenance(ctx); err != nil {
		s.log.Warn("maintenance check failed", "err", err)
	}
	deadline := time.Now().Add(s.opts.PauseTimeout)
	for {
		var ok bool
		if err := lock.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, ingestLockKey).Scan(&ok); err != nil {
			s.leaveMaintenance(context.WithoutCancel(ctx), nil, s.log)
			return fmt.Errorf("wait for ingest to pause: %w", err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			s.leaveMaintenance(context.WithoutCancel(ctx), nil, s.log)
			return newErr(CodePauseTimeout, "not every replica paused ingest within %s", s.opts.PauseTimeout)
		}
		select {
		case <-ctx.Done():
			s.leaveMaintenance(context.WithoutCancel(ctx), nil, s.log)
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// leaveMaintenance clears the row, lets the ingest lock go (lock nil: not
// taken) and resumes this replica; the others resume at their next poll.
func (s *Service) leaveMaintenance(ctx context.Context, lock *opLock, log interface{ Warn(string, ...any) }) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `UPDATE maintenance SET active = false`); err != nil {
		log.Warn("leave maintenance: the row stays active until a replica finds the restore gone", "err", err)
	}
	if lock != nil {
		if _, err := lock.conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtext($1))`, ingestLockKey); err != nil {
			log.Warn("leave maintenance: unlock", "err", err)
		}
	}
	s.restoring.Store(false)
	if err := s.CheckMaintenance(ctx); err != nil {
		log.Warn("maintenance check failed", "err", err)
	}
}

var tocDataRE = regexp.MustCompile(`(?m)^\d+; \d+ \d+ TABLE DATA (\S+) manifest `)

// readManifest reads the manifest table of a dump with pg_restore.
func readManifest(ctx context.Context, tool, path string) (Manifest, error) {
	var man Manifest
	list, err := runTool(ctx, tool, "--list", path)
	if err != nil {
		return man, newErr(CodeChecksum, "pg_restore cannot read the archive: %v", err)
	}
	m := tocDataRE.FindSubmatch(list)
	if m == nil {
		return man, newErr(CodeChecksum, "the archive has no vmpulse manifest (not a vmpulse backup)")
	}
	out, err := runTool(ctx, tool, "--data-only", "--file=-", "--schema="+string(m[1]), "--table=manifest", path)
	if err != nil {
		return man, newErr(CodeChecksum, "pg_restore cannot read the manifest: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	inCopy := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "COPY "):
			inCopy = true
		case inCopy && line != `\.`:
			if err := json.Unmarshal([]byte(unescapeCopy(line)), &man); err != nil {
				return man, newErr(CodeChecksum, "the manifest does not parse: %v", err)
			}
			if man.Format != ManifestFormat {
				return man, newErr(CodeSchemaNewer, "manifest format %d; this aggregator reads %d", man.Format, ManifestFormat)
			}
			return man, nil
		}
	}
	return man, newErr(CodeChecksum, "the archive's manifest is empty")
}

// unescapeCopy decodes a one-column line of COPY's text format.
func unescapeCopy(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// runTool runs a PostgreSQL program and returns its output.
func runTool(ctx context.Context, tool string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, tool, args...)
	stderr := &limitedBuffer{n: 4096}
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%v: %s", err, stderr.String())
	}
	return out, nil
}
