package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vmpulse/vmpulse/agent/internal/collectors"
	"github.com/vmpulse/vmpulse/agent/internal/metrics"
	"github.com/vmpulse/vmpulse/agent/internal/spool"
	"github.com/vmpulse/vmpulse/agent/internal/uplink"
	"github.com/vmpulse/vmpulse/agent/internal/vsphere"
	"github.com/vmpulse/vmpulse/protocol"
	"github.com/vmpulse/vmpulse/protocol/buildinfo"
)

// maxCellsPerBatch splits large sample payloads (a restart re-reading an
// hour of realtime data) into batches of at most this many cells (as
// protocol.SeriesCost counts them), well under protocol.MaxValuesPerBatch
// and a few MB on the wire.
const maxCellsPerBatch = 1 << 21

// Agent is a running agent.
type Agent struct {
	cfg     Config
	version string
	log     *slog.Logger
	spool   *spool.Queue
	up      *uplink.Client

	plugins *collectors.Runtime // nil without collector plugins
	metrics *metrics.Metrics
	perfMu  sync.Mutex
	perfs   []perfCollector

	newestSample atomic.Int64 // Unix ms of the newest sample spooled
	spoolErrors  atomic.Int64
	inventories  []*vsphere.Inventory
}

// New opens the spool and loads (or, with an enrollment token, creates)
// the agent's identity. Run starts collecting and sending.
func New(ctx context.Context, cfg Config, version string, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, version: version, log: log}
	alog := log.With("component", "agent")
	idDir := filepath.Join(cfg.DataDir, "identity")
	id, err := uplink.LoadIdentity(idDir)
	if errors.Is(err, uplink.ErrNotEnrolled) {
		if cfg.EnrollToken == "" {
			return nil, fmt.Errorf("agent is not enrolled: issue a token with `vmpulse-aggregator enroll-token -site NAME` and pass it in VMPULSE_ENROLL_TOKEN, -enroll-token or aggregator.enroll_token_file")
		}
		ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
		id, err = uplink.Enroll(ectx, cfg.Aggregator.Address, cfg.EnrollToken, cfg.Name, version, idDir)
		cancel()
		if err != nil {
			return nil, err
		}
		alog.Info("enrolled with the aggregator", "agent", id.AgentID, "site", id.Site)
	} else if err != nil {
		return nil, err
	}
	a.spool, err = spool.Open(filepath.Join(cfg.DataDir, "spool"), spool.Options{
		MaxBytes:     cfg.Spool.MaxBytes,
		MinFreeBytes: cfg.Spool.MinFreeBytes,
		SyncInterval: time.Duration(cfg.Spool.SyncInterval),
		Logger:       log.With("component", "spool"),
	})
	if err != nil {
		return nil, err
	}
	var pluginStatus func() []protocol.PluginStatus
	if len(cfg.Plugins.Collectors) > 0 {
		a.plugins, err = collectors.New(collectors.Config{
			Dir: cfg.Plugins.Dir, Plugins: cfg.collectorPlugins(), Site: id.Site, AgentID: id.AgentID,
			HostName: "vmpulse-agent " + version, Logger: log.With("component", "plugins"),
		}, a, a.spool)
		if err != nil {
			_ = a.spool.Close()
			return nil, err
		}
		pluginStatus = a.plugins.Heartbeat
	}
	a.up = uplink.New(uplink.Config{
		Addr:                cfg.Aggregator.Address,
		ServerName:          cfg.Aggregator.ServerName,
		Version:             version,
		BackfillBytesPerSec: cfg.Aggregator.BackfillBytesPerS,
		Logger:              log.With("component", "uplink"),
		CollectionLag:       a.collectionLag,
		OnCommand:           a.command,
		Plugins:             pluginStatus,
		OnAck: func(l uplink.Lane, seq uint64, st protocol.AckStatus, at time.Time) {
			a.metrics.ObserveAck(l, seq, st, at)
		},
	}, id, a.spool)
	a.metrics = metrics.New(metrics.Info{Version: version, Commit: buildinfo.Commit(""), AgentID: id.AgentID, Site: id.Site},
		metricsSource{a}, a.metricsExtra()...)
	return a, nil
}

// Identity is the agent's identity: as enrolled, or as last renewed.
func (a *Agent) Identity() *uplink.Identity { return a.up.Identity() }

// Spool exposes spool statistics.
func (a *Agent) Spool() spool.Stats { return a.spool.Stats() }

// Uplink exposes the uplink's counters.
func (a *Agent) Uplink() *uplink.Stats { return &a.up.Stats }

// Plugins reports the collector plugins' states (nil without plugins).
func (a *Agent) Plugins() []collectors.Status {
	if a.plugins == nil {
		return nil
	}
	return a.plugins.Status()
}

