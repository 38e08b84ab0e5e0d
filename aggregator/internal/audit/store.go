package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound means the requested record does not exist.
var ErrNotFound = errors.New("audit: record not found")

// Store reads the operation and login logs and writes the login log. It is
// safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool

	loginWritten, loginFailed, loginSanitized atomic.Uint64
}

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Filter selects operation-log records. Zero fields do not filter. Results
// are newest first; Before (a Seq) continues a previous page.
type Filter struct {
	Actor        string // actor name, exact (case-insensitive)
	Source       string // "api", "vcenter" or "system"
	Action       string // exact, or a prefix ending in "." ("user.")
	ResourceType string
	ResourceID   string
	Result       string
	From, To     time.Time
	Before       int64
	Limit        int
	// VCenterSites, when non-nil, limits the records forwarded from vCenter
	// (source "vcenter", which carry site data) to these sites: a caller
	// whose data scope is limited sees only its sites' vCenter events (an
	// empty, non-nil list: none). API and system records are not site data
	// and are not limited by it.
	VCenterSites []string
}

const selectRecord = `SELECT seq, time, source, actor_type, actor_id, actor_name, action, resource_type, resource_id,
	summary, result, status, ip, user_agent, request_id, latency_us, prev_hash, hash FROM audit_log`

func scanRecord(row pgx.Row) (*Record, error) {
	var r Record
	var summary string
	err := row.Scan(&r.Seq, &r.Time, &r.Source, &r.ActorType, &r.ActorID, &r.ActorName, &r.Action, &r.ResourceType, &r.ResourceID,
		&summary, &r.Result, &r.Status, &r.IP, &r.UserAgent, &r.RequestID, &r.LatencyUS, &r.PrevHash, &r.Hash)
	r.Summary = []byte(summary)
	r.Time = r.Time.UTC()
	return &r, err
}

func (f Filter) where() (string, []any) {
	conds := []string{"true"}
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if f.Actor != "" {
		conds = append(conds, "lower(actor_name) = lower("+arg(f.Actor)+")")
	}
	if f.Source != "" {
		conds = append(conds, "source = "+arg(f.Source))
	}
	if f.Action != "" {
		if strings.HasSuffix(f.Action, ".") {
			conds = append(conds, "starts_with(action, "+arg(f.Action)+")")
		} else {
			conds = append(conds, "action = "+arg(f.Action))
		}
	}
	if f.ResourceType != "" {
		conds = append(conds, "resource_type = "+arg(f.ResourceType))
	}
	if f.ResourceID != "" {
		conds = append(conds, "resource_id = "+arg(f.ResourceID))
	}
	if f.Result != "" {
		conds = append(conds, "result = "+arg(f.Result))
	}
	if !f.From.IsZero() {
		conds = append(conds, "time >= "+arg(f.From))
	}
	if !f.To.IsZero() {
		conds = append(conds, "time < "+arg(f.To))
	}
	if f.Before > 0 {
		conds = append(conds, "seq < "+arg(f.Before))
	}
	if f.VCenterSites != nil {
		// CASE: the summary of an API record need not be JSON.
		conds = append(conds, "CASE WHEN source = '"+SourceVCenter+"' THEN (summary::jsonb->>'site') = ANY("+arg(f.VCenterSites)+"::text[]) ELSE true END")
	}
	return strings.Join(conds, " AND "), args
}

// Query returns up to f.Limit records, newest first, and the cursor for the
// next page (0 when there is none).
func (s *Store) Query(ctx context.Context, f Filter) ([]Record, int64, error) {
	out := []Record{}
	err := s.Each(ctx, f, func(r *Record) error { out = append(out, *r); return nil })
	if err != nil {
		return nil, 0, err
	}
	var next int64
	if f.Limit > 0 && len(out) == f.Limit {
		next = out[len(out)-1].Seq
	}
	return out, next, nil
}

