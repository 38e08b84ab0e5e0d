// Package collection is the collection configuration the aggregator's
// settings push to agents (PUT /system/settings, group "collection"): how
// it is stored, read and announced.
//
// It is one row of the settings table (key Key), a Doc; the row's version
// is the settings' revision (protocol.CollectionSettings.Revision). Write
// sets it to the time of the change in Unix milliseconds, and at least one
// more than before, so that it keeps growing even after a restore brought
// back an older row: agents ignore a revision older than theirs. Write
// also announces the change on Channel; PostgreSQL delivers the
// notification at COMMIT, and every replica's ingest server then reads
// the row again and sends protocol.CommandApplyCollection to the agents
// connected to it. The Welcome of every new connection carries the row as
// well.
package collection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/vmpulse/vmpulse/protocol"
)

// Key is the settings table's key of the collection settings.
const Key = "collection"

// Channel is the PostgreSQL notification channel on which a change of the
// collection settings is announced (the payload is the new revision, for
// the logs; receivers read the row itself).
const Channel = "vmpulse_collection_settings"

// Kinds are the entity kinds whose counters the settings may set.
var Kinds = []string{"vm", "host", "cluster", "datastore"}

// Doc is the stored form of the collection settings. An empty field, and
// a kind absent from Counters, leave the agents' own configuration in
// force.
type Doc struct {
	RealtimeInterval   string              `json:"realtime_interval,omitempty"`
	HistoricalInterval string              `json:"historical_interval,omitempty"`
	EventsPoll         string              `json:"events_poll,omitempty"`
	TagInterval        string              `json:"tag_interval,omitempty"`
	Counters           map[string][]string `json:"counters,omitempty"`
}

// Empty reports whether the document sets nothing (every agent keeps its
// own configuration).
func (d Doc) Empty() bool {
	return d.RealtimeInterval == "" && d.HistoricalInterval == "" && d.EventsPoll == "" && d.TagInterval == "" && len(d.Counters) == 0
}

// counterName is vCenter's dotted counter name: group.counter.rollup.
var counterName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*\.(average|summation|latest|maximum|minimum|none)$`)

// ValidCounterName reports whether s is syntactically a vCenter counter
// name, group.counter.rollup (e.g. cpu.usage.average); whether the
// vCenter knows it is for the agent to say.
func ValidCounterName(s string) bool { return len(s) <= 128 && counterName.MatchString(s) }

// Settings converts the document of revision rev into what the agents
// get. A document the protocol would refuse (not written through the API)
// is an error, never sent.
func (d Doc) Settings(rev int64) (*protocol.CollectionSettings, error) {
	s := &protocol.CollectionSettings{Revision: rev}
	for _, f := range []struct {
		name, v string
		dst     *time.Duration
	}{{"realtime_interval", d.RealtimeInterval, &s.RealtimeInterval}, {"historical_interval", d.HistoricalInterval, &s.HistoricalInterval},
		{"events_poll", d.EventsPoll, &s.EventsPoll}, {"tag_interval", d.TagInterval, &s.TagInterval}} {
		if f.v == "" {
			continue
		}
		v, err := time.ParseDuration(f.v)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("collection settings: %s: %q is not a positive duration", f.name, f.v)
		}
		*f.dst = v
	}
	for kind, names := range d.Counters {
		if !slices.Contains(Kinds, kind) {
			return nil, fmt.Errorf("collection settings: counters: unknown kind %q", kind)
		}
		for i, n := range names {
			if !ValidCounterName(n) {
				return nil, fmt.Errorf("collection settings: counters.%s[%d]: %q is not group.counter.rollup", kind, i, n)
			}
		}
		if len(names) > 0 {
			if s.Counters == nil {
				s.Counters = map[string][]string{}
			}
			s.Counters[kind] = slices.Clone(names)
		}
	}
	if err := protocol.WriteMessage(io.Discard, &protocol.Command{Name: protocol.CommandApplyCollection, Collection: s}); err != nil {
		return nil, fmt.Errorf("collection settings: %w", err)
	}
	return s, nil
}

// Meta is the stored row's revision and last change.
type Meta struct {
	Revision  int64
	UpdatedAt time.Time
	UpdatedBy string
}

// Querier runs a query: a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Read returns the stored document and its revision; found is false
// while the settings were never set (the agents' own configuration
// applies).
func Read(ctx context.Context, db Querier) (d Doc, m Meta, found bool, err error) {
	var raw []byte
	err = db.QueryRow(ctx, `SELECT value, version, updated_at, updated_by FROM settings WHERE key = $1`, Key).
		Scan(&raw, &m.Revision, &m.UpdatedAt, &m.UpdatedBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return d, m, false, nil
	}
	if err != nil {
		return d, m, false, fmt.Errorf("collection settings: read: %w", err)
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, m, false, fmt.Errorf("collection settings: decode: %w", err)
	}
	m.UpdatedAt = m.UpdatedAt.UTC()
	return d, m, true, nil
}

// Current is what an agent should run with now: nil while nothing was
// set (the agents keep their own configuration).
func Current(ctx context.Context, db Querier) (*protocol.CollectionSettings, error) {
	d, m, found, err := Read(ctx, db)
	if err != nil || !found {
		return nil, err
	}
	return d.Settings(m.Revision)
}

// Execer runs a statement: a pool, a connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Write stores d (by whom) with a new revision, which it returns, and
// announces it (Notify): call it in a transaction.
func Write(ctx context.Context, tx pgx.Tx, d Doc, by string) (int64, error) {
	doc, err := json.Marshal(d)
	if err != nil {
		return 0, fmt.Errorf("collection settings: encode: %w", err)
	}
	var rev int64
	if err := tx.QueryRow(ctx, `INSERT INTO settings (key, value, version, updated_by)
		VALUES ($1, $2, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, $3)
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = greatest(settings.version + 1, EXCLUDED.version),
			updated_at = now(), updated_by = EXCLUDED.updated_by
		RETURNING version`, Key, doc, by).Scan(&rev); err != nil {
		return 0, fmt.Errorf("collection settings: write: %w", err)
	}
	return rev, Notify(ctx, tx, rev)
}

// Notify announces a change on Channel. Called in the transaction that
// wrote the settings, the notification is delivered at its COMMIT (and
// never if it rolls back).
func Notify(ctx context.Context, db Execer, rev int64) error {
	if _, err := db.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, fmt.Sprint(rev)); err != nil {
		return fmt.Errorf("collection settings: notify: %w", err)
	}
	return nil
}
