package vsphere

import (
	"context"
	"strconv"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"
)

// Query sizing. vCenter rejects a QueryPerf whose entity×metric count
// exceeds config.vpxd.stats.maxQueryMetrics (64 when unset); ESXi has no
// such limit, and for it (or an explicit -1) we still cap queries at
// unlimitedQueryMetrics to keep responses reasonably small.
const (
	defaultQueryMetrics   = 64
	unlimitedQueryMetrics = 256
	maxQueryMetricsOption = "config.vpxd.stats.maxQueryMetrics"
)

// planBatches packs query specs into batches whose total metric count is at
// most maxMetrics. A spec with more metrics than that is split into several
// specs for the same entity. Order is preserved; every metric of every spec
// appears exactly once in the result.
func planBatches(specs []types.PerfQuerySpec, maxMetrics int) [][]types.PerfQuerySpec {
	if maxMetrics <= 0 {
		maxMetrics = defaultQueryMetrics
	}
	var (
		out   [][]types.PerfQuerySpec
		cur   []types.PerfQuerySpec
		count int
	)
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
			cur, count = nil, 0
		}
	}
	for _, s := range specs {
		ids := s.MetricId
		for len(ids) > 0 {
			room := maxMetrics - count
			if room == 0 {
				flush()
				room = maxMetrics
			}
			// Keep an entity's metrics together when they fit in a fresh
			// batch, rather than splitting them across two queries.
			if len(ids) > room && len(ids) <= maxMetrics && count > 0 {
				flush()
				room = maxMetrics
			}
			n := min(room, len(ids))
			part := s
			part.MetricId = ids[:n:n]
			cur = append(cur, part)
			count += n
			ids = ids[n:]
		}
	}
	flush()
	return out
}

// batchMetrics returns the number of metrics in one batch.
func batchMetrics(b []types.PerfQuerySpec) int {
	n := 0
	for _, s := range b {
		n += len(s.MetricId)
	}
	return n
}

// queryMetricsLimit reads the server's maxQueryMetrics setting. configured,
// when positive, lowers (never raises) the result.
func queryMetricsLimit(ctx context.Context, conn *Conn, configured int) int {
	limit := defaultQueryMetrics
	about := conn.Vim().ServiceContent.About
	if about.ApiType == "HostAgent" {
		limit = unlimitedQueryMetrics
	} else if setting := conn.Vim().ServiceContent.Setting; setting != nil {
		om := object.NewOptionManager(conn.Vim(), *setting)
		if res, err := om.Query(ctx, maxQueryMetricsOption); err == nil && len(res) > 0 {
			if v, ok := parseOptionInt(res[0].GetOptionValue().Value); ok {
				switch {
				case v < 0:
					limit = unlimitedQueryMetrics
				case v > 0:
					limit = v
				}
			}
		}
	}
	if configured > 0 && configured < limit {
		limit = configured
	}
	return limit
}

func parseOptionInt(v any) (int, bool) {
	switch x := v.(type) {
	case string:
		n, err := strconv.Atoi(x)
		return n, err == nil
	case int32:
		return int(x), true
	case int64:
		return int(x), true
	case int:
		return x, true
	}
	return 0, false
}
