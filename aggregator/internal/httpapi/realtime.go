package httpapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/realtime"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// RealtimeFeed is the live sample feed the realtime routes serve;
// *realtime.Hub implements it. It is declared here, where it is used.
type RealtimeFeed interface {
	// ID identifies this replica's feed. Stream event ids carry it, so a
	// stream resumed on another replica (or after a restart) is known
	// not to be resumable from this one's ring.
	ID() string
	// Subscribe opens a subscription with room for buffer deliveries.
	Subscribe(buffer int) *realtime.Subscription
	// Since replays the ring after seq for s (see realtime.Hub.Since).
	Since(seq uint64, s *realtime.Subscription) ([]realtime.Delivery, bool)
	// Done is closed when the feed stops (shutdown): open streams end.
	Done() <-chan struct{}
	// Drain reads the ingest ledger of the given agents (see
	// realtime.Hub.Drain).
	Drain(ctx context.Context, agentIDs []string, window time.Duration) (map[string]realtime.Drain, error)
}

// Limits of the realtime feed.
const (
	// MaxRealtimeSubscriptions bounds what one WebSocket connection or one
	// stream subscribes to: (entity, metric) pairs, "every metric of an
	// entity" counting as one.
	MaxRealtimeSubscriptions = 500
	// MaxRealtimeEntities bounds the entities one subscribe message or
	// stream request names.
	MaxRealtimeEntities = 100
	// OverviewWindow is the stretch "right now" covers in the overview:
	// top-N averages and drain rates.
	OverviewWindow = 5 * time.Minute
	// realtimeReadyInterval is vCenter's realtime sampling interval, the
	// interval of cpu.ready.summation for VMs: ready ms ÷ 20,000 ms is
	// the share of the interval the VM was ready but not scheduled.
	realtimeReadyInterval = 20 * time.Second
)

// realtimeLimits are the feed's timings and buffer; tests shorten them.
type realtimeLimits struct {
	// buffer is how many deliveries (one per batch with something for
	// the client) a client may be behind before it is dropped as a slow
	// consumer.
	buffer       int
	heartbeat    time.Duration // WebSocket ping, stream heartbeat event
	pongTimeout  time.Duration // a ping unanswered this long ends the connection
	authTimeout  time.Duration // for the first message, when it authenticates
	writeTimeout time.Duration // one message to the client
	// revalidate is how often an open connection's credential and the
	// scope of its subscriptions are checked again.
	revalidate time.Duration
}

var defaultRealtimeLimits = realtimeLimits{buffer: 256, heartbeat: 20 * time.Second, pongTimeout: 10 * time.Second,
	authTimeout: 10 * time.Second, writeTimeout: 10 * time.Second, revalidate: time.Minute}

// realtimeResource is /realtime: the WebSocket and Server-Sent Events
// feeds, the latest values of a VM and the fleet overview.
type realtimeResource struct{ a *API }

