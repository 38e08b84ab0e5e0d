package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/pki"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
	"github.com/vmpulse/vmpulse/protocol"
)

const goodPassword = "Corr3ct-Horse-Battery"

// testKEK seals the JWT keys the tests make (the aggregator derives its
// own from the CA key).
var testKEK = []byte("0123456789abcdef0123456789abcdef")

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// logSink collects log lines and forwards them to t.
type logSink struct {
	t  testing.TB
	mu sync.Mutex
	b  strings.Builder
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.b.Write(p)
	s.mu.Unlock()
	s.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (s *logSink) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// testAgents is the AgentRegistry of the tests: the real store and a real
// CA, with Disconnect recording its calls instead of closing QUIC
// connections (there are none here).
type testAgents struct {
	*store.Store
	ca *pki.CA

	mu           sync.Mutex
	disconnected []string
	agentsErr    error // when set, Agents fails with it (a database error)
}

func (r *testAgents) Agents(ctx context.Context) ([]store.Agent, error) {
	r.mu.Lock()
	err := r.agentsErr
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return r.Store.Agents(ctx)
}

func (r *testAgents) failAgents(err error) { r.mu.Lock(); r.agentsErr = err; r.mu.Unlock() }

func (r *testAgents) IssueEnrollToken(ctx context.Context, site string, ttl time.Duration, createdBy string) (string, time.Time, error) {
	if err := r.EnsureSite(ctx, site, ""); err != nil {
		return "", time.Time{}, err
	}
	secret, exp, err := r.CreateEnrollmentToken(ctx, site, ttl, createdBy)
	if err != nil {
		return "", time.Time{}, err
	}
	return protocol.FormatEnrollToken(secret, r.ca.Cert.Raw), exp, nil
}

func (r *testAgents) Disconnect(agentID string) {
	r.mu.Lock()
	r.disconnected = append(r.disconnected, agentID)
	r.mu.Unlock()
}

func (r *testAgents) disconnects() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.disconnected...)
}

// fakeCommander stands in for the ingest server's live QUIC connections:
// the agents listed in connected are connected; SendCommand records what it
// sends and fails for the agents in refuse.
type fakeCommander struct {
	mu        sync.Mutex
	connected []string
	refuse    map[string]bool
	sent      []string // "agentID name"
}

func (c *fakeCommander) Connected() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.connected...)
}

func (c *fakeCommander) SendCommand(agentID string, cmd protocol.Command) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse[agentID] || !slices.Contains(c.connected, agentID) {
		return false
	}
	c.sent = append(c.sent, agentID+" "+cmd.Name)
	return true
}

func (c *fakeCommander) set(connected ...string) {
	c.mu.Lock()
	c.connected, c.sent = connected, nil
	c.mu.Unlock()
}

func (c *fakeCommander) sends() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.sent...)
}

// fakeIngest stands in for the ingest server's counters.
type fakeIngest struct {
	mu sync.Mutex
	st IngestStats
}

func (f *fakeIngest) IngestStats() IngestStats { f.mu.Lock(); defer f.mu.Unlock(); return f.st }

func (f *fakeIngest) set(st IngestStats) { f.mu.Lock(); f.st = st; f.mu.Unlock() }

type env struct {
	t      testing.TB
	api    *API
	pool   *pgxpool.Pool
	store  *store.Store
	agents *testAgents
	cmds   *fakeCommander
	ingest *fakeIngest
	clock  *clock
	logs   *logSink
	tokens map[string]string // built-in role → access token of a user holding it
	users  map[string]string // built-in role → user id
	ops    *ops              // job runner and backup service (jobs_test.go)
}

