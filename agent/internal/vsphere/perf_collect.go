package vsphere

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/protocol"
)

// Backfill bounds.
const (
	// maxBackfillRounds bounds the re-planning of one cycle: a long
	// re-read moves vCenter's realtime window on, so the cycle plans again
	// until nothing older than it is left.
	maxBackfillRounds = 3
	// maxBackfillAttempts is how many cycles in a row an entity's re-read
	// may fail before the agent records the stretch as lost and collects
	// the entity's live data again.
	maxBackfillAttempts = 3
	// maxGapEntities bounds the entity IDs of one gap record.
	maxGapEntities = 10_000
)

// Collect runs one collection cycle for interval (IntervalRealtime or
// IntervalHistorical) over the active entities of that interval's kinds.
// After an outage longer than vCenter keeps the interval's samples (a mark
// older than that), it first re-reads what vCenter still has at its
// coarser historical intervals and sends a gap record for what it has not
// (see retention.go); then it queries the interval itself from each
// entity's high-water mark. Queries run in batches with bounded
// concurrency, one Samples payload per batch; marks advance for what the
// Sink accepted and are persisted once at the end.
func (c *Collector) Collect(ctx context.Context, interval int32) (Stats, error) {
	stats := Stats{Interval: interval, Start: time.Now()}
	conn, err := c.sess.Conn(ctx)
	if err != nil {
		return stats, err
	}
	st, err := c.prepare(ctx, conn)
	if err != nil {
		c.sess.Check(conn, err)
		return stats, err
	}
	stats.QueryMetricsN = st.queryLimit()
	cy := &cycle{
		conn: conn, st: st, interval: interval,
		chain:  st.keeps.chain(interval, c.cfg.RealtimeWindow),
		newest: c.hwm.newest(interval),
		failed: map[string]bool{},
		stats:  &stats,
	}
	kinds := kindsFor(interval)
	for _, e := range c.ents.Entities() {
		if e.Active && slices.Contains(kinds, e.Kind) && len(st.counters[e.Kind]) > 0 {
			cy.ents = append(cy.ents, e)
		}
	}
	stats.Entities = len(cy.ents)

	planned := map[string]bool{}
	for round := 0; round < maxBackfillRounds && ctx.Err() == nil; round++ {
		n, err := c.backfill(ctx, cy, round, planned)
		cy.note(err)
		if n == 0 {
			break
		}
	}
	for id := range planned {
		if !cy.failed[id] {
			c.setFailures(id, 0)
		}
	}
	if ctx.Err() == nil {
		cy.note(c.collectNative(ctx, cy))
	}

	c.persistHWM(interval, cy.chain)
	stats.Duration = time.Since(stats.Start)
	c.mu.Lock()
	c.last[interval] = stats
	c.mu.Unlock()
	if cy.firstErr != nil {
		c.sess.Check(conn, cy.firstErr)
		if stats.Errors == 0 { // the sink refused a gap record
			return stats, cy.firstErr
		}
		return stats, fmt.Errorf("perf: %d of %d queries failed, first: %w", stats.Errors, stats.Queries, cy.firstErr)
	}
	return stats, ctx.Err()
}

// cycle is the state of one Collect call.
type cycle struct {
	conn     *Conn
	st       *connState
	interval int32
	chain    []perfLevel // the interval's levels, finest first
	ents     []Entity    // active entities of the interval's kinds
	// newest is the newest mark of the interval when the cycle began:
	// about when the loop last collected, before an outage.
	newest int64
	// failed holds the entities whose re-read failed in this cycle: they
	// sit out the rest of it, so that no mark moves past the hole.
	failed   map[string]bool
	stats    *Stats
	firstErr error
}

func (cy *cycle) note(err error) {
	if err != nil && cy.firstErr == nil {
		cy.firstErr = err
	}
}

