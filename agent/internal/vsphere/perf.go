package vsphere

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/performance"
	"github.com/vmware/govmomi/vim25/types"
)

// Collection intervals, in seconds, as vSphere names them (IntervalId).
const (
	IntervalRealtime   int32 = 20  // VMs and hosts, kept ~1 h by vCenter
	IntervalHistorical int32 = 300 // clusters and datastores (5-minute rollups)
)

// DefaultCounters are the counters collected per entity kind when
// PerfConfig.Counters leaves a kind out. Names the server does not know are
// logged once and skipped.
var DefaultCounters = map[string][]string{
	"vm": {
		"cpu.usage.average", "cpu.usagemhz.average", "cpu.ready.summation",
		"mem.usage.average", "mem.active.average", "mem.consumed.average", "mem.swapped.average",
		"mem.vmmemctl.average", // balloon: the operators' overview ranks VMs by it
		"net.usage.average", "net.received.average", "net.transmitted.average",
		"disk.usage.average", "disk.read.average", "disk.write.average", "disk.maxTotalLatency.latest",
	},
	"host": {
		"cpu.usage.average", "cpu.usagemhz.average", "cpu.ready.summation",
		"mem.usage.average", "mem.active.average", "mem.consumed.average", "mem.swapused.average",
		"net.usage.average", "net.received.average", "net.transmitted.average",
		"disk.usage.average", "disk.read.average", "disk.write.average", "disk.maxTotalLatency.latest",
		"datastore.totalReadLatency.average", "datastore.totalWriteLatency.average",
	},
	"cluster": {
		"cpu.usage.average", "cpu.usagemhz.average", "mem.usage.average", "mem.consumed.average",
		"cpu.totalmhz.average", "mem.totalmb.average",
	},
	"datastore": {
		"disk.used.latest", "disk.provisioned.latest", "disk.capacity.latest",
		"datastore.read.average", "datastore.write.average",
	},
}

// kindsFor lists the entity kinds collected at an interval.
func kindsFor(interval int32) []string {
	if interval == IntervalRealtime {
		return []string{"vm", "host"}
	}
	return []string{"cluster", "datastore"}
}

// PerfConfig tunes the perf Collector. Zero values take defaults.
type PerfConfig struct {
	Counters        map[string][]string // kind → counter names; missing kinds use DefaultCounters
	Concurrency     int                 // parallel QueryPerf calls; default 4
	MaxQueryMetrics int                 // lowers the server's limit when positive
	RealtimeEvery   time.Duration       // default 20 s
	HistoricalEvery time.Duration       // default 5 min
	QueryTimeout    time.Duration       // per QueryPerf call; default 60 s
	// Format is the QueryPerf result format: "normal" selects vSphere's
	// normal format, anything else CSV (the default, see perfcsv.go).
	// Normal exists for comparison (the vCenter load benchmark's
	// agent_normal client).
	Format string
	// RealtimeWindow is how long the server keeps realtime samples;
	// default DefaultRealtimeWindow (vSphere exposes no setting for it).
	// Older ones are re-read from the historical intervals.
	RealtimeWindow time.Duration
}

func (c *PerfConfig) defaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.RealtimeEvery <= 0 {
		c.RealtimeEvery = 20 * time.Second
	}
	if c.HistoricalEvery <= 0 {
		c.HistoricalEvery = 5 * time.Minute
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = time.Minute
	}
	if c.RealtimeWindow <= 0 {
		c.RealtimeWindow = DefaultRealtimeWindow
	}
	if c.Format != string(types.PerfFormatNormal) {
		c.Format = queryFormat
	}
}

// EntityLister supplies the entities to query; *Inventory implements it.
type EntityLister interface {
	Entities() []Entity
}

// Stats describes one collection cycle.
type Stats struct {
	Interval      int32
	Start         time.Time
	Duration      time.Duration
	Entities      int // entities queried
	Queries       int // QueryPerf calls
	LargestQuery  int // metrics in the largest call (≤ the server's limit)
	Series        int // SeriesData sent
	Values        int // non-NaN values sent
	Errors        int // failed queries or sink calls
	QueryMetricsN int // the maxQueryMetrics in force

	// Backfill is the part of the above spent re-reading an outage from
	// vCenter's historical intervals.
	Backfill BackfillStats
}

// BackfillStats describes what a cycle re-read of an outage longer than
// the loop's own interval keeps, and what it recorded as lost.
type BackfillStats struct {
	Entities int // entities with an outage to re-read or record
	Queries  int // QueryPerf calls at historical intervals
	Values   int // non-NaN values they returned
	Gaps     int // gap records sent
	Failed   int // entities whose re-read failed this cycle
}

// resolvedCounter is one configured counter found on the server.
type resolvedCounter struct {
	key   int32
	name  string
	unit  string
	level int32 // the statistics level from which historical intervals keep it
}

// connState is what the Collector derives from one connection.
type connState struct {
	gen      uint64
	info     map[string]*types.PerfCounterInfo // the server's counters by name, read once per login
	counters map[string][]resolvedCounter      // kind → columns, in config order
	limit    atomic.Int64                      // metrics per query; lowered if the server refuses a query as too large
	keeps    retention                         // the server's historical intervals
}

// queryLimit is the current metrics-per-query limit.
func (st *connState) queryLimit() int { return int(st.limit.Load()) }

// lowerLimit lowers the limit to n (never raises it) and reports whether it
// changed.
func (st *connState) lowerLimit(n int) bool {
	for {
		cur := st.limit.Load()
		if int64(n) >= cur {
			return false
		}
		if st.limit.CompareAndSwap(cur, int64(n)) {
			return true
		}
	}
}

