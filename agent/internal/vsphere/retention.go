package vsphere

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vmware/govmomi/performance"
	"github.com/vmware/govmomi/vim25/types"
)

// How long vCenter keeps samples, and what the agent does with an outage
// longer than that.
//
// vCenter keeps realtime (20 s) samples about an hour (DefaultRealtimeWindow;
// the API has no setting for it), then only the rollups of its historical
// intervals, PerformanceManager.historicalInterval: by default 5 minutes
// for a day, 30 minutes for a week, 2 hours for a month and a day for a
// year, each with a statistics level (1-4) that decides which counters it
// keeps (a counter is kept when its PerfCounterInfo.level is at most the
// interval's). The agent reads those settings at each login.
//
// After an outage, a collection loop (realtime for VMs and hosts, 5 minutes
// for clusters and datastores) plans each entity's re-read from its
// high-water mark, oldest first:
//
//	lost        (mark, a]        older than every interval keeps: a gap record
//	coarsest    (a, e_k]         at the coarsest interval that still has it
//	 ...                         each interval up to where the next finer
//	finer       (e_k, e_1]       one's samples begin (rounded up to its own
//	native      (e_1, now]       period, so that no stretch is left out)
//
// Counters an interval does not keep (level too low) are lost over its
// stretch and recorded as such. Historical samples are sent as samples of
// the entity's usual series, with their own timestamps (one per period).
// Gap records carry the reason ReasonBeyondRetention.

// DefaultRealtimeWindow is how long vSphere keeps realtime samples.
const DefaultRealtimeWindow = time.Hour

// Reasons of the gap records the Collector sends.
const (
	// ReasonBeyondRetention: the samples were older than any interval of
	// vCenter keeps them when the agent came back.
	ReasonBeyondRetention = "beyond vCenter retention"
	// ReasonBackfillFailed: vCenter still had them, but re-reading them
	// failed maxBackfillAttempts cycles in a row.
	ReasonBackfillFailed = "re-read from vCenter failed"
)

// perfLevel is one interval at which vCenter keeps samples.
type perfLevel struct {
	period int32         // seconds between samples
	keep   time.Duration // how long samples are kept
	level  int32         // statistics level; 0: unknown, every counter
	name   string
}

func (l perfLevel) String() string {
	return fmt.Sprintf("%s (%ds for %s, level %d)", l.name, l.period, l.keep, l.level)
}

// retention is what the server keeps: its enabled historical intervals,
// by period.
type retention struct {
	historical []perfLevel
}

// readRetention reads the server's historical intervals.
func readRetention(ctx context.Context, conn *Conn) (retention, error) {
	list, err := performance.NewManager(conn.Vim()).HistoricalInterval(ctx)
	if err != nil {
		return retention{}, fmt.Errorf("perf: read historical intervals: %w", err)
	}
	return retentionOf(list), nil
}

// retentionOf keeps the enabled intervals with a period and a length.
func retentionOf(list []types.PerfInterval) retention {
	var r retention
	for _, iv := range list {
		if !iv.Enabled || iv.SamplingPeriod <= 0 || iv.Length <= 0 {
			continue
		}
		r.historical = append(r.historical, perfLevel{
			period: iv.SamplingPeriod, keep: time.Duration(iv.Length) * time.Second, level: iv.Level, name: iv.Name,
		})
	}
	sort.SliceStable(r.historical, func(i, j int) bool { return r.historical[i].period < r.historical[j].period })
	return r
}

// chain returns the levels a collection loop of interval reads from,
// finest first: the loop's own ("native") interval, then each coarser
// historical interval that keeps samples longer than the one before it.
// The native level of the realtime loop keeps realtimeWindow and every
// counter; that of the 5-minute loop is the server's 5-minute interval
// (24 h if the server has none).
func (r retention) chain(interval int32, realtimeWindow time.Duration) []perfLevel {
	native := perfLevel{period: interval, keep: realtimeWindow, name: "realtime"}
	if interval > IntervalRealtime {
		native = perfLevel{period: interval, keep: 24 * time.Hour, name: "historical"}
		for _, l := range r.historical {
			if l.period == interval {
				native = l
			}
		}
	}
	out := []perfLevel{native}
	for _, l := range r.historical {
		if last := out[len(out)-1]; l.period > last.period && l.keep > last.keep {
			out = append(out, l)
		}
	}
	return out
}

// available reports whether an interval of level lv keeps counter c.
func available(c resolvedCounter, lv int32) bool {
	return lv <= 0 || c.level <= 0 || c.level <= lv
}

// segment is a stretch (start, end] of one entity to read at one
// historical level.
type segment struct {
	level    int // index into the chain
	start    time.Time
	end      time.Time
	counters []resolvedCounter // those the level keeps
}

