package vsphere

import (
	"context"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"
)

// Query sizing. vCenter rejects a QueryPerf whose entity×metric count
// exceeds config.vpxd.stats.maxQueryMetrics. When the option is unset the
// server's default applies: 64 up to vSphere 6.0, 256 from 6.5 on (the
// inference Telegraf makes too); should a server still refuse a query as too
// large, the collector halves its limit and re-plans (see runBatch). ESXi
// has no such limit, and for it (or an explicit -1) we still cap queries at
// unlimitedQueryMetrics to keep responses reasonably small.
const (
	defaultQueryMetrics   = 64
	modernQueryMetrics    = 256 // vCenter 6.5 and later, option unset
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
	about := conn.Vim().ServiceContent.About
	limit := defaultLimitForVersion(about.Version)
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

// defaultLimitForVersion is vCenter's maxQueryMetrics when the option is
// unset: 64 before 6.5, 256 from 6.5 on. Unparseable versions get 64.
func defaultLimitForVersion(version string) int {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return defaultQueryMetrics
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return defaultQueryMetrics
	}
	if major > 6 || (major == 6 && minor >= 5) {
		return modernQueryMetrics
	}
	return defaultQueryMetrics
}

// isQueryTooLarge reports vCenter's refusal of a QueryPerf that asks for
// more metrics than config.vpxd.stats.maxQueryMetrics allows: an
// InvalidArgument fault on the query spec.
func isQueryTooLarge(err error) bool {
	var f *types.InvalidArgument
	_, ok := fault.As(err, &f)
	return ok && strings.Contains(f.InvalidProperty, "querySpec")
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
