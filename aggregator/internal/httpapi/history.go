package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// History serves the metric history routes. It is the store; the interface
// is declared here, where it is used.
type History interface {
	MetricCatalog(ctx context.Context) ([]store.MetricInfo, error)
	QueryRange(ctx context.Context, q store.RangeQuery) (store.RangeResult, error)
	Outages(ctx context.Context, site, source, kind, entity string, from, to time.Time) ([]store.Outage, error)
	Top(ctx context.Context, q store.TopQuery) ([]store.TopEntry, store.Resolution, error)
	// QueryClusterVMs answers a cluster's history with of=vms.
	QueryClusterVMs(ctx context.Context, q store.ClusterVMQuery) (store.ClusterVMResult, error)
	SiteTimeline(ctx context.Context, site string, from, to time.Time) (store.Timeline, error)
	// AlertCounts counts the open alerts in the caller's scope (the
	// realtime overview).
	AlertCounts(ctx context.Context) (store.AlertCounts, error)
	// DatastoresClosestToFull lists the datastores in the caller's scope
	// closest to full (the realtime overview).
	DatastoresClosestToFull(ctx context.Context, limit int) ([]store.DatastoreFill, error)
}

// Limits of a history query.
const (
	// DefaultHistoryRange is the range when from is not given.
	DefaultHistoryRange = time.Hour
	// MaxHistoryRange is the longest range one query may span.
	MaxHistoryRange = 400 * 24 * time.Hour
	// MaxHistoryMetrics is how many metrics one query may name.
	MaxHistoryMetrics = 50
)

var metricNameRE = regexp.MustCompile(`^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+){1,3}$`)

// historyResource is /metrics (the catalog) and /{kind}/{id}/metrics.
type historyResource struct{ a *API }

// Routes lists the history routes.
func (h *historyResource) Routes() []Route {
	const tag = "history"
	params := []Param{
		{Name: "metric", Description: "metric name (group.counter.rollup, e.g. cpu.usage.average); repeat or comma-separate for several; default all stored " +
			"counters. The derived cpu.ready.percent (CPU ready ms ÷ the sampling interval, per vCPU for a VM as a whole; see GET /metrics) is " +
			"answered only when named", Required: false},
		{Name: "from", Description: "RFC 3339 start (inclusive); default to - 1h"},
		{Name: "to", Description: "RFC 3339 end (exclusive); default now"},
		{Name: "step", Description: "width of a point, whole seconds (20s, 5m, 1h); default picked from the range"},
		{Name: "agg", Description: "avg (default), min, max, sum or count of the values in a step; p95 where raw samples answer (ranges up to 6h, steps under 5m: the rollups keep no distributions)"},
		{Name: "instance", Description: `only this instance ("" for the entity as a whole); repeat for several; default all`},
	}
	clusterParams := append(slices.Clone(params), Param{Name: "of", Description: "vms: the counters of the cluster's VMs (each VM as a whole), " +
		"all their values in a step combined by agg (avg: the mean of every VM's values, min/max the extremes, sum and count over all of them), " +
		"answered from the cluster's hourly aggregates when they are exact for the request (path cluster_1h: steps of whole hours, the cluster's " +
		"current VMs, within 92 days) and otherwise from the VMs' series (path vms, with path_reason); default: the cluster's own counters"})
	var out []Route
	for _, k := range []struct{ path, kind, code, what string }{
		{"/vms", store.KindVM, CodeVMNotFound, "a VM"},
		{"/hosts", store.KindHost, CodeHostNotFound, "a host"},
		{"/clusters", store.KindCluster, CodeClusterNotFound, "a cluster"},
		{"/datastores", store.KindDatastore, CodeDatastoreNotFound, "a datastore"},
	} {
		ps := params
		if k.kind == store.KindCluster {
			ps = clusterParams
		}
		out = append(out, Route{Method: "GET", Pattern: k.path + "/{id}/metrics", Access: auth.PermMetricRead, Handle: h.entityMetrics(k.kind, k.code),
			Doc: Doc{Tag: tag, Summary: "Metric history of " + k.what + ": one value or null per step (never interpolated) and, per series, " +
				"the coverage: stretches with data and stretches without it with their cause. The resolution (raw, 5m, 1h, 1d) follows the range " +
				"unless step is given; percent counters are in percent. {id} is source:moref.",
				Params: ps, Response: ref("History"), Errors: []int{401, 403, 404, 422}}})
	}
	entityParams := append([]Param{
		{Name: "kind", Description: "vm, host, cluster or datastore", Required: true},
		{Name: "entity", Description: "the entity's id (source:moref)", Required: true},
	}, params...)
	out = append(out,
		Route{Method: "GET", Pattern: "/metrics", Access: auth.PermMetricRead, Handle: h.catalog,
			Doc: Doc{Tag: tag, Summary: "The catalog of every metric stored for the entities in the caller's data scope",
				Response: listSchema(ref("MetricInfo")), Errors: []int{401, 403}}},
		Route{Method: "POST", Pattern: "/metrics/query", Access: auth.PermMetricRead, Query: true, Handle: h.multiQuery,
			Doc: Doc{Tag: tag, Summary: "History of many entities × metrics in one call (at most 100 entities); each entity answers like " +
				"GET /{kind}/{id}/metrics, or not_found (also outside the caller's data scope)",
				Body: ref("MetricsQuery"), Response: ref("MetricsQueryResult"), Errors: []int{401, 403, 422}}},
		Route{Method: "GET", Pattern: "/metrics/top", Access: auth.PermMetricRead, Handle: h.top,
			Doc: Doc{Tag: tag, Summary: "The entities with the highest (or lowest) value of a metric over a range, in the caller's data scope",
				Params: []Param{
					{Name: "metric", Description: "metric name; the derived cpu.ready.percent ranks VMs and hosts by CPU ready in percent of the " +
						"sampling time, per vCPU for a VM (see GET /metrics)", Required: true},
					{Name: "kind", Description: "vm, host, cluster or datastore; default all"},
					{Name: "site", Description: "only this site"},
					{Name: "from", Description: "RFC 3339; default to - 1h"}, {Name: "to", Description: "RFC 3339; default now"},
					{Name: "agg", Description: "avg (default), min or max over the range"},
					{Name: "order", Description: "desc (default) or asc"},
					{Name: "limit", Description: "1-100, default 10"},
				}, Response: ref("MetricsTop"), Errors: []int{401, 403, 422}}},
		Route{Method: "GET", Pattern: "/metrics/summary", Access: auth.PermMetricRead, Handle: h.summary,
			Doc: Doc{Tag: tag, Summary: "Min, max and average of each metric (and instance) of one entity over a range",
				Params: entityParams[:5], Response: ref("MetricsSummary"), Errors: []int{401, 403, 404, 422}}},
		Route{Method: "GET", Pattern: "/sites/{id}/timeline", Access: auth.PermVMRead, Handle: h.timeline,
			Doc: Doc{Tag: "vms", Summary: "A site's history: its agents' connections, the stretches with none (offline), backfill (late data " +
				"arriving as a backlog drains) and gap records; {id} is the site name",
				Params:   []Param{{Name: "from", Description: "RFC 3339; default to - 24h"}, {Name: "to", Description: "RFC 3339; default now"}},
				Response: ref("SiteTimeline"), Errors: []int{401, 403, 404, 422}}},
		Route{Method: "GET", Pattern: "/metrics/export", Access: auth.PermMetricRead, Export: true, Handle: h.export,
			Doc: Doc{Tag: tag, Summary: "Export one entity's history as CSV (time, metric, instance, unit, value; empty value for an empty step), streamed",
				Params: append(entityParams, Param{Name: "format", Description: "csv (the only format)"}), CSV: true, Errors: []int{401, 403, 404, 422}}},
	)
	return out
}

