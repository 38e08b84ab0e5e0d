package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// MaintenanceWindow suppresses the alerts whose labels match all its
// matchers and that fire inside it (by their event time): they are
// recorded as suppressed, never paged. A window is one stretch from
// StartsAt lasting Duration, or, with Every, an occurrence of Duration
// every Every from StartsAt until EndsAt (nil: forever).
//
// Unlike a silence, which mutes the notifications of alerts that still
// count as firing, a maintenance window marks its alerts as expected.
type MaintenanceWindow struct {
	ID        uuid.UUID  `json:"id"`
	Name      string     `json:"name"`
	Matchers  []Matcher  `json:"matchers"`
	StartsAt  time.Time  `json:"starts_at"`
	Duration  Duration   `json:"duration"`
	Every     Duration   `json:"every"`
	EndsAt    *time.Time `json:"ends_at"`
	Comment   string     `json:"comment"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	// Active reports whether the window covers now (when it was read).
	Active bool `json:"active"`
}

// Limits of a maintenance window.
const (
	MaxWindowDuration = 31 * 24 * time.Hour
	MinWindowEvery    = time.Hour
)

// Validate checks a window and compiles its matchers.
func (w *MaintenanceWindow) Validate() error {
	v := &ValidationError{}
	switch {
	case w.Name == "":
		v.add("name", FieldRequired, nil)
	case utf8.RuneCountInString(w.Name) > 128:
		v.add("name", FieldTooLong, map[string]any{"max": 128})
	}
	validateMatchers(v, w.Matchers)
	if w.StartsAt.IsZero() {
		v.add("starts_at", FieldRequired, nil)
	}
	d, every := time.Duration(w.Duration), time.Duration(w.Every)
	if d <= 0 {
		v.add("duration", FieldRequired, nil)
	} else if d > MaxWindowDuration || d%time.Second != 0 {
		v.add("duration", FieldOutOfRange, map[string]any{"min": "1s", "max": FormatDuration(MaxWindowDuration)})
	}
	if every != 0 && (every < MinWindowEvery || every < d || every > 366*24*time.Hour || every%time.Second != 0) {
		v.add("every", FieldOutOfRange, map[string]any{"min": "max(1h, duration)", "max": "8784h"})
	}
	if w.EndsAt != nil && !w.StartsAt.IsZero() && !w.EndsAt.After(w.StartsAt) {
		v.add("ends_at", FieldOutOfRange, map[string]any{"min": "after starts_at", "max": "∞"})
	}
	if utf8.RuneCountInString(w.Comment) > 2000 {
		v.add("comment", FieldTooLong, map[string]any{"max": 2000})
	}
	return v.err()
}

// validateMatchers checks and compiles label matchers (silences and
// maintenance windows).
func validateMatchers(v *ValidationError, ms []Matcher) {
	switch n := len(ms); {
	case n == 0:
		v.add("matchers", FieldRequired, nil)
	case n > 20:
		v.add("matchers", FieldOutOfRange, map[string]any{"min": 1, "max": 20})
	}
	for i := range ms {
		m := &ms[i]
		p := "matchers[" + strconv.Itoa(i) + "]"
		if m.Name == "" {
			v.add(p+".name", FieldRequired, nil)
		} else if !labelKeyRE.MatchString(m.Name) {
			v.add(p+".name", FieldInvalidFormat, map[string]any{"format": "a label name"})
		}
		if utf8.RuneCountInString(m.Value) > 1024 {
			v.add(p+".value", FieldTooLong, map[string]any{"max": 1024})
		}
		switch m.Op {
		case "=", "!=":
		case "=~", "!~":
			m.re = nil
			m.compile()
			if m.re == nil {
				v.add(p+".value", FieldInvalidFormat, map[string]any{"format": "a regular expression (RE2)"})
			}
		case "":
			v.add(p+".op", FieldRequired, nil)
		default:
			v.add(p+".op", FieldInvalidValue, map[string]any{"allowed": "= != =~ !~"})
		}
	}
}

// Covers reports whether the window covers time t.
func (w *MaintenanceWindow) Covers(t time.Time) bool {
	if t.Before(w.StartsAt) || (w.EndsAt != nil && !t.Before(*w.EndsAt)) {
		return false
	}
	off := t.Sub(w.StartsAt)
	if w.Every > 0 {
		off %= time.Duration(w.Every)
	}
	return off < time.Duration(w.Duration)
}

// Matches reports whether the window covers t and matches labels.
func (w *MaintenanceWindow) Matches(labels map[string]string, t time.Time) bool {
	if !w.Covers(t) {
		return false
	}
	for i := range w.Matchers {
		if !w.Matchers[i].matches(labels) {
			return false
		}
	}
	return true
}

// SitesOf returns the sites a window is limited to by "site =" matchers.
func (w *MaintenanceWindow) SitesOf() []string {
	s := Silence{Matchers: w.Matchers}
	return s.SiteOf()
}

// windowAt returns the first maintenance window matching labels at event
// time at, or nil.
func (e *Engine) windowAt(labels map[string]string, at int64) *MaintenanceWindow {
	if len(e.windows) == 0 {
		return nil
	}
	t := time.UnixMilli(at)
	for i := range e.windows {
		if e.windows[i].Matches(labels, t) {
			return &e.windows[i]
		}
	}
	return nil
}

const windowCols = `id, name, matchers, starts_at, duration_s, every_s, ends_at, comment, created_by, created_at, updated_at`

func scanWindow(row pgx.Row, now time.Time) (MaintenanceWindow, error) {
	var w MaintenanceWindow
	var m []byte
	var d, every int64
	if err := row.Scan(&w.ID, &w.Name, &m, &w.StartsAt, &d, &every, &w.EndsAt, &w.Comment, &w.CreatedBy, &w.CreatedAt, &w.UpdatedAt); err != nil {
		return w, err
	}
	if err := json.Unmarshal(m, &w.Matchers); err != nil {
		return w, err
	}
	for i := range w.Matchers {
		w.Matchers[i].compile()
	}
	w.Duration, w.Every = Duration(time.Duration(d)*time.Second), Duration(time.Duration(every)*time.Second)
	w.StartsAt, w.CreatedAt, w.UpdatedAt = w.StartsAt.UTC(), w.CreatedAt.UTC(), w.UpdatedAt.UTC()
	if w.EndsAt != nil {
		t := w.EndsAt.UTC()
		w.EndsAt = &t
	}
	w.Active = w.Covers(now)
	return w, nil
}

// ListWindows lists the maintenance windows by start.
func (d *DB) ListWindows(ctx context.Context, now time.Time) ([]MaintenanceWindow, error) {
	return d.windows(ctx, now, ``)
}

// liveWindows reads the windows that have not ended (the engine's).
func (d *DB) liveWindows(ctx context.Context, now time.Time) ([]MaintenanceWindow, error) {
	// Late samples are judged at their own time: windows that ended
	// within the topology's history still count.
	return d.windows(ctx, now, `WHERE ends_at IS NULL OR ends_at > $1`, now.Add(-topoHistory))
}

func (d *DB) windows(ctx context.Context, now time.Time, where string, args ...any) ([]MaintenanceWindow, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+windowCols+` FROM alert_maintenance_windows `+where+` ORDER BY starts_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("alert: maintenance windows: %w", err)
	}
	defer rows.Close()
	out := []MaintenanceWindow{}
	for rows.Next() {
		w, err := scanWindow(rows, now)
		if err != nil {
			return nil, fmt.Errorf("alert: maintenance windows: %w", err)
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// Window reads one maintenance window.
func (d *DB) Window(ctx context.Context, id uuid.UUID, now time.Time) (MaintenanceWindow, error) {
	w, err := scanWindow(d.pool.QueryRow(ctx, `SELECT `+windowCols+` FROM alert_maintenance_windows WHERE id = $1`, id), now)
	if errors.Is(err, pgx.ErrNoRows) {
		return w, ErrNotFound
	}
	if err != nil {
		return w, fmt.Errorf("alert: maintenance window %s: %w", id, err)
	}
	return w, nil
}

// CreateWindow validates and stores a maintenance window.
func (d *DB) CreateWindow(ctx context.Context, w MaintenanceWindow, by string, now time.Time) (MaintenanceWindow, error) {
	if err := w.Validate(); err != nil {
		return w, err
	}
	m, err := json.Marshal(w.Matchers)
	if err != nil {
		return w, err
	}
	row := d.pool.QueryRow(ctx, `INSERT INTO alert_maintenance_windows (id, name, matchers, starts_at, duration_s, every_s, ends_at, comment, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING `+windowCols,
		uuid.New(), w.Name, m, w.StartsAt, int64(time.Duration(w.Duration)/time.Second), int64(time.Duration(w.Every)/time.Second), w.EndsAt, w.Comment, by)
	out, err := scanWindow(row, now)
	if err != nil {
		return out, fmt.Errorf("alert: create maintenance window: %w", err)
	}
	return out, nil
}

// UpdateWindow replaces a maintenance window.
func (d *DB) UpdateWindow(ctx context.Context, id uuid.UUID, w MaintenanceWindow, now time.Time) (MaintenanceWindow, error) {
	if err := w.Validate(); err != nil {
		return w, err
	}
	m, err := json.Marshal(w.Matchers)
	if err != nil {
		return w, err
	}
	row := d.pool.QueryRow(ctx, `UPDATE alert_maintenance_windows SET name = $2, matchers = $3, starts_at = $4, duration_s = $5, every_s = $6,
		ends_at = $7, comment = $8, updated_at = now() WHERE id = $1 RETURNING `+windowCols,
		id, w.Name, m, w.StartsAt, int64(time.Duration(w.Duration)/time.Second), int64(time.Duration(w.Every)/time.Second), w.EndsAt, w.Comment)
	out, err := scanWindow(row, now)
	if errors.Is(err, pgx.ErrNoRows) {
		return out, ErrNotFound
	}
	if err != nil {
		return out, fmt.Errorf("alert: update maintenance window: %w", err)
	}
	return out, nil
}

// DeleteWindow deletes a maintenance window; the alerts it suppressed stay
// as they were recorded.
func (d *DB) DeleteWindow(ctx context.Context, id uuid.UUID) error {
	tag, err := d.pool.Exec(ctx, `DELETE FROM alert_maintenance_windows WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("alert: delete maintenance window: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