// from returns how far the entity's samples are accounted for, and false
// for an entity without a mark (new: only its latest sample is read). An
// entity whose mark is older than both the loop's last collection and the
// interval's retention was not collected then (powered off, disconnected)
// rather than lost in an outage: it counts from then on, not from its mark.
func (c *Collector) from(cy *cycle, id string, now time.Time) (time.Time, bool) {
	m, ok := c.hwm.get(id, cy.interval)
	if !ok {
		return time.Time{}, false
	}
	from := time.UnixMilli(m)
	floor := now.Add(-cy.chain[0].keep)
	if n := time.UnixMilli(cy.newest); n.Before(floor) {
		floor = n
	}
	if from.Before(floor) {
		from = floor
	}
	return from, true
}

// backfill plans the entities whose samples go back further than the
// loop's interval keeps them, records what is lost, and re-reads the rest
// at the historical intervals, coarsest first. It returns how many
// entities it planned.
func (c *Collector) backfill(ctx context.Context, cy *cycle, round int, planned map[string]bool) (int, error) {
	now := c.now()
	plans := map[string]entityPlan{}
	kindOf := map[string]string{}
	refs := map[string]types.ManagedObjectReference{}
	oldest := now
	for _, e := range cy.ents {
		id := e.Ref.Value
		if cy.failed[id] {
			continue
		}
		from, ok := c.from(cy, id, now)
		if !ok {
			continue
		}
		p := planEntity(cy.chain, cy.st.counters[e.Kind], from, now)
		if !p.needsBackfill() {
			continue
		}
		plans[id], kindOf[id], refs[id] = p, e.Kind, e.Ref
		planned[id] = true
		if from.Before(oldest) {
			oldest = from
		}
	}
	if len(plans) == 0 {
		return 0, nil
	}
	if round == 0 {
		cy.stats.Backfill.Entities = len(plans)
		c.log.Info("perf: samples older than the interval keeps; re-reading them from vCenter's historical intervals",
			"interval", cy.interval, "entities", len(plans), "since", oldest.UTC().Format(time.RFC3339), "levels", describeChain(cy.chain))
	}

	// Record the losses first: no mark may pass a stretch that is neither
	// sent nor recorded.
	if err := c.sendLosses(ctx, cy, plans, kindOf, ReasonBeyondRetention); err != nil {
		for id := range plans {
			cy.failed[id] = true
			c.setFailures(id, c.failureCount(id)+1)
		}
		cy.stats.Backfill.Failed += len(plans)
		return 0, err
	}
	for id, p := range plans {
		c.hwm.advance(id, cy.interval, p.covered.UnixMilli())
	}

	var firstErr error
	for lvl := len(cy.chain) - 1; lvl >= 1 && ctx.Err() == nil; lvl-- {
		ph := newPhase(cy.interval, kindOf, true)
		var specs []types.PerfQuerySpec
		for id, p := range plans {
			for _, seg := range p.segments {
				if seg.level != lvl {
					continue
				}
				ids := make([]types.PerfMetricId, len(seg.counters))
				for i, rc := range seg.counters {
					ids[i] = types.PerfMetricId{CounterId: rc.key, Instance: "*"}
				}
				start, end := seg.start, seg.end
				specs = append(specs, types.PerfQuerySpec{
					Entity: refs[id], IntervalId: cy.chain[lvl].period,
					StartTime: &start, EndTime: &end, MetricId: ids, Format: c.cfg.Format,
				})
				ph.after[id], ph.through[id], ph.full[id] = start.UnixMilli(), end.UnixMilli(), len(ids)
			}
		}
		if len(specs) == 0 {
			continue
		}
		// Entity order decides the batches: keep it stable.
		slices.SortFunc(specs, func(a, b types.PerfQuerySpec) int { return strings.Compare(a.Entity.Value, b.Entity.Value) })
		res := c.runBatches(ctx, cy, specs, ph)
		cy.stats.Backfill.Queries += res.queries
		cy.stats.Backfill.Values += res.values
		if res.err != nil && firstErr == nil {
			firstErr = res.err
		}
		for id := range ph.through {
			if res.failed[id] || ctx.Err() != nil {
				if !cy.failed[id] {
					cy.failed[id] = true
					c.setFailures(id, c.failureCount(id)+1)
					cy.stats.Backfill.Failed++
				}
				delete(plans, id)
				continue
			}
			c.hwm.advance(id, cy.interval, ph.through[id])
		}
	}
	if firstErr != nil {
		firstErr = fmt.Errorf("perf: re-read from vCenter's historical intervals failed for %d entities (retried next cycle): %w",
			cy.stats.Backfill.Failed, firstErr)
	}
	return len(plans), firstErr
}

