package alert

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// SiteStatus is what the engine needs to know of a site's agents.
type SiteStatus struct {
	// Connected: at least one of the site's agents holds a live connection
	// (store.Agent.Connected: within its lease).
	Connected bool
	// Dropped is the batches the site's agents dropped from full spools,
	// in total; OldestUnsentMS the age of the oldest batch they hold
	// unsent.
	Dropped, OldestUnsentMS int64
	// SpoolUsedPct is the fullest spool of the site's agents in percent of
	// its quota; SpoolQuota whether any agent reports a quota.
	SpoolUsedPct float64
	SpoolQuota   bool
	// VCenters is each endpoint's reachability as the site's agents
	// report it (see vcenterStatuses).
	VCenters map[string]protocol.VCenterStatus
}

// Sites reports the liveness of every site that has agents. It is the
// engine's view of the agent registry; SitesFromAgents adapts the store.
type Sites interface {
	SiteStatuses(ctx context.Context) (map[string]SiteStatus, error)
}

// AgentLister lists the agent registry; *store.Store implements it.
type AgentLister interface {
	Agents(ctx context.Context) ([]store.Agent, error)
}

// SitesFromAgents reports site liveness from the agent registry: a site is
// connected while any of its unrevoked agents is.
func SitesFromAgents(l AgentLister) Sites { return agentSites{l} }

type agentSites struct{ l AgentLister }

func (a agentSites) SiteStatuses(ctx context.Context) (map[string]SiteStatus, error) {
	agents, err := a.l.Agents(store.AllSites(ctx))
	if err != nil {
		return nil, err
	}
	out := map[string]SiteStatus{}
	reports := map[string][][]protocol.VCenterStatus{}
	for _, ag := range agents {
		if ag.RevokedAt != nil {
			continue
		}
		if ag.Connected {
			reports[ag.Site] = append(reports[ag.Site], ag.VCenters)
		}
		st := out[ag.Site]
		if pct, ok := spoolUsedPct([]int64{ag.SpoolBytes}, []int64{ag.SpoolMaxBytes}); ok {
			st.SpoolUsedPct, st.SpoolQuota = max(st.SpoolUsedPct, pct), true
		}
		st.Connected = st.Connected || ag.Connected
		st.Dropped += ag.Dropped
		st.OldestUnsentMS = max(st.OldestUnsentMS, ag.OldestUnsentMS)
		out[ag.Site] = st
	}
	for site, st := range out {
		st.VCenters = vcenterStatuses(reports[site])
		out[site] = st
	}
	return out, nil
}