// MetricInfo is one entry of GET /metrics.
type MetricInfo struct {
	Name        string   `json:"name"`
	Unit        string   `json:"unit"`
	EntityKinds []string `json:"entity_kinds"`
	Instances   bool     `json:"per_instance"`
	// Derived states how a metric computed at query time is computed
	// (cpu.ready.percent); absent for stored counters.
	Derived string `json:"derived,omitempty"`
}

func (h *historyResource) catalog(w http.ResponseWriter, r *http.Request) error {
	list, err := h.a.history.MetricCatalog(r.Context())
	if err != nil {
		return err
	}
	items := make([]MetricInfo, 0, len(list))
	for _, m := range list {
		items = append(items, MetricInfo{Name: m.Name, Unit: m.Unit, EntityKinds: m.EntityKinds, Instances: m.Instances, Derived: m.Derived})
	}
	writeData(w, r, http.StatusOK, map[string]any{"items": items})
	return nil
}

// entityParam resolves the kind and entity query parameters to a live
// object in the caller's data scope.
func (h *historyResource) entityParam(r *http.Request, q *query) (*store.Object, error) {
	kind := q.oneOf("kind", store.KindVM, store.KindHost, store.KindCluster, store.KindDatastore)
	if kind == "" && q.r.URL.Query().Get("kind") == "" {
		q.fe.add("kind", FieldRequired, nil)
	}
	id := q.str("entity", maxObjectID)
	source, moref, ok := parseObjectID(id)
	if !ok {
		q.fe.add("entity", FieldInvalidFormat, map[string]any{"format": "source:moref"})
	}
	if err := q.err(); err != nil {
		return nil, err
	}
	o, err := h.a.inventory.Object(r.Context(), kind, source, moref)
	if err != nil {
		return nil, notFound(err, notFoundCodeOf(kind))
	}
	return &o, nil
}

func notFoundCodeOf(kind string) string {
	if kind == store.KindVM {
		return CodeVMNotFound
	}
	return notFoundCodes[kind]
}

// metricsQuery is the body of POST /metrics/query.
type metricsQuery struct {
	Entities []struct {
		Kind string `json:"kind"`
		ID   string `json:"id"`
	} `json:"entities"`
	Metrics   []string   `json:"metrics"`
	Instances *[]string  `json:"instances"`
	From      *time.Time `json:"from"`
	To        *time.Time `json:"to"`
	Step      *string    `json:"step"`
	Agg       *string    `json:"agg"`
}

