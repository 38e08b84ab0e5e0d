package auth

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().UTC().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testLogger logs to t.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

type env struct {
	svc   *Service
	pool  *pgxpool.Pool
	clock *clock
}

const goodPassword = "Corr3ct-Horse-Battery"

// testKEK seals the JWT keys the tests make (the aggregator derives its
// own from the CA key).
var testKEK = []byte("0123456789abcdef0123456789abcdef")

func newEnv(t *testing.T, mutate func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(st.Close)
	if err := SyncBuiltins(ctx, st.Pool()); err != nil {
		t.Fatalf("SyncBuiltins: %v", err)
	}
	cfg := Defaults()
	cfg.LoginRate, cfg.LoginBurst = 1000, 1000
	if mutate != nil {
		mutate(&cfg)
	}
	c := newClock()
	svc, err := New(st.Pool(), cfg, Options{Logger: testLogger(t), Now: c.Now, KeyEncryptionKey: testKEK})
	if err != nil {
		t.Fatalf("auth.New: %v", err)
	}
	return &env{svc: svc, pool: st.Pool(), clock: c}
}

// user creates a user with the given roles and returns it.
func (e *env) user(t *testing.T, name string, roles ...string) *User {
	t.Helper()
	u, err := e.svc.CreateUser(context.Background(), rootActor(), UserInput{Username: name, Email: name + "@example.com"}, goodPassword, roles)
	if err != nil {
		t.Fatalf("CreateUser %s: %v", name, err)
	}
	return u
}

func (e *env) login(t *testing.T, name string) *Tokens {
	t.Helper()
	tok, at, err := e.svc.Login(context.Background(), name, goodPassword, Client{IP: "192.0.2.10", UserAgent: "test"})
	if err != nil {
		t.Fatalf("Login %s: %v (reason %s)", name, err, at.Reason)
	}
	return tok
}