// failureCount and setFailures read and write the count of consecutive
// cycles whose re-read of the entity failed (0 deletes it).
func (c *Collector) failureCount(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failures[id]
}

func (c *Collector) setFailures(id string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n == 0 {
		delete(c.failures, id)
	} else {
		c.failures[id] = n
	}
}

// sendLosses sends one gap record per kind, counter set and stretch, for
// the entities that share them (split at maxGapEntities), and logs each.
func (c *Collector) sendLosses(ctx context.Context, cy *cycle, plans map[string]entityPlan, kindOf map[string]string, reason string) error {
	type group struct {
		kind     string
		from, to int64
		counters string
	}
	ids := map[group][]string{}
	names := map[group][]string{}
	for id, p := range plans {
		for _, l := range p.losses {
			g := group{kindOf[id], l.from.UnixMilli(), l.to.UnixMilli(), strings.Join(l.counters, ",")}
			ids[g] = append(ids[g], id)
			names[g] = l.counters
		}
	}
	groups := make([]group, 0, len(ids))
	for g := range ids {
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b group) int {
		return cmp.Or(strings.Compare(a.kind, b.kind), cmp.Compare(a.from, b.from), cmp.Compare(a.to, b.to), strings.Compare(a.counters, b.counters))
	})
	src := c.sess.Source()
	detected := c.now().UnixMilli()
	for _, g := range groups {
		all := ids[g]
		slices.Sort(all)
		for chunk := range slices.Chunk(all, maxGapEntities) {
			gap := &protocol.Gap{
				First: g.from, Last: g.to, Reason: reason, Detected: detected,
				Source: src, EntityKind: g.kind, EntityIDs: chunk, Counters: names[g], Interval: cy.interval,
			}
			if err := c.sink.Gap(ctx, gap); err != nil {
				return fmt.Errorf("perf: record lost samples: %w", err)
			}
			cy.stats.Backfill.Gaps++
		}
		c.log.Warn("perf: samples lost, recorded as a gap",
			"reason", reason, "kind", g.kind, "entities", len(all),
			"from", time.UnixMilli(g.from).UTC().Format(time.RFC3339), "to", time.UnixMilli(g.to).UTC().Format(time.RFC3339),
			"counters", len(names[g]), "interval", cy.interval)
	}
	return nil
}

