package ingest_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest"
	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/aggregator/internal/pki"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
	"github.com/vmpulse/vmpulse/protocol"
)

// harness runs a real aggregator ingest server on loopback QUIC against a
// real PostgreSQL database.
type harness struct {
	t      testing.TB
	dsn    string
	dir    string
	st     *store.Store
	ca     *pki.CA
	cfg    ingest.Config // for the next start; Addr and Logger are set there
	srv    *ingest.Server
	addr   string
	cancel context.CancelFunc
	done   chan struct{}
}

func newHarness(t testing.TB, dsn string, wrap func(ingest.Store) ingest.Store) *harness {
	t.Helper()
	if dsn == "" {
		dsn = pgtest.NewDatabase(t)
	}
	h := &harness{t: t, dsn: dsn, dir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := store.Open(ctx, dsn, store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(st.Close)
	h.st = st
	if h.ca, err = pki.LoadOrCreate(h.dir, []string{"localhost", "127.0.0.1"}); err != nil {
		t.Fatalf("pki: %v", err)
	}
	h.start(wrap)
	return h
}

func (h *harness) start(wrap func(ingest.Store) ingest.Store) {
	h.t.Helper()
	var s ingest.Store = h.st
	if wrap != nil {
		s = wrap(s)
	}
	cfg := h.cfg
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	cfg.Logger = testLogger(h.t)
	h.srv = ingest.New(cfg, s, h.ca)
	if err := h.srv.Listen(); err != nil {
		h.t.Fatalf("listen: %v", err)
	}
	h.addr = h.srv.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan struct{})
	go func() {
		defer close(h.done)
		if err := h.srv.Serve(ctx); err != nil {
			h.t.Errorf("serve: %v", err)
		}
	}()
	h.t.Cleanup(h.stop)
}

// stop shuts the server down the way SIGTERM does: it drains (see
// ingest.Server.Serve) and returns once every connection is closed.
func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel = nil
	}
}

func (h *harness) token(site string, ttl time.Duration) string {
	h.t.Helper()
	ctx := context.Background()
	if err := h.st.EnsureSite(ctx, site, ""); err != nil {
		h.t.Fatal(err)
	}
	secret, _, err := h.st.CreateEnrollmentToken(ctx, site, ttl, "test")
	if err != nil {
		h.t.Fatal(err)
	}
	return protocol.FormatEnrollToken(secret, h.ca.Cert.Raw)
}

func (h *harness) enroll(site string) *ingesttest.Identity {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id, err := ingesttest.Enroll(ctx, h.addr, h.token(site, time.Hour), "test-agent")
	if err != nil {
		h.t.Fatalf("enroll: %v", err)
	}
	return id
}

func (h *harness) dial(id *ingesttest.Identity, epoch uint64) *ingesttest.Conn {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := ingesttest.Dial(ctx, h.addr, id, epoch)
	if err != nil {
		h.t.Fatalf("dial: %v", err)
	}
	h.t.Cleanup(c.Close)
	return c
}

func (h *harness) count(sql string, args ...any) int64 {
	h.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, h.dsn)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		h.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

func mustOpen(t testing.TB, s *ingesttest.Conn) *ingesttest.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := s.OpenData(ctx)
	if err != nil {
		t.Fatalf("open data stream: %v", err)
	}
	return d
}

func sendAndAck(t testing.TB, d *ingesttest.Stream, b *protocol.Batch) protocol.Ack {
	t.Helper()
	if err := d.Send(b); err != nil {
		t.Fatalf("send %d: %v", b.Seq, err)
	}
	a, err := d.Recv()
	if err != nil {
		t.Fatalf("ack for %d: %v", b.Seq, err)
	}
	if a.Seq != b.Seq || a.Epoch != b.Epoch {
		t.Fatalf("ack for %d/%d, want %d/%d", a.Epoch, a.Seq, b.Epoch, b.Seq)
	}
	return a
}
