package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/realtime"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// Metrics authentication modes (http.metrics.auth).
const (
	// MetricsAuthNone serves /metrics to anyone who reaches the listener.
	MetricsAuthNone = "none"
	// MetricsAuthToken requires a bearer token: the one in token_file, or,
	// without token_file, an API access token (session or API token) whose
	// user holds system:read.
	MetricsAuthToken = "token"
)

// MetricsConfig configures GET /metrics (Prometheus text exposition).
type MetricsConfig struct {
	// Enabled mounts /metrics; nil means true.
	Enabled *bool `yaml:"enabled"`
	// Auth is "none" or "token".
	Auth string `yaml:"auth"`
	// TokenFile holds the bearer token scrapers send (auth: token). Empty:
	// scrapers authenticate with an API token holding system:read.
	TokenFile string `yaml:"token_file"`
}

// MetricsDefaults returns the default /metrics configuration.
func MetricsDefaults() MetricsConfig {
	on := true
	return MetricsConfig{Enabled: &on, Auth: MetricsAuthToken}
}

// On reports whether /metrics is served.
func (c MetricsConfig) On() bool { return c.Enabled == nil || *c.Enabled }

// WithDefaults fills unset fields from MetricsDefaults.
func (c MetricsConfig) WithDefaults() MetricsConfig {
	d := MetricsDefaults()
	if c.Enabled == nil {
		c.Enabled = d.Enabled
	}
	if c.Auth == "" {
		c.Auth = d.Auth
	}
	return c
}

// Validate reports every invalid field, named as in YAML (relative to
// http.metrics).
func (c MetricsConfig) Validate() error {
	var errs []error
	switch c.Auth {
	case MetricsAuthNone:
		if c.TokenFile != "" {
			errs = append(errs, errors.New("token_file: only used with auth: token"))
		}
	case MetricsAuthToken:
	default:
		errs = append(errs, fmt.Errorf("auth: must be %q or %q, got %q", MetricsAuthNone, MetricsAuthToken, c.Auth))
	}
	return errors.Join(errs...)
}

// readMetricsToken reads the scrape token of path: its first line, trimmed.
func readMetricsToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("metrics.token_file: %w", err)
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	tok = strings.TrimSpace(tok)
	if len(tok) < 16 {
		return nil, fmt.Errorf("metrics.token_file %s: the token must be at least 16 characters", path)
	}
	sum := sha256.Sum256([]byte(tok))
	return sum[:], nil
}

// agentsScrapeTimeout bounds the registry read of a scrape.
const agentsScrapeTimeout = 3 * time.Second

// httpMetrics count the API's requests by route pattern.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics() *httpMetrics {
	return &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmpulse_http_requests_total",
			Help: "HTTP requests answered, by chi route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vmpulse_http_request_duration_seconds",
			Help:    "HTTP request latency, by chi route pattern and method.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
	}
}

// observe records one answered request. route is the chi route pattern
// ("" when nothing matched), so a path's ids never become labels.
func (m *httpMetrics) observe(route, method string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
	default:
		method = "OTHER"
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route, method).Observe(d.Seconds())
}

// ingestCollector exports the ingest server's counters, read at scrape time.
type ingestCollector struct {
	ingest    IngestMonitor
	commander Commander
	descs     []*prometheus.Desc
	listening *prometheus.Desc
	connected *prometheus.Desc
}

func newIngestCollector(ingest IngestMonitor, commander Commander) *ingestCollector {
	c := &ingestCollector{ingest: ingest, commander: commander,
		listening: prometheus.NewDesc("vmpulse_ingest_listening", "1 if the QUIC ingest listener is bound.", nil, nil),
		connected: prometheus.NewDesc("vmpulse_ingest_connected_agents", "Agents connected to this aggregator.", nil, nil),
	}
	for _, n := range []struct{ name, help string }{
		{"batches_stored", "Batches stored."},
		{"batches_duplicate", "Batches acknowledged as duplicates (already stored)."},
		{"batches_rejected", "Batches rejected."},
		{"samples_stored", "Samples stored."},
		{"store_retries", "Store attempts retried."},
		{"streams_refused", "Agent streams refused."},
	} {
		c.descs = append(c.descs, prometheus.NewDesc("vmpulse_ingest_"+n.name+"_total", n.help, nil, nil))
	}
	return c
}