// collectNative queries the loop's own interval for every active entity
// from just after its mark (the latest sample for an entity without one).
// An entity whose mark is still older than the interval keeps samples
// (the re-read rounds ran out, or failed maxBackfillAttempts times) has
// that stretch recorded as lost first; one whose re-read failed fewer
// times sits the cycle out.
func (c *Collector) collectNative(ctx context.Context, cy *cycle) error {
	now := c.now()
	native := cy.chain[0]
	avail := floorTime(now.Add(-native.keep), native.period)
	ph := newPhase(cy.interval, map[string]string{}, false)
	var specs []types.PerfQuerySpec
	lost := map[string]map[string]entityPlan{} // reason → entity → its loss
	for _, e := range cy.ents {
		id := e.Ref.Value
		cols := cy.st.counters[e.Kind]
		ids := make([]types.PerfMetricId, 0, len(cols))
		for _, rc := range cols {
			ids = append(ids, types.PerfMetricId{CounterId: rc.key, Instance: "*"})
		}
		spec := types.PerfQuerySpec{Entity: e.Ref, IntervalId: cy.interval, MetricId: ids, Format: c.cfg.Format}
		if from, ok := c.from(cy, id, now); ok {
			if from.Before(avail) {
				fails := c.failureCount(id)
				if cy.failed[id] && fails < maxBackfillAttempts {
					continue
				}
				reason := ReasonBeyondRetention
				if fails >= maxBackfillAttempts {
					reason = ReasonBackfillFailed
				}
				var names []string
				for _, rc := range cols {
					if available(rc, native.level) {
						names = append(names, rc.name)
					}
				}
				if lost[reason] == nil {
					lost[reason] = map[string]entityPlan{}
				}
				lost[reason][id] = entityPlan{losses: []loss{{from: from, to: avail, counters: names}}}
				ph.kindOf[id] = e.Kind
				from = avail
			}
			// vCenter's startTime is exclusive (the sample at startTime
			// is not returned), so the mark itself is the start: the
			// query asks exactly for what is new, as Telegraf's does.
			start := from
			spec.StartTime = &start
			ph.after[id] = from.UnixMilli()
		} else {
			spec.MaxSample = 1
		}
		ph.kindOf[id] = e.Kind
		ph.full[id] = len(ids)
		specs = append(specs, spec)
	}
	for _, reason := range []string{ReasonBeyondRetention, ReasonBackfillFailed} {
		if len(lost[reason]) == 0 {
			continue
		}
		if err := c.sendLosses(ctx, cy, lost[reason], ph.kindOf, reason); err != nil {
			return err
		}
		for id, p := range lost[reason] {
			c.hwm.advance(id, cy.interval, p.losses[0].to.UnixMilli())
			c.setFailures(id, 0)
		}
	}
	res := c.runBatches(ctx, cy, specs, ph)
	return res.err
}

// phase describes one set of queries of a cycle, for runBatch.
type phase struct {
	interval int32             // the loop's interval: the marks' key
	kindOf   map[string]string // entity → kind
	// after is, per entity, the time up to which its samples are already
	// accounted for: older ones in the response are dropped.
	after map[string]int64
	// backfill marks a re-read at a historical interval, and through is
	// then, per entity, how far the query covers it: the caller moves the
	// marks once every batch of the phase is done. Otherwise runBatch moves
	// them to the newest sample the Sink accepted.
	backfill bool
	through  map[string]int64
	// full is, per entity, how many metrics the phase asks for across all
	// batches: a part with fewer is a split (see runBatch).
	full map[string]int
}

func newPhase(interval int32, kindOf map[string]string, backfill bool) *phase {
	return &phase{interval: interval, kindOf: kindOf, backfill: backfill, after: map[string]int64{}, through: map[string]int64{}, full: map[string]int{}}
}

// batchResult sums up runBatches.
type batchResult struct {
	queries, values int
	failed          map[string]bool // entities of failed batches
	err             error           // the first failure
}

