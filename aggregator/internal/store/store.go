// Package store is the aggregator's PostgreSQL layer: the connection pool,
// embedded versioned migrations, and the idempotent write paths of the ingest
// pipeline.
//
// Contract: a *Store is safe for concurrent use by any number of goroutines.
// Every write method either commits all of its rows together with the batch's
// ledger entry, or nothing; a method that returns an error for which
// IsTransient reports true may be retried with the same arguments, and a
// retried batch that did commit earlier is reported as a duplicate, never
// stored twice.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Options configure Open.
type Options struct {
	// MaxConns bounds the pool; 0 means pgxpool's default (max(4, NumCPU)).
	MaxConns int32
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// PartitionsAhead is how many daily partitions beyond today are kept
	// created (plain PostgreSQL only). 0 means 3.
	PartitionsAhead int
	// MaxSampleAge refuses samples older than this (raw retention would drop
	// them at once, and each would need a partition). 0: no limit beyond
	// the year 2000.
	MaxSampleAge time.Duration
}

// Store is the aggregator's database.
type Store struct {
	pool      *pgxpool.Pool
	log       *slog.Logger
	timescale bool
	ahead     int
	maxAge    time.Duration

	mu         sync.Mutex
	partitions map[int64]bool // day number (Unix days) → partition exists
	sources    map[string]string
	migrated   bool

	series  *seriesCache
	rollups rollupCache // retention cutoffs for QueryRange
}

// Open connects to PostgreSQL, applies pending migrations under an advisory
// lock (so several aggregators may start at once), and creates the upcoming
// daily partitions.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: parse database url: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	s := &Store{
		pool:       pool,
		log:        log,
		ahead:      opts.PartitionsAhead,
		maxAge:     opts.MaxSampleAge,
		partitions: make(map[int64]bool),
		sources:    make(map[string]string),
		series:     newSeriesCache(),
	}
	if s.ahead <= 0 {
		s.ahead = 3
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.EnsurePartitions(ctx, time.Now().AddDate(0, 0, -1), time.Now().AddDate(0, 0, s.ahead)); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Pool exposes the connection pool to packages that own their own queries
// (auth, audit, the REST API).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Timescale reports whether the samples table is a TimescaleDB hypertable.
func (s *Store) Timescale() bool { return s.timescale }

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Ready reports whether the database answers and the migrations are applied.
func (s *Store) Ready(ctx context.Context) error {
	s.mu.Lock()
	migrated := s.migrated
	s.mu.Unlock()
	if !migrated {
		return errors.New("store: migrations not applied")
	}
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// MigrationSource returns the embedded migrations, for tools that render
// them (the TimescaleDB compatibility check).
func MigrationSource() fs.FS {
	sub, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		panic(err) // the embed pattern guarantees the folder exists
	}
	return sub
}

func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: acquire: %w", err)
	}
	defer conn.Release()
	var available bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')`).Scan(&available); err != nil {
		return fmt.Errorf("store: migrate: probe timescaledb: %w", err)
	}
	if available {
		if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS timescaledb`); err != nil {
			s.log.Warn("timescaledb is available but cannot be created; using native partitions", "err", err)
			available = false
		}
	}
	m, err := migrate.NewMigrator(ctx, conn.Conn(), "schema_version")
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	m.Data["timescale"] = available
	if err := m.LoadMigrations(MigrationSource()); err != nil {
		return fmt.Errorf("store: load migrations: %w", err)
	}
	m.OnStart = func(seq int32, name, _, _ string) {
		s.log.Info("applying migration", "seq", seq, "name", name)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	// The schema decides, not the extension list: a database migrated without
	// TimescaleDB keeps native partitions even if the extension appears later.
	var hyper bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partrelid WHERE c.relname = 'samples')`).Scan(&hyper); err != nil {
		return fmt.Errorf("store: migrate: inspect samples: %w", err)
	}
	s.mu.Lock()
	s.timescale = !hyper
	s.migrated = true
	s.mu.Unlock()
	return nil
}

// RenderedMigration is one migration's SQL as it would be applied.
type RenderedMigration struct {
	Name string
	SQL  string
}

// RenderMigrations renders the embedded migrations for a database with
// (timescale) or without TimescaleDB, without connecting anywhere: for
// review by a DBA, and for the TimescaleDB compatibility check.
func RenderMigrations(ctx context.Context, timescale bool) ([]RenderedMigration, error) {
	m, err := migrate.NewMigrator(ctx, nil, "schema_version")
	if err != nil {
		return nil, fmt.Errorf("store: render migrations: %w", err)
	}
	m.Data["timescale"] = timescale
	if err := m.LoadMigrations(MigrationSource()); err != nil {
		return nil, fmt.Errorf("store: render migrations: %w", err)
	}
	out := make([]RenderedMigration, len(m.Migrations))
	for i, mg := range m.Migrations {
		out[i] = RenderedMigration{Name: mg.Name, SQL: mg.UpSQL}
	}
	return out, nil
}
