package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

const day = 24 * time.Hour

// EnsurePartitions creates the daily partitions of the samples table that
// cover [from, to] and do not exist yet. It is a no-op on TimescaleDB, whose
// chunks are created on demand. Safe for concurrent use (creation is
// serialized by an advisory lock and IF NOT EXISTS).
func (s *Store) EnsurePartitions(ctx context.Context, from, to time.Time) error {
	if s.Timescale() {
		return nil
	}
	var missing []int64
	s.mu.Lock()
	for d := from.UTC().Truncate(day); !d.After(to); d = d.Add(day) {
		n := d.Unix() / 86400
		if !s.partitions[n] {
			missing = append(missing, n)
		}
	}
	s.mu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("store: partitions: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('vmpulse.samples.partitions'))`); err != nil {
		return fmt.Errorf("store: partitions: lock: %w", err)
	}
	for _, n := range missing {
		start := time.Unix(n*86400, 0).UTC()
		end := start.Add(day)
		sql := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF samples FOR VALUES FROM ('%s') TO ('%s')`,
			partitionName(start), start.Format(time.RFC3339), end.Format(time.RFC3339))
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("store: create partition %s: %w", partitionName(start), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: partitions: commit: %w", err)
	}
	s.mu.Lock()
	for _, n := range missing {
		s.partitions[n] = true
	}
	s.mu.Unlock()
	return nil
}

// forgetPartitions drops [from, to]'s days from the cache of partitions
// known to exist.
func (s *Store) forgetPartitions(from, to time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d := from.UTC().Truncate(day); !d.After(to); d = d.Add(day) {
		delete(s.partitions, d.Unix()/86400)
	}
}

func partitionName(d time.Time) string { return "samples_p" + d.Format("20060102") }

// Partition describes one daily partition of the raw samples table.
type Partition struct {
	Name string
	Day  time.Time
}

// Partitions lists the samples table's daily partitions, oldest first.
func (s *Store) Partitions(ctx context.Context) ([]Partition, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid
		JOIN pg_class p ON p.oid = i.inhparent
		WHERE p.relname = 'samples'`)
	if err != nil {
		return nil, fmt.Errorf("store: list partitions: %w", err)
	}
	defer rows.Close()
	var out []Partition
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("store: list partitions: %w", err)
		}
		d, err := time.Parse("20060102", strings.TrimPrefix(name, "samples_p"))
		if err != nil {
			continue // not one of ours
		}
		out = append(out, Partition{Name: name, Day: d})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list partitions: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Day.Before(out[j].Day) })
	return out, nil
}

// DropPartitionsBefore drops every daily partition whose whole day lies
// before cutoff (retention), and returns the names dropped.
func (s *Store) DropPartitionsBefore(ctx context.Context, cutoff time.Time) ([]string, error) {
	parts, err := s.Partitions(ctx)
	if err != nil {
		return nil, err
	}
	var dropped []string
	for _, p := range parts {
		if p.Day.Add(day).After(cutoff) {
			break
		}
		if _, err := s.pool.Exec(ctx, `DROP TABLE IF EXISTS `+p.Name); err != nil {
			return dropped, fmt.Errorf("store: drop partition %s: %w", p.Name, err)
		}
		s.mu.Lock()
		delete(s.partitions, p.Day.Unix()/86400)
		s.mu.Unlock()
		dropped = append(dropped, p.Name)
	}
	return dropped, nil
}
