// Package collectors runs the agent's collector plugins: it starts the
// configured plugins through plugins/sdk/host (checksum pinning, restart
// with backoff, per-call timeouts, forwarded logs), asks each what it
// produces (Describe), calls Collect on its schedule, and hands the
// samples to the agent's sink, which spools them like vSphere samples.
//
// Each plugin runs on its own goroutine and behind its own process, so a
// plugin that crashes, hangs or errs delays neither vSphere collection nor
// another plugin; Status reports each one's state for the heartbeat.
//
// # Series
//
// A plugin's series "fan.speed" is stored as the counter
// "plugin.<name>.fan.speed" with the unit Describe declared, from the
// source "plugin:<name>:<agent id>", bound to the entity the sample names
// (or, failing that, the kind Describe declared), or to the agent's site
// (entity kind "site", id the site's name) when it names none. Its labels,
// sorted and joined as "k=v,k=v", are the series' instance.
//
// Samples of series Describe did not declare are dropped and counted (the
// plugin is asked to Describe itself again, at most once a minute);
// samples not newer than the newest one already spooled for the plugin
// (persisted in the spool's metadata, so across agent restarts too) are
// dropped as already sent.
package collectors

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
	"github.com/vmpulse/vmpulse/protocol"
)

// Defaults and limits.
const (
	// DefaultInterval is the collection interval of a plugin whose config
	// and Describe name none.
	DefaultInterval = time.Minute
	// MinInterval bounds how often a plugin may be called.
	MinInterval = time.Second
	// DefaultTimeout bounds each call to a plugin.
	DefaultTimeout = 10 * time.Second
	// MaxSamplesPerCollect bounds what one Collect may return; the rest
	// is dropped and reported as an error.
	MaxSamplesPerCollect = 200_000
	// redescribeEvery limits how often a plugin is asked to Describe
	// itself again after sending undeclared series.
	redescribeEvery = time.Minute
)

// SiteKind is the entity kind of samples bound to the agent's site.
const SiteKind = "site"

// Sink receives the samples of one Collect, as one payload; the agent
// splits it into batches and spools them.
type Sink interface {
	Samples(ctx context.Context, s *protocol.Samples) error
}

// Meta is durable key-value state (the spool's metadata): each plugin's
// newest spooled sample time.
type Meta interface {
	GetMeta(key string) ([]byte, error)
	SetMeta(key string, val []byte) error
}

// Plugin configures one collector plugin.
type Plugin struct {
	// Name is the plugin's binary in Dir (without ".exe") and the
	// middle part of its series' names.
	Name string
	// SHA256 is the binary's pinned checksum (hex).
	SHA256 string
	// Interval overrides the interval the plugin describes.
	Interval time.Duration
	// Timeout bounds each call (DefaultTimeout when zero).
	Timeout time.Duration
	// Args and Env are the plugin's command line and environment
	// ("KEY=value"), its configuration.
	Args []string
	Env  []string
}

// Config configures a Runtime.
type Config struct {
	Dir     string
	Plugins []Plugin
	// Site and AgentID place the series: samples bound to no entity are
	// the site's, and the source is unique to the agent.
	Site, AgentID string
	// HostName is reported to the plugins ("vmpulse-agent 1.4.0").
	HostName string
	Logger   *slog.Logger
	// RestartMin, RestartMax and HealthInterval tune the plugin host
	// (zero: its defaults: 250ms, 1m, 15s).
	RestartMin, RestartMax, HealthInterval time.Duration
}

// Runtime runs the collector plugins of one agent.
type Runtime struct {
	cfg   Config
	host  *host.Host
	sink  Sink
	meta  Meta
	log   *slog.Logger
	procs []*proc
}

