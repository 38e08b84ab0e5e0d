package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vmpulse/vmpulse/aggregator/internal/alert"
	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/backup"
	"github.com/vmpulse/vmpulse/aggregator/internal/console"
	"github.com/vmpulse/vmpulse/aggregator/internal/httpapi"
	"github.com/vmpulse/vmpulse/aggregator/internal/ingest"
	"github.com/vmpulse/vmpulse/aggregator/internal/jobs"
	"github.com/vmpulse/vmpulse/aggregator/internal/pki"
	"github.com/vmpulse/vmpulse/aggregator/internal/realtime"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
	"github.com/vmpulse/vmpulse/protocol"
)

// Aggregator is a running aggregator: its database, CA, QUIC ingest and
// HTTP listener.
type Aggregator struct {
	cfg    Config
	log    *slog.Logger
	Store  *store.Store
	CA     *pki.CA
	Ingest *ingest.Server
	API    *httpapi.API
	// Realtime is the live sample feed: ingest publishes to it after
	// COMMIT, the API's realtime routes serve it, and it relays to and
	// from the other replicas through PostgreSQL.
	Realtime *realtime.Hub
	// Jobs runs the maintenance jobs; Backups makes and restores backups
	// and keeps this replica in step with a restore's maintenance mode.
	Jobs    *jobs.Runner
	Backups *backup.Service
	// Alerts evaluates the rules on what this replica ingests; Dispatcher
	// sends the notifications while this replica holds the lease, through
	// the notifier plugins of plugins (nil when none are installed).
	Alerts     *alert.Engine
	Dispatcher *alert.Dispatcher
	plugins    *host.Host
	httpLn     net.Listener
}

// New opens the database (applying migrations), loads or creates the CA,
// and binds the QUIC and HTTP listeners. Run serves them. log should carry
// no component: each part adds its own.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Aggregator, error) {
	started := time.Now()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	st, err := store.Open(ctx, string(cfg.DatabaseURL), store.Options{
		MaxConns:        cfg.Database.MaxConns,
		Logger:          log.With("component", "store"),
		PartitionsAhead: cfg.Database.PartitionsAhead,
		MaxSampleAge:    time.Duration(cfg.Retention.Raw),
	})
	if err != nil {
		return nil, err
	}
	ca, err := pki.LoadOrCreate(cfg.DataDir, cfg.Ingest.ServerNames)
	if err != nil {
		st.Close()
		return nil, err
	}
	a := &Aggregator{cfg: cfg, log: log.With("component", "aggregator"), Store: st, CA: ca}
	a.Realtime = realtime.New(realtime.Options{Pool: st.Pool(), Relay: true, Logger: log.With("component", "realtime")})
	a.Ingest = ingest.New(ingest.Config{
		Addr:              cfg.Ingest.Listen,
		HeartbeatInterval: time.Duration(cfg.Ingest.HeartbeatInterval),
		MaxInFlight:       cfg.Ingest.MaxInFlight,
		AgentCertLifetime: time.Duration(cfg.Ingest.AgentCertLifetime),
		Publisher:         a.Realtime,
		// vCenter's alarm events go to the alert engine after COMMIT.
		Events: alarmFeed{a},
		// One replica of several: commands and revocations reach the
		// agents of every replica; the replica registers itself.
		Cluster: &ingest.Cluster{Pool: st.Pool(), Registry: st, Version: httpapi.ReadBuild().Version,
			HTTPAddr: func() string {
				if a.httpLn == nil {
					return ""
				}
				return a.httpLn.Addr().String()
			}},
		Logger: log.With("component", "ingest"),
	}, st, ca)
	if err := a.Ingest.Listen(); err != nil {
		st.Close()
		return nil, err
	}
	if err := a.newOps(ctx, cfg, log); err != nil {
		st.Close()
		return nil, err
	}
	if a.httpLn, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
		st.Close()
		return nil, fmt.Errorf("http: listen %s: %w", cfg.HTTP.Listen, err)
	}
	notifier := a.newAlerts(ctx, cfg, log)
	kek := ca.DeriveKey("vmpulse jwt key encryption v1")
	a.API, err = httpapi.New(cfg.HTTP, httpapi.Deps{
		Pool: st.Pool(), Ready: st.Ready, Logger: log.With("component", "api"),
		// The JWT signing keys in the database are sealed with a key only
		// holders of the CA key (data_dir/ca.key) can derive.
		KeyEncryptionKey: kek[:],
		Agents:           agentRegistry{Store: st, ingest: a.Ingest, caDER: ca.Cert.Raw},
		// The inventory routes query the store; site resync reaches the
		// agents through this aggregator's QUIC connections.
		Inventory: st,
		History:   st,
		Commander: a.Ingest,
		// /system: the store's catalog queries, the ingest counters, and
		// the build (the version main sets with -ldflags is read back from
		// the binary's build information: httpapi.ReadBuild).
		System:   st,
		Ingest:   ingestMonitor{a.Ingest},
		Info:     httpapi.SystemInfo{StartedAt: started, Config: configSummary(cfg)},
		Realtime: a.Realtime,
		Jobs:     a.Jobs,
		Backups:  a.Backups,
		Alerts:   alert.NewDB(st.Pool()),
		Notifier: notifier,
		Plugins:  pluginStatus(a.plugins),
	})
	if err != nil {
		a.httpLn.Close()
		st.Close()
		return nil, err
	}
	// The web console (static files, embedded with -tags console) answers
	// every path outside the API's routes: / and the console's own URLs.
	if err := console.Mount(a.API.Handler(), console.Handler()); err != nil {
		a.httpLn.Close()
		st.Close()
		return nil, err
	}
	return a, nil
}