func (c *ingestCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	ch <- c.listening
	ch <- c.connected
}

func (c *ingestCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.ingest.IngestStats()
	for i, v := range []int64{st.BatchesStored, st.BatchesDuplicate, st.BatchesRejected, st.SamplesStored, st.StoreRetries, st.StreamsRefused} {
		ch <- prometheus.MustNewConstMetric(c.descs[i], prometheus.CounterValue, float64(v))
	}
	ch <- prometheus.MustNewConstMetric(c.listening, prometheus.GaugeValue, boolFloat(st.Listening))
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, float64(len(c.commander.Connected())))
}

// agentsCollector exports the registry's view of each agent (what the
// agents last reported), read at scrape time. A failed read does not fail
// the scrape: vmpulse_agents_scrape_error says so.
type agentsCollector struct {
	list                                                  func(ctx context.Context) ([]store.Agent, error)
	log                                                   *slog.Logger
	connected, depth, bytes, oldest, lag, dropped, scrErr *prometheus.Desc
}

func newAgentsCollector(list func(ctx context.Context) ([]store.Agent, error), log *slog.Logger) *agentsCollector {
	labels := []string{"agent_id", "agent", "site"}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("vmpulse_agent_"+name, help, labels, nil)
	}
	return &agentsCollector{list: list, log: log,
		connected: d("connected", "1 if the agent is connected (registry)."),
		depth:     d("spool_depth", "Batches in the agent's spool, as last reported."),
		bytes:     d("spool_bytes", "Bytes in the agent's spool, as last reported."),
		oldest:    d("oldest_unsent_seconds", "Age of the agent's oldest unsent batch, as last reported."),
		lag:       d("collection_lag_seconds", "The agent's collection lag, as last reported."),
		dropped:   d("dropped_batches", "Batches the agent dropped (spool full), as last reported."),
		scrErr:    prometheus.NewDesc("vmpulse_agents_scrape_error", "1 if the agent registry could not be read for this scrape.", nil, nil),
	}
}

func (c *agentsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connected, c.depth, c.bytes, c.oldest, c.lag, c.dropped, c.scrErr} {
		ch <- d
	}
}

func (c *agentsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), agentsScrapeTimeout)
	defer cancel()
	agents, err := c.list(ctx)
	if err != nil {
		c.log.Warn("metrics: reading the agent registry", "err", err)
		ch <- prometheus.MustNewConstMetric(c.scrErr, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.scrErr, prometheus.GaugeValue, 0)
	for _, a := range agents {
		if a.RevokedAt != nil {
			continue
		}
		l := []string{a.ID, a.Name, a.Site}
		g := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
		}
		g(c.connected, boolFloat(a.Connected))
		g(c.depth, float64(a.SpoolDepth))
		g(c.bytes, float64(a.SpoolBytes))
		g(c.oldest, float64(a.OldestUnsentMS)/1000)
		g(c.lag, float64(a.LagMS)/1000)
		g(c.dropped, float64(a.Dropped))
	}
}

// poolCollector exports the database pool's statistics.
type poolCollector struct {
	pool                                                  *pgxpool.Pool
	acquired, idle, total, max, acquires, emptyAcq, waitS *prometheus.Desc
}

func newPoolCollector(pool *pgxpool.Pool) *poolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("vmpulse_db_pool_"+name, help, nil, nil)
	}
	return &poolCollector{pool: pool,
		acquired: d("acquired_conns", "Connections currently acquired."),
		idle:     d("idle_conns", "Idle connections."),
		total:    d("total_conns", "Connections open (acquired, idle and being opened)."),
		max:      d("max_conns", "The pool's maximum size."),
		acquires: d("acquires_total", "Successful acquires."),
		emptyAcq: d("empty_acquires_total", "Acquires that had to wait for a connection."),
		waitS:    d("acquire_wait_seconds_total", "Time spent waiting in acquires."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.max, c.acquires, c.emptyAcq, c.waitS} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	g := func(d *prometheus.Desc, t prometheus.ValueType, v float64) {
		ch <- prometheus.MustNewConstMetric(d, t, v)
	}
	g(c.acquired, prometheus.GaugeValue, float64(s.AcquiredConns()))
	g(c.idle, prometheus.GaugeValue, float64(s.IdleConns()))
	g(c.total, prometheus.GaugeValue, float64(s.TotalConns()))
	g(c.max, prometheus.GaugeValue, float64(s.MaxConns()))
	g(c.acquires, prometheus.CounterValue, float64(s.AcquireCount()))
	g(c.emptyAcq, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	g(c.waitS, prometheus.CounterValue, s.AcquireDuration().Seconds())
}

// auditCollector exports the audit writer's and the login log's counters.
type auditCollector struct {
	a                       *API
	written, failed, queued *prometheus.Desc
	sanitized, fallbacks    *prometheus.Desc
	login                   *prometheus.Desc
}

func (c *auditCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.written, c.failed, c.queued, c.sanitized, c.fallbacks, c.login} {
		ch <- d
	}
}