// Config configures an Engine. Zero values take the defaults noted.
type Config struct {
	// Lateness: a transition whose event time is older than this when it
	// is evaluated is late (digest, no page). Default 10m.
	Lateness time.Duration
	// NoDataAfter: a pending or firing instance whose entity has had no
	// sample for this long while its site's watermark moved on goes
	// unknown. Default 10m.
	NoDataAfter time.Duration
	// TickInterval is how often liveness, no data, rules, silences and
	// states changed elsewhere are checked. Default 5s.
	TickInterval time.Duration
	// InventoryInterval is how often the inventory (names, placement,
	// tags, VM groups) that scopes match is reloaded. Default 1m.
	InventoryInterval time.Duration
	// QueueSize bounds the batches Offer queues; beyond it batches are
	// dropped (counted), never slowing ingest. Default 1024.
	QueueSize int
	// AlarmCatchUp is how often the vCenter alarm events committed by
	// any replica are read back from vcenter_events, for those no engine
	// applied from its feed (a replica that died between COMMIT and
	// applying); negative: only at start and after a drop or failure.
	// Default 1m. See alarmfeed.go.
	AlarmCatchUp time.Duration
	// Now is the wall clock (lateness, liveness); default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	c.Lateness = cmp.Or(c.Lateness, 10*time.Minute)
	c.NoDataAfter = cmp.Or(c.NoDataAfter, 10*time.Minute)
	c.TickInterval = cmp.Or(c.TickInterval, 5*time.Second)
	c.InventoryInterval = cmp.Or(c.InventoryInterval, time.Minute)
	c.QueueSize = cmp.Or(c.QueueSize, 1024)
	c.AlarmCatchUp = cmp.Or(c.AlarmCatchUp, time.Minute)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Stats are the engine's counters since start.
type Stats struct {
	Batches, Samples, Evaluations, Transitions atomic.Int64
	OutOfOrder, Dropped, Late, Conflicts       atomic.Int64
	// Suppressed counts the firings suppressed by the topology or a
	// maintenance window.
	Suppressed atomic.Int64
	// FeedDrops counts the times the realtime hub dropped the engine's
	// feed for falling behind.
	FeedDrops atomic.Int64
	// AlarmsApplied counts the vCenter alarm events applied (from the
	// feed or a catch-up), AlarmsDropped those the full queue dropped
	// (read back by a catch-up), AlarmCatchUps the reads of
	// vcenter_events and AlarmsCaughtUp the events they applied.
	AlarmsApplied, AlarmsDropped, AlarmCatchUps, AlarmsCaughtUp atomic.Int64
}

// siteState is the engine's view of one site.
type siteState struct {
	watermark int64 // ms: the newest sample time evaluated
	connected bool
	known     bool // the registry has reported on it
	// dropped is the agents' dropped batches last seen, droppedAt when
	// that count last grew.
	dropped     int64
	droppedAt   time.Time
	droppedSeen bool
	// vcenters is the reachability of the site's endpoints at the last
	// tick (vcenter.go).
	vcenters map[string]protocol.VCenterStatus
}

// offered is one batch queued by Offer.
type offered struct {
	site string
	p    *protocol.Samples
	at   time.Time
}

// Engine evaluates the rules on the samples it is offered, in event time,
// and persists every transition with its notifications. Its methods are
// safe for concurrent use; evaluation is serialized.
type Engine struct {
	pool  *pgxpool.Pool
	sites Sites
	cfg   Config
	log   *slog.Logger
	db    *DB
	Stats Stats

	queue chan offered
	// The alarm feed (alarmfeed.go): batches of alarm events from ingest,
	// whether some were missed, when the table was last read, and the
	// events applied from the feed since (by when).
	alarmQ       chan alarmBatch
	alarmMissed  atomic.Bool
	alarmSweptAt time.Time
	alarmApplied map[alarmKey]time.Time

	mu       sync.Mutex
	kinds    map[string]*kindRules
	byID     map[uuid.UUID]*compiled
	rulesFP  string
	gen      uint64
	entities map[entityKey]*entity
	// index holds the same entities by (site, source, kind), then id;
	// lastIdx is the one of lastIdxKey (see entityFor).
	index      map[indexKey]*entityIndex
	lastIdx    *entityIndex
	lastIdxKey indexKey
	siteInfo   map[string]*siteState
	meta       map[entityKey]*entityMeta
	metaAt     time.Time
	silences   []Silence
	windows    []MaintenanceWindow
	topo       topology
	topoID     int64 // the newest inventory change read into topo
	syncedAt   time.Time
	loaded     bool
	pendingTr  []*change
	// discard drops transitions instead of persisting them: benchmarks of
	// evaluation alone set it.
	discard bool
	// Counts not yet added to Stats (one atomic add per batch, not per
	// sample).
	evals, samples, outOfOrder int64
	// bindings are the counter layouts of the batch being evaluated;
	// lastKR the rules of its last series' kind, lastKind.
	bindings []binding
	lastKind string
	lastKR   *kindRules
	// naive evaluates every rule on every sample (no threshold index):
	// the reference the index is tested against.
	naive bool
}

// NewEngine returns an engine over the database behind pool; Load (or Run)
// reads its rules and persisted states.
func NewEngine(pool *pgxpool.Pool, sites Sites, cfg Config) *Engine {
	cfg.setDefaults()
	return &Engine{
		pool: pool, sites: sites, cfg: cfg, log: cfg.Logger, db: NewDB(pool),
		queue:    make(chan offered, cfg.QueueSize),
		alarmQ:   make(chan alarmBatch, 256),
		kinds:    map[string]*kindRules{},
		byID:     map[uuid.UUID]*compiled{},
		entities: map[entityKey]*entity{},
		siteInfo: map[string]*siteState{},
		meta:     map[entityKey]*entityMeta{},
	}
}

// Offer queues a committed samples batch of site for evaluation without
// blocking: when the queue is full the batch is dropped and counted. It is
// the hook ingest calls after COMMIT.
func (e *Engine) Offer(site string, p *protocol.Samples) {
	e.offer(offered{site: site, p: p, at: e.cfg.Now()})
}

func (e *Engine) offer(o offered) {
	select {
	case e.queue <- o:
	default:
		if e.Stats.Dropped.Add(1)%100 == 1 {
			e.log.Warn("alert engine queue full; batch not evaluated", "site", o.site, "dropped_total", e.Stats.Dropped.Load())
		}
	}
}

// Run loads the engine's state, then evaluates offered batches and ticks
// until ctx ends.
func (e *Engine) Run(ctx context.Context) error {
	for {
		err := e.Load(ctx)
		if err == nil {
			break
		}
		e.log.Error("alert engine: load failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	t := time.NewTicker(e.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case b := <-e.queue:
			if err := e.Process(ctx, b.site, b.p); err != nil && ctx.Err() == nil {
				e.log.Error("alert engine: evaluation failed", "site", b.site, "err", err)
			}
		case ab := <-e.alarmQ:
			if err := e.processAlarms(ctx, ab); err != nil && ctx.Err() == nil {
				e.log.Error("alert engine: vCenter alarms not applied; the next tick reads them back", "err", err)
			}
		case <-t.C:
			if err := e.Tick(ctx); err != nil && ctx.Err() == nil {
				e.log.Error("alert engine: tick failed", "err", err)
			}
		}
	}
}

// Load reads the rules, silences, inventory and persisted instance states,
// warms the metric windows from the stored samples, and catches up on the
// vCenter alarm events committed since the mirror's cursor, so that an
// engine started on a database resumes where the last one stopped.
func (e *Engine) Load(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.reloadRules(ctx, true); err != nil {
		return err
	}
	if err := e.reloadMeta(ctx); err != nil {
		return err
	}
	var err error
	if e.silences, err = e.db.activeSilences(ctx, e.cfg.Now()); err != nil {
		return err
	}
	if e.windows, err = e.db.liveWindows(ctx, e.cfg.Now()); err != nil {
		return err
	}
	if err := e.loadStates(ctx, time.Time{}); err != nil {
		return err
	}
	if err := e.warm(ctx); err != nil {
		return err
	}
	// The vCenter alarms committed while no engine applied them.
	if err := e.catchUpAlarms(ctx, e.cfg.Now()); err != nil {
		return err
	}
	e.loaded = true
	return nil
}

// reloadRules recompiles the enabled rules when they changed (or always).
func (e *Engine) reloadRules(ctx context.Context, force bool) error {
	fp, err := e.db.rulesFingerprint(ctx)
	if err != nil {
		return err
	}
	if !force && fp == e.rulesFP {
		return nil
	}
	rules, err := e.db.enabledRules(ctx)
	if err != nil {
		return err
	}
	byKind := map[string][]*Rule{}
	for _, r := range rules {
		byKind[r.EntityKind] = append(byKind[r.EntityKind], r)
	}
	old := e.kinds
	e.kinds = map[string]*kindRules{}
	e.byID = map[uuid.UUID]*compiled{}
	for kind, rs := range byKind {
		kr := compileKind(kind, rs, !e.naive)
		e.kinds[kind] = kr
		for _, c := range kr.rules {
			e.byID[c.rule.ID] = c
		}
	}
	for k, en := range e.entities {
		kr := e.kinds[k.kind]
		if kr == nil {
			delete(e.entities, k)
			if ix := e.index[indexKey{k.site, k.source, k.kind}]; ix != nil {
				delete(ix.byID, k.id)
				ix.order = nil
			}
			continue
		}
		en.reshape(old[k.kind], kr)
		for id := range en.inst {
			if e.byID[id] == nil {
				delete(en.inst, id) // rule deleted or disabled: its states went with it
			}
		}
	}
	e.rulesFP = fp
	e.gen++
	e.lastKR = nil
	return nil
}

func (e *Engine) reloadMeta(ctx context.Context) error {
	m, err := e.db.inventoryMeta(ctx)
	if err != nil {
		return err
	}
	if e.topo == nil {
		e.topo = topology{}
	}
	since := e.cfg.Now().Add(-topoHistory)
	if e.topoID, err = e.db.loadTopology(ctx, e.topo, since, e.topoID); err != nil {
		return err
	}
	e.topo.prune(since.UnixMilli())
	e.meta = m
	e.metaAt = e.cfg.Now()
	e.gen++
	return nil
}

// addCounts adds the counts of the evaluation just done to Stats.
func (e *Engine) addCounts() {
	e.Stats.Evaluations.Add(e.evals)
	e.Stats.Samples.Add(e.samples)
	e.Stats.OutOfOrder.Add(e.outOfOrder)
	e.evals, e.samples, e.outOfOrder = 0, 0, 0
}

// indexKey is the part of an entity's key that the series of one batch
// usually share.
type indexKey struct{ site, source, kind string }

// entityIndex is the entities of one indexKey: by id, and by the position
// of their series in the last batch that had them (an agent sends its
// entities in the same order poll after poll).
type entityIndex struct {
	byID  map[string]*entity
	order []*entity
}

// entityFor returns the entity of key, created if new and its kind has
// rules; nil otherwise. pos is the position of its series in the batch
// being evaluated (-1: none). It looks entities up in e.index: the
// batch's series share the outer key (the decoder interns the strings,
// so comparing it is cheap); the entity at the same position in the
// previous batch is tried first, which spares the hash lookup, then the
// id.
func (e *Engine) entityFor(key entityKey, pos int) *entity {
	ik := indexKey{key.site, key.source, key.kind}
	if e.lastIdx == nil || ik != e.lastIdxKey {
		ix := e.index[ik]
		if ix == nil {
			if e.index == nil {
				e.index = map[indexKey]*entityIndex{}
			}
			ix = &entityIndex{byID: map[string]*entity{}}
			e.index[ik] = ix
		}
		e.lastIdx = ix
	}
	// Keep this key's strings: the next series of the batch has the same
	// ones, which compare equal by pointer without reading their bytes.
	e.lastIdxKey = ik
	ix := e.lastIdx
	if pos >= 0 && pos < len(ix.order) {
		if en := ix.order[pos]; en != nil && en.key.id == key.id {
			return en
		}
	}
	en, ok := ix.byID[key.id]
	if !ok {
		kr := e.kinds[key.kind]
		if kr == nil {
			return nil
		}
		en = &entity{key: key} // inst is made with the first instance
		en.reshape(nil, kr)
		e.entities[key] = en
		ix.byID[key.id] = en
	}
	if pos >= 0 && pos < 1<<20 {
		if pos >= len(ix.order) {
			ix.order = append(ix.order, make([]*entity, pos+1-len(ix.order))...)
		}
		ix.order[pos] = en
	}
	return en
}

func (e *Engine) site(name string) *siteState {
	s := e.siteInfo[name]
	if s == nil {
		s = &siteState{connected: true}
		e.siteInfo[name] = s
	}
	return s
}

// Process evaluates one committed samples batch of site and persists the
// transitions it causes. Offer's worker calls it; tests call it directly.
func (e *Engine) Process(ctx context.Context, site string, p *protocol.Samples) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.loaded {
		return errors.New("alert: engine not loaded")
	}
	now := e.cfg.Now()
	e.Stats.Batches.Add(1)
	ss := e.site(site)
	e.bindings, e.lastKR = e.bindings[:0], nil
	for i := range p.Series {
		e.evalSeriesAt(site, ss, &p.Series[i], i, now)
	}
	e.bindings = e.bindings[:0]
	e.addCounts()
	return e.flush(ctx)
}

