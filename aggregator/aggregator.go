package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

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
	httpLn net.Listener
	http   *http.Server
}

// New opens the database (applying migrations), loads or creates the CA,
// and binds the QUIC and HTTP listeners. Run serves them.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	st, err := store.Open(ctx, string(cfg.DatabaseURL), store.Options{
		MaxConns:        cfg.Database.MaxConns,
		Logger:          log.With("component", "store"),
		PartitionsAhead: cfg.Database.PartitionsAhead,
	})
	if err != nil {
		return nil, err
	}
	ca, err := pki.LoadOrCreate(cfg.DataDir, cfg.Ingest.ServerNames)
	if err != nil {
		st.Close()
		return nil, err
	}
	a := &Aggregator{cfg: cfg, log: log, Store: st, CA: ca}
	a.Ingest = ingest.New(ingest.Config{
		Addr:              cfg.Ingest.Listen,
		HeartbeatInterval: time.Duration(cfg.Ingest.HeartbeatInterval),
		MaxInFlight:       cfg.Ingest.MaxInFlight,
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
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		if err := st.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `{"status":"unavailable","reason":%q}`, err.Error())
			return
		}
		fmt.Fprint(w, `{"status":"ready"}`)
	})
	a.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return a, nil
}

// IngestAddr is the bound QUIC address.
func (a *Aggregator) IngestAddr() net.Addr { return a.Ingest.Addr() }

// HTTPAddr is the bound HTTP address.
func (a *Aggregator) HTTPAddr() net.Addr { return a.httpLn.Addr() }

// Run serves until ctx ends, then shuts down in order: stop accepting, let
// in-flight requests finish, close the database.
func (a *Aggregator) Run(ctx context.Context) error {
	defer a.Store.Close()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.Ingest.Serve(ctx) })
	g.Go(func() error {
		var err error
		if a.cfg.HTTP.TLSCert != "" {
			err = a.http.ServeTLS(a.httpLn, a.cfg.HTTP.TLSCert, a.cfg.HTTP.TLSKey)
		} else {
			err = a.http.Serve(a.httpLn)
		}
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("http: %w", err)
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return a.http.Shutdown(sctx)
	})
	g.Go(func() error { a.maintainPartitions(ctx); return nil })
	a.log.Info("aggregator running", "ingest", a.IngestAddr().String(), "http", a.HTTPAddr().String(), "timescaledb", a.Store.Timescale())
	return g.Wait()
}

// maintainPartitions keeps daily partitions created ahead and drops the
// ones past retention, hourly.
func (a *Aggregator) maintainPartitions(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		now := time.Now()
		if err := a.Store.EnsurePartitions(ctx, now, now.AddDate(0, 0, a.cfg.Database.PartitionsAhead)); err != nil && ctx.Err() == nil {
			a.log.Error("partition maintenance failed", "err", err)
		}
		if a.cfg.Retention.Raw > 0 {
			dropped, err := a.Store.DropPartitionsBefore(ctx, now.Add(-time.Duration(a.cfg.Retention.Raw)))
			if err != nil && ctx.Err() == nil {
				a.log.Error("retention failed", "err", err)
			}
			if len(dropped) > 0 {
				a.log.Info("retention dropped raw partitions", "partitions", dropped)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
	if err := st.EnsureSite(ctx, site, ""); err != nil {
		return "", time.Time{}, err
	}
	secret, exp, err := st.CreateEnrollmentToken(ctx, site, ttl, createdBy)
	if err != nil {
		return "", time.Time{}, err
	}
	return protocol.FormatEnrollToken(secret, ca.Cert.Raw), exp, nil
}
