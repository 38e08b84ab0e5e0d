package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Matcher matches one alert label: Op is = (equal), != (not equal), =~
// (the whole value matches the regular expression) or !~ (does not).
type Matcher struct {
	Name  string `json:"name"`
	Op    string `json:"op"`
	Value string `json:"value"`

	re *regexp.Regexp
}

// Silence mutes the notifications of the alerts whose labels match all
// its matchers while it is active (StartsAt ≤ now < EndsAt, not expired).
// A silenced alert is still recorded, with "silenced" in its timeline.
type Silence struct {
	ID        uuid.UUID  `json:"id"`
	Matchers  []Matcher  `json:"matchers"`
	StartsAt  time.Time  `json:"starts_at"`
	EndsAt    time.Time  `json:"ends_at"`
	Comment   string     `json:"comment"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiredAt *time.Time `json:"expired_at"`
	// State is active, pending (not started) or expired.
	State string `json:"state"`
}

// Silence states.
const (
	SilenceActive  = "active"
	SilencePending = "pending"
	SilenceExpired = "expired"
)

// Validate checks a new silence and compiles its matchers.
func (s *Silence) Validate(now time.Time) error {
	v := &ValidationError{}
	switch n := len(s.Matchers); {
	case n == 0:
		v.add("matchers", FieldRequired, nil)
	case n > 20:
		v.add("matchers", FieldOutOfRange, map[string]any{"min": 1, "max": 20})
	}
	for i := range s.Matchers {
		m := &s.Matchers[i]
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
			re, err := regexp.Compile("^(?:" + m.Value + ")$")
			if err != nil {
				v.add(p+".value", FieldInvalidFormat, map[string]any{"format": "a regular expression (RE2)"})
			}
			m.re = re
		case "":
			v.add(p+".op", FieldRequired, nil)
		default:
			v.add(p+".op", FieldInvalidValue, map[string]any{"allowed": "= != =~ !~"})
		}
	}
	if s.StartsAt.IsZero() {
		s.StartsAt = now
	}
	if s.EndsAt.IsZero() {
		v.add("ends_at", FieldRequired, nil)
	} else if !s.EndsAt.After(s.StartsAt) || !s.EndsAt.After(now) {
		v.add("ends_at", FieldOutOfRange, map[string]any{"min": "after starts_at and now", "max": "∞"})
	}
	if utf8.RuneCountInString(s.Comment) > 2000 {
		v.add("comment", FieldTooLong, map[string]any{"max": 2000})
	}
	return v.err()
}

func (m *Matcher) compile() {
	if (m.Op == "=~" || m.Op == "!~") && m.re == nil {
		m.re, _ = regexp.Compile("^(?:" + m.Value + ")$")
	}
}

func (m *Matcher) matches(labels map[string]string) bool {
	v := labels[m.Name]
	switch m.Op {
	case "=":
		return v == m.Value
	case "!=":
		return v != m.Value
	case "=~":
		return m.re != nil && m.re.MatchString(v)
	case "!~":
		return m.re == nil || !m.re.MatchString(v)
	}
	return false
}

// Matches reports whether the silence is active at now and matches labels.
func (s *Silence) Matches(labels map[string]string, now time.Time) bool {
	if s.ExpiredAt != nil || now.Before(s.StartsAt) || !now.Before(s.EndsAt) {
		return false
	}
	for i := range s.Matchers {
		if !s.Matchers[i].matches(labels) {
			return false
		}
	}
	return true
}

func matchesAny(ss []Silence, labels map[string]string, now time.Time) bool {
	for i := range ss {
		if ss[i].Matches(labels, now) {
			return true
		}
	}
	return false
}

// SiteOf returns the site a silence is limited to by an "site =" matcher,
// or "".
func (s *Silence) SiteOf() []string {
	var out []string
	for _, m := range s.Matchers {
		if m.Name == "site" && m.Op == "=" {
			out = append(out, m.Value)
		}
	}
	return out
}

const silenceCols = `id, matchers, starts_at, ends_at, comment, created_by, created_at, expired_at`

func scanSilence(row pgx.Row, now time.Time) (Silence, error) {
	var s Silence
	var m []byte
	if err := row.Scan(&s.ID, &m, &s.StartsAt, &s.EndsAt, &s.Comment, &s.CreatedBy, &s.CreatedAt, &s.ExpiredAt); err != nil {
		return s, err
	}
	if err := json.Unmarshal(m, &s.Matchers); err != nil {
		return s, err
	}
	for i := range s.Matchers {
		s.Matchers[i].compile()
	}
	s.StartsAt, s.EndsAt, s.CreatedAt = s.StartsAt.UTC(), s.EndsAt.UTC(), s.CreatedAt.UTC()
	switch {
	case s.ExpiredAt != nil || !now.Before(s.EndsAt):
		s.State = SilenceExpired
	case now.Before(s.StartsAt):
		s.State = SilencePending
	default:
		s.State = SilenceActive
	}
	return s, nil
}

// activeSilences reads the silences not yet ended at now.
func (d *DB) activeSilences(ctx context.Context, now time.Time) ([]Silence, error) {
	return d.silences(ctx, now, `WHERE expired_at IS NULL AND ends_at > $1`, now)
}

func (d *DB) silences(ctx context.Context, now time.Time, where string, args ...any) ([]Silence, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+silenceCols+` FROM alert_silences `+where+` ORDER BY starts_at DESC, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("alert: silences: %w", err)
	}
	defer rows.Close()
	out := []Silence{}
	for rows.Next() {
		s, err := scanSilence(rows, now)
		if err != nil {
			return nil, fmt.Errorf("alert: silences: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// ListSilences lists silences: state "" (all), active, pending or expired.
func (d *DB) ListSilences(ctx context.Context, state string, now time.Time) ([]Silence, error) {
	all, err := d.silences(ctx, now, `WHERE coalesce(expired_at, ends_at) > $1::timestamptz - interval '90 days'`, now)
	if err != nil || state == "" {
		return all, err
	}
	return slices.DeleteFunc(all, func(s Silence) bool { return s.State != state }), nil
}

// CreateSilence validates and stores a silence.
func (d *DB) CreateSilence(ctx context.Context, s Silence, by string, now time.Time) (Silence, error) {
	if err := s.Validate(now); err != nil {
		return s, err
	}
	s.ID = uuid.New()
	m, err := json.Marshal(s.Matchers)
	if err != nil {
		return s, err
	}
	row := d.pool.QueryRow(ctx, `INSERT INTO alert_silences (id, matchers, starts_at, ends_at, comment, created_by) VALUES ($1, $2, $3, $4, $5, $6)
		RETURNING `+silenceCols, s.ID, m, s.StartsAt, s.EndsAt, s.Comment, by)
	out, err := scanSilence(row, now)
	if err != nil {
		return out, fmt.Errorf("alert: create silence: %w", err)
	}
	return out, nil
}

// Silence reads one silence.
func (d *DB) Silence(ctx context.Context, id uuid.UUID, now time.Time) (Silence, error) {
	s, err := scanSilence(d.pool.QueryRow(ctx, `SELECT `+silenceCols+` FROM alert_silences WHERE id = $1`, id), now)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, ErrNotFound
	}
	return s, err
}

// ExpireSilence ends a silence now.
func (d *DB) ExpireSilence(ctx context.Context, id uuid.UUID) error {
	tag, err := d.pool.Exec(ctx, `UPDATE alert_silences SET expired_at = coalesce(expired_at, now()) WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("alert: expire silence: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