// Run collects from every endpoint and sends until ctx ends. Parts that fail
// are restarted with backoff; only a spool that cannot be closed is an error.
func (a *Agent) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.up.Run(ctx) })
	if a.cfg.MetricsListen != "" {
		// A listener that cannot start is logged, not fatal: metrics are
		// no reason to stop collecting.
		g.Go(func() error {
			if err := a.serveMetrics(ctx); err != nil {
				a.log.Error("agent metrics not served", "component", "metrics", "err", err)
			}
			return nil
		})
	}
	if a.plugins != nil {
		g.Go(func() error {
			// A plugin folder that cannot be read stops the plugins, not
			// the agent's own collection.
			if err := a.plugins.Run(ctx); err != nil {
				a.log.Error("collector plugins stopped", "component", "plugins", "err", err)
			}
			return nil
		})
	}
	for _, ep := range a.cfg.Endpoints {
		pw, err := ep.Password()
		if err != nil {
			return err
		}
		sess, err := vsphere.NewSession(vsphere.Endpoint{
			Name: ep.Name, URL: ep.URL, Username: ep.Username, Password: vsphere.Secret(pw), Insecure: ep.Insecure,
		}, a.log.With("component", "vsphere", "endpoint", ep.Name))
		if err != nil {
			return err
		}
		log := a.log.With("endpoint", ep.Name)
		inv := vsphere.NewInventory(sess, a, vsphere.InventoryConfig{TagInterval: time.Duration(a.cfg.Collection.TagInterval)}, log.With("component", "inventory"))
		perf := vsphere.NewCollector(sess, inv, a, a.spool, vsphere.PerfConfig{
			Counters:        a.cfg.Collection.Counters,
			Concurrency:     a.cfg.Collection.Concurrency,
			MaxQueryMetrics: a.cfg.Collection.MaxQueryMetrics,
			RealtimeEvery:   time.Duration(a.cfg.Collection.RealtimeInterval),
			HistoricalEvery: time.Duration(a.cfg.Collection.HistoricalInterval),
		}, log.With("component", "perf"))
		events := vsphere.NewEventReader(sess, a, a.spool, vsphere.EventsConfig{PollEvery: time.Duration(a.cfg.Collection.EventsPoll), Announcer: inv}, log.With("component", "events"))
		a.inventories = append(a.inventories, inv)
		a.perfMu.Lock()
		a.perfs = append(a.perfs, perfCollector{endpoint: ep.Name, perf: perf})
		a.perfMu.Unlock()
		g.Go(func() error { a.supervise(ctx, log, "inventory", inv.Run); return nil })
		g.Go(func() error { a.supervise(ctx, log, "performance", perf.Run); return nil })
		g.Go(func() error { a.supervise(ctx, log, "events", events.Run); return nil })
		g.Go(func() error {
			<-ctx.Done()
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return sess.Close(cctx)
		})
	}
	err := g.Wait()
	if cerr := a.spool.Close(); cerr != nil {
		return errors.Join(err, fmt.Errorf("close spool: %w", cerr))
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// supervise runs fn until ctx ends, restarting it with backoff when it
// returns early: a failing collector never takes the agent down.
func (a *Agent) supervise(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) {
	backoff := time.Second
	for ctx.Err() == nil {
		started := time.Now()
		err := fn(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		wait := backoff/2 + rand.N(backoff)
		log.Error(what+" stopped; restarting", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, 2*time.Minute)
	}
}

func (a *Agent) command(cmd protocol.Command) {
	switch cmd.Name {
	case "resync_inventory":
		for _, inv := range a.inventories {
			inv.Resync()
		}
	default:
		a.log.Warn("unknown command from the aggregator", "component", "agent", "command", cmd.Name)
	}
}

func (a *Agent) collectionLag() time.Duration {
	n := a.newestSample.Load()
	if n == 0 {
		return 0
	}
	return time.Since(time.UnixMilli(n))
}

// Samples implements vsphere.Sink: the payload is split into batches of
// bounded size, each appended to the spool before the collector may move
// its high-water marks on.
func (a *Agent) Samples(ctx context.Context, s *protocol.Samples) error {
	var chunk protocol.Samples
	cells := 0
	flush := func() error {
		if len(chunk.Series) == 0 {
			return nil
		}
		err := a.append(protocol.KindSamples, &chunk)
		chunk.Series, cells = nil, 0
		return err
	}
	newest := int64(math.MinInt64)
	for _, sd := range s.Series {
		n := protocol.SeriesCost(len(sd.Timestamps), len(sd.Values))
		if cells+n > maxCellsPerBatch {
			if err := flush(); err != nil {
				return err
			}
		}
		chunk.Series = append(chunk.Series, sd)
		cells += n
		if k := len(sd.Timestamps); k > 0 {
			newest = max(newest, sd.Timestamps[k-1])
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if newest > a.newestSample.Load() {
		a.newestSample.Store(newest)
	}
	return nil
}

// Inventory implements vsphere.Sink.
func (a *Agent) Inventory(_ context.Context, inv *protocol.Inventory) error {
	return a.append(protocol.KindInventory, inv)
}

// Events implements vsphere.Sink.
func (a *Agent) Events(_ context.Context, ev *protocol.Events) error {
	return a.append(protocol.KindEvents, ev)
}

// Gap implements vsphere.Sink: a collection gap (samples vCenter no
// longer had) is spooled and sent like any batch.
func (a *Agent) Gap(_ context.Context, g *protocol.Gap) error {
	return a.append(protocol.KindGap, g)
}

func (a *Agent) append(kind protocol.BatchKind, v any) error {
	b, err := protocol.NewBatch(kind, protocol.CodecZstd, v)
	if err != nil {
		return fmt.Errorf("agent: encode %s batch: %w", kind, err)
	}
	if err := a.spool.Append(b); err != nil {
		a.spoolErrors.Add(1)
		return fmt.Errorf("agent: spool %s batch: %w", kind, err)
	}
	a.up.Notify()
	return nil
}