func (b *metricsQuery) validate(v *fieldErrors) {
	if v.required("entities", len(b.Entities) > 0) && len(b.Entities) > 100 {
		v.add("entities", FieldOutOfRange, map[string]any{"min": 1, "max": 100})
	}
	for i, e := range b.Entities {
		if !slices.Contains([]string{store.KindVM, store.KindHost, store.KindCluster, store.KindDatastore}, e.Kind) {
			v.add("entities["+strconv.Itoa(i)+"].kind", FieldInvalidValue, map[string]any{"allowed": "vm, host, cluster, datastore"})
		}
		if _, _, ok := parseObjectID(e.ID); !ok {
			v.add("entities["+strconv.Itoa(i)+"].id", FieldInvalidFormat, map[string]any{"format": "source:moref"})
		}
	}
	if len(b.Metrics) > MaxHistoryMetrics {
		v.add("metrics", FieldOutOfRange, map[string]any{"min": 0, "max": MaxHistoryMetrics})
	}
	for i, m := range b.Metrics {
		if !metricNameRE.MatchString(m) {
			v.add("metrics["+strconv.Itoa(i)+"]", FieldInvalidFormat, map[string]any{"format": "group.counter.rollup, e.g. cpu.usage.average"})
		}
	}
}

// MetricsQueryItem is one entity of a POST /metrics/query answer.
type MetricsQueryItem struct {
	Kind    string         `json:"kind"`
	ID      string         `json:"id"`
	Found   bool           `json:"found"`
	History *HistoryAnswer `json:"history"`
}

func (h *historyResource) multiQuery(w http.ResponseWriter, r *http.Request) error {
	var body metricsQuery
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	// The time parameters parse exactly as the GET routes' do.
	qv := url.Values{}
	for _, m := range body.Metrics {
		qv.Add("metric", m)
	}
	if body.Instances != nil {
		qv["instance"] = append([]string{}, *body.Instances...)
	}
	if body.From != nil {
		qv.Set("from", body.From.Format(time.RFC3339Nano))
	}
	if body.To != nil {
		qv.Set("to", body.To.Format(time.RFC3339Nano))
	}
	if body.Step != nil {
		qv.Set("step", *body.Step)
	}
	if body.Agg != nil {
		qv.Set("agg", *body.Agg)
	}
	rq := r.Clone(r.Context())
	rq.URL.RawQuery = qv.Encode()
	q := newQuery(rq)
	p := q.historyParams(h.a.now().UTC())
	if err := q.err(); err != nil {
		return err
	}
	items := make([]MetricsQueryItem, 0, len(body.Entities))
	for _, e := range body.Entities {
		it := MetricsQueryItem{Kind: e.Kind, ID: e.ID}
		source, moref, _ := parseObjectID(e.ID)
		o, err := h.a.inventory.Object(r.Context(), e.Kind, source, moref)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		default:
			ans, err := h.query(r.Context(), &o, p)
			if err != nil {
				return err
			}
			it.Found, it.History = true, ans
		}
		items = append(items, it)
	}
	writeData(w, r, http.StatusOK, map[string]any{"items": items})
	return nil
}

// TopItem is one entity of GET /metrics/top.
type TopItem struct {
	Kind  string  `json:"kind"`
	ID    string  `json:"id"`
	Name  string  `json:"name"`
	Site  string  `json:"site"`
	Unit  string  `json:"unit"`
	Value float64 `json:"value"`
}

func (h *historyResource) top(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	metric := q.str("metric", 128)
	if metric == "" {
		q.fe.add("metric", FieldRequired, nil)
	} else if !metricNameRE.MatchString(metric) {
		q.fe.add("metric", FieldInvalidFormat, map[string]any{"format": "group.counter.rollup, e.g. cpu.usage.average"})
	}
	kind := q.oneOf("kind", store.KindVM, store.KindHost, store.KindCluster, store.KindDatastore)
	site := q.str("site", 63)
	agg := q.oneOf("agg", string(store.AggAvg), string(store.AggMin), string(store.AggMax))
	order := q.oneOf("order", "asc", "desc")
	limit := q.intRange("limit", 10, 1, 100)
	from, to := q.timeRange(h.a.now().UTC(), DefaultHistoryRange)
	if err := q.err(); err != nil {
		return err
	}
	list, res, err := h.a.history.Top(r.Context(), store.TopQuery{Counter: metric, EntityKind: kind, Site: site, From: from, To: to,
		Agg: store.Agg(agg), Limit: limit, Ascending: order == "asc"})
	if err != nil {
		return err
	}
	items := make([]TopItem, 0, len(list))
	for _, e := range list {
		items = append(items, TopItem{Kind: e.EntityKind, ID: objectID(e.Source, e.EntityID), Name: e.Name, Site: e.Site, Unit: e.Unit,
			Value: displayValue(e.Unit, e.Value)})
	}
	if agg == "" {
		agg = string(store.AggAvg)
	}
	writeData(w, r, http.StatusOK, map[string]any{"metric": metric, "from": from.UTC(), "to": to.UTC(), "agg": agg,
		"resolution": string(res), "items": items})
	return nil
}

// SummaryItem is one metric (and instance) of GET /metrics/summary.
type SummaryItem struct {
	Metric   string   `json:"metric"`
	Instance string   `json:"instance"`
	Unit     string   `json:"unit"`
	Min      *float64 `json:"min"`
	Max      *float64 `json:"max"`
	Avg      *float64 `json:"avg"`
	Count    int64    `json:"count"`
}

