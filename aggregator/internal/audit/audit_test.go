package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger { return slog.New(slog.NewTextHandler(tWriter{t}, nil)) }

func openPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	st, err := store.Open(context.Background(), pgtest.NewDatabase(t), store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(st.Close)
	return st.Pool()
}

func record(i int) audit.Record {
	return audit.Record{
		Source: "api", ActorType: "user", ActorID: "u1", ActorName: "alice", Action: "user.update",
		ResourceType: "user", ResourceID: fmt.Sprint(i), Summary: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)),
		Result: audit.ResultSuccess, Status: 200, IP: "192.0.2.1", UserAgent: "test", RequestID: fmt.Sprintf("req-%d", i), LatencyUS: int64(i),
	}
}

func TestChainVerifiesAndDetectsTampering(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	// Two writers, as two aggregator replicas would, appending concurrently.
	w1 := audit.NewWriter(pool, audit.WriterOptions{Logger: testLogger(t), BatchSize: 7})
	w2 := audit.NewWriter(pool, audit.WriterOptions{Logger: testLogger(t), BatchSize: 5})
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := w1
			if i%2 == 1 {
				w = w2
			}
			if err := w.Append(ctx, record(i)); err != nil {
				t.Errorf("Append: %v", err)
			}
		}()
	}
	wg.Wait()
	for _, w := range []*audit.Writer{w1, w2} {
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s1, s2 := w1.Stats(), w2.Stats(); s1.Written+s2.Written != 60 || s1.Failed+s2.Failed != 0 {
		t.Fatalf("stats %+v %+v; want 60 written, 0 failed", s1, s2)
	}
	st := audit.NewStore(pool)
	res, err := st.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.Checked != 60 || res.HeadSeq != 60 {
		t.Fatalf("Verify = %+v; want ok over 60 records", res)
	}

	if _, err := pool.Exec(ctx, `CREATE TABLE audit_backup AS SELECT * FROM audit_log`); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		sql    string
		seq    int64
		reason string
	}{
		{"edited field", `UPDATE audit_log SET actor_name = 'mallory' WHERE seq = 17`, 17, "hash does not match"},
		{"edited summary", `UPDATE audit_log SET summary = '{"i":-1}' WHERE seq = 30`, 30, "hash does not match"},
		{"forged hash link", `UPDATE audit_log SET prev_hash = '\x00' WHERE seq = 12`, 12, "prev_hash"},
		{"deleted row", `DELETE FROM audit_log WHERE seq = 40`, 40, "missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := pool.Exec(ctx, c.sql); err != nil {
				t.Fatal(err)
			}
			// Undo the tampering for the next case.
			defer func() {
				if _, err := pool.Exec(ctx, `DELETE FROM audit_log; INSERT INTO audit_log SELECT * FROM audit_backup`); err != nil {
					t.Fatal(err)
				}
			}()
			res, err := st.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK || res.BrokenAt == nil || *res.BrokenAt != c.seq || !strings.Contains(res.Reason, c.reason) {
				t.Errorf("Verify = %+v; want broken at %d (%s)", res, c.seq, c.reason)
			}
		})
	}
	t.Run("truncated tail", func(t *testing.T) {
		pool2 := openPool(t)
		w := audit.NewWriter(pool2, audit.WriterOptions{})
		for i := range 5 {
			_ = w.Append(ctx, record(i))
		}
		_ = w.Close(ctx)
		if _, err := pool2.Exec(ctx, `DELETE FROM audit_log WHERE seq = 5`); err != nil {
			t.Fatal(err)
		}
		res, err := audit.NewStore(pool2).Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.OK || res.BrokenAt == nil || *res.BrokenAt != 5 {
			t.Errorf("Verify after deleting the last row = %+v; want broken at 5", res)
		}
	})
}

func TestCloseDrainsQueue(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	w := audit.NewWriter(pool, audit.WriterOptions{Logger: testLogger(t), QueueSize: 1000, BatchSize: 50})
	for i := range 500 {
		if err := w.Append(ctx, record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&n); err != nil || n != 500 {
		t.Fatalf("rows after Close = %d, %v; want 500", n, err)
	}
	if err := w.Append(ctx, record(0)); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Append after Close = %v; want ErrClosed", err)
	}
	if w.Stats().Failed != 1 {
		t.Errorf("failed = %d; want 1 (the record after close)", w.Stats().Failed)
	}
}

func TestFailedWritesAreCounted(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `ALTER TABLE audit_log ADD CONSTRAINT no_mallory CHECK (actor_name <> 'mallory')`); err != nil {
		t.Fatal(err)
	}
	w := audit.NewWriter(pool, audit.WriterOptions{Logger: testLogger(t), Retries: 1, RetryDelay: time.Millisecond})
	r := record(1)
	r.ActorName = "mallory"
	_ = w.Append(ctx, r)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); s.Failed != 1 || s.Written != 0 {
		t.Errorf("stats = %+v; want 1 failed", s)
	}
	_ = w.Append(ctx, record(2))
	_ = w.Close(ctx)
	if s := w.Stats(); s.Written != 1 {
		t.Errorf("stats = %+v; want the next record written", s)
	}
	if res, _ := audit.NewStore(pool).Verify(ctx); !res.OK {
		t.Errorf("chain after a failed batch = %+v; want ok", res)
	}
}

