package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
)

// fieldSep splits a fuzz input into one value per field; an input without
// it puts the same bytes in every field.
const fieldSep = 0x1e

// fields returns n field values cut from data at fieldSep, reusing the
// pieces round-robin.
func fields(data []byte, n int) []string {
	parts := bytes.Split(data, []byte{fieldSep})
	out := make([]string, n)
	for i := range out {
		out[i] = string(parts[i%len(parts)])
	}
	return out
}

// hostileSeeds are the seed corpus of both targets: what PostgreSQL refuses
// in text, controls, oversized values, surrogates, JSON that is and is not
// valid, and ordinary text.
var hostileSeeds = [][]byte{
	[]byte("alice"),
	[]byte("a\x00b"),
	[]byte("\xff\xfe"),
	[]byte("\xed\xa0\x80 lone surrogate, UTF-8 encoded"),
	[]byte("line\r\nX-Injected: 1\t\x1b[31m\x7f"),
	bytes.Repeat([]byte("\xff"), 700),
	bytes.Repeat([]byte("é"), 400),
	[]byte(`{"name":"` + "\xff" + `","n":1}`),
	[]byte(`{"a":"\u0000","b":"\ud800"}`),
	[]byte("2b0d7a8e-3f0e-4c39-9d52-1a1d1c1f0a11"),
	[]byte("urn:uuid:2b0d7a8e-3f0e-4c39-9d52-1a1d1c1f0a11"),
	[]byte("api\x1euser\x00\x1e\x1eupdate\x1e\xff\x1e{}\x1e\x1e192.0.2.1\x1ecurl/8\xc3\x1ereq-1"),
	{},
}

// syncBuffer collects the writer's log lines; the fuzz function may not log
// through *testing.F from the writer's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// fuzzPool opens a fresh database for a fuzz target (one per fuzzing
// process). Fuzzing needs the PostgreSQL that scripts/pg.sh starts:
// `scripts/pg.sh with go test -run '^$' -fuzz FuzzAuditRecordText ./aggregator/internal/audit`.
func fuzzPool(f *testing.F) *pgxpool.Pool {
	f.Helper()
	if os.Getenv(pgtest.EnvURL) == "" {
		f.Skipf("%s is not set: fuzz against PostgreSQL with `scripts/pg.sh with go test -fuzz ...`", pgtest.EnvURL)
	}
	st, err := store.Open(context.Background(), pgtest.NewDatabase(f), store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatalf("store.Open: %v", err)
	}
	f.Cleanup(st.Close)
	return st.Pool()
}