// newEnv starts an API on a fresh database with one user per built-in role
// (named after the role) logged in.
func newEnv(t testing.TB, mutate func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	sink := &logSink{t: t}
	log := slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Logger: log})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(st.Close)
	cfg := Defaults()
	cfg.Auth.LoginRate, cfg.Auth.LoginBurst = 1000, 1000
	cfg.CORSOrigins = []string{"https://ops.example.com"}
	cfg.TrustedProxies = []string{"10.0.0.0/8"}
	if mutate != nil {
		mutate(&cfg)
	}
	ca, err := pki.LoadOrCreate(t.TempDir(), []string{"localhost"})
	if err != nil {
		t.Fatalf("pki.LoadOrCreate: %v", err)
	}
	agents := &testAgents{Store: st, ca: ca}
	cmds := &fakeCommander{refuse: map[string]bool{}}
	ingestStats := &fakeIngest{st: IngestStats{Listening: true, Addr: "127.0.0.1:7443", BatchesStored: 7, BatchesDuplicate: 1}}
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	ops := newOps(t, st, log) // the job runner and backup service (jobs_test.go)
	api, err := New(cfg, Deps{Pool: st.Pool(), Ready: st.Ready, Logger: log, Now: c.Now, KeyEncryptionKey: testKEK, Agents: agents,
		Inventory: st, History: st, Commander: cmds, System: st, Ingest: ingestStats, Jobs: ops.jobs, Backups: ops.backups,
		Info: SystemInfo{Version: "1.2.3-test", StartedAt: c.Now().Add(-time.Hour), Config: ConfigSummary{IngestListen: ":7443",
			HeartbeatInterval: "10s", AgentCertLifetime: "720h", Retention: map[string]string{"raw": "168h", "5m": "720h", "1h": "2160h", "1d": "0s"}}}})
	if err != nil {
		t.Fatalf("httpapi.New: %v", err)
	}
	t.Cleanup(func() {
		if err := api.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	e := &env{t: t, api: api, pool: st.Pool(), store: st, agents: agents, cmds: cmds, ingest: ingestStats, clock: c, logs: sink, tokens: map[string]string{}, users: map[string]string{},
		ops: ops}
	// The installer's stand-in: every permission, no scope limit, nobody's self.
	setup := &auth.Principal{Username: "test-setup", SessionID: uuid.New(), Permissions: slices.Sorted(slices.Values(auth.AllPermissions()))}
	for _, r := range auth.BuiltinRoles() {
		u, err := api.auth.CreateUser(ctx, setup, auth.UserInput{Username: r.Name, Email: r.Name + "@example.com"}, goodPassword, []string{r.Name})
		if err != nil {
			t.Fatalf("create %s: %v", r.Name, err)
		}
		e.users[r.Name] = u.ID.String()
		e.tokens[r.Name] = e.login(r.Name).AccessToken
	}
	return e
}

func (e *env) login(name string) *auth.Tokens {
	e.t.Helper()
	res := e.do("POST", "/api/v1/auth/login", "", `{"username":"`+name+`","password":"`+goodPassword+`"}`)
	if res.status != 200 {
		e.t.Fatalf("login %s: %d %s", name, res.status, res.raw)
	}
	var tok auth.Tokens
	res.data(&tok)
	return &tok
}

type response struct {
	status int
	header http.Header
	raw    []byte
	env    struct {
		Code    any             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
}

func (r *response) code() string {
	if s, ok := r.env.Code.(string); ok {
		return s
	}
	return "0"
}

func (r *response) data(v any) {
	if err := json.Unmarshal(r.env.Data, v); err != nil {
		panic(err)
	}
}

type errData struct {
	RequestID string       `json:"request_id"`
	Fields    []FieldError `json:"fields"`
}

// do sends a request through the API's handler. Extra headers come in
// name/value pairs.
func (e *env) do(method, path, token, body string, headers ...string) *response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	e.api.Handler().ServeHTTP(rec, req)
	res := &response{status: rec.Code, header: rec.Header(), raw: rec.Body.Bytes()}
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") && !strings.HasSuffix(path, "openapi.json") {
		if err := json.NewDecoder(bytes.NewReader(res.raw)).Decode(&res.env); err != nil {
			e.t.Fatalf("%s %s: response is not an envelope: %v: %s", method, path, err, res.raw)
		}
	}
	return res
}

// flushAudit waits until every queued audit record is stored.
func (e *env) flushAudit() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.api.audit.Flush(ctx); err != nil {
		e.t.Fatal(err)
	}
}
