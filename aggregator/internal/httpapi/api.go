// Package httpapi is vmpulse's REST API: the /api/v1 router built from one
// route table (every route declares its permission, audit action and
// documentation), the response envelope and localized errors, the
// middleware (request id, access log, panic recovery, CORS, body limit,
// timeouts, real client address), the generated OpenAPI document, and the
// handlers of the auth, users and RBAC, API token, operation log, login log,
// online users and agents modules, and the read side of the VM module
// (VMs, hosts, clusters, datastores, sites and the site resync command).
package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmpulse/vmpulse/aggregator/internal/alert"
	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/realtime"
)

// Deps are the API's collaborators, wired by main.
type Deps struct {
	Pool *pgxpool.Pool
	// Ready reports whether the database answers and is migrated
	// (store.(*Store).Ready).
	Ready  func(ctx context.Context) error
	Logger *slog.Logger
	// Now is the clock for authentication; nil means time.Now.
	Now func() time.Time
	// KeyEncryptionKey seals the JWT signing keys in the database (see
	// auth.Options.KeyEncryptionKey).
	KeyEncryptionKey []byte
	// Agents serves the /agents routes. It is required: New refuses to
	// build an API whose agent routes could not work.
	Agents AgentRegistry
	// Inventory serves the inventory read routes (/vms, /hosts, /clusters,
	// /datastores, /sites); *store.Store implements it. Required.
	Inventory Inventory
	// History serves the metric history routes (/metrics,
	// /{kind}/{id}/metrics); *store.Store implements it. Required.
	History History
	// Commander reaches the agents connected to this aggregator (site
	// resync). Required.
	Commander Commander
	// System serves the database side of the /system routes; *store.Store
	// implements it. Required.
	System SystemStore
	// Ingest reports the ingest server's state for /system/health.
	// Required.
	Ingest IngestMonitor
	// Info is the static part of /system/info (version, start time,
	// configuration summary).
	Info SystemInfo
	// Realtime is the live sample feed of the /realtime routes
	// (*realtime.Hub, fed by ingest and relayed between replicas). Nil
	// gives the API a feed of its own that nothing publishes to and that
	// relays nothing (tests).
	Realtime RealtimeFeed
	// Jobs serves /system/jobs (*jobs.Runner); nil answers 503.
	Jobs JobRunner
	// Plugins reports the plugin host's plugins for GET /system/plugins
	// and /metrics; nil when none are installed.
	Plugins PluginStatus
	// Backups serves /backups and the maintenance mode of a restore
	// (*backup.Service); nil answers 503 and never enters maintenance.
	Backups Backups
	// Alerts serves the alert routes (rules, alerts, silences, channels);
	// nil uses the alert tables of Pool (alert.NewDB), which is what main
	// wires too. The engine and the dispatcher run beside the API.
	Alerts AlertStore
	// Notifier sends channel tests and lets the notifier plugins check a
	// channel's config (alert.PluginNotifier over the plugin host); nil
	// answers the channel test with 503 NOTIFIER_UNAVAILABLE and stores
	// configs unchecked by a plugin.
	Notifier alert.Notifier
}

// API is the REST API.
type API struct {
	cfg       Config
	log       *slog.Logger
	ready     func(ctx context.Context) error
	agents    AgentRegistry
	inventory Inventory
	history   History
	commander Commander
	system    SystemStore
	ingest    IngestMonitor
	realtime  RealtimeFeed
	jobs      JobRunner
	backups   Backups
	pool      *pgxpool.Pool // settings (settings.go)
	alerts    AlertStore
	notifier  alert.Notifier
	rtLimits  realtimeLimits
	rtStop    func() // stops a feed the API made itself
	info      SystemInfo
	build     Build
	now       func() time.Time
	auth      *auth.Service
	policy    *policyCache // the lockout and session settings (settings.go)
	audit     *audit.Writer
	logs      *audit.Store
	proxies   []netip.Prefix
	routes    []Route
	handler   http.Handler
	openapi   []byte
	// metrics is the /metrics registry (nil when disabled); httpMetrics
	// count the requests; metricsToken is the SHA-256 of token_file's
	// token (nil: none configured).
	metrics      *prometheus.Registry
	httpMetrics  *httpMetrics
	metricsToken []byte
	plugins      PluginStatus
}