// proc is one plugin's schedule and counters.
type proc struct {
	r    *Runtime
	cfg  Plugin
	log  *slog.Logger
	coll sdk.Collector // nil until the host knows the plugin

	mu          sync.Mutex
	missing     string // why the plugin is not loaded at all
	desc        map[string]sdk.Series
	interval    time.Duration
	describedAt time.Time
	restartsAt  int // host restarts when last described
	since       time.Time
	lastCollect time.Time
	collects    uint64
	failures    uint64
	samples     uint64
	dropped     uint64
	lastErr     string
	lastErrAt   time.Time
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// ValidName reports whether name can name a collector plugin: 1-63
// lowercase letters, digits, '.', '_' and '-', starting with a letter or
// digit.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// New prepares the plugins of cfg; Run starts them.
func New(cfg Config, sink Sink, meta Meta) (*Runtime, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Site == "" || cfg.AgentID == "" {
		return nil, errors.New("collectors: site and agent id are required")
	}
	hc := host.Config{
		Dir:            cfg.Dir,
		Plugins:        map[string]host.PluginConfig{},
		HostName:       cfg.HostName,
		Logger:         cfg.Logger,
		RestartMin:     cfg.RestartMin,
		RestartMax:     cfg.RestartMax,
		HealthInterval: cfg.HealthInterval,
		MaxConcurrent:  1, // one Collect at a time per plugin
	}
	r := &Runtime{cfg: cfg, sink: sink, meta: meta, log: cfg.Logger}
	for _, p := range cfg.Plugins {
		if !ValidName(p.Name) {
			return nil, fmt.Errorf("collectors: plugin name %q: want 1-63 of a-z 0-9 . _ -", p.Name)
		}
		if _, dup := hc.Plugins[p.Name]; dup {
			return nil, fmt.Errorf("collectors: plugin %q configured twice", p.Name)
		}
		hc.Plugins[p.Name] = host.PluginConfig{SHA256: p.SHA256, Args: p.Args, Env: p.Env, CallTimeout: cmp.Or(p.Timeout, DefaultTimeout)}
		r.procs = append(r.procs, &proc{r: r, cfg: p, log: cfg.Logger.With("plugin", p.Name)})
	}
	// Only the configured plugins run: anything else in the folder (a
	// notifier, an old binary) is left alone.
	found, err := host.Discover(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("collectors: %w", err)
	}
	for _, f := range found {
		if _, ok := hc.Plugins[f.Name]; !ok {
			hc.Plugins[f.Name] = host.PluginConfig{Disabled: true}
		}
	}
	r.host, err = host.New(hc)
	if err != nil {
		return nil, fmt.Errorf("collectors: %w", err)
	}
	return r, nil
}

// Host is the plugin host, for its Prometheus metrics.
func (r *Runtime) Host() *host.Host { return r.host }

// Run starts the plugins and collects until ctx ends, then stops them.
func (r *Runtime) Run(ctx context.Context) error {
	defer r.host.Close()
	if err := r.host.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("collectors: %w", err)
	}
	var wg sync.WaitGroup
	for _, p := range r.procs {
		c, err := r.host.Collector(p.cfg.Name)
		if err != nil {
			msg := fmt.Sprintf("not loaded: %v", err)
			if errors.Is(err, host.ErrNotFound) && !slices.Contains(r.host.Names(sdk.KindNotifier), p.cfg.Name) {
				msg = fmt.Sprintf("no executable file %s in %s", p.cfg.Name, r.cfg.Dir)
			}
			p.mu.Lock()
			p.missing = msg
			p.setErr(errors.New(msg))
			p.mu.Unlock()
			p.log.Error("collector plugin not loaded", "err", msg)
			continue
		}
		p.coll = c
		wg.Go(func() { p.run(ctx) })
	}
	wg.Wait()
	return nil
}

func (p *proc) setErr(err error) {
	p.lastErr = err.Error()
	p.lastErrAt = time.Now()
}

func (p *proc) fail(err error) {
	p.mu.Lock()
	p.failures++
	p.setErr(err)
	p.mu.Unlock()
}

