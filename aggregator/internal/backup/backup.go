// Package backup makes and restores backups of the aggregator's database
// with pg_dump and pg_restore, keeps their metadata in PostgreSQL, applies
// their retention and schedule, and runs restores in a maintenance mode
// that every replica observes.
//
// A backup is one pg_dump archive in custom format, data only (the schema
// belongs to the aggregator's migrations), written to Options.Dir as
// <id>.dump while its SHA-256 is computed. A configuration backup holds
// ConfigTables; a metrics backup adds the series, the raw samples of the
// range's days (whole daily partitions) and the rollup rows of the range,
// which are copied first into a staging schema (vmpulse_backup_<id>) with
// the dump's Manifest. One backup or restore runs at a time across the
// replicas (an advisory lock).
//
// A restore verifies the file against its recorded size and SHA-256 before
// anything else, reads the manifest from the dump (a dump from a newer
// schema is refused), then enters maintenance mode: every replica stops
// committing ingested batches (so agents get no acks and keep spooling)
// and its API answers 503, and the restore waits until every replica has
// stopped (each holds a shared advisory lock while its ingest runs; the
// restore takes it exclusively). The data is loaded in one transaction
// (see load.go), hashed again as pg_restore reads it, and committed only
// if the hash still matches; then maintenance ends and ingest resumes by
// itself, committing what the agents spooled meanwhile.
package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/jobs"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// Statuses of a backup.
const (
	StatusRunning = "running"
	StatusDone    = "done"
	StatusFailed  = "failed"
)

// MaxRangeDays bounds a metrics backup's range.
const MaxRangeDays = 400

// Pauser is this replica's ingest as a restore needs it (ingest.Server
// implements it).
type Pauser interface {
	// Pause stops committing batches (and so acknowledging them) and
	// returns once no commit is in flight, or when ctx ends.
	Pause(ctx context.Context) error
	// Resume commits again.
	Resume()
}

// Options configure a Service.
type Options struct {
	// Dir is the directory of the dump files (created 0700 if missing).
	Dir string
	// BinDir holds pg_dump and pg_restore; "" finds them (FindTool).
	BinDir string
	// Compression is pg_dump's -Z level (0-9); -1 leaves pg_dump's default.
	Compression int
	// Replica names this aggregator in the rows it writes.
	Replica string
	// Pauser is this replica's ingest; nil when it has none (tools, tests).
	Pauser Pauser
	// Audit records what happens outside a request (scheduled backups,
	// the outcome of a restore); nil drops them.
	Audit func(ctx context.Context, rec audit.Record)
	// PollInterval is how often the maintenance state is read; default 1s.
	PollInterval time.Duration
	// PauseTimeout bounds the wait for every replica to stop ingest;
	// default 60s.
	PauseTimeout time.Duration
	// BeforeLoad, when set, runs in maintenance mode right before a
	// restore loads its data (tests hold a restore there).
	BeforeLoad func()
	Logger     *slog.Logger
}

// Service is the backup service of one replica. Its methods are safe for
// concurrent use.
type Service struct {
	st   *store.Store
	pool *pgxpool.Pool
	opts Options
	log  *slog.Logger
	// createFile opens a dump file for writing (tests substitute a full
	// disk).
	createFile func(path string) (io.WriteCloser, error)
	// loadHook, when set, runs in maintenance mode right before the load
	// (tests hold a restore there).
	loadHook func()

	maint maintenance
	// restoring is set while this replica runs a restore's load, so that
	// its own watcher does not take the ingest lock back.
	restoring atomic.Bool
	wg        sync.WaitGroup
	closing   chan struct{} // closed by Close: background work stops
	closeOnce sync.Once
}