// loss is a stretch (from, to] whose samples of counters are lost.
type loss struct {
	from, to time.Time
	counters []string
}

// entityPlan is how one entity's outage is re-read.
type entityPlan struct {
	segments []segment // coarsest first, excluding the native level
	native   time.Time // the native query starts after this
	losses   []loss
	// covered is how far the losses alone cover every counter: the mark
	// may move there once they are recorded.
	covered time.Time
}

// needsBackfill reports whether the plan has anything beyond the native
// query.
func (p entityPlan) needsBackfill() bool { return len(p.segments) > 0 || len(p.losses) > 0 }

// floorTime and ceilTime round t to a multiple of period seconds (since
// the Unix epoch, as vCenter aligns its samples).
func floorTime(t time.Time, period int32) time.Time {
	p := int64(period) * 1000
	ms := t.UnixMilli()
	r := ms % p
	if r < 0 {
		r += p
	}
	return time.UnixMilli(ms - r)
}

func ceilTime(t time.Time, period int32) time.Time {
	f := floorTime(t, period)
	if f.Before(t) {
		return f.Add(time.Duration(period) * time.Second)
	}
	return f
}

// planEntity plans the re-read of one entity whose data is covered up to
// from. chain is the loop's levels (finest first), cols the entity kind's
// counters. Level i keeps samples newer than now−keep; its first one
// covers from floor(now−keep) on.
func planEntity(chain []perfLevel, cols []resolvedCounter, from, now time.Time) entityPlan {
	from = time.UnixMilli(from.UnixMilli()) // marks are Unix ms
	n := len(chain)
	avail := make([]time.Time, n)
	for i, l := range chain {
		avail[i] = floorTime(now.Add(-l.keep), l.period)
	}
	p := entityPlan{native: from, covered: from}
	if !from.Before(avail[0]) {
		return p
	}
	// Counters the native level does not keep are not expected at all.
	var want []resolvedCounter
	for _, c := range cols {
		if available(c, chain[0].level) {
			want = append(want, c)
		}
	}
	lost := map[string][]loss{} // counter → its lost stretches, oldest first
	lose := func(c resolvedCounter, a, b time.Time) {
		ls := lost[c.name]
		if k := len(ls); k > 0 && !ls[k-1].to.Before(a) {
			ls[k-1].to = b
		} else {
			ls = append(ls, loss{from: a, to: b})
		}
		lost[c.name] = ls
	}
	pos := from
	for i := n - 1; i >= 1; i-- {
		end := ceilTime(avail[i-1], chain[i].period)
		if !pos.Before(end) {
			continue
		}
		if pos.Before(avail[i]) {
			for _, c := range want {
				lose(c, pos, avail[i])
			}
			pos = avail[i]
		}
		seg := segment{level: i, start: pos, end: end}
		for _, c := range want {
			if available(c, chain[i].level) {
				seg.counters = append(seg.counters, c)
			} else {
				lose(c, pos, end)
			}
		}
		if len(seg.counters) > 0 {
			p.segments = append(p.segments, seg)
		}
		pos = end
	}
	if pos.Before(avail[0]) { // no historical level reaches back to it
		for _, c := range want {
			lose(c, pos, avail[0])
		}
		pos = avail[0]
	}
	p.native = pos

	// One loss per distinct stretch, naming its counters in column order.
	type span struct{ a, b int64 }
	byStretch := map[span][]string{}
	var order []span
	for _, c := range want {
		for _, l := range lost[c.name] {
			k := span{l.from.UnixMilli(), l.to.UnixMilli()}
			if _, ok := byStretch[k]; !ok {
				order = append(order, k)
			}
			byStretch[k] = append(byStretch[k], c.name)
		}
	}
	slices.SortFunc(order, func(x, y span) int { return cmp.Or(cmp.Compare(x.a, y.a), cmp.Compare(x.b, y.b)) })
	p.covered = p.native
	for _, k := range order {
		p.losses = append(p.losses, loss{from: time.UnixMilli(k.a), to: time.UnixMilli(k.b), counters: byStretch[k]})
	}
	for _, c := range want {
		ls := lost[c.name]
		end := from
		if len(ls) > 0 && !ls[0].from.After(from) {
			end = ls[0].to
		}
		if end.Before(p.covered) {
			p.covered = end
		}
	}
	return p
}

// describeChain is the chain for a log line.
func describeChain(chain []perfLevel) string {
	parts := make([]string, len(chain))
	for i, l := range chain {
		parts[i] = l.String()
	}
	return strings.Join(parts, ", ")
}