// run is one plugin's schedule: Describe when needed, then Collect every
// interval. A failed call is retried at the next tick (the host has
// already retried a call the plugin crashed under).
func (p *proc) run(ctx context.Context) {
	if err := p.loadSince(); err != nil {
		p.log.Warn("could not read the plugin's newest spooled sample time; starting from now", "err", err)
	}
	for ctx.Err() == nil {
		next := time.Now().Add(p.currentInterval())
		if p.needsDescribe() {
			if err := p.describe(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				p.fail(err)
				if errors.Is(err, host.ErrRefused) {
					// Final until the config changes: Status shows it.
					p.log.Error("collector plugin refused; not collecting from it", "err", err)
					return
				}
				p.log.Warn("describe failed", "err", err)
				next = time.Now().Add(min(p.currentInterval(), 10*time.Second))
			}
		}
		if !p.needsDescribe() {
			if err := p.collect(ctx); err != nil && ctx.Err() == nil {
				p.fail(err)
				p.log.Warn("collect failed", "err", err)
			}
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (p *proc) currentInterval() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return cmp.Or(p.cfg.Interval, p.interval, DefaultInterval)
}

// needsDescribe: never described, or the plugin was restarted since (a
// new process may be a new version).
func (p *proc) needsDescribe() bool {
	restarts := p.hostStatus().Restarts
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.desc == nil || restarts != p.restartsAt
}

func (p *proc) describe(ctx context.Context) error {
	restarts := p.hostStatus().Restarts
	d, err := p.coll.Describe(ctx)
	if err != nil {
		return err
	}
	desc := make(map[string]sdk.Series, len(d.Series))
	var errs []error
	for i, s := range d.Series {
		switch {
		case s.Name == "" || !utf8.ValidString(s.Name) || hasControl(s.Name) || len(s.Name) > 200:
			errs = append(errs, fmt.Errorf("series[%d].name %q: want 1-200 printable characters", i, s.Name))
			continue
		case hasControl(s.Unit) || len(s.Unit) > 64:
			errs = append(errs, fmt.Errorf("series %q: unit %q: want up to 64 printable characters", s.Name, s.Unit))
			continue
		case s.EntityKind != "" && (hasControl(s.EntityKind) || len(s.EntityKind) > 64):
			errs = append(errs, fmt.Errorf("series %q: entity kind %q: want up to 64 printable characters", s.Name, s.EntityKind))
			continue
		}
		desc[s.Name] = s
	}
	if d.Interval < 0 {
		errs = append(errs, fmt.Errorf("interval %s is negative", d.Interval))
		d.Interval = 0
	}
	interval := d.Interval
	if interval != 0 && interval < MinInterval {
		interval = MinInterval
	}
	p.mu.Lock()
	p.desc = desc
	p.interval = interval
	p.describedAt = time.Now()
	p.restartsAt = restarts
	p.mu.Unlock()
	p.log.Info("collector described", "series", len(desc), "interval", cmp.Or(p.cfg.Interval, interval, DefaultInterval))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("describe: series ignored: %w", err)
	}
	return nil
}

func (p *proc) sinceKey() string { return "plugins/" + p.cfg.Name + "/since" }

func (p *proc) loadSince() error {
	b, err := p.r.meta.GetMeta(p.sinceKey())
	if err != nil || b == nil {
		return err
	}
	ns, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("meta %s: %q: %w", p.sinceKey(), b, err)
	}
	p.mu.Lock()
	p.since = time.Unix(0, ns)
	p.mu.Unlock()
	return nil
}

func (p *proc) collect(ctx context.Context) error {
	p.mu.Lock()
	since := p.since
	p.mu.Unlock()
	now := time.Now()
	samples, err := p.coll.Collect(ctx, since)
	if err != nil {
		return err
	}
	payload, newest, rep := p.build(samples, since, now)
	if len(payload.Series) > 0 {
		if err := p.r.sink.Samples(ctx, payload); err != nil {
			return fmt.Errorf("spool the samples: %w", err)
		}
		if err := p.r.meta.SetMeta(p.sinceKey(), []byte(strconv.FormatInt(newest.UnixNano(), 10))); err != nil {
			p.log.Warn("could not save the newest spooled sample time", "err", err)
		}
	}
	p.mu.Lock()
	p.collects++
	p.lastCollect = now
	p.samples += uint64(rep.kept)
	p.dropped += uint64(rep.dropped())
	if newest.After(p.since) {
		p.since = newest
	}
	redescribe := rep.undeclared > 0 && time.Since(p.describedAt) > redescribeEvery
	if redescribe {
		p.desc = nil
	}
	p.mu.Unlock()
	if err := rep.err(); err != nil {
		p.mu.Lock()
		p.setErr(err)
		p.mu.Unlock()
		p.log.Warn("collect: samples dropped", "err", err)
	}
	return nil
}