// Collector queries PerformanceManager on schedule and sends samples to the
// Sink. Collect may be called concurrently for different intervals.
type Collector struct {
	sess *Session
	ents EntityLister
	sink Sink
	meta MetaStore
	cfg  PerfConfig
	log  *slog.Logger

	hwm       *hwmStore
	persistMu sync.Mutex // orders encode+SetMeta between the two loops

	mu        sync.Mutex
	state     *connState
	hwmSource string
	unknown   map[string]bool
	// pushedCounters and pushedEvery are the settings pushed at runtime
	// (settings.go), over cfg; periodChanged wakes Run's loops when a
	// period changes.
	pushedCounters map[string][]string
	pushedEvery    map[int32]time.Duration
	periodChanged  signal
	last           map[int32]Stats
	// failures counts, per entity, the consecutive cycles whose re-read of
	// an outage failed.
	failures map[string]int

	// now is the clock (tests move it).
	now func() time.Time
}

// NewCollector returns a Collector for sess's endpoint.
func NewCollector(sess *Session, ents EntityLister, sink Sink, meta MetaStore, cfg PerfConfig, log *slog.Logger) *Collector {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Collector{
		sess: sess, ents: ents, sink: sink, meta: meta, cfg: cfg,
		log:         log.With("endpoint", sess.Name(), "part", "perf"),
		hwm:         newHWM(),
		unknown:     map[string]bool{},
		last:        map[int32]Stats{},
		pushedEvery: map[int32]time.Duration{},
		failures:    map[string]int{},
		now:         time.Now,
	}
}

// LastStats returns the most recent cycle's Stats for interval.
func (c *Collector) LastStats(interval int32) Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last[interval]
}

// Run collects realtime data every RealtimeEvery and historical data every
// HistoricalEvery until ctx is done. Cycle errors are logged, not returned.
func (c *Collector) Run(ctx context.Context) error {
	// The first cycles need entities: wait (bounded) for the inventory's
	// first snapshot, or the 5-minute historical loop would start with
	// nothing to query and wait a whole interval.
	for wait := time.Now().Add(2 * time.Minute); len(c.ents.Entities()) == 0 && time.Now().Before(wait); {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(250 * time.Millisecond):
		}
	}
	var wg sync.WaitGroup
	loop := func(interval int32) {
		defer wg.Done()
		for {
			began := time.Now()
			if st, err := c.Collect(ctx, interval); err != nil && ctx.Err() == nil {
				c.log.Error("perf: collection cycle failed", "interval", interval, "err", err)
			} else if err == nil {
				c.log.Debug("perf: cycle done", "interval", interval, "entities", st.Entities,
					"queries", st.Queries, "values", st.Values, "took", st.Duration)
			}
			if !c.waitNext(ctx, interval, began) {
				return
			}
		}
	}
	wg.Add(2)
	go loop(IntervalRealtime)
	go loop(IntervalHistorical)
	wg.Wait()
	return nil
}

// waitNext waits until one period of interval's loop has passed since
// began, following period changes (SetIntervals) meanwhile. It returns
// false when ctx is done. A cycle longer than the period is followed by
// the next at once, as a ticker would drop the missed ticks.
func (c *Collector) waitNext(ctx context.Context, interval int32, began time.Time) bool {
	for {
		changed := c.periodChanged.C()
		t := time.NewTimer(time.Until(began.Add(c.Every(interval))))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
			return true
		case <-changed:
			t.Stop()
		}
	}
}

// prepare resolves counters and limits for conn, once per login, and
// loads the high-water marks once per source.
func (c *Collector) prepare(ctx context.Context, conn *Conn) (*connState, error) {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	if st != nil && st.gen == conn.Gen {
		return st, nil
	}
	pm := performance.NewManager(conn.Vim())
	byName, err := pm.CounterInfoByName(ctx)
	if err != nil {
		return nil, fmt.Errorf("perf: list counters: %w", err)
	}
	st = &connState{gen: conn.Gen, info: byName}
	st.limit.Store(int64(queryMetricsLimit(ctx, conn, c.cfg.MaxQueryMetrics)))
	if st.keeps, err = readRetention(ctx, conn); err != nil {
		return nil, err
	}
	c.log.Debug("perf: vCenter keeps samples", "realtime", c.cfg.RealtimeWindow, "historical", describeChain(st.keeps.historical))

	src := c.sess.Source()
	c.mu.Lock()
	defer c.mu.Unlock()
	// Resolved under the lock, with the counter names in force now, so
	// that a concurrent SetCounters is never undone by this login.
	st, _ = c.resolveLocked(st)
	if c.hwmSource != src {
		if err := c.hwm.load(c.meta, src); err != nil {
			c.log.Warn("perf: high-water marks unreadable, starting fresh", "err", err)
		}
		c.hwmSource = src
	}
	c.state = st
	return st, nil
}

// unitOf maps a counter's UnitInfo key to a short unit. Values are kept
// raw: vSphere "percent" counters are hundredths of a percent (10000 =
// 100 %), so their unit is "%" but consumers divide by 100.
func unitOf(info *types.PerfCounterInfo) string {
	if info.UnitInfo == nil {
		return ""
	}
	key := info.UnitInfo.GetElementDescription().Key
	switch key {
	case "percent":
		return "%"
	case "megaHertz":
		return "MHz"
	case "kiloBytes":
		return "KB"
	case "megaBytes":
		return "MB"
	case "kiloBytesPerSecond":
		return "KBps"
	case "megaBitsPerSecond":
		return "Mbps"
	case "millisecond":
		return "ms"
	case "microsecond":
		return "us"
	case "second":
		return "s"
	case "number":
		return "num"
	case "watt":
		return "W"
	case "joule":
		return "J"
	}
	return key
}