// binding is how the value columns of one counter layout feed the slots
// of a kind's rules: slots[c] is column c's slot (-1: no rule reads it),
// scales[c] its scale (percent counters come in hundredths).
type binding struct {
	kr       *kindRules
	counters *protocol.Counter // &Counters[0] of the layout
	n        int
	slots    []int
	scales   []float64
	used     bool // some column feeds a slot
}

// bindingFor returns the binding of the series' counter layout. The
// series a batch decodes share one Counters slice per layout, so within
// one batch (bindings is reset by Process: a slice's address is only
// unique while its batch lives) a layout is mapped once, not per series.
func (e *Engine) bindingFor(kr *kindRules, counters []protocol.Counter) *binding {
	for i := range e.bindings {
		b := &e.bindings[i]
		if b.kr == kr && b.n == len(counters) && (b.n == 0 || b.counters == &counters[0]) {
			return b
		}
	}
	b := binding{kr: kr, n: len(counters), slots: make([]int, len(counters)), scales: make([]float64, len(counters))}
	if len(counters) > 0 {
		b.counters = &counters[0]
	}
	for c, ctr := range counters {
		slot, ok := kr.slots[ctr.Name]
		if !ok {
			slot = -1
		}
		b.used = b.used || ok
		if ok && kr.units[slot] == "" {
			kr.units[slot] = ctr.Unit
		}
		b.scales[c] = 1
		if ctr.Unit == "%" {
			b.scales[c] = 0.01
		}
		b.slots[c] = slot
	}
	if len(e.bindings) >= 16 {
		e.bindings = e.bindings[:0]
	}
	e.bindings = append(e.bindings, b)
	return &e.bindings[len(e.bindings)-1]
}

