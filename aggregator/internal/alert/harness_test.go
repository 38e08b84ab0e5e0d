package alert

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
	"github.com/vmpulse/vmpulse/plugins/sdk/plugintest"
	"github.com/vmpulse/vmpulse/protocol"
)

// tlog is a slog logger writing to t.
func tlog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// fakeSites is the agent registry of the tests.
type fakeSites struct {
	mu sync.Mutex
	m  map[string]SiteStatus
}

func (f *fakeSites) SiteStatuses(context.Context) (map[string]SiteStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]SiteStatus{}
	for k, v := range f.m {
		out[k] = v
	}
	return out, nil
}

func (f *fakeSites) set(site string, connected bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]SiteStatus{}
	}
	f.m[site] = SiteStatus{Connected: connected}
}

// wall is a settable wall clock.
type wall struct {
	mu sync.Mutex
	t  time.Time
}

func (w *wall) Now() time.Time { w.mu.Lock(); defer w.mu.Unlock(); return w.t }

func (w *wall) Set(t time.Time) { w.mu.Lock(); w.t = t; w.mu.Unlock() }

// fixture is a fresh database with the alert tables, sites a and b, and an
// engine on it.
type fixture struct {
	t     testing.TB
	ctx   context.Context
	st    *store.Store
	pool  *pgxpool.Pool
	db    *DB
	sites *fakeSites
	clock *wall
	eng   *Engine
	seq   atomic.Uint64
	agent string
}

func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Logger: tlog(t)})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(st.Close)
	for _, s := range []string{"site-a", "site-b"} {
		if err := st.EnsureSite(ctx, s, ""); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{t: t, ctx: ctx, st: st, pool: st.Pool(), db: NewDB(st.Pool()), sites: &fakeSites{}, clock: &wall{t: time.Now().UTC()}, agent: uuid.NewString()}
	f.sites.set("site-a", true)
	f.sites.set("site-b", true)
	f.eng = f.newEngine(cfg)
	return f
}

// newEngine starts (loads) another engine on the fixture's database.
func (f *fixture) newEngine(cfg Config) *Engine {
	f.t.Helper()
	if cfg.Now == nil {
		cfg.Now = f.clock.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = tlog(f.t)
	}
	e := NewEngine(f.pool, f.sites, cfg)
	if err := e.Load(f.ctx); err != nil {
		f.t.Fatalf("engine load: %v", err)
	}
	return e
}

// rule creates a rule (enabled) and makes the engine see it.
func (f *fixture) rule(r Rule) uuid.UUID {
	f.t.Helper()
	r.Enabled = true
	if r.Severity == "" {
		r.Severity = SeverityWarning
	}
	if r.EntityKind == "" {
		r.EntityKind = KindVM
	}
	id, err := f.db.CreateRule(store.AllSites(f.ctx), r, "test")
	if err != nil {
		f.t.Fatalf("create rule %s: %v", r.Name, err)
	}
	if err := f.eng.Tick(f.ctx); err != nil {
		f.t.Fatal(err)
	}
	return id
}