// New prepares the service; call Watch (every replica) for the
// maintenance mode.
func New(st *store.Store, opts Options) (*Service, error) {
	if opts.Dir == "" {
		return nil, errors.New("backup: no directory configured")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if opts.Compression < -1 || opts.Compression > 9 {
		return nil, fmt.Errorf("backup: compression %d not in -1..9", opts.Compression)
	}
	if opts.Replica == "" {
		host, _ := os.Hostname()
		opts.Replica = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.PauseTimeout <= 0 {
		opts.PauseTimeout = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{st: st, pool: st.Pool(), opts: opts, log: opts.Logger, closing: make(chan struct{}), loadHook: opts.BeforeLoad,
		createFile: func(path string) (io.WriteCloser, error) {
			return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		}}
	s.maint.init()
	return s, nil
}

// Close cancels the backups and restores this replica runs in the
// background and waits for them.
func (s *Service) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.wg.Wait()
}

// background runs f in its own goroutine with a context that outlives the
// request that started it (parent's values, not its deadline) and ends at
// Close.
func (s *Service) background(parent context.Context, f func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		go func() {
			select {
			case <-s.closing:
				cancel()
			case <-ctx.Done():
			}
		}()
		f(ctx)
	}()
}

// Dir is the backup directory.
func (s *Service) Dir() string { return s.opts.Dir }

// Backup is a backup's metadata.
type Backup struct {
	ID            uuid.UUID  `json:"id"`
	Kind          string     `json:"kind"`
	Status        string     `json:"status"`
	From          *time.Time `json:"from"`
	To            *time.Time `json:"to"`
	File          string     `json:"file"`
	SizeBytes     int64      `json:"size_bytes"`
	BytesDone     int64      `json:"bytes_done"`
	BytesEstimate int64      `json:"bytes_estimate"`
	SHA256        string     `json:"sha256"`
	SchemaVersion int        `json:"schema_version"`
	Tables        []string   `json:"tables"`
	StartedAt     time.Time  `json:"started_at"`
	FinishedAt    *time.Time `json:"finished_at"`
	DurationMS    *int64     `json:"duration_ms"`
	ErrorCode     string     `json:"error_code"`
	Error         string     `json:"error"`
	CreatedBy     string     `json:"created_by"`
	Trigger       string     `json:"trigger"`
	Replica       string     `json:"replica"`
	Note          string     `json:"note"`
}

const backupCols = `id, kind, status, range_from, range_to, file, size_bytes, bytes_done, bytes_estimate, sha256, schema_version, tables,
	started_at, finished_at, duration_ms, error_code, error, created_by, trigger, replica, note`

func scanBackup(row pgx.Row) (Backup, error) {
	var b Backup
	err := row.Scan(&b.ID, &b.Kind, &b.Status, &b.From, &b.To, &b.File, &b.SizeBytes, &b.BytesDone, &b.BytesEstimate, &b.SHA256,
		&b.SchemaVersion, &b.Tables, &b.StartedAt, &b.FinishedAt, &b.DurationMS, &b.ErrorCode, &b.Error, &b.CreatedBy, &b.Trigger,
		&b.Replica, &b.Note)
	b.StartedAt = b.StartedAt.UTC()
	for _, t := range []*time.Time{b.From, b.To, b.FinishedAt} {
		if t != nil {
			*t = t.UTC()
		}
	}
	return b, err
}

// List returns every backup, newest first.
func (s *Service) List(ctx context.Context) ([]Backup, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+backupCols+` FROM backups ORDER BY started_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("backup: list: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Backup, error) { return scanBackup(r) })
	if err != nil {
		return nil, fmt.Errorf("backup: list: %w", err)
	}
	return out, nil
}

// Get returns one backup.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (Backup, error) {
	b, err := scanBackup(s.pool.QueryRow(ctx, `SELECT `+backupCols+` FROM backups WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return b, &Error{Code: CodeNotFound, Err: fmt.Errorf("no backup %s", id)}
	}
	if err != nil {
		return b, fmt.Errorf("backup: get %s: %w", id, err)
	}
	return b, nil
}

// Path is the dump file of b.
func (s *Service) Path(b Backup) string { return filepath.Join(s.opts.Dir, b.File) }

// Open opens a finished backup's file for reading (a download).
func (s *Service) Open(ctx context.Context, id uuid.UUID) (*os.File, Backup, error) {
	b, err := s.Get(ctx, id)
	if err != nil {
		return nil, b, err
	}
	if b.Status != StatusDone {
		return nil, b, newErr(CodeNotReady, "backup %s is %s", id, b.Status)
	}
	f, err := os.Open(s.Path(b))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, b, newErr(CodeFileMissing, "%s is gone from %s", b.File, s.opts.Dir)
	}
	if err != nil {
		return nil, b, fmt.Errorf("backup: open %s: %w", b.File, err)
	}
	return f, b, nil
}