// report counts what build kept and why it dropped the rest.
type report struct {
	kept, undeclared, old, nonFinite, badEntity, tooMany int
	firstUndeclared, firstBad                            string
}

func (r *report) dropped() int {
	return r.undeclared + r.old + r.nonFinite + r.badEntity + r.tooMany
}

// err describes the drops worth an operator's attention (not the samples
// already sent, nor NaN, which is "no value" in Prometheus' format too).
func (r *report) err() error {
	var parts []string
	if r.undeclared > 0 {
		parts = append(parts, fmt.Sprintf("%d samples of series not declared by Describe (e.g. %q)", r.undeclared, r.firstUndeclared))
	}
	if r.badEntity > 0 {
		parts = append(parts, fmt.Sprintf("%d samples with a bad entity or labels (%s)", r.badEntity, r.firstBad))
	}
	if r.tooMany > 0 {
		parts = append(parts, fmt.Sprintf("%d samples beyond %d per collect", r.tooMany, MaxSamplesPerCollect))
	}
	if len(parts) == 0 {
		return nil
	}
	return errors.New("dropped " + strings.Join(parts, "; "))
}

type groupKey struct{ kind, id, instance string }

// build turns samples into one payload: a series per entity and label set,
// a counter per plugin series, NaN where a counter has no value at one of
// the series' timestamps.
func (p *proc) build(samples []sdk.Sample, since, now time.Time) (*protocol.Samples, time.Time, report) {
	var rep report
	if len(samples) > MaxSamplesPerCollect {
		rep.tooMany = len(samples) - MaxSamplesPerCollect
		samples = samples[:MaxSamplesPerCollect]
	}
	p.mu.Lock()
	desc := p.desc
	p.mu.Unlock()
	source := "plugin:" + p.cfg.Name + ":" + p.r.cfg.AgentID
	prefix := "plugin." + p.cfg.Name + "."
	groups := map[groupKey]map[string]map[int64]float64{}
	var newest time.Time
	for _, s := range samples {
		sd, ok := desc[s.Series]
		if !ok {
			if rep.undeclared == 0 {
				rep.firstUndeclared = s.Series
			}
			rep.undeclared++
			continue
		}
		t := s.Time
		if t.IsZero() {
			t = now
		}
		t = t.Truncate(time.Millisecond)
		if !t.After(since) {
			rep.old++
			continue
		}
		if math.IsNaN(s.Value) || math.IsInf(s.Value, 0) {
			rep.nonFinite++
			continue
		}
		kind, id := cmp.Or(s.Entity.Kind, sd.EntityKind), s.Entity.ID
		if kind == "" || kind == SiteKind {
			kind, id = SiteKind, p.r.cfg.Site
		}
		inst, err := instance(s.Labels)
		if err == nil && (id == "" || hasControl(id) || hasControl(kind) || len(id) > 256 || len(kind) > 64) {
			err = fmt.Errorf("series %q: entity %q %q: want a kind and an id of printable characters", s.Series, kind, id)
		}
		if err != nil {
			if rep.badEntity == 0 {
				rep.firstBad = err.Error()
			}
			rep.badEntity++
			continue
		}
		k := groupKey{kind, id, inst}
		g := groups[k]
		if g == nil {
			g = map[string]map[int64]float64{}
			groups[k] = g
		}
		vals := g[s.Series]
		if vals == nil {
			vals = map[int64]float64{}
			g[s.Series] = vals
		}
		vals[t.UnixMilli()] = s.Value
		rep.kept++
		if t.After(newest) {
			newest = t
		}
	}
	out := &protocol.Samples{Series: make([]protocol.SeriesData, 0, len(groups))}
	for k, g := range groups {
		names := make([]string, 0, len(g))
		tsSet := map[int64]struct{}{}
		for name, vals := range g {
			names = append(names, name)
			for ts := range vals {
				tsSet[ts] = struct{}{}
			}
		}
		slices.Sort(names)
		tss := make([]int64, 0, len(tsSet))
		for ts := range tsSet {
			tss = append(tss, ts)
		}
		slices.Sort(tss)
		sd := protocol.SeriesData{
			Key:        protocol.SeriesKey{Source: source, EntityKind: k.kind, EntityID: k.id, Instance: k.instance},
			Timestamps: tss,
			Values:     make([][]float64, len(names)),
		}
		for c, name := range names {
			sd.Key.Counters = append(sd.Key.Counters, protocol.Counter{Name: prefix + name, Unit: desc[name].Unit})
			col := make([]float64, len(tss))
			for i, ts := range tss {
				v, ok := g[name][ts]
				if !ok {
					v = math.NaN()
				}
				col[i] = v
			}
			sd.Values[c] = col
		}
		out.Series = append(out.Series, sd)
	}
	slices.SortFunc(out.Series, func(a, b protocol.SeriesData) int {
		return cmp.Or(cmp.Compare(a.Key.EntityKind, b.Key.EntityKind), cmp.Compare(a.Key.EntityID, b.Key.EntityID),
			cmp.Compare(a.Key.Instance, b.Key.Instance))
	})
	return out, newest, rep
}