// runBatches plans specs into batches within the metrics limit and runs
// them with bounded concurrency.
func (c *Collector) runBatches(ctx context.Context, cy *cycle, specs []types.PerfQuerySpec, ph *phase) batchResult {
	batches := planBatches(specs, cy.st.queryLimit())
	res := batchResult{queries: len(batches), failed: map[string]bool{}}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		work = make(chan []types.PerfQuerySpec)
	)
	cy.stats.Queries += len(batches)
	for _, b := range batches {
		cy.stats.LargestQuery = max(cy.stats.LargestQuery, batchMetrics(b))
	}
	for range min(c.cfg.Concurrency, len(batches)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				series, values, err := c.runBatch(ctx, cy.conn, cy.st, b, ph)
				mu.Lock()
				cy.stats.Series += series
				cy.stats.Values += values
				res.values += values
				if err != nil {
					cy.stats.Errors++
					for _, s := range b {
						res.failed[s.Entity.Value] = true
					}
					if res.err == nil {
						res.err = err
					}
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, b := range batches {
		select {
		case work <- b:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	return res
}

// persistHWM prunes the interval's marks older than twice the longest
// time vCenter keeps its samples (entities long deleted), and writes all
// marks in one SetMeta if any changed. The lock keeps an older snapshot
// from overwriting a newer one.
func (c *Collector) persistHWM(interval int32, chain []perfLevel) {
	c.persistMu.Lock()
	defer c.persistMu.Unlock()
	c.hwm.prune(interval, c.now().Add(-2*chain[len(chain)-1].keep))
	if !c.hwm.takeDirty() {
		return
	}
	if err := c.meta.SetMeta(hwmMetaKey(c.sess.Source()), c.hwm.encode()); err != nil {
		// The marks stay in memory and are written with the next cycle.
		c.log.Error("perf: persist high-water marks", "err", err)
		c.hwm.mu.Lock()
		c.hwm.dirty = true
		c.hwm.mu.Unlock()
	}
}

// runBatch queries one batch, sends it and, for the loop's own interval,
// advances the marks.
func (c *Collector) runBatch(ctx context.Context, conn *Conn, st *connState, batch []types.PerfQuerySpec, ph *phase) (series, values int, err error) {
	qctx, cancel := context.WithTimeout(ctx, c.cfg.QueryTimeout)
	defer cancel()
	ret, err := queryPerf(qctx, conn.Vim(), &types.QueryPerf{
		This:      *conn.Vim().ServiceContent.PerfManager,
		QuerySpec: batch,
	})
	if err != nil && isQueryTooLarge(err) && batchMetrics(batch) > 1 {
		// The server's limit is lower than we inferred: halve ours and run
		// this batch again in smaller queries.
		n := max(1, batchMetrics(batch)/2)
		if st.lowerLimit(n) {
			c.log.Warn("perf: vCenter refused a query as too large; lowering metrics per query", "metrics", n)
		}
		for _, sub := range planBatches(batch, n) {
			s, v, err := c.runBatch(ctx, conn, st, sub, ph)
			series, values = series+s, values+v
			if err != nil {
				return series, values, err
			}
		}
		return series, values, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("perf: query %d entities: %w", len(batch), err)
	}
	src := c.sess.Source()
	out := &protocol.Samples{}
	newest := map[string]int64{}
	// Columns are the entity's kind's counters, those not asked for (not
	// kept at a historical interval) left NaN, so that every sample of an
	// entity lands in the same series. Only when the planner had to split
	// an entity wider than maxQueryMetrics is each part its own series, so
	// that no part overwrites another's columns with NaN.
	cols := make(map[string][]resolvedCounter, len(batch))
	for _, spec := range batch {
		id := spec.Entity.Value
		all := st.counters[ph.kindOf[id]]
		if len(spec.MetricId) >= ph.full[id] {
			cols[id] = all
			continue
		}
		for _, rc := range all {
			if slices.ContainsFunc(spec.MetricId, func(m types.PerfMetricId) bool { return m.CounterId == rc.key }) {
				cols[id] = append(cols[id], rc)
			}
		}
	}
	for _, base := range ret {
		em, ok := base.(*types.PerfEntityMetric)
		if !ok {
			continue
		}
		id := em.Entity.Value
		sd := toSeries(src, ph.kindOf[id], em, cols[id], ph.after[id])
		for _, s := range sd {
			out.Series = append(out.Series, s)
			if last := s.Timestamps[len(s.Timestamps)-1]; last > newest[id] {
				newest[id] = last
			}
			for _, col := range s.Values {
				for _, v := range col {
					if !math.IsNaN(v) {
						values++
					}
				}
			}
		}
	}
	if len(out.Series) == 0 {
		return 0, 0, nil
	}
	parts := []*protocol.Samples{out}
	if ph.backfill {
		parts = splitByDay(out)
	}
	for _, p := range parts {
		if err := c.sink.Samples(ctx, p); err != nil {
			return 0, 0, fmt.Errorf("perf: sink: %w", err)
		}
	}
	if !ph.backfill {
		for id, ts := range newest {
			c.hwm.advance(id, ph.interval, ts)
		}
	}
	return len(out.Series), values, nil
}

// splitByDay cuts a re-read of historical samples, which may span weeks,
// into one payload per UTC day, so that no batch spans more than a day:
// the aggregator refuses batches wider than a month, and samples older
// than its raw retention, and should then refuse only those days.
func splitByDay(s *protocol.Samples) []*protocol.Samples {
	const dayMs = 24 * 3600 * 1000
	byDay := map[int64]*protocol.Samples{}
	var days []int64
	for _, sd := range s.Series {
		for i := 0; i < len(sd.Timestamps); {
			day := floorDiv(sd.Timestamps[i], dayMs)
			j := i
			for j < len(sd.Timestamps) && floorDiv(sd.Timestamps[j], dayMs) == day {
				j++
			}
			part := protocol.SeriesData{Key: sd.Key, Timestamps: sd.Timestamps[i:j:j], Values: make([][]float64, len(sd.Values))}
			for c, col := range sd.Values {
				part.Values[c] = col[i:j:j]
			}
			if byDay[day] == nil {
				byDay[day] = &protocol.Samples{}
				days = append(days, day)
			}
			byDay[day].Series = append(byDay[day].Series, part)
			i = j
		}
	}
	if len(days) <= 1 {
		return []*protocol.Samples{s}
	}
	slices.Sort(days)
	out := make([]*protocol.Samples, len(days))
	for i, d := range days {
		out[i] = byDay[d]
	}
	return out
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// toSeries turns one entity's result into one SeriesData per instance,
// with the kind's counters as columns. Samples at or before mark are
// dropped (they were sent already); -1 (vSphere's "no value") becomes NaN.
// The simulator echoes the wildcard instance "*"; it is read as the
// aggregate "".
func toSeries(source, kind string, em *types.PerfEntityMetric, cols []resolvedCounter, mark int64) []protocol.SeriesData {
	if len(em.SampleInfo) == 0 || len(cols) == 0 {
		return nil
	}
	colOf := make(map[int32]int, len(cols))
	counters := make([]protocol.Counter, len(cols))
	for i, rc := range cols {
		colOf[rc.key] = i
		counters[i] = protocol.Counter{Name: rc.name, Unit: rc.unit}
	}
	// order: sample indexes with ts > mark, ascending by time
	var idx []int
	for i, si := range em.SampleInfo {
		if si.Timestamp.UnixMilli() > mark {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return nil
	}
	sort.Slice(idx, func(a, b int) bool {
		return em.SampleInfo[idx[a]].Timestamp.Before(em.SampleInfo[idx[b]].Timestamp)
	})
	ts := make([]int64, len(idx))
	for j, i := range idx {
		ts[j] = em.SampleInfo[i].Timestamp.UnixMilli()
	}
	byInst := map[string]*protocol.SeriesData{}
	var order []string
	for _, base := range em.Value {
		s, ok := base.(*types.PerfMetricIntSeries)
		if !ok {
			continue
		}
		col, ok := colOf[s.Id.CounterId]
		if !ok {
			continue
		}
		inst := s.Id.Instance
		if inst == "*" {
			inst = ""
		}
		sd := byInst[inst]
		if sd == nil {
			sd = &protocol.SeriesData{
				Key:        protocol.SeriesKey{Source: source, EntityKind: kind, EntityID: em.Entity.Value, Instance: inst, Counters: counters},
				Timestamps: ts,
				Values:     make([][]float64, len(cols)),
			}
			for c := range sd.Values {
				sd.Values[c] = nanSlice(len(ts))
			}
			byInst[inst] = sd
			order = append(order, inst)
		}
		for j, i := range idx {
			if i < len(s.Value) && s.Value[i] >= 0 {
				sd.Values[col][j] = float64(s.Value[i])
			}
		}
	}
	sort.Strings(order)
	out := make([]protocol.SeriesData, 0, len(order))
	for _, inst := range order {
		out = append(out, *byInst[inst])
	}
	return out
}

func nanSlice(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = math.NaN()
	}
	return s
}
