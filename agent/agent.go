package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

	// Collection settings pushed by the aggregator (see applyCollection).
	coll collectionState
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
		OnCollection:        func(s *protocol.CollectionSettings) { a.applyCollection(s, "welcome") },
		SpoolMaxBytes:       uint64(max(cfg.Spool.MaxBytes, 0)),
		VCenters:            a.vcenters,
		Plugins:             pluginStatus,
		OnAck: func(l uplink.Lane, seq uint64, st protocol.AckStatus, at time.Time) {
			a.metrics.ObserveAck(l, seq, st, at)
		},
	}, id, a.spool)
	a.coll.init()
	a.metrics = metrics.New(metrics.Info{Version: version, Commit: buildinfo.Commit(""), AgentID: id.AgentID, Site: id.Site},
		metricsSource{a}, append(a.metricsExtra(), a.collectionMetrics()...)...)
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
		inv := vsphere.NewInventory(sess, a, vsphere.InventoryConfig{TagInterval: time.Duration(a.cfg.Collection.TagInterval),
			MaxWait: a.cfg.inventoryMaxWait()}, log.With("component", "inventory"))
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
		a.addEndpoint(endpointParts{name: ep.Name, sess: sess, perf: perf, inv: inv, events: events})
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
	// Settings pushed before the endpoints existed (a Welcome is often
	// faster than this loop) apply to them now, and later ones at once.
	g.Go(func() error { a.runCollectionApplier(ctx); return nil })
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
	case protocol.CommandApplyCollection:
		a.applyCollection(cmd.Collection, "command")
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

// endpointParts are one endpoint's session and collectors, to which
// pushed collection settings apply.
type endpointParts struct {
	name   string
	sess   *vsphere.Session
	perf   *vsphere.Collector
	inv    *vsphere.Inventory
	events *vsphere.EventReader
}

// collectionState is the collection settings the aggregator pushed (in a
// Welcome or an apply_collection command) and the endpoints they apply to.
// Settings are taken in order of revision; the newest is applied to every
// endpoint by runCollectionApplier, so that a command never waits on
// vCenter.
type collectionState struct {
	mu        sync.Mutex
	applied   *protocol.CollectionSettings // newest taken; nil: none (the agent's own configuration)
	endpoints []endpointParts
	revision  atomic.Int64 // of applied, for /metrics
	changed   chan struct{}
}

func (c *collectionState) init() { c.changed = make(chan struct{}, 1) }

func (c *collectionState) wake() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// addEndpoint registers an endpoint's parts; settings already taken are
// applied to it by the applier.
func (a *Agent) addEndpoint(p endpointParts) {
	a.coll.mu.Lock()
	a.coll.endpoints = append(a.coll.endpoints, p)
	a.coll.mu.Unlock()
}

// applyCollection takes pushed collection settings (from: "welcome" or
// "command"): a revision older than the one taken is ignored (and the same
// one is already in force); otherwise what changes is logged and the
// settings are applied to every endpoint at once, without restarting
// anything: periods and the tag and events intervals at once, counters
// from the next cycle. A zero field, or a kind without counters, returns
// to the agent's own configuration. Pushed settings win over agent.yml.
func (a *Agent) applyCollection(s *protocol.CollectionSettings, from string) {
	log := a.log.With("component", "agent")
	if s == nil {
		return
	}
	a.coll.mu.Lock()
	prev := a.coll.applied
	if prev != nil && s.Revision <= prev.Revision {
		a.coll.mu.Unlock()
		if s.Revision < prev.Revision {
			log.Info("collection settings of an older revision ignored", "from", from, "revision", s.Revision, "applied", prev.Revision)
		}
		return
	}
	a.coll.applied = s
	a.coll.revision.Store(s.Revision)
	a.coll.mu.Unlock()
	changes := a.collectionChanges(prev, s)
	if len(changes) == 0 {
		changes = []string{"nothing (same values)"}
	}
	log.Info("collection settings from the aggregator", "from", from, "revision", s.Revision, "changes", strings.Join(changes, "; "))
	a.coll.wake()
}

// runCollectionApplier applies the newest taken settings to every
// endpoint whenever they change, until ctx ends.
func (a *Agent) runCollectionApplier(ctx context.Context) {
	a.coll.wake() // settings taken before Run
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.coll.changed:
		}
		a.coll.mu.Lock()
		s, eps := a.coll.applied, slices.Clone(a.coll.endpoints)
		a.coll.mu.Unlock()
		if s == nil {
			continue
		}
		for _, ep := range eps {
			// SetCounters may log in to read the counter info: bounded.
			actx, cancel := context.WithTimeout(ctx, time.Minute)
			err := vsphere.ApplyCollection(actx, s, ep.perf, ep.inv, ep.events)
			cancel()
			if err != nil && ctx.Err() == nil {
				a.log.Warn("collection settings applied in part", "component", "agent", "endpoint", ep.name, "revision", s.Revision, "err", err)
			}
		}
	}
}