// Routes lists the realtime routes.
func (h *realtimeResource) Routes() []Route {
	const tag = "realtime"
	entityParams := []Param{
		{Name: "vm", Description: "a VM to watch (" + objectIDDoc + "); repeat for several"},
		{Name: "host", Description: "a host to watch; repeat for several"},
		{Name: "cluster", Description: "a cluster to watch; repeat for several"},
		{Name: "datastore", Description: "a datastore to watch; repeat for several"},
		{Name: "metric", Description: "metric names (group.counter.rollup); repeat or comma-separate; default every metric"},
		{Name: "last_event_id", Description: "resume after this event id, when the Last-Event-ID header cannot be set"},
	}
	return []Route{
		{Method: "GET", Pattern: "/realtime/ws", Access: auth.PermMetricRead, Stream: true, SelfAuth: true, Handle: h.ws,
			Doc: Doc{Tag: tag, Summary: "The live sample feed over a WebSocket. Authenticate with an Authorization header, or with " +
				`Sec-WebSocket-Protocol: "` + wsSubprotocol + `, ` + wsBearerPrefix + `<token>" (the server answers ` + wsSubprotocol +
				`, never the token), or with the first message {"type":"auth","token":…} within 10 s; never by the query string. ` +
				`Then {"type":"subscribe"|"unsubscribe","id":…,"entities":[{"kind":"vm","id":"<source>:<moref>"}],"metrics":[…]} ` +
				`(metrics empty: every metric; every entity is checked against the caller's data scope, and one outside it is refused ` +
				`exactly like a missing one), {"type":"ping"}, and {"type":"auth","token":…} again to replace an access token before ` +
				`it expires. The server sends welcome, subscribed, unsubscribed, samples {seq, committed_at, samples:[RealtimeSample]}, ` +
				`revoked (entities no longer in the scope), pong and error {id, code, message, fields}; it pings every 20 s and ` +
				`re-checks the credential and scope every minute. Close codes: 1008 authentication or permission failed or expired, ` +
				`1013 slow consumer (REALTIME_SLOW_CONSUMER: the client fell 256 batches behind), 1001 server going away or ` +
				`heartbeat timeout. At most 500 subscriptions (entity × metric) per connection. A plain GET answers 426.`,
				Errors: []int{401, 403, 426}, Codes: []string{CodeUpgradeRequired, CodeSlowConsumer, CodeTooManySubscriptions}}},
		{Method: "GET", Pattern: "/realtime/stream", Access: auth.PermMetricRead, Stream: true, Handle: h.stream,
			Doc: Doc{Tag: tag, Summary: "The live sample feed as Server-Sent Events (text/event-stream), for the entities and metrics " +
				"in the query (at least one entity; each checked against the caller's data scope: 404 like a missing one). Events: " +
				"subscribed, samples (id <replica>:<seq>; data as the WebSocket's samples message), heartbeat (every 20 s), gap " +
				"(resuming lost some samples), revoked, error (then the stream ends: REALTIME_SLOW_CONSUMER, " +
				"REALTIME_GOING_AWAY, AUTH_UNAUTHENTICATED). Resumable with Last-Event-ID from a bounded ring of recent batches " +
				"on the same replica (5 minutes, 500,000 values); otherwise a gap event says samples were missed.",
				Params: entityParams, Errors: []int{401, 403, 404, 422}, Codes: []string{CodeSlowConsumer, CodeTooManySubscriptions, CodeResumeGap}}},
		{Method: "GET", Pattern: "/realtime/vms/{id}", Access: auth.PermMetricRead, Handle: h.vm,
			Doc: Doc{Tag: tag, Summary: "The latest value of each metric (and instance) of a VM within the last hour; percent counters in percent; " +
				"cpu.ready.percent derived from cpu.ready.summation (÷ the 20 s interval, per vCPU for the VM as a whole)",
				Response: ref("RealtimeVM"), Errors: []int{401, 403, 404}}},
		{Method: "GET", Pattern: "/realtime/overview", Access: auth.PermMetricRead, Handle: h.overview,
			Doc: Doc{Tag: tag, Summary: "The fleet right now, in the caller's data scope: VMs by power state and Tools status, hosts by " +
				"connection state, open alerts (active by severity, unacknowledged, silenced, suppressed), the top VMs by CPU usage, CPU ready, memory balloon and disk latency (averages over the last " +
				"5 minutes), and per site: connected, last seen, the agents' unsent backlog, drain rate and ETA (from the batches " +
				"acknowledged in the last 5 minutes) and dropped batches",
				Params:   []Param{{Name: "limit", Description: "VMs per top list, 1-50, default 10"}},
				Response: ref("RealtimeOverview"), Errors: []int{401, 403, 422}}},
	}
}

// entityRef names an entity in a subscription.
type entityRef struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

var realtimeKinds = []string{store.KindVM, store.KindHost, store.KindCluster, store.KindDatastore}

// validateEntities checks the entities and metrics of a subscription.
// field names the field of entity i ("entities[2]" in a WebSocket message,
// the query parameter of its kind in a stream request); metricsField the
// metrics'.
func validateEntities(v *fieldErrors, entities []entityRef, metrics []string, field func(i int) string, metricsField string) {
	if len(entities) > MaxRealtimeEntities {
		v.add(field(MaxRealtimeEntities), FieldOutOfRange, map[string]any{"min": 1, "max": MaxRealtimeEntities})
	}
	for i, e := range entities {
		if !slices.Contains(realtimeKinds, e.Kind) {
			v.add(field(i)+".kind", FieldInvalidValue, map[string]any{"allowed": strings.Join(realtimeKinds, ", ")})
		}
		if _, _, ok := parseObjectID(e.ID); !ok {
			v.add(field(i), FieldInvalidFormat, map[string]any{"format": "source:moref"})
		}
	}
	if len(metrics) > MaxHistoryMetrics {
		v.add(metricsField, FieldOutOfRange, map[string]any{"min": 0, "max": MaxHistoryMetrics})
	}
	for _, m := range metrics {
		if !metricNameRE.MatchString(m) {
			v.add(metricsField, FieldInvalidFormat, map[string]any{"format": "group.counter.rollup, e.g. cpu.usage.average"})
			break
		}
	}
}

// resolve checks each entity against the data scope of ctx and returns the
// feed's keys for them. The first one missing or outside the scope is
// refused with its kind's 404, exactly as a missing one; nothing tells the
// two apart. where(i) says which of the request's entities it was (the
// answer's data), without repeating its id.
func (h *realtimeResource) resolve(ctx context.Context, refs []entityRef, vcpus *vcpuTable, where func(i int) map[string]any) ([]realtime.Entity, error) {
	out := make([]realtime.Entity, 0, len(refs))
	for i, ref := range refs {
		source, moref, _ := parseObjectID(ref.ID) // validated
		o, err := h.a.inventory.Object(ctx, ref.Kind, source, moref)
		if err != nil {
			err = notFound(err, notFoundCodeOf(ref.Kind))
			var e *Error
			if errors.As(err, &e) {
				e.Data = where(i)
			}
			return nil, err
		}
		e := realtime.Entity{Site: o.Site, Source: o.Source, Kind: o.Kind, ID: o.Moref}
		if n := propInt(o.Props, "num_cpu"); n != nil && o.Kind == store.KindVM {
			vcpus.set(e, int(*n))
		}
		out = append(out, e)
	}
	return out, nil
}