// evalSeries evaluates one series that is not part of a batch.
func (e *Engine) evalSeries(site string, ss *siteState, sd *protocol.SeriesData, now time.Time) {
	e.evalSeriesAt(site, ss, sd, -1, now)
}

// evalSeriesAt evaluates one series of a batch; pos is its position in
// the batch (-1: not from a batch).
func (e *Engine) evalSeriesAt(site string, ss *siteState, sd *protocol.SeriesData, pos int, now time.Time) {
	k := &sd.Key
	if n := len(sd.Timestamps); n > 0 {
		ss.watermark = max(ss.watermark, sd.Timestamps[n-1])
	}
	if k.Instance != "" {
		return
	}
	kr := e.lastKR
	if kr == nil || k.EntityKind != e.lastKind {
		kr = e.kinds[k.EntityKind]
		e.lastKind, e.lastKR = k.EntityKind, kr
	}
	if kr == nil {
		return
	}
	bd := e.bindingFor(kr, k.Counters)
	if !bd.used {
		return
	}
	en := e.entityFor(entityKey{site: site, source: k.Source, kind: k.EntityKind, id: k.EntityID}, pos)
	if en == nil {
		return
	}
	scoped := en.rulesFor(kr, e.gen, e.match)
	var upd [64]bool
	updated := upd[:0]
	if len(kr.names) > len(upd) {
		updated = make([]bool, 0, len(kr.names))
	}
	updated = updated[:len(kr.names)]
	for i, ts := range sd.Timestamps {
		fresh := false
		clear(updated)
		for c, slot := range bd.slots {
			if slot < 0 || c >= len(sd.Values) || i >= len(sd.Values[c]) {
				continue
			}
			v := sd.Values[c][i]
			if math.IsNaN(v) {
				continue
			}
			w := &en.wins[slot]
			if ts <= w.last {
				e.outOfOrder++
				continue
			}
			w.push(ts, v*bd.scales[c], kr.keepMS[slot])
			updated[slot], fresh = true, true
		}
		if !fresh {
			continue
		}
		e.samples++
		en.lastTS = max(en.lastTS, ts)
		for _, g := range kr.groups {
			if !updated[g.slot] || g.quiet(&en.wins[g.slot]) {
				continue
			}
			v, ok := en.feature(kr, g.feat, ts)
			if !ok {
				continue // no data: no rule without an instance can move
			}
			for _, c := range g.firing(v) {
				if len(en.inst) == 0 || en.inst[c.rule.ID] == nil {
					e.evalRule(kr, c, en, ts, updated, now)
				}
			}
		}
		if len(en.inst) > 0 && len(kr.groups) > 0 {
			// Indexed rules with an instance: each may move either way.
			var with [16]*compiled
			list := with[:0]
			for id := range en.inst {
				if c := e.byID[id]; c != nil && c.indexed {
					list = append(list, c)
				}
			}
			for _, c := range list {
				e.evalRule(kr, c, en, ts, updated, now)
			}
		}
		for _, c := range kr.univ {
			e.evalRule(kr, c, en, ts, updated, now)
		}
		for _, c := range scoped {
			e.evalRule(kr, c, en, ts, updated, now)
		}
	}
}