// IngestAddr is the bound QUIC address.
func (a *Aggregator) IngestAddr() net.Addr { return a.Ingest.Addr() }

// HTTPAddr is the bound HTTP address.
func (a *Aggregator) HTTPAddr() net.Addr { return a.httpLn.Addr() }

// Run serves until ctx ends, then shuts down in order: stop accepting, let
// in-flight requests finish and drain the agent connections (every batch
// read is committed and acknowledged, and the agents are told the
// aggregator is going away, within ingest.DefaultDrainTimeout), drain the
// audit log, close the database.
func (a *Aggregator) Run(ctx context.Context) error {
	defer a.Store.Close()
	defer a.Backups.Close() // cancels a backup or restore this replica runs
	// A replica starting while a restore runs elsewhere must not commit.
	if err := a.Backups.CheckMaintenance(ctx); err != nil {
		a.log.Warn("maintenance check failed; ingest stays paused until it succeeds", "err", err)
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.Ingest.Serve(ctx) })
	// When ctx ends the feed stops, which ends the WebSocket and stream
	// connections, so the HTTP server's shutdown does not wait for them.
	g.Go(func() error { return a.Realtime.Run(ctx) })
	g.Go(func() error {
		err := a.API.Serve(ctx, a.httpLn)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return errors.Join(err, a.API.Close(cctx))
	})
	// Partitions, rollups, retention, reordering, cleanup and scheduled
	// backups: each job runs on one replica at a time (jobs.Runner).
	g.Go(func() error { return a.Jobs.Run(ctx) })
	// Every replica follows the maintenance mode of a restore.
	g.Go(func() error { return a.Backups.Watch(ctx) })
	// Alerts: every replica evaluates the batches it committed (the
	// realtime feed); one at a time delivers the outbox.
	g.Go(func() error { return a.Alerts.Run(ctx) })
	g.Go(func() error { return a.Alerts.Consume(ctx, a.Realtime) })
	if a.Dispatcher != nil {
		g.Go(func() error { return a.Dispatcher.Run(ctx) })
	}
	if a.plugins != nil {
		defer a.plugins.Close()
	}
	a.log.Info("aggregator running", "ingest", a.IngestAddr().String(), "http", a.HTTPAddr().String(), "timescaledb", a.Store.Timescale())
	return g.Wait()
}

// alarmFeed hands each committed events batch to the alert engine (made
// after the ingest server, before it serves).
type alarmFeed struct{ a *Aggregator }

func (f alarmFeed) PublishEvents(site, agentID string, ev *protocol.Events) {
	if f.a.Alerts != nil {
		f.a.Alerts.PublishEvents(site, agentID, ev)
	}
}