// New builds the API: validates cfg (defaults filled in), syncs the
// built-in roles, starts the audit writer and builds the router.
func New(cfg Config, deps Deps) (*API, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("httpapi: config: %w", err)
	}
	if deps.Pool == nil || deps.Ready == nil || deps.Agents == nil || deps.Inventory == nil || deps.History == nil ||
		deps.Commander == nil || deps.System == nil || deps.Ingest == nil {
		return nil, errors.New("httpapi: Deps.Pool, Deps.Ready, Deps.Agents, Deps.Inventory, Deps.History, Deps.Commander, Deps.System and Deps.Ingest are required")
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	info := deps.Info
	if info.StartedAt.IsZero() {
		info.StartedAt = now()
	}
	if info.Config.HTTPListen == "" {
		info.Config.HTTPListen = cfg.Listen
	}
	build := ReadBuild()
	if info.Version != "" {
		build.Version = info.Version
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The lockout and session settings (PUT /system/settings) override
	// cfg.Auth at each login and refresh (settings.go).
	policy := newPolicyCache(deps.Pool, log)
	svc, err := auth.New(deps.Pool, cfg.Auth, auth.Options{Logger: log, Now: deps.Now, KeyEncryptionKey: deps.KeyEncryptionKey,
		Policy: policy.policy})
	if err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	policy.setBase(svc.Config())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := auth.SyncBuiltins(ctx, deps.Pool); err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	proxies, _ := parsePrefixes(cfg.TrustedProxies) // validated above
	a := &API{
		cfg:       cfg,
		log:       log,
		ready:     deps.Ready,
		agents:    deps.Agents,
		inventory: deps.Inventory,
		plugins:   deps.Plugins,
		history:   deps.History,
		commander: deps.Commander,
		system:    deps.System,
		ingest:    deps.Ingest,
		realtime:  deps.Realtime,
		jobs:      deps.Jobs,
		backups:   deps.Backups,
		pool:      deps.Pool,
		alerts:    deps.Alerts,
		notifier:  deps.Notifier,
		rtLimits:  defaultRealtimeLimits,
		info:      info,
		build:     build,
		now:       now,
		auth:      svc,
		policy:    policy,
		logs:      audit.NewStore(deps.Pool),
		proxies:   proxies,
	}
	if a.alerts == nil {
		a.alerts = alert.NewDB(deps.Pool)
	}
	a.httpMetrics = newHTTPMetrics()
	if cfg.Metrics.On() && cfg.Metrics.Auth == MetricsAuthToken && cfg.Metrics.TokenFile != "" {
		if a.metricsToken, err = readMetricsToken(cfg.Metrics.TokenFile); err != nil {
			return nil, fmt.Errorf("httpapi: %w", err)
		}
	}
	a.routes = a.routeTable()
	if err := checkRoutes(a.routes); err != nil {
		return nil, fmt.Errorf("httpapi: route table: %w", err)
	}
	if a.openapi, err = a.openAPIDocument(); err != nil {
		return nil, fmt.Errorf("httpapi: openapi: %w", err)
	}
	if a.realtime == nil {
		hub := realtime.New(realtime.Options{Pool: deps.Pool, Logger: log.With("component", "realtime")})
		hctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = hub.Run(hctx) }()
		a.realtime, a.rtStop = hub, func() { stop(); <-done }
	}
	a.audit = audit.NewWriter(deps.Pool, audit.WriterOptions{Logger: log, QueueSize: cfg.AuditQueue})
	if cfg.Metrics.On() {
		if a.metrics, err = a.newMetricsRegistry(deps.Pool); err != nil {
			return nil, fmt.Errorf("httpapi: %w", err)
		}
	}
	a.handler = a.router()
	return a, nil
}

func (a *API) router() http.Handler {
	r := chi.NewRouter()
	r.Use(a.begin, a.accessLog, a.recoverer, a.cors, a.bodyLimit)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, a.log, newError(http.StatusNotFound, CodeNotFound))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, a.log, newError(http.StatusMethodNotAllowed, CodeMethodNotAllowed))
	})
	r.Get("/healthz", a.healthz)
	r.Get("/readyz", a.readyz)
	a.mountMetrics(r)
	r.Route("/api/v1", func(v chi.Router) {
		// JSON and CSV answers are compressed for clients that accept it (a
		// page of six VMs: 2,895 → 668 bytes); streams and downloads of
		// already-compressed dumps keep their own types and pass through,
		// and a WebSocket upgrade is never compressed (no content type).
		v.Use(middleware.Compress(5, "application/json", "text/csv"))
		for _, rt := range a.routes {
			v.Method(rt.Method, rt.Pattern, a.routeHandler(rt))
		}
	})
	return r
}

// Handler serves /healthz, /readyz, /metrics (when enabled) and /api/v1/....
func (a *API) Handler() http.Handler { return a.handler }

// Auth exposes the authentication service (for the WebSocket endpoint and
// later modules that authenticate on their own).
func (a *API) Auth() *auth.Service { return a.auth }

// Audit exposes the audit writer, whose Append is the entry point for
// records that do not come from HTTP requests (vCenter events), and whose
// Stats (written, failed, queued) main can export as metrics.
func (a *API) Audit() *audit.Writer { return a.audit }

// Close drains the audit writer. Call it after the HTTP server has shut
// down, so no request is still producing records.
func (a *API) Close(ctx context.Context) error {
	if a.rtStop != nil {
		a.rtStop()
	}
	if err := a.audit.Close(ctx); err != nil {
		return fmt.Errorf("httpapi: close: %w", err)
	}
	return nil
}

// ListenAndServe serves the API on cfg.Listen, over TLS when a certificate
// is configured, until ctx ends; then it shuts down gracefully (in-flight
// requests get 15 seconds). It does not Close the API.
func (a *API) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("httpapi: listen: %w", err)
	}
	return a.Serve(ctx, ln)
}

// Serve is ListenAndServe on an existing listener.
func (a *API) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	if a.cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(a.cfg.TLSCertFile, a.cfg.TLSKeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("httpapi: tls: %w", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.log.Info("api listening", "addr", ln.Addr().String(), "tls", a.cfg.TLSCertFile != "")
	select {
	case err := <-errc:
		return fmt.Errorf("httpapi: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("httpapi: shutdown: %w", err)
	}
	return nil
}

func (a *API) healthz(w http.ResponseWriter, r *http.Request) {
	writeData(w, r, http.StatusOK, map[string]string{"status": "up"})
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if err := a.ready(ctx); err != nil {
		writeError(w, r, a.log, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Err: err})
		return
	}
	writeData(w, r, http.StatusOK, map[string]string{"status": "ready"})
}