// Each streams the records f selects, newest first, to fn (f.Limit 0 means
// all of them).
func (s *Store) Each(ctx context.Context, f Filter, fn func(*Record) error) error {
	cond, args := f.where()
	sql := selectRecord + " WHERE " + cond + " ORDER BY seq DESC"
	if f.Limit > 0 {
		sql += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("audit: query: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return fmt.Errorf("audit: query: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: query: %w", err)
	}
	return nil
}

// Get returns the record with sequence number seq.
func (s *Store) Get(ctx context.Context, seq int64) (*Record, error) {
	r, err := scanRecord(s.pool.QueryRow(ctx, selectRecord+" WHERE seq = $1", seq))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("audit: get: %w", err)
	}
	return r, nil
}

// VerifyResult is the outcome of checking the chain.
type VerifyResult struct {
	OK      bool  `json:"ok"`
	Checked int64 `json:"checked"`
	// HeadSeq is the last sequence number the chain head records.
	HeadSeq int64 `json:"head_seq"`
	// BrokenAt is the first sequence number that fails, with the reason.
	BrokenAt *int64 `json:"broken_at,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Verify walks the whole chain in order and reports the first broken link:
// a record whose hash does not match its fields, whose prev_hash does not
// match its predecessor's hash, a missing sequence number, or rows missing
// after the last one (the chain head disagrees).
func (s *Store) Verify(ctx context.Context) (*VerifyResult, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("audit: verify: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	res := &VerifyResult{}
	var headHash []byte
	if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_chain WHERE id = 1`).Scan(&res.HeadSeq, &headHash); err != nil {
		return nil, fmt.Errorf("audit: verify: chain head: %w", err)
	}
	rows, err := tx.Query(ctx, selectRecord+" ORDER BY seq")
	if err != nil {
		return nil, fmt.Errorf("audit: verify: %w", err)
	}
	defer rows.Close()
	prev := []byte{}
	want := int64(1)
	broken := func(seq int64, reason string) {
		res.BrokenAt, res.Reason = &seq, reason
	}
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("audit: verify: %w", err)
		}
		res.Checked++
		switch {
		case r.Seq != want:
			broken(want, fmt.Sprintf("record %d is missing", want))
		case !bytes.Equal(r.PrevHash, prev):
			broken(r.Seq, "prev_hash does not match the previous record's hash")
		case !bytes.Equal(chainHash(prev, r), r.Hash):
			broken(r.Seq, "hash does not match the record's contents")
		}
		if res.BrokenAt != nil {
			return res, nil
		}
		prev = r.Hash
		want++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: verify: %w", err)
	}
	if want-1 != res.HeadSeq || !bytes.Equal(prev, headHash) {
		broken(want, fmt.Sprintf("chain head is at %d but the log ends at %d", res.HeadSeq, want-1))
		return res, nil
	}
	res.OK = true
	return res, nil
}

// LoginRecord is one login attempt.
type LoginRecord struct {
	ID        int64     `json:"id"`
	Time      time.Time `json:"time"`
	UserID    string    `json:"user_id,omitempty"`
	Username  string    `json:"username"`
	Result    string    `json:"result"` // "success" or "failure"
	Reason    string    `json:"reason"`
	IP        string    `json:"ip"`
	UserAgent string    `json:"user_agent"`
	RequestID string    `json:"request_id"`
}

// LoginFilter selects login-log records, newest first.
type LoginFilter struct {
	Username string
	Result   string
	IP       string
	From, To time.Time
	Before   int64
	Limit    int
}