// vcpuTable is the vCPU count of the VMs a feed connection subscribed to,
// as their inventory said when they were subscribed: the divisor of the
// feed's ready_percent. Safe for concurrent use (the reader adds, the
// writer reads).
type vcpuTable struct {
	mu sync.RWMutex
	m  map[realtime.Entity]int
}

func (t *vcpuTable) set(e realtime.Entity, n int) {
	if t == nil {
		return
	}
	t.mu.Lock()
	if t.m == nil {
		t.m = map[realtime.Entity]int{}
	}
	t.m[e] = n
	t.mu.Unlock()
}

func (t *vcpuTable) get(e realtime.Entity) int {
	if t == nil {
		return 0
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.m[e]
}

// feedReadyPercent is the ready_percent of a cpu.ready.summation sample of
// the feed (see store.ReadyPercentRule): ready ms ÷ the sampling interval,
// in percent, per vCPU for a VM as a whole. The interval is the distance
// to the previous sample of the same series in the delivery (prevMS, 0 if
// none) when that is one of vCenter's intervals, else the realtime 20 s.
func feedReadyPercent(s *realtime.Sample, prevMS int64, vcpus int) float64 {
	iv := realtimeReadyInterval.Milliseconds()
	if prevMS > 0 {
		switch d := s.Time - prevMS; d {
		case 20_000, 300_000, 1_800_000, 7_200_000, 86_400_000:
			iv = d
		}
	}
	pct := s.Value / float64(iv) * 100
	if s.Kind == store.KindVM && s.Instance == "" && vcpus > 0 {
		pct /= float64(vcpus)
	}
	return pct
}

// outOfScope returns the subscribed entities the principal's data scope
// no longer grants (its scope changed, or a VM left one of its groups).
// Entities of a site in the scope need no query; a VM of another site is
// looked up (it may be in one of the scope's groups). A lookup that fails
// for another reason than not-found keeps the entity: the next check
// decides.
func (h *realtimeResource) outOfScope(ctx context.Context, p *auth.Principal, entities []realtime.Entity) []realtime.Entity {
	sc := p.Scope
	if sc.Unrestricted() {
		return nil
	}
	ctx = auth.WithPrincipal(ctx, p)
	var gone []realtime.Entity
	for _, e := range entities {
		if slices.Contains(sc.Sites, e.Site) {
			continue
		}
		if e.Kind == store.KindVM && len(sc.VMGroups) > 0 {
			_, err := h.a.inventory.Object(ctx, e.Kind, e.Source, e.ID)
			if err == nil || !errors.Is(err, store.ErrNotFound) {
				continue
			}
		}
		gone = append(gone, e)
	}
	return gone
}

func refsOf(entities []realtime.Entity) []entityRef {
	out := make([]entityRef, 0, len(entities))
	for _, e := range entities {
		out = append(out, entityRef{Kind: e.Kind, ID: objectID(e.Source, e.ID)})
	}
	return out
}

// RealtimeSample is one value of the live feed; percent counters are in
// percent.
type RealtimeSample struct {
	Kind     string    `json:"kind"`
	ID       string    `json:"id"`
	Site     string    `json:"site"`
	Instance string    `json:"instance"`
	Metric   string    `json:"metric"`
	Unit     string    `json:"unit"`
	TS       time.Time `json:"ts"`
	Value    float64   `json:"value"`
	// ReadyPercent, on cpu.ready.summation samples of VMs and hosts only,
	// is the derived cpu.ready.percent (feedReadyPercent).
	ReadyPercent *float64 `json:"ready_percent,omitempty"`
}

// appendDelivery writes one delivery as a JSON object:
// {"type":…,"seq":…,"committed_at":…,"samples":[RealtimeSample…]}
// (type only when given). It is the feed's hot path — one object per
// client per batch — so it writes the JSON itself rather than through
// reflection; encoding/json decodes it to the same values.
func appendDelivery(b []byte, typ string, d *realtime.Delivery, vcpus *vcpuTable) []byte {
	b = append(b, '{')
	if typ != "" {
		b = append(b, `"type":`...)
		b = appendJSONString(b, typ)
		b = append(b, ',')
	}
	b = append(b, `"seq":`...)
	b = strconv.AppendUint(b, d.Seq, 10)
	b = append(b, `,"committed_at":"`...)
	b = d.Committed.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","samples":[`...)
	// Consecutive samples mostly share their entity and time: write
	// those once and copy them.
	var entity realtime.Entity
	var head []byte // {"kind":…,"id":…,"site":…,
	var ts int64
	var tsText []byte
	for i := range d.Samples {
		s := &d.Samples[i]
		if i > 0 {
			b = append(b, ',')
		}
		if i == 0 || s.Entity != entity {
			entity = s.Entity
			head = append(head[:0], `{"kind":`...)
			head = appendJSONString(head, s.Kind)
			head = append(head, `,"id":`...)
			head = appendJSONString(head, objectID(s.Source, s.ID))
			head = append(head, `,"site":`...)
			head = appendJSONString(head, s.Site)
			head = append(head, `,"instance":`...)
		}
		b = append(b, head...)
		b = appendJSONString(b, s.Instance)
		b = append(b, `,"metric":`...)
		b = appendJSONString(b, s.Metric)
		b = append(b, `,"unit":`...)
		b = appendJSONString(b, s.Unit)
		if i == 0 || s.Time != ts {
			ts = s.Time
			tsText = time.UnixMilli(ts).UTC().AppendFormat(tsText[:0], time.RFC3339Nano)
		}
		b = append(b, `,"ts":"`...)
		b = append(b, tsText...)
		b = append(b, `","value":`...)
		// Values are float32 as stored: print the shortest form that is
		// that float32, not its float64 expansion.
		b = strconv.AppendFloat(b, displayValue(s.Unit, s.Value), 'g', -1, 32)
		if s.Metric == store.CounterCPUReady && (s.Kind == store.KindVM || s.Kind == store.KindHost) {
			var prev int64
			if p := i - 1; p >= 0 && d.Samples[p].Entity == s.Entity && d.Samples[p].Instance == s.Instance && d.Samples[p].Metric == s.Metric {
				prev = d.Samples[p].Time
			}
			b = append(b, `,"ready_percent":`...)
			b = strconv.AppendFloat(b, float64(float32(feedReadyPercent(s, prev, vcpus.get(s.Entity)))), 'g', -1, 32)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendJSONString appends s as a JSON string: plain ASCII directly,
// anything else through encoding/json (escapes, invalid UTF-8).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// RealtimeValue is one metric's latest value.
type RealtimeValue struct {
	Metric     string    `json:"metric"`
	Instance   string    `json:"instance"`
	Unit       string    `json:"unit"`
	Value      float64   `json:"value"`
	TS         time.Time `json:"ts"`
	AgeSeconds float64   `json:"age_seconds"`
}

// RealtimeVM is GET /realtime/vms/{id}.
type RealtimeVM struct {
	VM         Ref             `json:"vm"`
	Site       string          `json:"site"`
	PowerState string          `json:"power_state"`
	At         time.Time       `json:"at"`
	Values     []RealtimeValue `json:"values"`
}

func (h *realtimeResource) vm(w http.ResponseWriter, r *http.Request) error {
	source, moref, err := pathObjectID(r, CodeVMNotFound)
	if err != nil {
		return err
	}
	// VM reads the VM in the caller's scope and its latest values
	// (store.LatestValues, within store.LatestWindow).
	d, err := h.a.inventory.VM(r.Context(), source, moref)
	if err != nil {
		return notFound(err, CodeVMNotFound)
	}
	now := h.a.now().UTC()
	out := RealtimeVM{VM: Ref{ID: objectID(d.Source, d.Moref), Name: d.Name}, Site: d.Site, PowerState: propStr(d.Props, "power_state"),
		At: now, Values: make([]RealtimeValue, 0, len(d.Latest))}
	for _, v := range d.Latest {
		out.Values = append(out.Values, RealtimeValue{Metric: v.Counter, Instance: v.Instance, Unit: v.Unit, Value: displayValue(v.Unit, v.Value),
			TS: v.TS.UTC(), AgeSeconds: max(0, now.Sub(v.TS).Seconds())})
		if v.Counter == store.CounterCPUReady {
			out.Values = append(out.Values, RealtimeValue{Metric: store.MetricCPUReadyPercent, Instance: v.Instance, Unit: "%",
				Value: readyPercentLatest(store.KindVM, v.Instance, v.Value, d.Props), TS: v.TS.UTC(), AgeSeconds: max(0, now.Sub(v.TS).Seconds())})
		}
	}
	slices.SortFunc(out.Values, func(a, b RealtimeValue) int {
		return cmp.Or(strings.Compare(a.Metric, b.Metric), strings.Compare(a.Instance, b.Instance))
	})
	writeData(w, r, http.StatusOK, out)
	return nil
}

// OverviewTopItem is one VM of a top list of the overview.
type OverviewTopItem struct {
	ID    string  `json:"id"`
	Name  string  `json:"name"`
	Site  string  `json:"site"`
	Unit  string  `json:"unit"`
	Value float64 `json:"value"`
	// ReadyPercent is, for CPU ready, the share of the sampling interval
	// the VM was ready to run but not scheduled, per vCPU
	// (store.MetricCPUReadyPercent over the window).
	ReadyPercent *float64 `json:"ready_percent,omitempty"`
}

// OverviewBacklog is what a site's agents hold unsent, at their last
// heartbeats.
type OverviewBacklog struct {
	Batches             int64   `json:"batches"`
	Bytes               int64   `json:"bytes"`
	OldestUnsentSeconds float64 `json:"oldest_unsent_seconds"`
}

// OverviewDrain is how fast a site's backlog is being acknowledged.
type OverviewDrain struct {
	WindowSeconds float64 `json:"window_seconds"`
	// AckedPerSecond counts every batch acknowledged; BacklogPerSecond
	// the late ones (data older than 2 minutes when committed): the rate
	// at which the backlog shrinks.
	AckedPerSecond   float64 `json:"acked_per_second"`
	BacklogPerSecond float64 `json:"backlog_per_second"`
	// State is offline (no agent connected), caught_up (nothing older
	// than live data unsent), draining, or stalled (a backlog, and none
	// of it acknowledged in the window).
	State string `json:"state"`
	// ETASeconds is when the backlog will be empty at the current rate:
	// 0 when caught up, null when offline or stalled.
	ETASeconds *float64 `json:"eta_seconds"`
}

// OverviewSite is one site of the overview.
type OverviewSite struct {
	Site                 string          `json:"site"`
	Connected            bool            `json:"connected"`
	Agents               int             `json:"agents"`
	AgentsConnected      int             `json:"agents_connected"`
	LastSeen             *time.Time      `json:"last_seen"`
	CollectionLagSeconds float64         `json:"collection_lag_seconds"`
	Backlog              OverviewBacklog `json:"backlog"`
	Drain                OverviewDrain   `json:"drain"`
	DroppedBatches       int64           `json:"dropped_batches"`
}

// OverviewAlerts is the open alerts in the caller's scope.
type OverviewAlerts struct {
	// Active counts firing and unknown alerts, BySeverity splits them
	// (critical, warning, info).
	Active         int64            `json:"active"`
	BySeverity     map[string]int64 `json:"by_severity"`
	Unacknowledged int64            `json:"unacknowledged"`
	Silenced       int64            `json:"silenced"`
	// Suppressed counts open alerts held back by a maintenance window or
	// a parent alert; they are not active.
	Suppressed int64 `json:"suppressed"`
}

// OverviewDatastore is one datastore of the overview's closest to full.
type OverviewDatastore struct {
	ID          string  `json:"id"`
	Name        string  `json:"name"`
	Site        string  `json:"site"`
	Capacity    int64   `json:"capacity"`
	Free        int64   `json:"free"`
	UsedPercent float64 `json:"used_percent"`
	// DaysToFull is from the least-squares trend of free space over the
	// last 7 days (the alert engine's rule); null without a falling trend.
	DaysToFull *float64 `json:"days_to_full"`
}

// OverviewDatastores is how many datastores the overview lists.
const OverviewDatastores = 10

// Overview is GET /realtime/overview.
type Overview struct {
	At  time.Time `json:"at"`
	VMs struct {
		Total         int64            `json:"total"`
		ByPowerState  map[string]int64 `json:"by_power_state"`
		ByToolsStatus map[string]int64 `json:"by_tools_status"`
	} `json:"vms"`
	Hosts struct {
		Total             int64            `json:"total"`
		ByConnectionState map[string]int64 `json:"by_connection_state"`
	} `json:"hosts"`
	Alerts OverviewAlerts `json:"alerts"`
	Top    struct {
		WindowSeconds float64           `json:"window_seconds"`
		CPUUsage      []OverviewTopItem `json:"cpu_usage"`
		CPUReady      []OverviewTopItem `json:"cpu_ready"`
		MemoryBalloon []OverviewTopItem `json:"memory_balloon"`
		DiskLatency   []OverviewTopItem `json:"disk_latency"`
	} `json:"top"`
	Sites []OverviewSite `json:"sites"`
	// Datastores are the datastores closest to full, by days to full
	// then used percent.
	Datastores []OverviewDatastore `json:"datastores"`
}

// The counters of the overview's top lists.
const (
	counterCPUUsage      = "cpu.usage.average"
	counterMemoryBalloon = "mem.vmmemctl.average"
	counterDiskLatency   = "disk.maxTotalLatency.latest"
)

func (h *realtimeResource) overview(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	limit := q.intRange("limit", 10, 1, 50)
	if err := q.err(); err != nil {
		return err
	}
	ctx := r.Context()
	now := h.a.now().UTC()
	var out Overview
	out.At = now

	// Fleet totals: every read runs under the caller's data scope.
	vs, err := h.a.inventory.VMStats(ctx, store.VMFilter{})
	if err != nil {
		return err
	}
	out.VMs.Total, out.VMs.ByPowerState, out.VMs.ByToolsStatus = vs.Total, vs.ByPowerState, vs.ByToolsStatus
	out.Hosts.ByConnectionState = map[string]int64{}
	for page := 1; ; page++ {
		hosts, total, err := h.a.inventory.Objects(ctx, store.ObjectQuery{Kind: store.KindHost, Page: page, PageSize: 500})
		if err != nil {
			return err
		}
		for _, o := range hosts {
			st := propStr(o.Props, "connection_state")
			if st == "" {
				st = "unknown"
			}
			out.Hosts.ByConnectionState[st]++
		}
		out.Hosts.Total = int64(total)
		if len(hosts) == 0 || page*500 >= total {
			break
		}
	}

	ac, err := h.a.history.AlertCounts(ctx)
	if err != nil {
		return err
	}
	out.Alerts = OverviewAlerts{Active: ac.Active, BySeverity: ac.BySeverity, Unacknowledged: ac.Unacknowledged,
		Silenced: ac.Silenced, Suppressed: ac.Suppressed}

	fills, err := h.a.history.DatastoresClosestToFull(ctx, OverviewDatastores)
	if err != nil {
		return err
	}
	out.Datastores = make([]OverviewDatastore, 0, len(fills))
	for _, f := range fills {
		out.Datastores = append(out.Datastores, OverviewDatastore{ID: objectID(f.Source, f.Moref), Name: f.Name, Site: f.Site,
			Capacity: f.Capacity, Free: f.Free, UsedPercent: math.Round(f.UsedPercent*100) / 100, DaysToFull: f.DaysToFull})
	}

	// Top VMs over the last minutes.
	out.Top.WindowSeconds = OverviewWindow.Seconds()
	for _, t := range []struct {
		counter string
		dst     *[]OverviewTopItem
	}{
		{counterCPUUsage, &out.Top.CPUUsage}, {store.MetricCPUReadyPercent, &out.Top.CPUReady},
		{counterMemoryBalloon, &out.Top.MemoryBalloon}, {counterDiskLatency, &out.Top.DiskLatency},
	} {
		list, _, err := h.a.history.Top(ctx, store.TopQuery{Counter: t.counter, EntityKind: store.KindVM, From: now.Add(-OverviewWindow), To: now,
			Agg: store.AggAvg, Limit: limit})
		if err != nil {
			return err
		}
		items := make([]OverviewTopItem, 0, len(list))
		for _, e := range list {
			it := OverviewTopItem{ID: objectID(e.Source, e.EntityID), Name: e.Name, Site: e.Site, Unit: e.Unit, Value: displayValue(e.Unit, e.Value)}
			if t.counter == store.MetricCPUReadyPercent && e.SourceValue != nil {
				// Ranked by the ready share per vCPU; the value stays
				// the ready time (ms per 20 s sample) it comes from.
				pct := displayValue("%", e.Value)
				it.Unit, it.Value, it.ReadyPercent = "ms", *e.SourceValue, &pct
			}
			items = append(items, it)
		}
		*t.dst = items
	}

	// Sites: the agents' heartbeats and the ledger of their batches.
	var sites []store.SiteInfo
	for page := 1; ; page++ {
		list, total, err := h.a.inventory.Sites(ctx, store.SiteQuery{Page: page, PageSize: 500})
		if err != nil {
			return err
		}
		sites = append(sites, list...)
		if len(list) == 0 || page*500 >= total {
			break
		}
	}
	agents, err := h.a.agents.Agents(ctx)
	if err != nil {
		return err
	}
	bySite := map[string][]store.Agent{}
	var ids []string
	for _, ag := range agents {
		if ag.RevokedAt != nil {
			continue
		}
		bySite[ag.Site] = append(bySite[ag.Site], ag)
		ids = append(ids, ag.ID)
	}
	// The ids come from the scoped read above: only those agents' ledger
	// is read.
	drains, err := h.a.realtime.Drain(ctx, ids, OverviewWindow)
	if err != nil {
		return err
	}
	out.Sites = make([]OverviewSite, 0, len(sites))
	for _, si := range sites {
		out.Sites = append(out.Sites, siteOverview(si.Name, bySite[si.Name], drains, OverviewWindow))
	}
	writeData(w, r, http.StatusOK, out)
	return nil
}

// siteOverview sums a site's live agents and rates its drain.
func siteOverview(site string, agents []store.Agent, drains map[string]realtime.Drain, window time.Duration) OverviewSite {
	s := OverviewSite{Site: site, Agents: len(agents)}
	var late, acked int64
	var oldestMS int64
	for _, ag := range agents {
		if ag.Connected {
			s.AgentsConnected++
		}
		if ag.LastSeen != nil && (s.LastSeen == nil || ag.LastSeen.After(*s.LastSeen)) {
			t := ag.LastSeen.UTC()
			s.LastSeen = &t
		}
		s.CollectionLagSeconds = max(s.CollectionLagSeconds, float64(ag.LagMS)/1000)
		s.Backlog.Batches += ag.SpoolDepth
		s.Backlog.Bytes += ag.SpoolBytes
		oldestMS = max(oldestMS, ag.OldestUnsentMS)
		s.DroppedBatches += ag.Dropped
		d := drains[ag.ID]
		late += d.Late
		acked += d.Acked
	}
	s.Connected = s.AgentsConnected > 0
	s.Backlog.OldestUnsentSeconds = float64(oldestMS) / 1000
	s.Drain.WindowSeconds = window.Seconds()
	s.Drain.AckedPerSecond = float64(acked) / window.Seconds()
	s.Drain.BacklogPerSecond = float64(late) / window.Seconds()
	// A spool holding only live batches in flight (nothing older than what
	// counts as live) is caught up, whatever its depth.
	caughtUp := s.Backlog.Batches == 0 || time.Duration(oldestMS)*time.Millisecond < store.LateAfter
	switch {
	case !s.Connected:
		s.Drain.State = "offline"
	case caughtUp:
		s.Drain.State = "caught_up"
		zero := 0.0
		s.Drain.ETASeconds = &zero
	case s.Drain.BacklogPerSecond > 0:
		s.Drain.State = "draining"
		eta := float64(s.Backlog.Batches) / s.Drain.BacklogPerSecond
		s.Drain.ETASeconds = &eta
	default:
		s.Drain.State = "stalled"
	}
	return s
}

// streamEventID is a samples event's id: the replica's feed and the
// delivery's sequence number there.
func streamEventID(feed string, seq uint64) string { return feed + ":" + strconv.FormatUint(seq, 10) }

func parseStreamEventID(s string) (feed string, seq uint64, ok bool) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.ParseUint(s[i+1:], 10, 64)
	return s[:i], n, err == nil
}

// stream serves GET /realtime/stream.
func (h *realtimeResource) stream(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	vals := r.URL.Query()
	var refs []entityRef
	for _, kind := range realtimeKinds {
		for _, id := range vals[kind] {
			refs = append(refs, entityRef{Kind: kind, ID: id})
		}
	}
	var metrics []string
	for _, v := range vals["metric"] {
		for _, m := range strings.Split(v, ",") {
			if m = strings.TrimSpace(m); m != "" && !slices.Contains(metrics, m) {
				metrics = append(metrics, m)
			}
		}
	}
	if len(refs) == 0 {
		q.fe.add("vm", FieldRequired, map[string]any{"one_of": "vm, host, cluster, datastore"})
	}
	validateEntities(&q.fe, refs, metrics, func(i int) string { return refs[min(i, len(refs)-1)].Kind }, "metric")
	lastID := r.Header.Get("Last-Event-ID")
	if lastID == "" {
		lastID = q.str("last_event_id", 200)
	}
	if err := q.err(); err != nil {
		return err
	}
	ctx := r.Context()
	vcpus := &vcpuTable{}
	entities, err := h.resolve(ctx, refs, vcpus, func(i int) map[string]any {
		n := 0
		for _, r := range refs[:i] {
			if r.Kind == refs[i].Kind {
				n++
			}
		}
		return map[string]any{"param": refs[i].Kind, "index": n}
	})
	if err != nil {
		return err
	}
	feed := h.a.realtime
	lim := h.a.rtLimits
	sub := feed.Subscribe(lim.buffer)
	defer sub.Close()
	if _, err := sub.Add(entities, metrics, MaxRealtimeSubscriptions); err != nil {
		return tooManySubscriptions(err)
	}
	p, _ := auth.PrincipalFrom(ctx)
	bearer, _ := bearerToken(r)
	lang := langOf(r)

	rc := http.NewResponseController(w)
	// The server's read deadline would end the stream: the request has no
	// body left to read, and its context ends when the client goes.
	_ = rc.SetReadDeadline(time.Time{})
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var buf []byte
	send := func(event, id string, data []byte) error {
		buf = buf[:0]
		if id != "" {
			buf = append(buf, "id: "+id+"\n"...)
		}
		buf = append(buf, "event: "+event+"\ndata: "...)
		buf = append(buf, data...)
		buf = append(buf, "\n\n"...)
		_ = rc.SetWriteDeadline(time.Now().Add(lim.writeTimeout))
		if _, err := w.Write(buf); err != nil {
			return err
		}
		return rc.Flush()
	}
	sendJSON := func(event string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return send(event, "", b)
	}
	sendError := func(code string) {
		_ = sendJSON("error", map[string]string{"code": code, "message": message(lang, code)})
	}
	if err := sendJSON("subscribed", map[string]any{"replica": feed.ID(), "subscriptions": sub.Count(),
		"heartbeat_seconds": lim.heartbeat.Seconds()}); err != nil {
		return nil
	}
	var last uint64
	if lastID != "" {
		rep, seq, ok := parseStreamEventID(lastID)
		complete := false
		if ok && rep == feed.ID() {
			var ds []realtime.Delivery
			ds, complete = feed.Since(seq, sub)
			last = seq
			for i := range ds {
				if err := send("samples", streamEventID(feed.ID(), ds[i].Seq), appendDelivery(nil, "", &ds[i], vcpus)); err != nil {
					return nil
				}
				last = ds[i].Seq
			}
		}
		if !complete {
			if err := sendJSON("gap", map[string]string{"code": CodeResumeGap, "message": message(lang, CodeResumeGap), "last_event_id": lastID}); err != nil {
				return nil
			}
		}
	}
	heartbeat := time.NewTicker(lim.heartbeat)
	defer heartbeat.Stop()
	revalidate := time.NewTicker(lim.revalidate)
	defer revalidate.Stop()
	for {
		select {
		case <-sub.Done():
			sendError(closeCodeOf(sub.Err()))
			return nil
		default:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-feed.Done():
			sendError(CodeGoingAway)
			return nil
		case <-sub.Done():
			sendError(closeCodeOf(sub.Err()))
			return nil
		case d := <-sub.C():
			if d.Seq <= last {
				continue // replayed already
			}
			last = d.Seq
			buf2 := appendDelivery(nil, "", &d, vcpus)
			if err := send("samples", streamEventID(feed.ID(), d.Seq), buf2); err != nil {
				return nil
			}
		case <-heartbeat.C:
			if err := sendJSON("heartbeat", map[string]any{"time": time.Now().UTC()}); err != nil {
				return nil
			}
		case <-revalidate.C:
			np, err := h.a.auth.Authenticate(context.WithoutCancel(ctx), bearer)
			switch {
			case errors.Is(err, auth.ErrUnauthenticated):
				sendError(CodeUnauthenticated)
				return nil
			case err != nil:
				h.a.log.Warn("realtime stream: cannot re-check the credential; keeping the stream", "err", err)
				continue
			case !np.Has(auth.PermMetricRead) || np.UserID != p.UserID:
				sendError(CodeForbidden)
				return nil
			}
			p = np
			if gone := h.outOfScope(context.WithoutCancel(ctx), p, sub.Entities()); len(gone) > 0 {
				sub.Remove(gone, nil)
				if err := sendJSON("revoked", map[string]any{"entities": refsOf(gone)}); err != nil {
					return nil
				}
			}
		}
	}
}

// closeCodeOf is the API code of why a subscription ended.
func closeCodeOf(err error) string {
	switch {
	case errors.Is(err, realtime.ErrSlowConsumer):
		return CodeSlowConsumer
	case errors.Is(err, realtime.ErrClosed):
		return CodeGoingAway
	}
	return CodeInternal
}

func tooManySubscriptions(err error) error {
	if errors.Is(err, realtime.ErrTooManySubscriptions) {
		e := newError(http.StatusUnprocessableEntity, CodeTooManySubscriptions)
		e.Data = map[string]any{"max": MaxRealtimeSubscriptions}
		return e
	}
	return err
}

// realtimeSchemas are the OpenAPI schemas of the realtime routes.
func realtimeSchemas() map[string]any {
	number := map[string]any{"type": "number"}
	top := arrayOf(objectSchema(map[string]any{"id": str, "name": str, "site": str, "unit": str, "value": number,
		"ready_percent": desc(number, "CPU ready only (the list is ranked by it): cpu.ready.percent, ready ms ÷ the sampling interval, "+
			"per vCPU, in percent, over the window; value is then the average ready ms per sample")}))
	return map[string]any{
		"RealtimeSample": objectSchema(map[string]any{"kind": str, "id": desc(str, "source:moref"), "site": str,
			"instance": desc(str, "empty for the entity as a whole"), "metric": str, "unit": str, "ts": dateTime,
			"value": desc(number, "percent counters in percent"),
			"ready_percent": desc(number, "on cpu.ready.summation samples of VMs and hosts only: the derived cpu.ready.percent, ready ms ÷ the "+
				"sampling interval (20 s, or the distance to the previous sample of the series in the same message when that is one of "+
				"vCenter's intervals), in percent, per vCPU for a VM as a whole (its vCPU count when it was subscribed)")}),
		"RealtimeSamples": objectSchema(map[string]any{"type": desc(str, "samples (WebSocket only)"),
			"seq":          desc(integer, "the replica's sequence number of the batch"),
			"committed_at": desc(dateTime, "when the batch was committed (by the replica that ingested it)"),
			"samples":      arrayOf(ref("RealtimeSample"))}),
		"RealtimeVM": objectSchema(map[string]any{"vm": ref("ObjectRef"), "site": str, "power_state": str, "at": dateTime,
			"values": arrayOf(objectSchema(map[string]any{"metric": str, "instance": str, "unit": str, "value": number, "ts": dateTime,
				"age_seconds": number}))}),
		"RealtimeOverview": objectSchema(map[string]any{
			"at":    dateTime,
			"vms":   objectSchema(map[string]any{"total": integer, "by_power_state": map[string]any{"type": "object"}, "by_tools_status": map[string]any{"type": "object"}}),
			"hosts": objectSchema(map[string]any{"total": integer, "by_connection_state": map[string]any{"type": "object"}}),
			"alerts": desc(objectSchema(map[string]any{"active": desc(integer, "firing and unknown alerts"),
				"by_severity":    desc(map[string]any{"type": "object"}, "active alerts per severity: critical, warning, info (always present)"),
				"unacknowledged": integer, "silenced": integer,
				"suppressed": desc(integer, "open alerts held back by a maintenance window or a parent alert (not active)")}),
				"open alerts in the caller's data scope"),
			"top": objectSchema(map[string]any{"window_seconds": number, "cpu_usage": top, "cpu_ready": top,
				"memory_balloon": desc(top, "mem.vmmemctl.average: empty unless the agents collect it"), "disk_latency": top}),
			"sites": arrayOf(objectSchema(map[string]any{"site": str, "connected": boolean, "agents": integer, "agents_connected": integer,
				"last_seen": nullable(dateTime, "null until an agent connected"), "collection_lag_seconds": number,
				"backlog": desc(objectSchema(map[string]any{"batches": integer, "bytes": integer, "oldest_unsent_seconds": number}),
					"unsent in the agents' spools, at their last heartbeats"),
				"drain": objectSchema(map[string]any{"window_seconds": number, "acked_per_second": number,
					"backlog_per_second": desc(number, "batches acknowledged whose data was over 2 minutes old when committed"),
					"state":              desc(str, "offline, caught_up, draining or stalled"),
					"eta_seconds":        nullable(number, "backlog ÷ backlog_per_second; 0 when caught up; null when offline or stalled")}),
				"dropped_batches": desc(integer, "batches the agents dropped (spool quota) since they started")})),
			"datastores": desc(arrayOf(objectSchema(map[string]any{"id": desc(str, "source:moref"), "name": str, "site": str,
				"capacity": desc(integer, "bytes"), "free": desc(integer, "bytes"), "used_percent": number,
				"days_to_full": nullable(number, "free ÷ the fall of free space per day, from a least-squares line through the free space "+
					"of the last 7 days (at least 3 points over an hour; the alert engine's datastore.days_until_full); null without a falling trend")})),
				"the 10 datastores in the caller's data scope closest to full: by days_to_full (nulls last), then used_percent descending"),
		}),
	}
}