func TestQueryFiltersAndCursor(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	w := audit.NewWriter(pool, audit.WriterOptions{})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 30 {
		r := record(i)
		r.Time = base.Add(time.Duration(i) * time.Minute)
		if i%3 == 0 {
			r.Action, r.ActorName, r.Result = "role.create", "bob", audit.ResultFailure
		}
		_ = w.Append(ctx, r)
	}
	_ = w.Close(ctx)
	st := audit.NewStore(pool)
	page1, next, err := st.Query(ctx, audit.Filter{Actor: "BOB", Limit: 4})
	if err != nil || len(page1) != 4 || next != page1[3].Seq || page1[0].Seq <= page1[1].Seq {
		t.Fatalf("page1 = %d records, next %d, %v", len(page1), next, err)
	}
	page2, _, _ := st.Query(ctx, audit.Filter{Actor: "bob", Limit: 4, Before: next})
	page3, next3, _ := st.Query(ctx, audit.Filter{Actor: "bob", Limit: 4, Before: page2[len(page2)-1].Seq})
	if len(page2) != 4 || len(page3) != 2 || next3 != 0 {
		t.Errorf("pages = 4, %d, %d (next %d); want 4, 4, 2, 0", len(page2), len(page3), next3)
	}
	for _, f := range []struct {
		f    audit.Filter
		want int
	}{
		{audit.Filter{Action: "role."}, 10},
		{audit.Filter{Action: "user.update"}, 20},
		{audit.Filter{Result: audit.ResultFailure}, 10},
		{audit.Filter{From: base.Add(10 * time.Minute), To: base.Add(20 * time.Minute)}, 10},
		{audit.Filter{ResourceType: "user", ResourceID: "7"}, 1},
	} {
		got, _, err := st.Query(ctx, f.f)
		if err != nil || len(got) != f.want {
			t.Errorf("Query(%+v) = %d, %v; want %d", f.f, len(got), err, f.want)
		}
	}
	one, err := st.Get(ctx, 5)
	if err != nil || one.ResourceID != "4" || string(one.Summary) != `{"i":4}` {
		t.Errorf("Get(5) = %+v, %v", one, err)
	}
	if _, err := st.Get(ctx, 999); !errors.Is(err, audit.ErrNotFound) {
		t.Errorf("Get(999) = %v; want ErrNotFound", err)
	}
}

func TestLoginLog(t *testing.T) {
	pool := openPool(t)
	ctx := context.Background()
	st := audit.NewStore(pool)
	for i := range 10 {
		r := audit.LoginRecord{Username: "alice", Result: "failure", Reason: "bad_password", IP: "192.0.2.1"}
		if i%2 == 0 {
			r.Result, r.Reason, r.UserID = "success", "ok", "2b0d7a8e-3f0e-4c39-9d52-1a1d1c1f0a11"
		}
		if i == 9 {
			r.Username, r.IP = "mallory", "203.0.113.9"
		}
		if err := st.AppendLogin(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		f    audit.LoginFilter
		want int
	}{
		{audit.LoginFilter{}, 10},
		{audit.LoginFilter{Username: "ALICE"}, 9},
		{audit.LoginFilter{Result: "success"}, 5},
		{audit.LoginFilter{IP: "203.0.113.9"}, 1},
	} {
		got, _, err := st.QueryLogins(ctx, c.f)
		if err != nil || len(got) != c.want {
			t.Errorf("QueryLogins(%+v) = %d, %v; want %d", c.f, len(got), err, c.want)
		}
	}
	got, next, _ := st.QueryLogins(ctx, audit.LoginFilter{Limit: 3})
	if len(got) != 3 || next != got[2].ID || got[0].Username != "mallory" {
		t.Errorf("first page = %+v, next %d", got, next)
	}
}

func TestRedact(t *testing.T) {
	in := map[string]any{
		"username": "alice", "password": "hunter2", "new_password": "x",
		"nested": map[string]any{"refresh_token": "vmr_x", "keep": 1},
		"list":   []any{map[string]any{"client_secret": "s"}},
	}
	b, _ := json.Marshal(audit.Redact(in))
	s := string(b)
	for _, secret := range []string{"hunter2", `"x"`, "vmr_x", `"s"`} {
		if strings.Contains(s, secret) {
			t.Errorf("redacted summary %s still contains %s", s, secret)
		}
	}
	if !strings.Contains(s, `"username":"alice"`) || !strings.Contains(s, `"keep":1`) {
		t.Errorf("redaction removed ordinary fields: %s", s)
	}
}