// newAlerts makes the alert engine and, when notifier plugins are
// installed, the plugin host and the dispatcher; it returns the notifier
// (nil when there is none).
//
// The notifier plugins are the executables in plugins.dir (default
// data_dir/plugins), each pinned by its SHA-256: by plugins.notifiers in the
// config or, when that lists none, by plugins.dir/SHA256SUMS (sha256sum's
// format); an unpinned plugin, or one whose checksum differs, is refused
// (startNotifierPlugins logs each). Without that folder notifications stay
// queued in the outbox.
func (a *Aggregator) newAlerts(ctx context.Context, cfg Config, log *slog.Logger) alert.Notifier {
	a.Alerts = alert.NewEngine(a.Store.Pool(), alert.SitesFromAgents(a.Store), alert.Config{Logger: log.With("component", "alert")})
	if n, err := alert.NewDB(a.Store.Pool()).InstallDefaultPack(ctx); err != nil {
		a.log.Error("alert default pack not installed", "err", err)
	} else if n > 0 {
		a.log.Info("alert default pack installed", "rules", n)
	}
	h := startNotifierPlugins(ctx, cfg, log)
	if h == nil {
		return nil
	}
	a.plugins = h
	name, _ := os.Hostname()
	n := alert.PluginNotifier{Host: h}
	a.Dispatcher = alert.NewDispatcher(a.Store.Pool(), n, alert.DispatcherConfig{Name: name + " " + cfg.HTTP.Listen, Logger: log.With("component", "alert-dispatcher")})
	return n
}

// newOps makes the backup service and the job runner, and writes the
// jobs' rows.
func (a *Aggregator) newOps(ctx context.Context, cfg Config, log *slog.Logger) error {
	dir := cfg.Backup.Dir
	if dir == "" {
		dir = filepath.Join(cfg.DataDir, "backups")
	}
	var err error
	a.Backups, err = backup.New(a.Store, backup.Options{Dir: dir, BinDir: cfg.Backup.PgBinDir, Compression: cfg.Backup.Compression,
		Pauser: a.Ingest, Logger: log.With("component", "backup"),
		// Scheduled backups and the outcome of restores are audited like
		// API calls (the API exists by the time they run).
		Audit: func(ctx context.Context, rec audit.Record) {
			if a.API == nil {
				return
			}
			if err := a.API.Audit().Append(ctx, rec); err != nil {
				a.log.Warn("audit append failed", "action", rec.Action, "err", err)
			}
		}})
	if err != nil {
		return err
	}
	r := cfg.Retention
	maint := jobs.Maintenance(a.Store, jobs.MaintenanceConfig{
		Schedules: map[string]string{jobs.JobPartitions: cfg.Jobs.Partitions, jobs.JobRollups: cfg.Jobs.Rollups,
			jobs.JobRetention: cfg.Jobs.Retention, jobs.JobReorder: cfg.Jobs.Reorder, jobs.JobCleanup: cfg.Jobs.Cleanup},
		PartitionsAhead: cfg.Database.PartitionsAhead,
		// PUT /system/settings overrides the file's retention, on every
		// replica at its next run.
		Retention: func(ctx context.Context) (store.Retention, error) {
			return jobs.StoredRetention(ctx, a.Store.Pool(),
				store.Retention{Raw: time.Duration(r.Raw), R5m: time.Duration(r.R5m), R1h: time.Duration(r.R1h), R1d: time.Duration(r.R1d)})
		},
	})
	a.Jobs, err = jobs.New(a.Store.Pool(), jobs.Options{RetryBase: time.Duration(cfg.Jobs.RetryBase), RetryMax: time.Duration(cfg.Jobs.RetryMax),
		Logger: log.With("component", "jobs")}, append(maint, a.Backups.Job())...)
	if err != nil {
		return err
	}
	return a.Jobs.Sync(ctx)
}

// IssueEnrollToken issues a single-use enrollment token for site (created
// if new), valid for ttl. It opens the database and the CA but binds no
// listener, so it can run beside a serving aggregator.
func IssueEnrollToken(ctx context.Context, cfg Config, site string, ttl time.Duration, createdBy string) (string, time.Time, error) {
	if err := cfg.Validate(); err != nil {
		return "", time.Time{}, fmt.Errorf("config: %w", err)
	}
	st, err := store.Open(ctx, string(cfg.DatabaseURL), store.Options{MaxConns: 2})
	if err != nil {
		return "", time.Time{}, err
	}
	defer st.Close()
	ca, err := pki.LoadOrCreate(cfg.DataDir, cfg.Ingest.ServerNames)
	if err != nil {
		return "", time.Time{}, err
	}
	return issueEnrollToken(ctx, st, ca.Cert.Raw, site, ttl, createdBy)
}