// AppendLogin stores a login attempt synchronously. Its text fields are
// escaped with SanitizeText first (a username or user agent is whatever
// the client sent), and a UserID that is not a UUID is kept in Reason
// rather than refused, so no attempt is lost for what it contains. Failures
// are counted in LoginStats.
func (s *Store) AppendLogin(ctx context.Context, r LoginRecord) error {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	if r.normalize() {
		s.loginSanitized.Add(1)
	}
	var uid any
	if r.UserID != "" {
		uid = r.UserID
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO login_log (time, user_id, username, result, reason, ip, user_agent, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		r.Time, uid, r.Username, r.Result, r.Reason, r.IP, r.UserAgent, r.RequestID)
	if err != nil {
		s.loginFailed.Add(1)
		return fmt.Errorf("audit: append login: %w", err)
	}
	s.loginWritten.Add(1)
	return nil
}

// normalize makes a login record storable: text escaped and cut by
// SanitizeText, a malformed UserID moved into Reason. It reports whether
// anything changed.
func (r *LoginRecord) normalize() (changed bool) {
	if r.UserID != "" {
		// uuid.Parse takes forms PostgreSQL does not (urn:uuid:…): store
		// the canonical one.
		if id, err := uuid.Parse(r.UserID); err != nil {
			r.Reason += " (user_id " + r.UserID + ")"
			r.UserID, changed = "", true
		} else {
			r.UserID = id.String()
		}
	}
	for _, f := range []struct {
		s   *string
		max int
	}{
		{&r.Username, MaxUsername}, {&r.Result, 0}, {&r.Reason, 0}, {&r.IP, 0}, {&r.UserAgent, MaxUserAgent}, {&r.RequestID, 0},
	} {
		if v := SanitizeText(*f.s, f.max); v != *f.s {
			*f.s, changed = v, true
		}
	}
	return changed
}

// LoginStats are the login log's write counters, since the Store was made.
type LoginStats struct {
	Written   uint64 // attempts stored
	Failed    uint64 // attempts that could not be stored
	Sanitized uint64 // attempts stored with text escaped or cut
}

// LoginStats returns the login log's write counters.
func (s *Store) LoginStats() LoginStats {
	return LoginStats{Written: s.loginWritten.Load(), Failed: s.loginFailed.Load(), Sanitized: s.loginSanitized.Load()}
}

// QueryLogins returns up to f.Limit login records and the next cursor.
func (s *Store) QueryLogins(ctx context.Context, f LoginFilter) ([]LoginRecord, int64, error) {
	out := []LoginRecord{}
	if err := s.EachLogin(ctx, f, func(r *LoginRecord) error { out = append(out, *r); return nil }); err != nil {
		return nil, 0, err
	}
	var next int64
	if f.Limit > 0 && len(out) == f.Limit {
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// EachLogin streams the login records f selects, newest first.
func (s *Store) EachLogin(ctx context.Context, f LoginFilter, fn func(*LoginRecord) error) error {
	conds := []string{"true"}
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if f.Username != "" {
		conds = append(conds, "lower(username) = lower("+arg(f.Username)+")")
	}
	if f.Result != "" {
		conds = append(conds, "result = "+arg(f.Result))
	}
	if f.IP != "" {
		conds = append(conds, "ip = "+arg(f.IP))
	}
	if !f.From.IsZero() {
		conds = append(conds, "time >= "+arg(f.From))
	}
	if !f.To.IsZero() {
		conds = append(conds, "time < "+arg(f.To))
	}
	if f.Before > 0 {
		conds = append(conds, "id < "+arg(f.Before))
	}
	sql := `SELECT id, time, coalesce(user_id::text, ''), username, result, reason, ip, user_agent, request_id FROM login_log WHERE ` +
		strings.Join(conds, " AND ") + " ORDER BY id DESC"
	if f.Limit > 0 {
		sql += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("audit: query logins: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r LoginRecord
		if err := rows.Scan(&r.ID, &r.Time, &r.UserID, &r.Username, &r.Result, &r.Reason, &r.IP, &r.UserAgent, &r.RequestID); err != nil {
			return fmt.Errorf("audit: query logins: %w", err)
		}
		r.Time = r.Time.UTC()
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: query logins: %w", err)
	}
	return nil
}

// VCenterSite returns the site of a record forwarded from vCenter (its
// summary's "site"), and false for any other record.
func (r *Record) VCenterSite() (string, bool) {
	if r.Source != SourceVCenter {
		return "", false
	}
	var sum struct {
		Site string `json:"site"`
	}
	_ = json.Unmarshal(r.Summary, &sum)
	return sum.Site, true
}