// effectiveCollection is what the agent collects with s pushed (nil:
// none): each pushed field that is set, else agent.yml's value.
func (a *Agent) effectiveCollection(s *protocol.CollectionSettings) (durs map[string]time.Duration, counters map[string][]string) {
	own := a.cfg.Collection
	durs = map[string]time.Duration{"realtime_interval": time.Duration(own.RealtimeInterval), "historical_interval": time.Duration(own.HistoricalInterval),
		"events_poll": time.Duration(own.EventsPoll), "tag_interval": time.Duration(own.TagInterval)}
	counters = map[string][]string{}
	for _, kind := range vsphere.PerfKinds {
		if names, ok := own.Counters[kind]; ok {
			counters[kind] = names
		} else {
			counters[kind] = vsphere.DefaultCounters[kind]
		}
	}
	if s == nil {
		return durs, counters
	}
	for name, d := range map[string]time.Duration{"realtime_interval": s.RealtimeInterval, "historical_interval": s.HistoricalInterval,
		"events_poll": s.EventsPoll, "tag_interval": s.TagInterval} {
		if d > 0 {
			durs[name] = d
		}
	}
	for kind, names := range s.Counters {
		if len(names) > 0 {
			counters[kind] = names
		}
	}
	return durs, counters
}

// collectionChanges describes what changes from prev to next, e.g.
// "realtime_interval 20s → 40s" or "counters.vm +cpu.ready.summation".
func (a *Agent) collectionChanges(prev, next *protocol.CollectionSettings) []string {
	bd, bc := a.effectiveCollection(prev)
	ad, ac := a.effectiveCollection(next)
	var out []string
	for _, name := range []string{"realtime_interval", "historical_interval", "events_poll", "tag_interval"} {
		if bd[name] != ad[name] {
			out = append(out, fmt.Sprintf("%s %s → %s", name, bd[name], ad[name]))
		}
	}
	kinds := slices.Sorted(maps.Keys(ac))
	for _, kind := range kinds {
		var diff []string
		for _, n := range ac[kind] {
			if !slices.Contains(bc[kind], n) {
				diff = append(diff, "+"+n)
			}
		}
		for _, n := range bc[kind] {
			if !slices.Contains(ac[kind], n) {
				diff = append(diff, "-"+n)
			}
		}
		if len(diff) > 0 {
			out = append(out, "counters."+kind+" "+strings.Join(diff, " "))
		}
	}
	return out
}

// vcenters reports each endpoint's reachability for the heartbeat, within
// the protocol's bounds (a heartbeat the protocol refuses would end the
// connection). Nil before the endpoints exist.
func (a *Agent) vcenters() []protocol.VCenterStatus {
	a.coll.mu.Lock()
	eps := slices.Clone(a.coll.endpoints)
	a.coll.mu.Unlock()
	if len(eps) == 0 {
		return nil
	}
	out := make([]protocol.VCenterStatus, 0, min(len(eps), protocol.MaxVCenters))
	for _, ep := range eps[:min(len(eps), protocol.MaxVCenters)] {
		st := ep.sess.Reachability()
		if st.Source == "" {
			st.Source = ep.name
		}
		if len(st.LastError) > protocol.MaxPluginErrorBytes {
			st.LastError = strings.ToValidUTF8(st.LastError[:protocol.MaxPluginErrorBytes], "")
		}
		st.Since, st.LastOK = max(st.Since, 0), max(st.LastOK, 0)
		out = append(out, st)
	}
	return out
}

// CollectionRevision is the revision of the collection settings pushed by
// the aggregator that the agent applies (0: none; its own configuration).
func (a *Agent) CollectionRevision() int64 { return a.coll.revision.Load() }

// collectionMetrics exposes the applied revision and the collection
// periods in force on /metrics.
func (a *Agent) collectionMetrics() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vmpulse_agent_collection_settings_revision",
			Help: "Revision of the collection settings pushed by the aggregator that the agent applies (0: none, agent.yml's).",
		}, func() float64 { return float64(a.coll.revision.Load()) }),
		collectionPeriods{a},
	}
}

// collectionPeriods reports each endpoint's collection periods in force.
type collectionPeriods struct{ a *Agent }

var collectionPeriodDesc = prometheus.NewDesc("vmpulse_agent_collection_period_seconds",
	"Collection period in force per endpoint and loop (realtime: VMs and hosts; historical: clusters and datastores).",
	[]string{"endpoint", "loop"}, nil)

func (c collectionPeriods) Describe(ch chan<- *prometheus.Desc) { ch <- collectionPeriodDesc }

func (c collectionPeriods) Collect(ch chan<- prometheus.Metric) {
	c.a.coll.mu.Lock()
	eps := slices.Clone(c.a.coll.endpoints)
	c.a.coll.mu.Unlock()
	for _, ep := range eps {
		ch <- prometheus.MustNewConstMetric(collectionPeriodDesc, prometheus.GaugeValue, ep.perf.Every(vsphere.IntervalRealtime).Seconds(), ep.name, "realtime")
		ch <- prometheus.MustNewConstMetric(collectionPeriodDesc, prometheus.GaugeValue, ep.perf.Every(vsphere.IntervalHistorical).Seconds(), ep.name, "historical")
	}
}