// issueEnrollToken creates site if new and issues a token for it that pins
// the CA certificate caDER.
func issueEnrollToken(ctx context.Context, st *store.Store, caDER []byte, site string, ttl time.Duration, createdBy string) (string, time.Time, error) {
	if err := st.EnsureSite(ctx, site, ""); err != nil {
		return "", time.Time{}, err
	}
	secret, exp, err := st.CreateEnrollmentToken(ctx, site, ttl, createdBy)
	if err != nil {
		return "", time.Time{}, err
	}
	return protocol.FormatEnrollToken(secret, caDER), exp, nil
}

// agentRegistry is the API's view of the agents (httpapi.AgentRegistry):
// the registry in the database (Agents, AgentByID, RevokeAgent come from
// the embedded store), this aggregator's live agent connections, and the
// CA certificate that enrollment tokens pin.
type agentRegistry struct {
	*store.Store
	ingest *ingest.Server
	caDER  []byte
}

var (
	_ httpapi.AgentRegistry = agentRegistry{}
	_ httpapi.Inventory     = (*store.Store)(nil)
	_ httpapi.Commander     = (*ingest.Server)(nil)
	_ httpapi.SystemStore   = (*store.Store)(nil)
	_ httpapi.IngestMonitor = ingestMonitor{}
	_ httpapi.RealtimeFeed  = (*realtime.Hub)(nil)
	_ ingest.Publisher      = (*realtime.Hub)(nil)
	_ httpapi.JobRunner     = (*jobs.Runner)(nil)
	_ httpapi.Backups       = (*backup.Service)(nil)
	_ backup.Pauser         = (*ingest.Server)(nil)
)

// IssueEnrollToken issues a token for site (created if new), valid for ttl.
func (r agentRegistry) IssueEnrollToken(ctx context.Context, site string, ttl time.Duration, createdBy string) (string, time.Time, error) {
	return issueEnrollToken(ctx, r.Store, r.caDER, site, ttl, createdBy)
}

// Disconnect closes the agent's connection to this aggregator, if any.
func (r agentRegistry) Disconnect(agentID string) { r.ingest.Disconnect(agentID) }

// ingestMonitor is the API's view of the ingest server's state
// (httpapi.IngestMonitor).
type ingestMonitor struct{ s *ingest.Server }

// IngestStats reads the counters since start and the bound address.
func (m ingestMonitor) IngestStats() httpapi.IngestStats {
	st := &m.s.Stats
	out := httpapi.IngestStats{
		BatchesStored: st.BatchesStored.Load(), BatchesDuplicate: st.BatchesDuplicate.Load(),
		BatchesRejected: st.BatchesRejected.Load(), SamplesStored: st.SamplesStored.Load(),
		StoreRetries: st.StoreRetries.Load(), StreamsRefused: st.StreamsRefused.Load(),
	}
	// New binds the listener before the API exists and it stays bound
	// until Run returns.
	if addr := m.s.Addr(); addr != nil {
		out.Listening, out.Addr = true, addr.String()
	}
	return out
}

// configSummary is the configuration /system/info shows: no database URL,
// no data directory, no TLS key paths.
func configSummary(cfg Config) httpapi.ConfigSummary {
	d := func(v Duration) string { return httpapi.FormatDuration(time.Duration(v)) }
	return httpapi.ConfigSummary{
		IngestListen:      cfg.Ingest.Listen,
		HeartbeatInterval: d(cfg.Ingest.HeartbeatInterval),
		AgentCertLifetime: d(cfg.Ingest.AgentCertLifetime),
		Retention: map[string]string{"raw": d(cfg.Retention.Raw), "5m": d(cfg.Retention.R5m),
			"1h": d(cfg.Retention.R1h), "1d": d(cfg.Retention.R1d)},
		HTTPListen: cfg.HTTP.Listen,
	}
}

// pluginStatus is the API's view of the plugin host: nil (not a typed nil)
// when no plugins are installed.
func pluginStatus(h *host.Host) httpapi.PluginStatus {
	if h == nil {
		return nil
	}
	return h
}
