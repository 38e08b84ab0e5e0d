package vsphere

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/protocol"
)

// Collect runs one collection cycle for interval (IntervalRealtime or
// IntervalHistorical): it plans queries for the active entities of that
// interval's kinds, runs them with bounded concurrency, sends one Samples
// payload per query batch, advances high-water marks for what the Sink
// accepted and persists them once at the end.
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
	specs, kindOfEntity := c.specs(st, interval, stats.Start)
	stats.Entities = len(specs)
	batches := planBatches(specs, stats.QueryMetricsN)
	stats.Queries = len(batches)
	for _, b := range batches {
		stats.LargestQuery = max(stats.LargestQuery, batchMetrics(b))
	}

	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		work     = make(chan []types.PerfQuerySpec)
	)
	for range min(c.cfg.Concurrency, len(batches)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				series, values, err := c.runBatch(ctx, conn, st, b, kindOfEntity)
				mu.Lock()
				stats.Series += series
				stats.Values += values
				if err != nil {
					stats.Errors++
					if firstErr == nil {
						firstErr = err
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

	c.persistHWM()
	stats.Duration = time.Since(stats.Start)
	c.mu.Lock()
	c.last[interval] = stats
	c.mu.Unlock()
	if firstErr != nil {
		c.sess.Check(conn, firstErr)
		return stats, fmt.Errorf("perf: %d of %d queries failed, first: %w", stats.Errors, stats.Queries, firstErr)
	}
	return stats, ctx.Err()
}

// persistHWM writes all marks in one SetMeta if any advanced. The lock
// keeps an older snapshot from overwriting a newer one.
func (c *Collector) persistHWM() {
	c.persistMu.Lock()
	defer c.persistMu.Unlock()
	c.hwm.prune(time.Now())
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

// specs builds one query spec per active entity of the interval's kinds:
// from just after its high-water mark, or the latest sample for a new one.
func (c *Collector) specs(st *connState, interval int32, now time.Time) ([]types.PerfQuerySpec, map[string]string) {
	kinds := kindsFor(interval)
	kindOf := map[string]string{}
	var specs []types.PerfQuerySpec
	for _, e := range c.ents.Entities() {
		if !e.Active || !slices.Contains(kinds, e.Kind) || len(st.counters[e.Kind]) == 0 {
			continue
		}
		ids := make([]types.PerfMetricId, 0, len(st.counters[e.Kind]))
		for _, rc := range st.counters[e.Kind] {
			ids = append(ids, types.PerfMetricId{CounterId: rc.key, Instance: "*"})
		}
		spec := types.PerfQuerySpec{Entity: e.Ref, IntervalId: interval, MetricId: ids, Format: string(types.PerfFormatNormal)}
		if start, ok := c.hwm.startTime(e.Ref.Value, interval, now); ok {
			spec.StartTime = &start
		} else {
			spec.MaxSample = 1
		}
		kindOf[e.Ref.Value] = e.Kind
		specs = append(specs, spec)
	}
	return specs, kindOf
}

// runBatch queries one batch, sends it and advances the marks.
func (c *Collector) runBatch(ctx context.Context, conn *Conn, st *connState, batch []types.PerfQuerySpec, kindOf map[string]string) (series, values int, err error) {
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
			s, v, err := c.runBatch(ctx, conn, st, sub, kindOf)
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
	interval := batch[0].IntervalId
	src := c.sess.Source()
	out := &protocol.Samples{}
	newest := map[string]int64{}
	// Columns are the counters requested for the entity in this batch: all
	// of its kind's counters, unless the planner had to split an entity
	// wider than maxQueryMetrics, in which case each part is its own series
	// and no part overwrites another's columns with NaN.
	cols := make(map[string][]resolvedCounter, len(batch))
	for _, spec := range batch {
		id := spec.Entity.Value
		for _, rc := range st.counters[kindOf[id]] {
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
		mark, _ := c.hwm.get(id, interval)
		sd := toSeries(src, kindOf[id], em, cols[id], mark)
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
	if err := c.sink.Samples(ctx, out); err != nil {
		return 0, 0, fmt.Errorf("perf: sink: %w", err)
	}
	for id, ts := range newest {
		c.hwm.advance(id, interval, ts)
	}
	return len(out.Series), values, nil
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
