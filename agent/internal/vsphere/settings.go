package vsphere

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vmpulse/vmpulse/protocol"
)

// Runtime collection settings (issue #12): the aggregator pushes
// protocol.CollectionSettings in the Welcome and whenever they change, and
// the agent applies them to each endpoint's Collector, Inventory and
// EventReader with the setters below, without restarting anything. Each
// push carries the whole overlay: a zero duration or an absent counter
// kind means "the agent's own value" (its configuration, else the
// package's default), so a setting removed on the aggregator reverts.

// PerfKinds are the entity kinds the perf Collector knows, in the order
// their counters are resolved.
var PerfKinds = []string{"vm", "host", "cluster", "datastore"}

// UnknownCountersError names what SetCounters could not apply: entity
// kinds the Collector does not know, and, per kind, counter names the
// server does not know. Everything else of the call was applied.
type UnknownCountersError struct {
	Kinds    []string            // sorted
	Counters map[string][]string // kind → names, in the order given
}

func (e *UnknownCountersError) Error() string {
	var parts []string
	if len(e.Kinds) > 0 {
		parts = append(parts, fmt.Sprintf("unknown entity kinds %s (known: %s)", strings.Join(e.Kinds, ", "), strings.Join(PerfKinds, ", ")))
	}
	for _, kind := range PerfKinds {
		if names := e.Counters[kind]; len(names) > 0 {
			parts = append(parts, fmt.Sprintf("counters[%s]: not known to the server: %s", kind, strings.Join(names, ", ")))
		}
	}
	return "perf: " + strings.Join(parts, "; ")
}

// signal wakes every goroutine waiting on C at the time Wake is called.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// C returns a channel closed by the next Wake.
func (s *signal) C() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// Wake closes the current channel.
func (s *signal) Wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// SetIntervals sets the period of the realtime and of the historical
// collection loop; zero (or negative) restores PerfConfig's value
// (RealtimeEvery, HistoricalEvery). A running Run applies a new period at
// once: the next cycle starts one new period after the previous cycle
// began (immediately if that moment has passed). It is safe to call at
// any time, concurrently with Run and Collect.
func (c *Collector) SetIntervals(realtime, historical time.Duration) {
	c.mu.Lock()
	changed := c.pushedEvery[IntervalRealtime] != max(realtime, 0) || c.pushedEvery[IntervalHistorical] != max(historical, 0)
	c.pushedEvery[IntervalRealtime] = max(realtime, 0)
	c.pushedEvery[IntervalHistorical] = max(historical, 0)
	c.mu.Unlock()
	if changed {
		c.log.Info("perf: collection periods set", "realtime", c.Every(IntervalRealtime), "historical", c.Every(IntervalHistorical))
		c.periodChanged.Wake()
	}
}

// Every returns the period of the loop of interval (IntervalRealtime or
// IntervalHistorical) now in force.
func (c *Collector) Every(interval int32) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.everyLocked(interval)
}

func (c *Collector) everyLocked(interval int32) time.Duration {
	if d := c.pushedEvery[interval]; d > 0 {
		return d
	}
	if interval == IntervalRealtime {
		return c.cfg.RealtimeEvery
	}
	return c.cfg.HistoricalEvery
}

// SetCounters sets the counters collected per entity kind ("vm", "host",
// "cluster", "datastore": PerfKinds), from the next cycle on. A kind
// absent from counters, or given an empty list, collects the agent's own
// set again (PerfConfig.Counters, else DefaultCounters). Names are
// resolved to counter ids with the counter info the Collector reads once
// per login; if no cycle has read it on the current login yet, SetCounters
// reads it (logging in if needed, bounded by ctx).
//
// Names the server does not know, and kinds the Collector does not know,
// are skipped and returned in an *UnknownCountersError; the rest is
// applied. Should the counter info be unreadable, the set is applied
// unchecked (resolved, and unknown names logged, at the next cycle) and
// the error says so. Safe for concurrent use with Run and Collect.
func (c *Collector) SetCounters(ctx context.Context, counters map[string][]string) error {
	overlay := map[string][]string{}
	var badKinds []string
	for kind, names := range counters {
		if !slices.Contains(PerfKinds, kind) {
			badKinds = append(badKinds, kind)
			continue
		}
		if len(names) > 0 {
			overlay[kind] = slices.Clone(names)
		}
	}
	sort.Strings(badKinds)
	c.mu.Lock()
	c.pushedCounters = overlay
	st := c.state
	var unknown map[string][]string
	if st != nil {
		c.state, unknown = c.resolveLocked(st)
	}
	c.mu.Unlock()

	if st == nil {
		// No login has read the counter info yet: read it now, so that
		// the caller learns which names the server does not know.
		conn, err := c.sess.Conn(ctx)
		if err == nil {
			st, err = c.prepare(ctx, conn)
		}
		if err != nil {
			return errors.Join(fmt.Errorf("perf: counters applied but not checked (the counter info is unreadable: %w); they are resolved at the next cycle", err),
				unknownErr(badKinds, nil))
		}
		c.mu.Lock()
		_, unknown = c.resolveLocked(st)
		c.mu.Unlock()
	}
	c.log.Info("perf: counter set changed, effective from the next cycle", "kinds", len(overlay))
	return unknownErr(badKinds, unknown)
}

