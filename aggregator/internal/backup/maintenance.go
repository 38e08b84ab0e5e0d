package backup

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Maintenance is the maintenance state as this replica last saw it.
type Maintenance struct {
	Active    bool       `json:"active"`
	Reason    string     `json:"reason"`
	RestoreID *uuid.UUID `json:"restore_id"`
	StartedAt *time.Time `json:"started_at"`
}

// maintenance is one replica's side of the maintenance mode.
//
// While its ingest runs, a replica holds the ingest lock in shared mode on
// its own connection. When it sees the maintenance row active, it pauses
// its ingest (waiting for commits in flight) and only then lets the shared
// lock go; a restore takes the lock exclusively, so it holds it only once
// every live replica has paused. When the row is inactive again, a replica
// takes the shared lock back — possible only once the restore has let go —
// and then resumes ingest. A replica that loses its connection pauses
// (fail closed) until it has it, and the shared lock, again. A replica that
// dies simply drops out: its lock goes with its session.
type maintenance struct {
	state atomic.Pointer[Maintenance]

	mu     sync.Mutex // serializes check
	conn   *pgx.Conn
	shared bool // conn holds the ingest lock in shared mode
	paused bool // the Pauser is paused by us
}

func (m *maintenance) init() { m.state.Store(&Maintenance{}) }

// Maintenance returns the maintenance state as this replica last saw it
// (the API answers 503 while it is active).
func (s *Service) Maintenance() Maintenance { return *s.maint.state.Load() }

// Watch keeps this replica in step with the maintenance mode until ctx
// ends: it checks at once and then every Options.PollInterval.
func (s *Service) Watch(ctx context.Context) error {
	defer func() {
		m := &s.maint
		m.mu.Lock()
		if m.conn != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			m.conn.Close(cctx)
			cancel()
			m.conn, m.shared = nil, false
		}
		m.mu.Unlock()
	}()
	t := time.NewTicker(s.opts.PollInterval)
	defer t.Stop()
	for {
		if err := s.CheckMaintenance(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("maintenance check failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// CheckMaintenance reads the maintenance row once and pauses or resumes
// this replica's ingest accordingly. Main calls it once before ingest
// starts, so that a replica starting during a restore never commits.
func (s *Service) CheckMaintenance(ctx context.Context) error {
	m := &s.maint
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conn == nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := pgx.ConnectConfig(cctx, s.pool.Config().ConnConfig.Copy())
		cancel()
		if err != nil {
			s.pauseLocked(ctx) // fail closed
			return fmt.Errorf("backup: maintenance: connect: %w", err)
		}
		m.conn, m.shared = conn, false
	}
	var st Maintenance
	var gen int64
	err := m.conn.QueryRow(ctx, `SELECT active, reason, restore_id, started_at, generation FROM maintenance`).
		Scan(&st.Active, &st.Reason, &st.RestoreID, &st.StartedAt, &gen)
	if err != nil {
		s.dropConnLocked()
		s.pauseLocked(ctx)
		return fmt.Errorf("backup: maintenance: read: %w", err)
	}
	if st.StartedAt != nil {
		*st.StartedAt = st.StartedAt.UTC()
	}
	if st.Active && !s.restoring.Load() {
		// A restorer holds the backup lock for its whole run; if nobody
		// does, it died and left the row behind.
		var free bool
		if err := m.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, opLockKey).Scan(&free); err != nil {
			s.dropConnLocked()
			return fmt.Errorf("backup: maintenance: probe restorer: %w", err)
		}
		if free {
			if _, err := m.conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtext($1))`, opLockKey); err != nil {
				s.dropConnLocked()
				return fmt.Errorf("backup: maintenance: %w", err)
			}
			if _, err := m.conn.Exec(ctx, `UPDATE maintenance SET active = false WHERE generation = $1`, gen); err != nil {
				return fmt.Errorf("backup: maintenance: clear abandoned: %w", err)
			}
			s.log.Warn("maintenance mode left behind by a restore that is no longer running; cleared it", "restore", st.RestoreID)
			st = Maintenance{}
		}
	}
	if st.Active {
		m.state.Store(&st)
		s.pauseLocked(ctx)
		if m.paused && m.shared {
			if _, err := m.conn.Exec(ctx, `SELECT pg_advisory_unlock_shared(hashtext($1))`, ingestLockKey); err != nil {
				s.dropConnLocked()
				return fmt.Errorf("backup: maintenance: release ingest lock: %w", err)
			}
			m.shared = false
		}
		return nil
	}
	if !m.shared {
		var ok bool
		if err := m.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock_shared(hashtext($1))`, ingestLockKey).Scan(&ok); err != nil {
			s.dropConnLocked()
			return fmt.Errorf("backup: maintenance: take ingest lock: %w", err)
		}
		if !ok {
			return nil // a restore is finishing; stay paused until it lets go
		}
		m.shared = true
	}
	if m.paused {
		if s.opts.Pauser != nil {
			s.opts.Pauser.Resume()
		}
		m.paused = false
		s.log.Info("maintenance over; ingest resumed")
	}
	m.state.Store(&Maintenance{})
	return nil
}

// pauseLocked pauses this replica's ingest (m.mu held). If commits in
// flight do not end in time it stays paused anyway and keeps the lock it
// holds, so a restore waits.
func (s *Service) pauseLocked(ctx context.Context) {
	m := &s.maint
	if m.paused {
		return
	}
	if s.opts.Pauser != nil {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.opts.Pauser.Pause(pctx)
		cancel()
		if err != nil {
			s.log.Warn("ingest did not pause in time; retrying", "err", err)
			s.opts.Pauser.Resume()
			return
		}
	}
	m.paused = true
	s.log.Info("maintenance: ingest paused")
}

func (s *Service) dropConnLocked() {
	m := &s.maint
	if m.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m.conn.Close(ctx)
		cancel()
	}
	m.conn, m.shared = nil, false
}