// instance joins labels as "k=v,k=v", sorted by key.
func instance(labels map[string]string) (string, error) {
	if len(labels) == 0 {
		return "", nil
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		v := labels[k]
		if k == "" || hasControl(k) || hasControl(v) || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return "", fmt.Errorf("label %q=%q: want printable UTF-8", k, v)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
	}
	if b.Len() > 1024 {
		return "", fmt.Errorf("labels of %d bytes exceed 1024", b.Len())
	}
	return b.String(), nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

func (p *proc) hostStatus() host.Status {
	for _, st := range p.r.host.Status() {
		if st.Name == p.cfg.Name {
			return st
		}
	}
	return host.Status{}
}

// Status is one collector plugin's state.
type Status struct {
	Name    string
	Version string
	// State is the host's (starting, running, restarting, refused,
	// stopped), or "missing" when the plugin could not be loaded at all.
	State       string
	PID         int
	Restarts    int
	LastError   string
	LastErrorAt time.Time
	LastCollect time.Time
	Interval    time.Duration
	Collects    uint64
	Failures    uint64
	Samples     uint64 // spooled
	Dropped     uint64 // dropped (see the package documentation)
	Series      int    // declared by Describe
}

// StateMissing is the State of a configured plugin that is not loaded.
const StateMissing = "missing"

// Status reports every configured plugin, in config order.
func (r *Runtime) Status() []Status {
	hs := r.host.Status()
	out := make([]Status, 0, len(r.procs))
	for _, p := range r.procs {
		var h host.Status
		for _, x := range hs {
			if x.Name == p.cfg.Name {
				h = x
			}
		}
		p.mu.Lock()
		st := Status{
			Name: p.cfg.Name, Version: h.Version, State: string(h.State), PID: h.PID, Restarts: h.Restarts,
			LastError: p.lastErr, LastErrorAt: p.lastErrAt, LastCollect: p.lastCollect,
			Interval: cmp.Or(p.cfg.Interval, p.interval, DefaultInterval),
			Collects: p.collects, Failures: p.failures, Samples: p.samples, Dropped: p.dropped, Series: len(p.desc),
		}
		if p.missing != "" {
			st.State = StateMissing
		}
		p.mu.Unlock()
		if st.State == "" {
			st.State = string(host.StateStarting)
		}
		if h.LastError != "" && h.LastErrorAt.After(st.LastErrorAt) {
			st.LastError, st.LastErrorAt = h.LastError, h.LastErrorAt
		}
		out = append(out, st)
	}
	return out
}

// Heartbeat is Status shaped for the agent's heartbeat.
func (r *Runtime) Heartbeat() []protocol.PluginStatus {
	sts := r.Status()
	out := make([]protocol.PluginStatus, len(sts))
	for i, st := range sts {
		out[i] = protocol.PluginStatus{
			Name: st.Name, Version: truncate(st.Version, 256), State: st.State, Restarts: int64(st.Restarts),
			LastError: truncate(st.LastError, protocol.MaxPluginErrorBytes), LastErrorAt: unixMilli(st.LastErrorAt),
			LastCollect: unixMilli(st.LastCollect), Collects: st.Collects, Failures: st.Failures, Samples: st.Samples,
		}
	}
	return out
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