// unknownErr returns an *UnknownCountersError, or nil when there is
// nothing to name.
func unknownErr(kinds []string, counters map[string][]string) error {
	if len(kinds) == 0 && len(counters) == 0 {
		return nil
	}
	return &UnknownCountersError{Kinds: kinds, Counters: counters}
}

// counterNamesLocked returns the counter names of kind in force: pushed,
// else configured, else the default (c.mu held).
func (c *Collector) counterNamesLocked(kind string) []string {
	if names, ok := c.pushedCounters[kind]; ok {
		return names
	}
	if names, ok := c.cfg.Counters[kind]; ok {
		return names
	}
	return DefaultCounters[kind]
}

// resolveLocked returns a copy of st whose columns are the counter names in
// force, resolved with st's counter info, and the names the server does
// not know per kind (logged once each). c.mu is held.
func (c *Collector) resolveLocked(st *connState) (*connState, map[string][]string) {
	out := &connState{gen: st.gen, info: st.info, keeps: st.keeps, counters: map[string][]resolvedCounter{}}
	out.limit.Store(st.limit.Load())
	var unknown map[string][]string
	for _, kind := range PerfKinds {
		seen := map[string]bool{}
		for _, name := range c.counterNamesLocked(kind) {
			if seen[name] {
				continue // a repeated name would be a repeated column
			}
			seen[name] = true
			info := st.info[name]
			if info == nil {
				if unknown == nil {
					unknown = map[string][]string{}
				}
				unknown[kind] = append(unknown[kind], name)
				if !c.unknown[name] {
					c.unknown[name] = true
					c.log.Warn("perf: counter not known to the server, skipped", "counter", name, "kind", kind)
				}
				continue
			}
			out.counters[kind] = append(out.counters[kind], resolvedCounter{key: info.Key, name: name, unit: unitOf(info), level: info.Level})
		}
	}
	return out, unknown
}

// SetTagInterval sets how often vSphere tags are re-read; zero (or
// negative) restores InventoryConfig.TagInterval. A running watcher
// re-reads them one new interval after the last read (at once if that has
// passed), interrupting its wait for it. Safe for concurrent use.
func (w *Inventory) SetTagInterval(d time.Duration) {
	if d <= 0 {
		d = w.cfg.TagInterval
	}
	if time.Duration(w.tagEvery.Swap(int64(d))) == d {
		return
	}
	w.log.Info("inventory: tag interval set", "every", d)
	w.settingsChanged.Wake()
}

// TagInterval returns the tag refresh interval in force.
func (w *Inventory) TagInterval() time.Duration { return time.Duration(w.tagEvery.Load()) }

// SetMaxWait bounds each WaitForUpdatesEx the watcher sends; zero (or
// negative) lets it wait as long as vCenter allows. (InventoryConfig.MaxWait,
// the initial value, reads zero as its 1-minute default.) A shorter bound
// than the open call's applies at once: that call is cancelled and sent
// again; a longer one from the next call. Safe for concurrent use.
func (w *Inventory) SetMaxWait(d time.Duration) {
	d = max(d, 0)
	old := time.Duration(w.maxWait.Swap(int64(d)))
	if old == d {
		return
	}
	w.log.Info("inventory: WaitForUpdatesEx bound set", "max_wait", d)
	w.settingsChanged.Wake()
}

// MaxWait returns the WaitForUpdatesEx bound in force; zero is none.
func (w *Inventory) MaxWait() time.Duration { return time.Duration(w.maxWait.Load()) }

// SetPollEvery sets the EventReader's poll interval (how late an event may
// be delivered, and at most how often the collector is read); zero (or
// negative) restores EventsConfig.PollEvery. A running Run applies it to
// the wait in progress. Safe for concurrent use.
func (r *EventReader) SetPollEvery(d time.Duration) {
	if d <= 0 {
		d = r.cfg.PollEvery
	}
	if time.Duration(r.pollEvery.Swap(int64(d))) == d {
		return
	}
	r.log.Info("events: poll interval set", "every", d)
	r.pollChanged.Wake()
}

// PollEvery returns the poll interval in force.
func (r *EventReader) PollEvery() time.Duration { return time.Duration(r.pollEvery.Load()) }

// ApplyCollection applies pushed settings to one endpoint's parts (any of
// which may be nil): intervals, tag interval, events poll, counters. It
// returns SetCounters' error, if any; the other settings cannot fail.
func ApplyCollection(ctx context.Context, s *protocol.CollectionSettings, perf *Collector, inv *Inventory, ev *EventReader) error {
	if s == nil {
		return nil
	}
	if inv != nil {
		inv.SetTagInterval(s.TagInterval)
	}
	if ev != nil {
		ev.SetPollEvery(s.EventsPoll)
	}
	if perf == nil {
		return nil
	}
	perf.SetIntervals(s.RealtimeInterval, s.HistoricalInterval)
	return perf.SetCounters(ctx, s.Counters)
}