// FuzzAuditRecordText feeds arbitrary bytes into every text field of an
// operation-log record (and its summary): the record must be stored, with
// exactly the text SanitizeText makes of the input, and the chain must
// verify.
func FuzzAuditRecordText(f *testing.F) {
	for _, s := range hostileSeeds {
		f.Add(s)
	}
	pool := fuzzPool(f)
	logs := &syncBuffer{}
	w := audit.NewWriter(pool, audit.WriterOptions{Logger: slog.New(slog.NewTextHandler(logs, nil)), Retries: 1, RetryDelay: time.Millisecond})
	f.Cleanup(func() { _ = w.Close(context.Background()) })
	st := audit.NewStore(pool)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		// One record per run keeps Verify cheap.
		if _, err := pool.Exec(ctx, `TRUNCATE audit_log; UPDATE audit_chain SET seq = 0, hash = '\x' WHERE id = 1`); err != nil {
			t.Fatal(err)
		}
		v := fields(data, 12)
		in := audit.Record{Time: time.Date(2026, 1, 2, 3, 4, 5, 6789, time.UTC),
			Source: v[0], ActorType: v[1], ActorID: v[2], ActorName: v[3], Action: v[4], ResourceType: v[5], ResourceID: v[6],
			Summary: json.RawMessage(v[7]), Result: v[8], Status: 200, IP: v[9], UserAgent: v[10], RequestID: v[11], LatencyUS: 1}
		failed := w.Stats().Failed
		if err := w.Append(ctx, in); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if w.Stats().Failed != failed {
			t.Fatalf("the record was not written:\n%s", logs.String())
		}
		recs, _, err := st.Query(ctx, audit.Filter{})
		if err != nil || len(recs) != 1 {
			t.Fatalf("stored records = %d, %v; want 1", len(recs), err)
		}
		got := recs[0]
		for i, pair := range [][2]string{
			{got.Source, audit.SanitizeText(in.Source, 64)}, {got.ActorType, audit.SanitizeText(in.ActorType, 0)},
			{got.ActorID, audit.SanitizeText(in.ActorID, 0)}, {got.ActorName, audit.SanitizeText(in.ActorName, 0)},
			{got.Action, audit.SanitizeText(in.Action, 0)}, {got.ResourceType, audit.SanitizeText(in.ResourceType, 0)},
			{got.ResourceID, audit.SanitizeText(in.ResourceID, 0)}, {got.Result, audit.SanitizeText(in.Result, 0)},
			{got.IP, audit.SanitizeText(in.IP, 0)}, {got.UserAgent, audit.SanitizeText(in.UserAgent, audit.MaxUserAgent)},
			{got.RequestID, audit.SanitizeText(in.RequestID, 0)},
		} {
			if pair[0] != pair[1] {
				t.Errorf("text field %d stored as %q; want %q", i, pair[0], pair[1])
			}
		}
		if !json.Valid(got.Summary) || !utf8.Valid(got.Summary) {
			t.Errorf("stored summary %q is not valid UTF-8 JSON", got.Summary)
		}
		if json.Valid(in.Summary) && utf8.Valid(in.Summary) && string(got.Summary) != string(in.Summary) {
			t.Errorf("valid summary %q stored as %q", in.Summary, got.Summary)
		}
		res, err := st.Verify(ctx)
		if err != nil || !res.OK || res.Checked != 1 {
			t.Fatalf("Verify = %+v, %v; want ok over 1 record", res, err)
		}
	})
}

// FuzzLoginRecordText feeds arbitrary bytes into every text field of a
// login-log record, user id included: the attempt must be stored, with
// exactly the text SanitizeText makes of the input.
func FuzzLoginRecordText(f *testing.F) {
	for _, s := range hostileSeeds {
		f.Add(s)
	}
	pool := fuzzPool(f)
	st := audit.NewStore(pool)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := pool.Exec(ctx, `TRUNCATE login_log`); err != nil {
			t.Fatal(err)
		}
		v := fields(data, 7)
		in := audit.LoginRecord{Username: v[0], Result: v[1], Reason: v[2], IP: v[3], UserAgent: v[4], RequestID: v[5], UserID: v[6]}
		if err := st.AppendLogin(ctx, in); err != nil {
			t.Fatalf("AppendLogin: %v", err)
		}
		recs, _, err := st.QueryLogins(ctx, audit.LoginFilter{})
		if err != nil || len(recs) != 1 {
			t.Fatalf("stored attempts = %d, %v; want 1", len(recs), err)
		}
		got := recs[0]
		wantReason, wantUID := in.Reason, ""
		if in.UserID != "" {
			if id, err := uuid.Parse(in.UserID); err != nil {
				wantReason += " (user_id " + in.UserID + ")"
			} else {
				wantUID = id.String()
			}
		}
		for i, pair := range [][2]string{
			{got.Username, audit.SanitizeText(in.Username, audit.MaxUsername)}, {got.Result, audit.SanitizeText(in.Result, 0)},
			{got.Reason, audit.SanitizeText(wantReason, 0)}, {got.IP, audit.SanitizeText(in.IP, 0)},
			{got.UserAgent, audit.SanitizeText(in.UserAgent, audit.MaxUserAgent)}, {got.RequestID, audit.SanitizeText(in.RequestID, 0)},
			{got.UserID, wantUID},
		} {
			if pair[0] != pair[1] {
				t.Errorf("field %d stored as %q; want %q", i, pair[0], pair[1])
			}
		}
	})
}