func (e *Engine) evalRule(kr *kindRules, c *compiled, en *entity, ts int64, updated []bool, now time.Time) {
	touched := false
	for s, u := range c.uses {
		if u && updated[s] {
			touched = true
			break
		}
	}
	if !touched {
		return
	}
	e.evals++
	o := c.eval(kr, en, ts)
	var in *instance
	if len(en.inst) > 0 {
		in = en.inst[c.rule.ID]
	}
	var prevVersion int64
	var prevState = StateOK
	if in != nil {
		prevVersion, prevState = in.version, in.state
	}
	in, tr := c.step(in, ts, o)
	if tr == "" {
		return
	}
	e.record(c, en, in, tr, ts, prevVersion, prevState, now)
}

// record notes a transition for flush and updates the entity's instances.
func (e *Engine) record(c *compiled, en *entity, in *instance, tr string, at int64, prevVersion int64, prevState State, now time.Time) {
	if in.state == StateOK {
		delete(en.inst, c.rule.ID)
	} else {
		if en.inst == nil {
			en.inst = map[uuid.UUID]*instance{}
		}
		en.inst[c.rule.ID] = in
	}
	late := now.Sub(time.UnixMilli(at)) > e.cfg.Lateness
	if late {
		e.Stats.Late.Add(1)
	}
	e.Stats.Transitions.Add(1)
	var cs *cause
	if tr == TrFiring {
		if cs = e.suppression(c, en, e.labels(c, en), at); cs != nil {
			in.flags |= flagSuppressed
			e.Stats.Suppressed.Add(1)
		} else {
			in.flags &^= flagSuppressed
		}
	}
	snap := *in
	e.pendingTr = append(e.pendingTr, &change{rule: c, ent: en, live: in, in: snap, kind: tr, at: at, late: late,
		prevVersion: prevVersion, prevState: prevState, arrived: now, cause: cs})
}