func (c *auditCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.a.audit.Stats()
	ch <- prometheus.MustNewConstMetric(c.written, prometheus.CounterValue, float64(st.Written))
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(st.Failed))
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(st.Queued))
	ch <- prometheus.MustNewConstMetric(c.sanitized, prometheus.CounterValue, float64(st.Sanitized))
	ch <- prometheus.MustNewConstMetric(c.fallbacks, prometheus.CounterValue, float64(st.Fallbacks))
	ls := c.a.logs.LoginStats()
	ch <- prometheus.MustNewConstMetric(c.login, prometheus.CounterValue, float64(ls.Written), "written")
	ch <- prometheus.MustNewConstMetric(c.login, prometheus.CounterValue, float64(ls.Failed), "failed")
	ch <- prometheus.MustNewConstMetric(c.login, prometheus.CounterValue, float64(ls.Sanitized), "sanitized")
}

// RealtimeStats reports the realtime hub's counters for /metrics and
// /system/health; *realtime.Hub implements it. A RealtimeFeed without it
// has neither.
type RealtimeStats interface {
	Stats() realtime.Stats
}

// realtimeCollector exports the realtime hub's counters, read at scrape
// time; nothing when the API's feed does not report them.
type realtimeCollector struct {
	a        *API
	counters []*prometheus.Desc
	gauges   []*prometheus.Desc
}

func newRealtimeCollector(a *API) *realtimeCollector {
	c := &realtimeCollector{a: a}
	for _, n := range []struct{ name, help string }{
		{"batches_published_total", "Samples batches this replica's ingest handed to the realtime hub."},
		{"batches_received_total", "Samples batches received from other replicas through the relay."},
		{"batches_dispatched_total", "Batches fanned out to realtime clients."},
		{"queue_drops_total", "Batches not fanned out: the hub's queue was full."},
		{"samples_delivered_total", "Samples handed to realtime subscriptions."},
		{"slow_consumers_total", "Realtime subscriptions and feeds dropped for a full buffer."},
		{"relay_notifications_sent_total", "Relay notifications sent to the other replicas."},
		{"relay_notifications_received_total", "Relay notifications received from the other replicas."},
		{"relay_own_skipped_total", "Relay notifications of this replica's own, ignored."},
		{"relay_drops_total", "Batches not relayed to the other replicas: the relay queue was full."},
		{"relay_oversize_total", "Batch pieces too large to relay."},
		{"relay_errors_total", "Relay errors: a notification not sent or malformed, or the LISTEN connection lost (what was notified meanwhile was missed)."},
	} {
		c.counters = append(c.counters, prometheus.NewDesc("vmpulse_realtime_"+n.name, n.help, nil, nil))
	}
	for _, n := range []struct{ name, help string }{
		{"subscriptions", "Realtime subscriptions open (WebSocket and stream clients)."},
		{"feeds", "Realtime feeds open (consumers of every batch)."},
		{"relay_enabled", "1 if the relay between replicas is on."},
		{"relay_listening", "1 if the relay's LISTEN connection is up."},
	} {
		c.gauges = append(c.gauges, prometheus.NewDesc("vmpulse_realtime_"+n.name, n.help, nil, nil))
	}
	return c
}

func (c *realtimeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.counters {
		ch <- d
	}
	for _, d := range c.gauges {
		ch <- d
	}
}

