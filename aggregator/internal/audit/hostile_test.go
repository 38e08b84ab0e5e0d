package audit_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
)

func TestSanitizeText(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"alice", 0, "alice"},
		{"", 0, ""},
		{"a\x00b", 0, `a\x00b`},
		{"\xff\xfe", 0, `\xff\xfe`},
		{"tab\there\nnext\x7f", 0, `tab\x09here\x0anext\x7f`},
		{"Mozilla/5.0 (Windows NT 10.0) é 日本 \u2028", 0, "Mozilla/5.0 (Windows NT 10.0) é 日本 \u2028"},
		{`CORP\alice`, 0, `CORP\alice`},
		{"\xed\xa0\x80", 0, `\xed\xa0\x80`}, // a surrogate encoded in UTF-8 is not UTF-8
		{"\xc3", 0, `\xc3`},                 // a truncated sequence
		{"abcdef", 4, "abcd"},
		{"ab\xff", 4, "ab"},   // the escape does not fit: never half of it
		{"aé", 2, "a"},        // never half a character
		{"a\x00", 5, `a\x00`}, // exactly fits
		{"日本語", 7, "日本"},      // 3-byte characters
		{strings.Repeat("x", 600), 512, strings.Repeat("x", 512)},
	} {
		got := audit.SanitizeText(c.in, c.max)
		if got != c.want {
			t.Errorf("SanitizeText(%q, %d) = %q; want %q", c.in, c.max, got, c.want)
		}
		if again := audit.SanitizeText(got, c.max); again != got {
			t.Errorf("SanitizeText is not idempotent on %q: %q", got, again)
		}
	}
}

// TestHostileTextIsStoredEscaped: records carrying what PostgreSQL refuses
// in text (NUL, invalid UTF-8), controls, an invalid summary and an
// oversized user agent are stored, escaped, in the same batch as ordinary
// records, and the chain verifies.
func TestHostileTextIsStoredEscaped(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	w := audit.NewWriter(pool, audit.WriterOptions{Logger: testLogger(t)})
	hostile := record(2)
	hostile.ActorName = "mal\x00lory"
	hostile.UserAgent = "curl\xff/" + strings.Repeat("é", 300)
	hostile.ResourceID = "\xff\xfe"
	hostile.RequestID = "req\r\nX-Injected: 1"
	hostile.Summary = json.RawMessage("{\"name\":\"\xff\"}")
	notJSON := record(3)
	notJSON.Summary = json.RawMessage("not json \x00")
	for _, r := range []audit.Record{record(1), hostile, notJSON, record(4)} {
		if err := w.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); s.Written != 4 || s.Failed != 0 || s.Sanitized != 2 {
		t.Errorf("stats = %+v; want 4 written, 0 failed, 2 sanitized", s)
	}
	st := audit.NewStore(pool)
	got, err := st.Get(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got.ActorName != `mal\x00lory` || got.ResourceID != `\xff\xfe` || got.RequestID != `req\x0d\x0aX-Injected: 1` ||
		!strings.HasPrefix(got.UserAgent, `curl\xff/éé`) || len(got.UserAgent) > audit.MaxUserAgent || !utf8.ValidString(got.UserAgent) {
		t.Errorf("stored record = %+v", got)
	}
	var summary map[string]string
	if err := json.Unmarshal(got.Summary, &summary); err != nil || summary["name"] != `\xff` {
		t.Errorf("summary = %s (%v); want the invalid byte escaped inside valid JSON", got.Summary, err)
	}
	got, _ = st.Get(ctx, 3)
	if err := json.Unmarshal(got.Summary, &summary); err != nil || summary["unparsed"] != `not json \x00` {
		t.Errorf("summary of a non-JSON summary = %s (%v)", got.Summary, err)
	}
	if res, err := st.Verify(ctx); err != nil || !res.OK || res.Checked != 4 {
		t.Errorf("Verify = %+v, %v; want ok over 4", res, err)
	}
}

// TestRefusedRecordKeepsItsNeighbours: when PostgreSQL refuses one record of
// a batch (here for a CHECK constraint, as it would for anything escaping
// missed), the batch is written record by record: only that record is lost,
// counted and logged.
func TestRefusedRecordKeepsItsNeighbours(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `ALTER TABLE audit_log ADD CONSTRAINT no_mallory CHECK (actor_name <> 'mallory')`); err != nil {
		t.Fatal(err)
	}
	w := audit.NewWriter(pool, audit.WriterOptions{Logger: testLogger(t), Retries: 5, RetryDelay: time.Hour})
	// Hold the chain head so the records queue up and travel as one batch.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM audit_chain WHERE id = 1 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		r := record(i)
		if i == 1 || i == 4 {
			r.ActorName = "mallory"
		}
		if err := w.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // let the writer take what is queued
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a retry would sleep an hour
	defer cancel()
	if err := w.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	s := w.Stats()
	if s.Written != 4 || s.Failed != 2 || s.Fallbacks == 0 {
		t.Errorf("stats = %+v; want 4 written, 2 failed, a fallback", s)
	}
	st := audit.NewStore(pool)
	recs, _, err := st.Query(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ResourceID)
	}
	if strings.Join(ids, ",") != "5,3,2,0" {
		t.Errorf("stored resources (newest first) = %v; want 5,3,2,0", ids)
	}
	if res, err := st.Verify(ctx); err != nil || !res.OK {
		t.Errorf("Verify = %+v, %v", res, err)
	}
	_ = w.Close(ctx)
}

func TestHostileLoginRecord(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	st := audit.NewStore(pool)
	for _, r := range []audit.LoginRecord{
		{Username: "ali\x00ce", Result: "failure", Reason: "invalid_request", IP: "192.0.2.1", UserAgent: "\xff\xfe", RequestID: "r1"},
		{Username: "bob", Result: "failure", Reason: "unknown_user", UserID: "not-a-uuid\x00", UserAgent: strings.Repeat("\x00", 600)},
		{Username: "carol", Result: "success", Reason: "ok", UserID: "{2B0D7A8E-3F0E-4C39-9D52-1A1D1C1F0A11}"},
	} {
		if err := st.AppendLogin(ctx, r); err != nil {
			t.Fatalf("AppendLogin(%+v): %v", r, err)
		}
	}
	got, _, err := st.QueryLogins(ctx, audit.LoginFilter{})
	if err != nil || len(got) != 3 {
		t.Fatalf("QueryLogins = %d, %v", len(got), err)
	}
	if a := got[2]; a.Username != `ali\x00ce` || a.UserAgent != `\xff\xfe` {
		t.Errorf("first attempt = %+v", a)
	}
	if b := got[1]; b.UserID != "" || b.Reason != `unknown_user (user_id not-a-uuid\x00)` || len(b.UserAgent) != 128*4 {
		t.Errorf("second attempt = %+v", b)
	}
	if c := got[0]; c.UserID != "2b0d7a8e-3f0e-4c39-9d52-1a1d1c1f0a11" {
		t.Errorf("third attempt = %+v", c)
	}
	if s := st.LoginStats(); s.Written != 3 || s.Failed != 0 || s.Sanitized != 2 {
		t.Errorf("LoginStats = %+v", s)
	}
}