// flush persists the recorded transitions in one transaction; on a
// conflict (another writer changed an instance) it adopts the database's
// states of the instances involved and drops the transitions.
func (e *Engine) flush(ctx context.Context) error {
	if len(e.pendingTr) == 0 {
		return nil
	}
	trs := e.pendingTr
	e.pendingTr = nil
	if e.discard {
		return nil
	}
	err := e.db.persist(ctx, e, trs)
	if err == nil {
		for _, ch := range trs {
			ch.live.version = ch.in.version
			ch.live.alertID = ch.in.alertID
			ch.live.flags = ch.in.flags
		}
		return nil
	}
	var conflict *conflictError
	if errors.As(err, &conflict) {
		e.Stats.Conflicts.Add(1)
		e.log.Warn("alert engine: instance changed by another writer; adopting its state", "rule", conflict.rule, "entity", conflict.entity)
		return e.loadStates(ctx, time.Time{})
	}
	// The transitions are lost to the database; re-read what it has so
	// memory and database agree, and let the next samples redo them.
	if lerr := e.loadStates(ctx, time.Time{}); lerr != nil {
		e.log.Error("alert engine: reload after a failed write", "err", lerr)
	}
	return err
}

// Tick runs the periodic work: rules, silences and inventory reloads,
// states changed elsewhere (manual resolve, another replica), site
// liveness and no-data detection.
func (e *Engine) Tick(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.loaded {
		return errors.New("alert: engine not loaded")
	}
	now := e.cfg.Now()
	if err := e.reloadRules(ctx, false); err != nil {
		return err
	}
	if now.Sub(e.metaAt) >= e.cfg.InventoryInterval {
		if err := e.reloadMeta(ctx); err != nil {
			return err
		}
	}
	var err error
	if e.silences, err = e.db.activeSilences(ctx, now); err != nil {
		return err
	}
	if e.windows, err = e.db.liveWindows(ctx, now); err != nil {
		return err
	}
	if err := e.loadStates(ctx, e.syncedAt.Add(-2*time.Second)); err != nil {
		return err
	}
	if e.sites != nil {
		st, err := e.sites.SiteStatuses(ctx)
		if err != nil {
			return err
		}
		for name, s := range st {
			ss := e.site(name)
			ss.connected, ss.known = s.Connected, true
		}
		if err := e.evalSites(ctx, st, now); err != nil {
			return err
		}
		e.evalHeartbeats(st, now)
	}
	e.evalInventory(now)
	e.markUnknown(now)
	e.reviewSuppressed(now)
	e.bindings = e.bindings[:0]
	e.addCounts()
	if err := e.flush(ctx); err != nil {
		return err
	}
	if err := e.drainAlarms(ctx); err != nil {
		return err
	}
	return e.catchUpAlarms(ctx, now)
}