func (c *realtimeCollector) Collect(ch chan<- prometheus.Metric) {
	rt, ok := c.a.realtime.(RealtimeStats)
	if !ok {
		return
	}
	st := rt.Stats()
	for i, v := range []int64{st.Published, st.Received, st.Dispatched, st.QueueDrops, st.Delivered, st.SlowConsumers,
		st.RelaySent, st.RelayReceived, st.RelayOwnSkipped, st.RelayDrops, st.RelayOversize, st.RelayErrors} {
		ch <- prometheus.MustNewConstMetric(c.counters[i], prometheus.CounterValue, float64(v))
	}
	for i, v := range []float64{float64(st.Subscriptions), float64(st.Feeds), boolFloat(st.Relay), boolFloat(st.RelayListening)} {
		ch <- prometheus.MustNewConstMetric(c.gauges[i], prometheus.GaugeValue, v)
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// newMetricsRegistry builds the API's own registry (never the global one):
// Go runtime, process, HTTP, ingest, agents, database pool, audit and the
// realtime hub.
func (a *API) newMetricsRegistry(pool *pgxpool.Pool) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		a.httpMetrics.requests,
		a.httpMetrics.duration,
		newIngestCollector(a.ingest, a.commander),
		// The exposition is the fleet's, not a user's: every site.
		newAgentsCollector(func(ctx context.Context) ([]store.Agent, error) { return a.agents.Agents(store.AllSites(ctx)) }, a.log),
		newPoolCollector(pool),
		newRealtimeCollector(a),
		&auditCollector{a: a,
			written: prometheus.NewDesc("vmpulse_audit_records_written_total", "Audit records written.", nil, nil),
			failed:  prometheus.NewDesc("vmpulse_audit_records_failed_total", "Audit records that could not be written.", nil, nil),
			queued:  prometheus.NewDesc("vmpulse_audit_records_queued", "Audit records waiting to be written.", nil, nil),
			sanitized: prometheus.NewDesc("vmpulse_audit_records_sanitized_total",
				"Audit records stored with text escaped or cut (hostile bytes in a header, path or field).", nil, nil),
			fallbacks: prometheus.NewDesc("vmpulse_audit_batch_fallbacks_total",
				"Audit batches the database refused for their content and that were written record by record.", nil, nil),
			login: prometheus.NewDesc("vmpulse_login_log_records_total", "Login-log records by outcome of the write.", []string{"result"}, nil),
		},
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	if m, ok := a.plugins.(interface{ Metrics() prometheus.Collector }); ok {
		if err := reg.Register(m.Metrics()); err != nil {
			return nil, fmt.Errorf("metrics: plugins: %w", err)
		}
	}
	return reg, nil
}

// metricsHandler serves the registry behind the configured authentication.
func (a *API) metricsHandler(reg *prometheus.Registry) http.Handler {
	var h http.Handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       a.cfg.RequestTimeout,
	})
	switch {
	case a.cfg.Metrics.Auth == MetricsAuthNone:
	case a.metricsToken != nil:
		next := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			bearer, ok := bearerToken(r)
			sum := sha256.Sum256([]byte(bearer))
			if !ok || subtle.ConstantTimeCompare(sum[:], a.metricsToken) != 1 {
				writeError(w, r, a.log, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Err: errors.New("metrics: missing or wrong scrape token")})
				return
			}
			next.ServeHTTP(w, r)
		})
	default: // token without token_file: an API credential with system:read
		// The exposition is the whole fleet's (every site's agents): a
		// credential limited to some sites may not read it.
		next := h
		h = a.authorize(Route{Method: http.MethodGet, Pattern: "/metrics", Access: auth.PermSystemRead},
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if p, ok := auth.PrincipalFrom(r.Context()); ok && !p.Scope.Unrestricted() {
					e := newError(http.StatusForbidden, CodeScopeRestricted)
					writeError(w, r, a.log, e)
					return
				}
				next.ServeHTTP(w, r)
			}))
	}
	return withTimeout(a.cfg.RequestTimeout, h)
}

// mountMetrics adds GET /metrics to r when it is enabled.
func (a *API) mountMetrics(r chi.Router) {
	if a.metrics != nil {
		r.Method(http.MethodGet, "/metrics", a.metricsHandler(a.metrics))
	}
}