func (h *historyResource) summary(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	o, err := h.entityParam(r, q)
	if err != nil {
		return err
	}
	p := q.historyParams(h.a.now().UTC())
	if err := q.err(); err != nil {
		return err
	}
	type key struct{ metric, instance string }
	sums := map[key]*SummaryItem{}
	var order []key
	var total = map[key]float64{}
	for _, agg := range []store.Agg{store.AggMin, store.AggMax, store.AggSum, store.AggCount} {
		res, err := h.a.history.QueryRange(r.Context(), store.RangeQuery{Site: o.Site, Source: o.Source, EntityKind: o.Kind, EntityID: o.Moref,
			Instances: p.instances, Counters: p.metrics, From: p.from, To: p.to, Agg: agg})
		if errors.Is(err, store.ErrInvalidQuery) {
			return validationError(FieldError{Field: "from", Code: FieldOutOfRange, Params: map[string]any{"min": "to - 400d", "max": "to"}})
		}
		if err != nil {
			return err
		}
		for _, sp := range res.Series {
			k := key{sp.Counter, sp.Instance}
			it := sums[k]
			if it == nil {
				it = &SummaryItem{Metric: sp.Counter, Instance: sp.Instance, Unit: sp.Unit}
				sums[k] = it
				order = append(order, k)
			}
			for _, pt := range sp.Points {
				v := pt.V
				switch agg {
				case store.AggMin:
					if it.Min == nil || v < *it.Min {
						it.Min = &v
					}
				case store.AggMax:
					if it.Max == nil || v > *it.Max {
						it.Max = &v
					}
				case store.AggSum:
					total[k] += v
				case store.AggCount:
					it.Count += int64(v)
				}
			}
		}
	}
	items := make([]SummaryItem, 0, len(order))
	for _, k := range order {
		it := sums[k]
		if it.Count > 0 {
			avg := total[k] / float64(it.Count)
			it.Avg = &avg
		}
		for _, f := range []*float64{it.Min, it.Max, it.Avg} {
			if f != nil {
				*f = displayValue(it.Unit, *f)
			}
		}
		items = append(items, *it)
	}
	slices.SortFunc(items, func(a, b SummaryItem) int {
		if c := strings.Compare(a.Metric, b.Metric); c != 0 {
			return c
		}
		return strings.Compare(a.Instance, b.Instance)
	})
	writeData(w, r, http.StatusOK, map[string]any{"entity": Ref{ID: objectID(o.Source, o.Moref), Name: o.Name}, "kind": o.Kind,
		"from": p.from.UTC(), "to": p.to.UTC(), "items": items})
	return nil
}