// markUnknown moves to unknown the pending and firing instances of
// offline sites, and those whose rule's data stopped while their site's
// watermark moved on.
func (e *Engine) markUnknown(now time.Time) {
	noData := e.cfg.NoDataAfter.Milliseconds()
	for _, en := range e.entities {
		if len(en.inst) == 0 || en.key.kind == KindSite {
			continue
		}
		ss := e.site(en.key.site)
		offline := ss.known && !ss.connected
		for id, in := range en.inst {
			if in.state != StatePending && in.state != StateFiring {
				continue
			}
			// Stale: the rule's metrics stopped while the site's data went
			// on (a powered-off VM, a counter no longer collected).
			if !offline && ss.watermark-in.lastAt <= noData {
				continue
			}
			c := e.byID[id]
			if c == nil {
				continue
			}
			prevVersion, prevState := in.version, in.state
			in.prior, in.state, in.keeping = in.state, StateUnknown, false
			in.since = max(en.lastTS, in.lastAt)
			reason := "no_data"
			if offline {
				reason = "site_offline"
			}
			e.recordUnknown(c, en, in, prevVersion, prevState, reason, now)
		}
	}
}

func (e *Engine) recordUnknown(c *compiled, en *entity, in *instance, prevVersion int64, prevState State, reason string, now time.Time) {
	e.Stats.Transitions.Add(1)
	snap := *in
	e.pendingTr = append(e.pendingTr, &change{rule: c, ent: en, live: in, in: snap, kind: TrUnknown, at: in.since,
		prevVersion: prevVersion, prevState: prevState, reason: reason, arrived: now})
}

// evalSites evaluates the site rules on the registry's state at the wall
// clock: agent.connected is 1 while any of the site's agents is connected.
// Liveness has no event time of its own; it is observed now.
func (e *Engine) evalSites(ctx context.Context, st map[string]SiteStatus, now time.Time) error {
	kr := e.kinds[KindSite]
	if kr == nil {
		return nil
	}
	names := make([]string, 0, len(st))
	for n := range st {
		names = append(names, n)
	}
	slices.Sort(names)
	ts := now.UnixMilli()
	for _, name := range names {
		conn := 0.0
		if st[name].Connected {
			conn = 1
		}
		ss := e.site(name)
		if d := st[name].Dropped; d != ss.dropped || !ss.droppedSeen {
			if d > ss.dropped && ss.droppedSeen {
				ss.droppedAt = now
			}
			ss.dropped, ss.droppedSeen = d, true
		}
		dropping := b2f(!ss.droppedAt.IsZero() && now.Sub(ss.droppedAt) < 15*time.Minute)
		sd := protocol.SeriesData{Key: protocol.SeriesKey{EntityKind: KindSite, EntityID: name,
			Counters: []protocol.Counter{{Name: MetricAgentConnected}, {Name: MetricSpoolDropping}, {Name: MetricSpoolBacklogMinutes}}},
			Timestamps: []int64{ts}, Values: [][]float64{{conn}, {dropping}, {float64(st[name].OldestUnsentMS) / 60000}}}
		wm := ss.watermark
		e.evalSeries(name, ss, &sd, now)
		ss.watermark = wm // liveness is not data
	}
	return nil
}

// MetricAgentConnected is the site state metric: 1 while any of the site's
// agents is connected, else 0.
const MetricAgentConnected = "agent.connected.count"

