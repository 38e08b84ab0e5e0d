package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vmpulse/vmpulse/aggregator/internal/httpapi"
	"github.com/vmpulse/vmpulse/aggregator/internal/ingest"
	"github.com/vmpulse/vmpulse/aggregator/internal/pki"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
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
	httpLn net.Listener
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
	a.Ingest = ingest.New(ingest.Config{
		Addr:              cfg.Ingest.Listen,
		HeartbeatInterval: time.Duration(cfg.Ingest.HeartbeatInterval),
		MaxInFlight:       cfg.Ingest.MaxInFlight,
		AgentCertLifetime: time.Duration(cfg.Ingest.AgentCertLifetime),
		Logger:            log.With("component", "ingest"),
	}, st, ca)
	if err := a.Ingest.Listen(); err != nil {
		st.Close()
		return nil, err
	}
	if a.httpLn, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
		st.Close()
		return nil, fmt.Errorf("http: listen %s: %w", cfg.HTTP.Listen, err)
	}
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
		System: st,
		Ingest: ingestMonitor{a.Ingest},
		Info:   httpapi.SystemInfo{StartedAt: started, Config: configSummary(cfg)},
	})
	if err != nil {
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
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.Ingest.Serve(ctx) })
	g.Go(func() error {
		err := a.API.Serve(ctx, a.httpLn)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return errors.Join(err, a.API.Close(cctx))
	})
	g.Go(func() error { a.every(ctx, time.Minute, "rollups", a.rollups); return nil })
	g.Go(func() error { a.every(ctx, time.Hour, "partitions and retention", a.maintain); return nil })
	a.log.Info("aggregator running", "ingest", a.IngestAddr().String(), "http", a.HTTPAddr().String(), "timescaledb", a.Store.Timescale())
	return g.Wait()
}

// every runs job now and then at each interval until ctx ends; a failed
// run is logged and retried at the next tick.
func (a *Aggregator) every(ctx context.Context, interval time.Duration, name string, job func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := job(ctx); err != nil && ctx.Err() == nil {
			a.log.Error(name+" failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Aggregator) rollups(ctx context.Context) error {
	rep, err := a.Store.RunRollups(ctx, time.Now())
	if err != nil {
		return err
	}
	if rep.Batches > 0 {
		a.log.Debug("rollups", "batches", rep.Batches, "took", rep.Duration)
	}
	return nil
}

// maintain keeps daily partitions created ahead and applies retention.
func (a *Aggregator) maintain(ctx context.Context) error {
	now := time.Now()
	if err := a.Store.EnsurePartitions(ctx, now, now.AddDate(0, 0, a.cfg.Database.PartitionsAhead)); err != nil {
		return err
	}
	r := a.cfg.Retention
	rep, err := a.Store.ApplyRetention(ctx, now, store.Retention{
		Raw: time.Duration(r.Raw), R5m: time.Duration(r.R5m), R1h: time.Duration(r.R1h), R1d: time.Duration(r.R1d)})
	if err != nil {
		return err
	}
	if len(rep.DroppedPartitions) > 0 || rep.Deleted5m+rep.Deleted1h+rep.Deleted1d > 0 {
		a.log.Info("retention applied", "dropped_partitions", rep.DroppedPartitions,
			"deleted_5m", rep.Deleted5m, "deleted_1h", rep.Deleted1h, "deleted_1d", rep.Deleted1d)
	}
	return nil
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