// channel creates a channel posting to url.
func (f *fixture) channel(name, url string) uuid.UUID {
	f.t.Helper()
	cfg, _ := json.Marshal(map[string]any{"url": url})
	id, err := f.db.CreateChannel(f.ctx, ChannelInput{Name: name, Type: "webhook", Config: cfg, Enabled: true, Secrets: map[string]any{"secret": "s3cret"}}, "test")
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

var cpu = protocol.Counter{Name: "cpu.usage.average", Unit: "%"}
var mem = protocol.Counter{Name: "mem.usage.average", Unit: "%"}

// series builds one VM's samples of counters every step from start; vals
// are percent, one row per timestamp.
func series(source, vm string, counters []protocol.Counter, start time.Time, step time.Duration, vals ...[]float64) protocol.SeriesData {
	sd := protocol.SeriesData{Key: protocol.SeriesKey{Source: source, EntityKind: "vm", EntityID: vm, Counters: counters}}
	sd.Values = make([][]float64, len(counters))
	for i, row := range vals {
		sd.Timestamps = append(sd.Timestamps, start.Add(time.Duration(i)*step).UnixMilli())
		for c := range counters {
			v := row[c]
			if counters[c].Unit == "%" {
				v *= 100 // hundredths, as agents send them
			}
			sd.Values[c] = append(sd.Values[c], v)
		}
	}
	return sd
}

// cpuSeries is series for the cpu counter alone.
func cpuSeries(source, vm string, start time.Time, step time.Duration, pct ...float64) protocol.SeriesData {
	rows := make([][]float64, len(pct))
	for i, v := range pct {
		rows[i] = []float64{v}
	}
	return series(source, vm, []protocol.Counter{cpu}, start, step, rows...)
}

// commit stores samples as ingest would and offers them to the engine
// synchronously.
func (f *fixture) commit(site string, sds ...protocol.SeriesData) {
	f.commitTo(f.eng, site, sds...)
}

func (f *fixture) commitTo(e *Engine, site string, sds ...protocol.SeriesData) {
	f.t.Helper()
	p := &protocol.Samples{Series: sds}
	if _, err := f.st.WriteSamples(f.ctx, store.BatchMeta{AgentID: f.agent, Site: site, Epoch: 1, Seq: f.seq.Add(1), Kind: protocol.KindSamples}, p); err != nil {
		f.t.Fatalf("write samples: %v", err)
	}
	if err := e.Process(f.ctx, site, p); err != nil {
		f.t.Fatalf("process: %v", err)
	}
}

// alerts lists every alert (all states), oldest first.
func (f *fixture) alerts() []Alert {
	f.t.Helper()
	list, _, err := f.db.ListAlerts(store.AllSites(f.ctx), AlertFilter{State: "all", Sort: []SortKey{{Field: "id"}}, PageSize: 500})
	if err != nil {
		f.t.Fatal(err)
	}
	return list
}

func (f *fixture) timeline(id int64) []string {
	f.t.Helper()
	d, err := f.db.AlertDetail(store.AllSites(f.ctx), id)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, e := range d.Timeline {
		s := e.Kind
		if e.Late {
			s += "(late)"
		}
		out = append(out, s)
	}
	return out
}

// count runs a count query.
func (f *fixture) count(sql string, args ...any) int {
	f.t.Helper()
	var n int
	if err := f.pool.QueryRow(f.ctx, sql, args...).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (f *fixture) stateOf(rule uuid.UUID, vm string) string {
	var s string
	err := f.pool.QueryRow(f.ctx, `SELECT state FROM alert_states WHERE rule_id = $1 AND entity_id = $2`, rule, vm).Scan(&s)
	if err != nil {
		return "ok"
	}
	return s
}

func ptr[T any](v T) *T { return &v }

func dur(s string) Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return Duration(d)
}

// receiver is a local webhook endpoint counting deliveries by idempotency
// key. fail answers the first fail requests with 503 and a Retry-After.
type receiver struct {
	srv        *httptest.Server
	mu         sync.Mutex
	byKey      map[string]int
	bodies     []sdk.Notification
	fail       int
	retryAfter string
	first      time.Time // of the first request
	at         []time.Time
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{byKey: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.at = append(r.at, time.Now())
		if r.fail > 0 {
			r.fail--
			if r.retryAfter != "" {
				w.Header().Set("Retry-After", r.retryAfter)
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var n sdk.Notification
		_ = json.Unmarshal(body, &n)
		r.byKey[req.Header.Get("X-Vmpulse-Delivery")]++
		r.bodies = append(r.bodies, n)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) total() (requests, distinct, dups int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.byKey {
		requests += n
		distinct++
		if n > 1 {
			dups += n - 1
		}
	}
	return
}

// The webhook notifier plugin (plugins/webhook), built once per test
// binary and run as a real subprocess through the plugin host.
var (
	pluginsOnce sync.Once
	pluginsDir  string
	plugins     map[string]plugintest.Binary
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild()) // a crash test's subprocess (crash_test.go)
	}
	code := m.Run()
	if pluginsDir != "" {
		os.RemoveAll(pluginsDir)
	}
	os.Exit(code)
}

// webhookNotifier returns the Notifier of production, PluginNotifier, over
// a plugin host running the webhook plugin.
func webhookNotifier(t testing.TB) PluginNotifier {
	t.Helper()
	pluginsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vmpulse-alert-plugins-")
		if err != nil {
			t.Fatal(err)
		}
		pluginsDir = dir
		plugins = plugintest.Build(t, dir, "github.com/vmpulse/vmpulse/plugins/webhook")
	})
	if plugins == nil {
		t.Fatal("the webhook plugin did not build")
	}
	h := plugintest.Host(t, host.Config{Dir: pluginsDir, Plugins: map[string]host.PluginConfig{"webhook": {SHA256: plugins["webhook"].SHA256}},
		MaxConcurrent: 16, Logger: slog.New(slog.DiscardHandler)})
	return PluginNotifier{Host: h}
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