// match reports whether the scoped rule c applies to the entity k.
func (e *Engine) match(c *compiled, k entityKey) bool {
	s := &c.rule.Scope
	if len(s.Sites) > 0 && !slices.Contains(s.Sites, k.site) {
		return false
	}
	id := k.source + ":" + k.id
	if k.kind == KindSite || k.kind == KindVCenter {
		id = k.id
	}
	if len(s.Entities) > 0 && !slices.Contains(s.Entities, id) {
		return false
	}
	if len(s.VMGroups)+len(s.Clusters)+len(s.Hosts)+len(s.Tags) == 0 {
		return true
	}
	m := e.meta[k]
	if m == nil {
		return false
	}
	if len(s.VMGroups) > 0 && !intersects(s.VMGroups, m.groups) {
		return false
	}
	if len(s.Clusters) > 0 {
		cl := m.cluster
		if k.kind == KindCluster {
			cl = k.id
		}
		if cl == "" || !slices.Contains(s.Clusters, k.source+":"+cl) {
			return false
		}
	}
	if len(s.Hosts) > 0 {
		h := m.host
		if k.kind == KindHost {
			h = k.id
		}
		if h == "" || !slices.Contains(s.Hosts, k.source+":"+h) {
			return false
		}
	}
	if len(s.Tags) > 0 && !intersects(s.Tags, m.tags) {
		return false
	}
	return true
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// loadStates adopts the persisted states changed since since (all when
// zero) whose version is newer than the engine's.
func (e *Engine) loadStates(ctx context.Context, since time.Time) error {
	rows, maxAt, err := e.db.states(ctx, since)
	if err != nil {
		return err
	}
	if since.IsZero() {
		// A full load replaces memory: instances the database no longer has
		// are gone.
		for _, en := range e.entities {
			clear(en.inst)
		}
	}
	for _, r := range rows {
		c := e.byID[r.ruleID]
		if c == nil {
			continue
		}
		en := e.entityFor(r.key, -1)
		if en == nil {
			continue
		}
		cur := en.inst[r.ruleID]
		if cur != nil && cur.version >= r.in.version && !since.IsZero() {
			continue
		}
		if r.in.state == StateOK {
			delete(en.inst, r.ruleID)
			continue
		}
		in := r.in
		if en.inst == nil {
			en.inst = map[uuid.UUID]*instance{}
		}
		en.inst[r.ruleID] = &in
		en.lastTS = max(en.lastTS, in.lastAt)
		ss := e.site(r.key.site)
		ss.watermark = max(ss.watermark, in.lastAt)
	}
	if maxAt.After(e.syncedAt) {
		e.syncedAt = maxAt
	}
	return nil
}

// warm fills the windows from the stored samples of the last hours, so
// that aggregations over a window are right at once after a restart.
func (e *Engine) warm(ctx context.Context) error {
	for kind, kr := range e.kinds {
		if kind == KindSite || len(kr.names) == 0 {
			continue
		}
		var keep int64
		for _, k := range kr.keepMS {
			keep = max(keep, k)
		}
		since := e.cfg.Now().Add(-time.Duration(keep)*time.Millisecond - 10*time.Minute)
		err := e.db.recentSamples(ctx, kind, kr.names, since, func(site, source, id string, counters, units []string, ts time.Time, v []*float32) {
			en := e.entityFor(entityKey{site: site, source: source, kind: kind, id: id}, -1)
			if en == nil {
				return
			}
			t := ts.UnixMilli()
			for i, name := range counters {
				slot, ok := kr.slots[name]
				if !ok || i >= len(v) || v[i] == nil || t <= en.wins[slot].last {
					continue
				}
				x := float64(*v[i])
				if i < len(units) && units[i] == "%" {
					x *= 0.01
				}
				en.wins[slot].push(t, x, kr.keepMS[slot])
			}
			en.lastTS = max(en.lastTS, t)
			ss := e.site(site)
			ss.watermark = max(ss.watermark, t)
		})
		if err != nil {
			return err
		}
	}
	// A firing instance whose condition held at the newest warm sample
	// has its keep_firing_for timer from there.
	for _, en := range e.entities {
		kr := e.kinds[en.key.kind]
		for id, in := range en.inst {
			c := e.byID[id]
			if c == nil || in.state != StateFiring || in.keeping || en.lastTS == 0 {
				continue
			}
			if o := c.eval(kr, en, en.lastTS); o.ok && o.hold {
				in.lastTrue = max(in.lastTrue, en.lastTS)
			}
		}
	}
	return nil
}

// ActiveInstances counts the instances that are not ok, by state (for
// tests and metrics).
func (e *Engine) ActiveInstances() map[State]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[State]int{}
	for _, en := range e.entities {
		for _, in := range en.inst {
			out[in.state]++
		}
	}
	return out
}

// Watermark returns a site's watermark: the newest sample time evaluated.
func (e *Engine) Watermark(site string) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.siteInfo[site]; s != nil && s.watermark > 0 {
		return time.UnixMilli(s.watermark).UTC()
	}
	return time.Time{}
}

func (k entityKey) String() string { return fmt.Sprintf("%s/%s/%s/%s", k.site, k.source, k.kind, k.id) }