func (h *historyResource) export(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	if f := q.str("format", 16); f != "" && f != "csv" {
		q.fe.add("format", FieldInvalidValue, map[string]any{"allowed": "csv"})
	}
	o, err := h.entityParam(r, q)
	if err != nil {
		return err
	}
	p := q.historyParams(h.a.now().UTC())
	if err := q.err(); err != nil {
		return err
	}
	ans, err := h.query(r.Context(), o, p)
	if err != nil {
		return err
	}
	header := []string{"time", "entity", "name", "metric", "instance", "unit", "value"}
	return (&auditResource{h.a}).streamCSV(w, r, "metrics", header, func(ctx context.Context, emit func([]string) error) error {
		id := objectID(o.Source, o.Moref)
		for _, s := range ans.Series {
			for i, t := range ans.Timestamps {
				v := ""
				if s.Values[i] != nil {
					v = strconv.FormatFloat(*s.Values[i], 'g', -1, 64)
				}
				if err := emit([]string{t.Format(time.RFC3339), id, o.Name, s.Metric, s.Instance, s.Unit, v}); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// SiteTimeline is GET /sites/{id}/timeline.
type SiteTimeline struct {
	Site      string            `json:"site"`
	From      time.Time         `json:"from"`
	To        time.Time         `json:"to"`
	Sessions  []TimelineSession `json:"sessions"`
	Offline   []TimelinePeriod  `json:"offline"`
	Backfills []TimelineFill    `json:"backfills"`
	Gaps      []TimelineGap     `json:"gaps"`
}

// TimelineSession is one agent connection; To is null while it lasts.
type TimelineSession struct {
	Agent     Ref        `json:"agent"`
	From      time.Time  `json:"from"`
	To        *time.Time `json:"to"`
	EndReason string     `json:"end_reason"`
}

// TimelinePeriod is a stretch of time.
type TimelinePeriod struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// TimelineFill is a backfill stretch.
type TimelineFill struct {
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	DataFrom time.Time `json:"data_from"`
	DataTo   time.Time `json:"data_to"`
	Batches  int64     `json:"batches"`
}

// TimelineGap is a gap record.
type TimelineGap struct {
	Agent   string    `json:"agent_id"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Batches int64     `json:"batches"`
	Bytes   int64     `json:"bytes"`
	Reason  string    `json:"reason"`
}

func (h *historyResource) timeline(w http.ResponseWriter, r *http.Request) error {
	name := chi.URLParam(r, "id")
	if !siteNameRE.MatchString(name) {
		return newError(http.StatusNotFound, CodeSiteNotFound)
	}
	q := newQuery(r)
	from, to := q.timeRange(h.a.now().UTC(), 24*time.Hour)
	if err := q.err(); err != nil {
		return err
	}
	if _, err := h.a.inventory.Site(r.Context(), name); err != nil {
		return notFound(err, CodeSiteNotFound)
	}
	tl, err := h.a.history.SiteTimeline(r.Context(), name, from, to)
	if err != nil {
		return notFound(err, CodeSiteNotFound)
	}
	out := SiteTimeline{Site: name, From: from.UTC(), To: to.UTC(), Sessions: []TimelineSession{}, Offline: []TimelinePeriod{},
		Backfills: []TimelineFill{}, Gaps: []TimelineGap{}}
	for _, x := range tl.Sessions {
		out.Sessions = append(out.Sessions, TimelineSession{Agent: Ref{ID: x.AgentID, Name: x.AgentName}, From: x.From, To: x.To, EndReason: x.EndReason})
	}
	for _, p := range tl.Offline {
		out.Offline = append(out.Offline, TimelinePeriod{From: p.From, To: p.To})
	}
	for _, b := range tl.Backfills {
		out.Backfills = append(out.Backfills, TimelineFill{From: b.From, To: b.To, DataFrom: b.DataFrom, DataTo: b.DataTo, Batches: b.Batches})
	}
	for _, g := range tl.Gaps {
		out.Gaps = append(out.Gaps, TimelineGap{Agent: g.AgentID, From: g.From, To: g.To, Batches: g.Batches, Bytes: g.Bytes, Reason: g.Reason})
	}
	writeData(w, r, http.StatusOK, out)
	return nil
}

// CoverageSpan is a stretch of a series' range with data, or without it
// and why.
type CoverageSpan struct {
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	State string    `json:"state"` // "data" or "missing"
	// Cause is why a missing stretch has no data: powered_off,
	// beyond_retention, spool_drop, site_offline or no_data.
	Cause  string `json:"cause,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// HistorySeries is one metric (and instance) of a history answer; Values
// are aligned with the answer's Timestamps, null where a step has none.
type HistorySeries struct {
	Metric   string         `json:"metric"`
	Instance string         `json:"instance"`
	Unit     string         `json:"unit"`
	Values   []*float64     `json:"values"`
	Coverage []CoverageSpan `json:"coverage"`
}

// HistoryAnswer is GET /{kind}/{id}/metrics.
type HistoryAnswer struct {
	Entity     Ref       `json:"entity"`
	Kind       string    `json:"kind"`
	Site       string    `json:"site"`
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	Step       string    `json:"step"`
	Resolution string    `json:"resolution"`
	Agg        string    `json:"agg"`
	Coarsened  bool      `json:"coarsened"`
	// Of, Path, PathReason and VMs are set for a cluster's VMs (of=vms):
	// which path answered (cluster_1h or vms), why the VMs' series did,
	// and how many VMs the cluster has.
	Of         string          `json:"of,omitempty"`
	Path       string          `json:"path,omitempty"`
	PathReason string          `json:"path_reason,omitempty"`
	VMs        *int            `json:"vms,omitempty"`
	Timestamps []time.Time     `json:"timestamps"`
	Series     []HistorySeries `json:"series"`
	// Coverage is the entity's: a step has data when any series has.
	Coverage []CoverageSpan `json:"coverage"`
}

// historyParams are the parsed query parameters of a history request.
type historyParams struct {
	metrics   []string
	instances []string // nil: all
	from, to  time.Time
	step      time.Duration
	agg       store.Agg
}

func (q *query) historyParams(now time.Time) historyParams {
	var p historyParams
	vals := q.r.URL.Query()
	for _, v := range vals["metric"] {
		for _, m := range strings.Split(v, ",") {
			if m = strings.TrimSpace(m); m == "" {
				continue
			}
			if !metricNameRE.MatchString(m) {
				q.fe.add("metric", FieldInvalidFormat, map[string]any{"format": "group.counter.rollup, e.g. cpu.usage.average"})
				return p
			}
			if !slices.Contains(p.metrics, m) {
				p.metrics = append(p.metrics, m)
			}
		}
	}
	if len(p.metrics) > MaxHistoryMetrics {
		q.fe.add("metric", FieldOutOfRange, map[string]any{"min": 1, "max": MaxHistoryMetrics})
	}
	if inst, ok := vals["instance"]; ok {
		for _, s := range inst {
			if reason := queryTextProblem(s); reason != "" {
				q.fe.add("instance", FieldInvalidText, map[string]any{"reason": reason})
				break
			}
			q.fe.maxLen("instance", s, 255)
		}
		p.instances = slices.Clone(inst)
	}
	p.from, p.to = q.timeRange(now, DefaultHistoryRange)
	if s := q.str("step", 32); s != "" {
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			q.fe.add("step", FieldInvalidFormat, map[string]any{"format": "a duration such as 20s, 5m or 1h"})
		case d < time.Second || d%time.Second != 0 || d > 30*24*time.Hour:
			q.fe.add("step", FieldOutOfRange, map[string]any{"min": "1s", "max": "720h"})
		default:
			p.step = d
		}
	}
	p.agg = store.Agg(q.oneOf("agg", string(store.AggAvg), string(store.AggMin), string(store.AggMax), string(store.AggSum), string(store.AggCount),
		string(store.AggP95)))
	if p.agg == "" {
		p.agg = store.AggAvg
	}
	return p
}

// historyOf reads the of parameter of a history request for an entity of
// kind: true for of=vms, only on a cluster, and then not with the derived
// cpu.ready.percent (it is per VM).
func (q *query) historyOf(kind string, p historyParams) bool {
	if !q.r.URL.Query().Has("of") {
		return false
	}
	if kind != store.KindCluster {
		q.fe.add("of", FieldInvalidValue, map[string]any{"allowed": "only on /clusters/{id}/metrics"})
		return false
	}
	ofVMs := q.oneOf("of", "vms") == "vms"
	if ofVMs && slices.Contains(p.metrics, store.MetricCPUReadyPercent) {
		q.fe.add("metric", FieldInvalidValue, map[string]any{"allowed": "stored counters (cpu.ready.percent is per VM; ask for cpu.ready.summation)"})
	}
	return ofVMs
}

// timeRange reads from and to: to defaults to now, from to def before to;
// the range must be non-empty and at most MaxHistoryRange.
func (q *query) timeRange(now time.Time, def time.Duration) (from, to time.Time) {
	to = q.time("to")
	if to.IsZero() {
		to = now
	}
	from = q.time("from")
	if from.IsZero() {
		from = to.Add(-def)
	}
	switch {
	case !to.After(from):
		q.fe.add("to", FieldOutOfRange, map[string]any{"min": "from", "max": "∞"})
	case to.Sub(from) > MaxHistoryRange:
		q.fe.add("from", FieldOutOfRange, map[string]any{"min": "to - 400d", "max": "to"})
	}
	return from, to
}

func (h *historyResource) entityMetrics(kind, notFoundCode string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		source, moref, err := pathObjectID(r, notFoundCode)
		if err != nil {
			return err
		}
		q := newQuery(r)
		p := q.historyParams(h.a.now().UTC())
		ofVMs := q.historyOf(kind, p)
		if err := q.err(); err != nil {
			return err
		}
		// The entity must exist in the caller's scope: 404 otherwise,
		// exactly like a missing one.
		o, err := h.a.inventory.Object(r.Context(), kind, source, moref)
		if err != nil {
			return notFound(err, notFoundCode)
		}
		if ofVMs {
			ans, err := h.clusterVMs(r.Context(), &o, p)
			if err != nil {
				return err
			}
			writeData(w, r, http.StatusOK, ans)
			return nil
		}
		ans, err := h.query(r.Context(), &o, p)
		if err != nil {
			return err
		}
		writeData(w, r, http.StatusOK, ans)
		return nil
	}
}

// clusterVMs answers GET /clusters/{id}/metrics?of=vms.
func (h *historyResource) clusterVMs(ctx context.Context, o *store.Object, p historyParams) (*HistoryAnswer, error) {
	if p.instances != nil && !slices.Equal(p.instances, []string{""}) {
		return nil, validationError(FieldError{Field: "instance", Code: FieldInvalidValue, Params: map[string]any{"allowed": `"" (each VM as a whole) with of=vms`}})
	}
	res, err := h.a.history.QueryClusterVMs(ctx, store.ClusterVMQuery{Site: o.Site, Source: o.Source, Cluster: o.Moref,
		Counters: p.metrics, From: p.from, To: p.to, Step: p.step, Agg: p.agg})
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound(err, CodeClusterNotFound)
	}
	if err != nil {
		return nil, historyError(err, p)
	}
	ans, err := h.answer(ctx, o, p, store.RangeResult{Resolution: res.Resolution, Step: res.Step, Series: res.Series})
	if err != nil {
		return nil, err
	}
	ans.Of, ans.Path, ans.PathReason, ans.VMs = "vms", res.Path, res.Reason, &res.VMs
	return ans, nil
}

// historyError maps a store error of a history query to the API's.
func historyError(err error, p historyParams) error {
	if errors.Is(err, store.ErrInvalidQuery) && p.agg == store.AggP95 {
		return validationError(FieldError{Field: "agg", Code: FieldInvalidValue,
			Params: map[string]any{"allowed": "avg, min, max, sum, count; p95 only where raw samples answer (ranges up to 6h, steps under 5m)"}})
	}
	if errors.Is(err, store.ErrInvalidQuery) {
		// Too many points for the range: the step is what to change.
		return validationError(FieldError{Field: "step", Code: FieldOutOfRange, Params: map[string]any{"min": "(to - from) / " + strconv.Itoa(store.MaxPoints), "max": "720h"}})
	}
	return err
}

// query answers a history request for one entity.
func (h *historyResource) query(ctx context.Context, o *store.Object, p historyParams) (*HistoryAnswer, error) {
	res, err := h.a.history.QueryRange(ctx, store.RangeQuery{
		Site: o.Site, Source: o.Source, EntityKind: o.Kind, EntityID: o.Moref,
		Instances: p.instances, Counters: p.metrics, From: p.from, To: p.to, Step: p.step, Agg: p.agg,
	})
	if err != nil {
		return nil, historyError(err, p)
	}
	return h.answer(ctx, o, p, res)
}

// answer turns a store answer into the API's, with the coverage.
func (h *historyResource) answer(ctx context.Context, o *store.Object, p historyParams, res store.RangeResult) (*HistoryAnswer, error) {
	outages, err := h.a.history.Outages(ctx, o.Site, o.Source, o.Kind, o.Moref, p.from, p.to)
	if err != nil {
		return nil, err
	}
	ans := &HistoryAnswer{
		Entity: Ref{ID: objectID(o.Source, o.Moref), Name: o.Name}, Kind: o.Kind, Site: o.Site,
		From: p.from.UTC(), To: p.to.UTC(), Step: formatStep(res.Step), Resolution: string(res.Resolution), Agg: string(p.agg),
		Coarsened: p.step > 0 && res.Step != p.step, Series: []HistorySeries{},
	}
	ans.Timestamps = stepGrid(p.from, p.to, res.Step)
	for i := range res.Series {
		sp := &res.Series[i]
		hs := HistorySeries{Metric: sp.Counter, Instance: sp.Instance, Unit: sp.Unit, Values: make([]*float64, len(ans.Timestamps))}
		for _, pt := range sp.Points {
			j, ok := slices.BinarySearchFunc(ans.Timestamps, pt.T, func(a, b time.Time) int { return a.Compare(b) })
			if !ok {
				continue
			}
			v := pt.V
			if p.agg != store.AggCount {
				v = displayValue(sp.Unit, v)
			}
			hs.Values[j] = &v
		}
		hs.Coverage = coverage(ans.Timestamps, hs.Values, res.Step, p.from, p.to, outages)
		ans.Series = append(ans.Series, hs)
	}
	// A metric asked for by name that has no data at all still answers,
	// with nulls and the reasons.
	for _, m := range p.metrics {
		if !slices.ContainsFunc(ans.Series, func(s HistorySeries) bool { return s.Metric == m }) {
			hs := HistorySeries{Metric: m, Values: make([]*float64, len(ans.Timestamps))}
			hs.Coverage = coverage(ans.Timestamps, hs.Values, res.Step, p.from, p.to, outages)
			ans.Series = append(ans.Series, hs)
		}
	}
	anyData := make([]*float64, len(ans.Timestamps))
	one := 1.0
	for _, s := range ans.Series {
		for i, v := range s.Values {
			if v != nil {
				anyData[i] = &one
			}
		}
	}
	ans.Coverage = coverage(ans.Timestamps, anyData, res.Step, p.from, p.to, outages)
	return ans, nil
}

// displayValue is a stored value as an operator reads it: vSphere's percent
// counters are stored as hundredths of a percent (10000 = 100 %).
// readyPercentLatest derives cpu.ready.percent, in percent, from the latest
// cpu.ready.summation value (ms) of a VM or host: latest values are
// vCenter's realtime samples, so the interval is 20 s; for a VM as a whole
// (instance "") it is per vCPU, by the VM's num_cpu (store.ReadyPercentRule).
func readyPercentLatest(kind, instance string, ms float64, props map[string]any) float64 {
	pct := ms / float64(realtimeReadyInterval.Milliseconds()) * 100
	if kind == store.KindVM && instance == "" {
		if n := propInt(props, "num_cpu"); n != nil && *n > 0 {
			pct /= float64(*n)
		}
	}
	return pct
}

func displayValue(unit string, v float64) float64 {
	if unit == "%" {
		return v / 100
	}
	return v
}

// stepGrid is the start of every step of width step (aligned to the Unix
// epoch, as QueryRange aligns them) that overlaps [from, to).
func stepGrid(from, to time.Time, step time.Duration) []time.Time {
	if step <= 0 {
		return []time.Time{}
	}
	t := time.UnixMicro(from.UnixMicro() - from.UnixMicro()%step.Microseconds()).UTC()
	out := []time.Time{}
	for ; t.Before(to); t = t.Add(step) {
		out = append(out, t)
	}
	return out
}

// causeRank orders the causes of a missing step: a powered-off VM first
// (it had nothing to collect, whatever else happened), then a recorded
// loss, then a site offline (its data may still be in the agent's spool),
// then no recorded reason.
var causeRank = map[string]int{store.CausePoweredOff: 0, store.CauseBeyondRetention: 1, store.CauseSpoolDrop: 2, store.CauseSiteOffline: 3}

// coverage turns a series' values into stretches: with data, and without it
// with the best-ranked outage overlapping each step (or no_data), merged
// where neighbours agree and clipped to [from, to).
func coverage(ts []time.Time, vals []*float64, step time.Duration, from, to time.Time, outages []store.Outage) []CoverageSpan {
	out := []CoverageSpan{}
	for i, t := range ts {
		end := t.Add(step)
		span := CoverageSpan{From: maxTime(t, from), To: minTime(end, to), State: "data"}
		if vals[i] == nil {
			span.State, span.Cause = "missing", store.CauseNoData
			best := len(causeRank)
			for _, o := range outages {
				if o.From.Before(end) && o.To.After(t) {
					if r, ok := causeRank[o.Cause]; ok && r < best {
						best, span.Cause, span.Detail = r, o.Cause, o.Detail
					}
				}
			}
		}
		if n := len(out); n > 0 && out[n-1].State == span.State && out[n-1].Cause == span.Cause && out[n-1].Detail == span.Detail {
			out[n-1].To = span.To
			continue
		}
		out = append(out, span)
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// formatStep writes a step the way the API takes it (20s, 5m, 1h).
func formatStep(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d >= time.Minute && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}

// historySchemas are the OpenAPI schemas of the history routes.
func historySchemas() map[string]any {
	span := objectSchema(map[string]any{"from": dateTime, "to": dateTime, "state": desc(str, "data or missing"),
		"cause":  desc(str, "for missing stretches: powered_off, beyond_retention, spool_drop, site_offline (its data may still arrive from the agent's spool) or no_data"),
		"detail": desc(str, "the recorded reason in its source's words")})
	return map[string]any{
		"SiteTimeline": objectSchema(map[string]any{"site": str, "from": dateTime, "to": dateTime,
			"sessions": arrayOf(objectSchema(map[string]any{"agent": ref("ObjectRef"), "from": dateTime, "to": nullable(dateTime, "null while connected"),
				"end_reason": desc(str, "disconnected, reconnected, or lost (the replica holding it died: it ended at the agent's last heartbeat)")})),
			"offline":   desc(arrayOf(objectSchema(map[string]any{"from": dateTime, "to": dateTime})), "no agent of the site connected"),
			"backfills": desc(arrayOf(objectSchema(map[string]any{"from": dateTime, "to": dateTime, "data_from": dateTime, "data_to": dateTime, "batches": integer})), "late data arriving (from, to) and which data it was"),
			"gaps":      desc(arrayOf(objectSchema(map[string]any{"agent_id": str, "from": dateTime, "to": dateTime, "batches": integer, "bytes": integer, "reason": str})), "data the agents recorded as lost"),
		}),
		"MetricInfo": objectSchema(map[string]any{"name": desc(str, "group.counter.rollup"), "unit": str,
			"entity_kinds": strList, "per_instance": desc(boolean, "some series carry it per instance (vNIC, disk)"),
			"derived": desc(str, "only for metrics computed at query time (cpu.ready.percent: CPU ready ms ÷ the sampling interval, in "+
				"percent, per vCPU for a VM as a whole): how")}),
		"MetricsQuery": objectSchema(map[string]any{
			"entities": arrayOf(objectSchema(map[string]any{"kind": desc(str, "vm, host, cluster or datastore"), "id": desc(str, "source:moref")}, "kind", "id")),
			"metrics":  strList, "instances": strList, "from": dateTime, "to": dateTime, "step": desc(str, "20s, 5m, 1h"), "agg": str,
		}, "entities"),
		"MetricsQueryResult": objectSchema(map[string]any{"items": arrayOf(objectSchema(map[string]any{
			"kind": str, "id": str, "found": desc(boolean, "false for an entity that does not exist or is outside the caller's data scope"),
			"history": nullable(ref("History"), "null when not found")}))}),
		"MetricsTop": objectSchema(map[string]any{"metric": str, "from": dateTime, "to": dateTime, "agg": str, "resolution": str,
			"items": arrayOf(objectSchema(map[string]any{"kind": str, "id": str, "name": str, "site": str, "unit": str, "value": map[string]any{"type": "number"}}))}),
		"MetricsSummary": objectSchema(map[string]any{"entity": ref("ObjectRef"), "kind": str, "from": dateTime, "to": dateTime,
			"items": arrayOf(objectSchema(map[string]any{"metric": str, "instance": str, "unit": str,
				"min": nullable(map[string]any{"type": "number"}, ""), "max": nullable(map[string]any{"type": "number"}, ""),
				"avg": nullable(map[string]any{"type": "number"}, ""), "count": desc(integer, "raw values counted")}))}),
		"History": objectSchema(map[string]any{
			"entity": ref("ObjectRef"), "kind": str, "site": str, "from": dateTime, "to": dateTime,
			"step": desc(str, "width of a point"), "resolution": desc(str, "raw, 5m, 1h or 1d: the tier that answered"),
			"agg":       str,
			"coarsened": desc(boolean, "the step asked for is finer than what is still retained; step says what was used"),
			"of":        desc(str, "vms when a cluster's VMs were asked for (of=vms); absent otherwise"),
			"path":      desc(str, "with of=vms: cluster_1h (the cluster's hourly aggregates answered) or vms (the VMs' own series, combined at query time)"),
			"path_reason": desc(str, "with path vms: why the aggregates did not answer (a step under an hour, the cluster's VMs changed since they were built, "+
				"a range before them, not built yet, TimescaleDB)"),
			"vms":        desc(integer, "with of=vms: how many VMs (series) the cluster has now"),
			"timestamps": desc(arrayOf(dateTime), "the start of every step"),
			"series": arrayOf(objectSchema(map[string]any{"metric": str, "instance": desc(str, "empty for the entity as a whole"), "unit": str,
				"values":   desc(arrayOf(nullable(map[string]any{"type": "number"}, "")), "one per timestamp; null where the step has no data"),
				"coverage": arrayOf(span)})),
			"coverage": desc(arrayOf(span), "the entity's: a step has data when any series has"),
		}),
	}
}