// Delete removes a backup's file and record. A running backup cannot be
// deleted.
func (s *Service) Delete(ctx context.Context, id uuid.UUID) error {
	b, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	if b.Status == StatusRunning {
		return newErr(CodeBusy, "backup %s is running", id)
	}
	return s.remove(ctx, b)
}

func (s *Service) remove(ctx context.Context, b Backup) error {
	if err := os.Remove(s.Path(b)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("backup: delete %s: %w", b.File, err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM backups WHERE id = $1`, b.ID); err != nil {
		return fmt.Errorf("backup: delete %s: %w", b.ID, err)
	}
	return nil
}

// Request asks for a backup.
type Request struct {
	Kind string
	// From and To bound a metrics backup (rounded out to whole UTC days).
	From, To time.Time
	Note     string
	// By names who asked ("alice", "schedule"); Trigger is "api" or
	// "schedule".
	By, Trigger string
	// Progress, when set, is told the bytes written (and the estimate).
	Progress func(ctx context.Context, done, total int64)
}

// validate checks the request and rounds its range out to whole days.
func (r *Request) validate() error {
	switch r.Kind {
	case KindConfig:
		r.From, r.To = time.Time{}, time.Time{}
	case KindMetrics:
		if r.From.IsZero() || r.To.IsZero() || !r.To.After(r.From) {
			return newErr(CodeInvalid, "a metrics backup needs from < to")
		}
		r.From = r.From.UTC().Truncate(24 * time.Hour)
		if t := r.To.UTC().Truncate(24 * time.Hour); t.Before(r.To) {
			r.To = t.Add(24 * time.Hour)
		} else {
			r.To = t
		}
		if r.To.Sub(r.From) > MaxRangeDays*24*time.Hour {
			return newErr(CodeInvalid, "a metrics backup covers at most %d days", MaxRangeDays)
		}
	default:
		return newErr(CodeInvalid, "kind %q is not config or metrics", r.Kind)
	}
	if r.Trigger == "" {
		r.Trigger = "api"
	}
	return nil
}

// opLock is the advisory lock of a running backup or restore, held on its
// own connection for the whole operation.
type opLock struct{ conn *pgx.Conn }

// tryOpLock takes the backup lock, or fails with CodeBusy.
func (s *Service) tryOpLock(ctx context.Context) (*opLock, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("backup: connect: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, opLockKey).Scan(&ok); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("backup: lock: %w", err)
	}
	if !ok {
		conn.Close(ctx)
		return nil, newErr(CodeBusy, "another backup or restore is running")
	}
	return &opLock{conn: conn}, nil
}

func (l *opLock) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.conn.Close(ctx) // ends the session, and with it the lock
}

const (
	opLockKey     = "vmpulse.backup"
	ingestLockKey = "vmpulse.ingest.maintenance"
)

// Start begins a backup in the background and returns its record
// (status running). It fails at once when another backup or restore runs.
func (s *Service) Start(ctx context.Context, req Request) (Backup, error) {
	if err := req.validate(); err != nil {
		return Backup{}, err
	}
	if _, err := FindTool(s.opts.BinDir, "pg_dump"); err != nil {
		return Backup{}, err
	}
	lock, err := s.tryOpLock(ctx)
	if err != nil {
		return Backup{}, err
	}
	b, err := s.insert(ctx, req)
	if err != nil {
		lock.release()
		return b, err
	}
	s.background(ctx, func(ctx context.Context) {
		defer lock.release()
		if _, err := s.dump(ctx, b, req); err != nil {
			s.log.Warn("backup failed", "backup", b.ID, "err", err)
		}
	})
	return b, nil
}

// Create makes a backup and returns when it is done (the scheduled job,
// tools and tests). A failed backup's record says why; so does the error.
func (s *Service) Create(ctx context.Context, req Request) (Backup, error) {
	if err := req.validate(); err != nil {
		return Backup{}, err
	}
	if _, err := FindTool(s.opts.BinDir, "pg_dump"); err != nil {
		s.auditEvent(ctx, "backup.create", "", req.By, err, map[string]any{"kind": req.Kind, "trigger": req.Trigger})
		return Backup{}, err
	}
	lock, err := s.tryOpLock(ctx)
	if err != nil {
		return Backup{}, err
	}
	defer lock.release()
	b, err := s.insert(ctx, req)
	if err != nil {
		return b, err
	}
	return s.dump(ctx, b, req)
}

func (s *Service) insert(ctx context.Context, req Request) (Backup, error) {
	id := uuid.New()
	var from, to *time.Time
	if req.Kind == KindMetrics {
		from, to = &req.From, &req.To
	}
	b, err := scanBackup(s.pool.QueryRow(ctx, `INSERT INTO backups (id, kind, status, range_from, range_to, file, created_by, trigger, replica, note)
		VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8, $9) RETURNING `+backupCols,
		id, req.Kind, from, to, id.String()+".dump", req.By, req.Trigger, s.opts.Replica, req.Note))
	if err != nil {
		return b, fmt.Errorf("backup: record: %w", err)
	}
	return b, nil
}

// SchemaVersion is the highest migration this binary knows.
func SchemaVersion() int {
	ents, _ := fs.ReadDir(store.MigrationSource(), ".")
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".sql") {
			n++
		}
	}
	return n
}

// dump writes the backup's file and completes its record.
func (s *Service) dump(ctx context.Context, b Backup, req Request) (Backup, error) {
	start := time.Now()
	log := s.log.With("backup", b.ID, "kind", b.Kind)
	log.Info("backup started", "by", req.By, "trigger", req.Trigger)
	final := s.Path(b)
	tmp := filepath.Join(s.opts.Dir, "."+b.File+".tmp")
	res, err := s.writeDump(ctx, b, req, tmp)
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		code := CodeOf(err, CodeFailed)
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, uerr := s.pool.Exec(wctx, `UPDATE backups SET status = 'failed', finished_at = now(), duration_ms = $2, error_code = $3, error = $4
			WHERE id = $1`, b.ID, time.Since(start).Milliseconds(), code, truncate(err.Error(), 2000)); uerr != nil {
			log.Error("backup: cannot record the failure", "err", uerr)
		}
		s.auditEvent(wctx, "backup.create", b.ID.String(), req.By, err, map[string]any{"kind": b.Kind, "trigger": req.Trigger, "code": code})
		if code != CodeFailed {
			return b, err
		}
		return b, &Error{Code: code, Err: err}
	}
	b, err = scanBackup(s.pool.QueryRow(ctx, `UPDATE backups SET status = 'done', finished_at = now(), duration_ms = $2, size_bytes = $3, bytes_done = $3,
		sha256 = $4, schema_version = $5, tables = $6 WHERE id = $1 RETURNING `+backupCols,
		b.ID, time.Since(start).Milliseconds(), res.size, res.sha, res.schema, res.tables))
	if err != nil {
		return b, fmt.Errorf("backup: record: %w", err)
	}
	log.Info("backup done", "bytes", b.SizeBytes, "took", time.Since(start).Round(time.Millisecond))
	s.auditEvent(ctx, "backup.create", b.ID.String(), req.By, nil, map[string]any{"kind": b.Kind, "trigger": req.Trigger,
		"size_bytes": b.SizeBytes, "sha256": b.SHA256})
	if removed, err := s.ApplyRetention(ctx); err != nil {
		log.Warn("backup retention failed", "err", err)
	} else if len(removed) > 0 {
		log.Info("backup retention removed backups", "removed", removed)
	}
	return b, nil
}

type dumpResult struct {
	size   int64
	sha    string
	schema int
	tables []string
}

// writeDump stages what needs staging, runs pg_dump into tmp and returns
// the file's size and hash.
func (s *Service) writeDump(ctx context.Context, b Backup, req Request, tmp string) (dumpResult, error) {
	var res dumpResult
	pgDump, err := FindTool(s.opts.BinDir, "pg_dump")
	if err != nil {
		return res, err
	}
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&res.schema); err != nil {
		return res, fmt.Errorf("schema version: %w", err)
	}
	stage := "vmpulse_backup_" + strings.ReplaceAll(b.ID.String(), "-", "")[:12]
	man := Manifest{Format: ManifestFormat, BackupID: b.ID.String(), Kind: b.Kind, CreatedAt: b.StartedAt, SchemaVersion: res.schema,
		Timescale: s.st.Timescale(), From: b.From, To: b.To}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, err := s.pool.Exec(cctx, `DROP SCHEMA IF EXISTS `+stage+` CASCADE`); err != nil {
			s.log.Warn("backup: drop staging schema", "schema", stage, "err", err)
		}
	}()
	if man.Tables, err = s.stage(ctx, stage, &man); err != nil {
		return res, err
	}
	args := []string{"--format=custom", "--data-only", "--no-owner", "--no-privileges"}
	if level := s.compression(ctx); level >= 0 {
		args = append(args, fmt.Sprintf("--compress=%d", level))
	}
	for _, t := range man.Tables {
		args = append(args, "--table="+t.Name)
		res.tables = append(res.tables, t.Name)
	}
	args = append(args, "--table="+stage+".manifest")
	var estimate int64
	for _, t := range man.Tables {
		var n int64
		if err := s.pool.QueryRow(ctx, `SELECT coalesce(pg_total_relation_size(to_regclass($1)), 0)`, t.Name).Scan(&n); err == nil {
			estimate += n
		}
	}
	if _, err := s.pool.Exec(ctx, `UPDATE backups SET bytes_estimate = $2 WHERE id = $1`, b.ID, estimate); err != nil {
		return res, fmt.Errorf("record estimate: %w", err)
	}
	dsn, env := connArgs(s.pool.Config().ConnConfig)
	args = append(args, "--dbname="+dsn)

	f, err := s.createFile(tmp)
	if err != nil {
		return res, fmt.Errorf("create %s: %w", tmp, err)
	}
	defer f.Close()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(cctx, pgDump, args...)
	cmd.Env = env
	stderr := &limitedBuffer{n: 4096}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return res, fmt.Errorf("pg_dump: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return res, newErr(CodeToolMissing, "run %s: %v", pgDump, err)
	}
	h := sha256.New()
	pw := &progressWriter{w: io.MultiWriter(f, h), every: time.Second, report: func(n int64) {
		if _, err := s.pool.Exec(ctx, `UPDATE backups SET bytes_done = $2 WHERE id = $1`, b.ID, n); err != nil {
			s.log.Debug("backup: progress not recorded", "err", err)
		}
		if req.Progress != nil {
			req.Progress(ctx, n, estimate)
		}
	}}
	_, copyErr := io.Copy(pw, out)
	if copyErr != nil {
		cancel() // pg_dump is killed rather than left writing to nobody
	}
	waitErr := cmd.Wait()
	switch {
	case copyErr != nil:
		return res, fmt.Errorf("write %s: %w", filepath.Base(tmp), copyErr)
	case waitErr != nil:
		return res, fmt.Errorf("pg_dump: %v: %s", waitErr, stderr.String())
	}
	if sf, ok := f.(interface{ Sync() error }); ok {
		if err := sf.Sync(); err != nil {
			return res, fmt.Errorf("sync %s: %w", filepath.Base(tmp), err)
		}
	}
	if err := f.Close(); err != nil {
		return res, fmt.Errorf("close %s: %w", filepath.Base(tmp), err)
	}
	res.size = pw.n
	res.sha = hex.EncodeToString(h.Sum(nil))
	return res, nil
}

// stage creates the staging schema with the manifest (and, for a metrics
// backup, the rollup rows of the range) and returns the tables to dump.
func (s *Service) stage(ctx context.Context, stage string, man *Manifest) ([]Table, error) {
	var tables []Table
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, name := range ConfigTables {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT to_regclass('public.' || $1) IS NOT NULL`, name).Scan(&exists); err != nil {
				return err
			}
			if exists {
				mode := ModeSync
				if m, ok := logModes[name]; ok {
					mode = m
				}
				tables = append(tables, Table{Name: "public." + name, Target: "public." + name, Mode: mode})
			}
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA `+stage); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE `+stage+`.manifest (doc jsonb NOT NULL)`); err != nil {
			return err
		}
		if man.Kind == KindMetrics {
			more, err := s.stageMetrics(ctx, tx, stage, *man.From, *man.To)
			if err != nil {
				return err
			}
			tables = append(tables, more...)
		}
		man.Tables = tables
		doc, err := json.Marshal(man)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO `+stage+`.manifest (doc) VALUES ($1)`, doc)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("stage: %w", err)
	}
	return tables, nil
}

// stageMetrics lists the metrics tables of [from, to): the series, the raw
// partitions of those days (or, on TimescaleDB, a staged copy of the
// range's samples), and staged copies of the rollup rows of the range
// (plain PostgreSQL; TimescaleDB's continuous aggregates are refreshed
// after a restore instead).
func (s *Service) stageMetrics(ctx context.Context, tx pgx.Tx, stage string, from, to time.Time) ([]Table, error) {
	tables := []Table{{Name: "public.series", Target: "public.series", Mode: ModeMerge}}
	copyRange := func(table string) error {
		if _, err := tx.Exec(ctx, `CREATE TABLE `+stage+`.`+table+` AS SELECT * FROM public.`+table+` WHERE ts >= $1 AND ts < $2`, from, to); err != nil {
			return err
		}
		f, t := from, to
		tables = append(tables, Table{Name: stage + "." + table, Target: "public." + table, Mode: ModeRange, From: &f, To: &t})
		return nil
	}
	if s.st.Timescale() {
		return tables, copyRange("samples")
	}
	parts, err := s.st.Partitions(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		if p.Day.Before(from) || !p.Day.Before(to) {
			continue
		}
		d0, d1 := p.Day, p.Day.Add(24*time.Hour)
		tables = append(tables, Table{Name: "public." + p.Name, Target: "public." + p.Name, Mode: ModePartition, From: &d0, To: &d1})
	}
	for _, t := range []string{"samples_5m", "samples_1h", "samples_1d"} {
		if err := copyRange(t); err != nil {
			return nil, err
		}
	}
	return tables, nil
}

// progressWriter counts bytes and reports them at most every interval.
type progressWriter struct {
	w      io.Writer
	n      int64
	every  time.Duration
	last   time.Time
	report func(n int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	if p.report != nil && time.Since(p.last) >= p.every {
		p.last = time.Now()
		p.report(p.n)
	}
	return n, err
}

// hashFile returns a file's size and SHA-256, reporting progress.
func hashFile(ctx context.Context, path string, report func(done int64)) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	pw := &progressWriter{w: h, every: time.Second, report: report}
	n, err := io.Copy(pw, &ctxReader{ctx: ctx, r: f})
	if err != nil {
		return n, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// ctxReader stops reading when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// hashingReader hashes and counts what is read through it.
type hashingReader struct {
	r      io.Reader
	h      hash.Hash
	n      atomic.Int64
	report func(n int64)
	last   time.Time
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	total := hr.n.Add(int64(n))
	if hr.report != nil && time.Since(hr.last) >= time.Second {
		hr.last = time.Now()
		hr.report(total)
	}
	return n, err
}

// auditEvent records an operation that did not come from a request (or
// whose outcome came after it).
func (s *Service) auditEvent(ctx context.Context, action, id, by string, err error, summary map[string]any) {
	if s.opts.Audit == nil {
		return
	}
	rec := audit.Record{Time: time.Now(), Source: "system", ActorType: "system", ActorName: by, Action: action,
		ResourceType: "backup", ResourceID: id, Result: audit.ResultSuccess, Status: 200}
	if by == "" || by == "schedule" {
		rec.ActorName = "scheduler"
	}
	if err != nil {
		rec.Result, rec.Status = audit.ResultFailure, 500
		if summary == nil {
			summary = map[string]any{}
		}
		summary["error"] = CodeOf(err, CodeFailed)
		summary["message"] = truncate(err.Error(), 500)
	}
	if b, jerr := json.Marshal(summary); jerr == nil {
		rec.Summary = b
	}
	s.opts.Audit(ctx, rec)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// compression is the pg_dump -Z level of a backup starting now: the
// backup setting (PUT /system/settings), read at the start of every
// backup on whichever replica runs it, else Options.Compression.
func (s *Service) compression(ctx context.Context) int {
	var doc jobs.BackupDoc
	found, _, err := jobs.ReadSetting(ctx, s.pool, jobs.SettingBackup, &doc)
	if err != nil {
		s.log.Warn("backup: backup setting unreadable; using the configured compression", "err", err)
		return s.opts.Compression
	}
	if !found || doc.Compression < 0 || doc.Compression > 9 {
		return s.opts.Compression
	}
	return doc.Compression
}

// ConfiguredCompression is the configuration file's pg_dump -Z level (-1:
// pg_dump's default), which the backup setting overrides.
func (s *Service) ConfiguredCompression() int { return s.opts.Compression }
