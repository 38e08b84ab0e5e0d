// Package metrics serves the agent's own Prometheus metrics: vSphere
// collection cycles per endpoint, the spool, the uplink and its
// acknowledgements, and the collector plugins.
//
// Gauges and counters are read from the agent's parts when scraped (they
// keep their own counters); only the acknowledgement latency is observed
// as it happens, through ObserveAck.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	plugins "github.com/vmpulse/vmpulse/agent/internal/collectors"
	"github.com/vmpulse/vmpulse/agent/internal/spool"
	"github.com/vmpulse/vmpulse/agent/internal/uplink"
	"github.com/vmpulse/vmpulse/protocol"
)

// Cycle is one endpoint's latest performance collection cycle at one
// interval (20 s realtime, 300 s historical).
type Cycle struct {
	Endpoint string
	Interval time.Duration
	Start    time.Time
	Duration time.Duration
	Entities int
	Series   int
	Values   int
	Errors   int
}

// Source is what the metrics read from the agent when scraped.
// Implementations must be safe for concurrent use.
type Source interface {
	Spool() spool.Stats
	Uplink() *uplink.Stats
	// SpoolErrors counts batches the spool refused.
	SpoolErrors() int64
	// CollectionLag is now minus the newest sample spooled.
	CollectionLag() time.Duration
	// Cycles are the latest collection cycles of every endpoint.
	Cycles() []Cycle
	// Plugins are the collector plugins' states (none without plugins).
	Plugins() []plugins.Status
}

// Metrics is the agent's registry.
type Metrics struct {
	reg        *prometheus.Registry
	ackLatency *prometheus.HistogramVec
	acks       *prometheus.CounterVec
}

// Info labels vmpulse_agent_info.
type Info struct {
	Version, Commit, AgentID, Site string
}

// New returns the agent's metrics over src. extra collectors (the plugin
// host's) are registered beside them.
func New(info Info, src Source, extra ...prometheus.Collector) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		ackLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vmpulse_agent_ack_latency_seconds",
			Help:    "Time from sending a batch to its acknowledgement (the aggregator acks after COMMIT), by lane.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"lane"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmpulse_agent_acks_total",
			Help: "Acknowledgements received, by lane and status (stored, duplicate, rejected).",
		}, []string{"lane", "status"}),
	}
	info.Commit = orUnknown(info.Commit)
	m.reg.MustRegister(m.ackLatency, m.acks, &collector{src: src, info: info},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, c := range extra {
		m.reg.MustRegister(c)
	}
	return m
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// ObserveAck records one acknowledgement; it fits uplink.Config.OnAck.
func (m *Metrics) ObserveAck(lane uplink.Lane, _ uint64, status protocol.AckStatus, sentAt time.Time) {
	st := "stored"
	switch status {
	case protocol.AckDuplicate:
		st = "duplicate"
	case protocol.AckRejected:
		st = "rejected"
	}
	m.acks.WithLabelValues(string(lane), st).Inc()
	if !sentAt.IsZero() {
		m.ackLatency.WithLabelValues(string(lane)).Observe(time.Since(sentAt).Seconds())
	}
}

// Handler serves the text exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Registry is the registry, for tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("vmpulse_agent_"+name, help, labels, nil)
}

var (
	dInfo          = desc("info", "The agent's version, commit, id and site.", "version", "commit", "agent_id", "site")
	dCycleDuration = desc("collection_duration_seconds", "Duration of the endpoint's latest performance collection cycle.", "endpoint", "interval")
	dCycleStart    = desc("collection_last_cycle_timestamp_seconds", "Start of the endpoint's latest performance collection cycle.", "endpoint", "interval")
	dCycleEntities = desc("collection_entities", "Entities queried in the latest cycle.", "endpoint", "interval")
	dCycleValues   = desc("collection_values", "Values sent by the latest cycle.", "endpoint", "interval")
	dCycleErrors   = desc("collection_errors", "Failed queries or sink calls in the latest cycle.", "endpoint", "interval")
	dLag           = desc("collection_lag_seconds", "Now minus the newest sample spooled.")
	dSpoolBatches  = desc("spool_batches", "Batches in the spool not yet acknowledged.")
	dSpoolBytes    = desc("spool_bytes", "Bytes of the batches in the spool.")
	dSpoolOldest   = desc("spool_oldest_age_seconds", "Age of the data in the oldest batch in the spool (0 when empty).")
	dSpoolAppended = desc("spool_appended_batches_total", "Batches appended to the spool, gap records included.")
	dSpoolAcked    = desc("spool_acked_batches_total", "Batches deleted from the spool after their acknowledgement.")
	dSpoolDropped  = desc("spool_dropped_batches_total", "Data batches dropped by the spool quota or the free-space floor.")
	dSpoolDropB    = desc("spool_dropped_bytes_total", "Bytes of the dropped batches.")
	dSpoolGaps     = desc("spool_gap_records_total", "Gap records appended for dropped batches.")
	dSpoolErrors   = desc("spool_errors_total", "Batches the spool refused (write errors).")
	dUpConnected   = desc("uplink_connected", "1 while connected to the aggregator.")
	dUpConnects    = desc("uplink_connects_total", "Sessions established with the aggregator.")
	dUpFailures    = desc("uplink_failures_total", "Sessions that failed or could not be established.")
	dUpGoingAway   = desc("uplink_going_away_total", "Sessions ended by the aggregator going away (planned restarts).")
	dUpSent        = desc("uplink_sent_batches_total", "Batches sent, by lane.", "lane")
	dUpAcked       = desc("uplink_acked_batches_total", "Batches acknowledged, by lane.", "lane")
	dUpRejected    = desc("uplink_rejected_batches_total", "Batches the aggregator rejected for good.")
	dUpLastAck     = desc("uplink_last_ack_timestamp_seconds", "When the latest acknowledgement arrived (0: none yet).")
	dPlugState     = desc("plugin_state", "1 for the collector plugin's current state.", "plugin", "state")
	dPlugCollects  = desc("plugin_collects_total", "Successful Collect calls.", "plugin")
	dPlugFailures  = desc("plugin_collect_failures_total", "Failed Describe or Collect calls (error, timeout, plugin down).", "plugin")
	dPlugSamples   = desc("plugin_samples_total", "Samples spooled from the plugin.", "plugin")
	dPlugDropped   = desc("plugin_dropped_samples_total", "Samples dropped (undeclared series, bad entity, already sent, no value).", "plugin")
	dPlugLast      = desc("plugin_last_collect_timestamp_seconds", "When the latest successful Collect ended (0: none yet).", "plugin")
)

var allDescs = []*prometheus.Desc{dInfo, dCycleDuration, dCycleStart, dCycleEntities, dCycleValues, dCycleErrors, dLag,
	dSpoolBatches, dSpoolBytes, dSpoolOldest, dSpoolAppended, dSpoolAcked, dSpoolDropped, dSpoolDropB, dSpoolGaps, dSpoolErrors,
	dUpConnected, dUpConnects, dUpFailures, dUpGoingAway, dUpSent, dUpAcked, dUpRejected, dUpLastAck,
	dPlugState, dPlugCollects, dPlugFailures, dPlugSamples, dPlugDropped, dPlugLast}

// pluginStates are reported for every plugin, 1 for the current one.
var pluginStates = []string{"starting", "running", "restarting", "refused", "stopped", plugins.StateMissing}

type collector struct {
	src  Source
	info Info
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	gauge(dInfo, 1, c.info.Version, c.info.Commit, c.info.AgentID, c.info.Site)
	for _, cy := range c.src.Cycles() {
		if cy.Start.IsZero() {
			continue
		}
		iv := cy.Interval.String()
		gauge(dCycleDuration, cy.Duration.Seconds(), cy.Endpoint, iv)
		gauge(dCycleStart, unixSeconds(cy.Start), cy.Endpoint, iv)
		gauge(dCycleEntities, float64(cy.Entities), cy.Endpoint, iv)
		gauge(dCycleValues, float64(cy.Values), cy.Endpoint, iv)
		gauge(dCycleErrors, float64(cy.Errors), cy.Endpoint, iv)
	}
	gauge(dLag, c.src.CollectionLag().Seconds())

	sp := c.src.Spool()
	gauge(dSpoolBatches, float64(sp.Depth))
	gauge(dSpoolBytes, float64(sp.Bytes))
	oldest := 0.0
	if !sp.OldestFirst.IsZero() {
		oldest = time.Since(sp.OldestFirst).Seconds()
	}
	gauge(dSpoolOldest, oldest)
	counter(dSpoolAppended, float64(sp.Appended))
	counter(dSpoolAcked, float64(sp.Acked))
	counter(dSpoolDropped, float64(sp.Dropped))
	counter(dSpoolDropB, float64(sp.DroppedBytes))
	counter(dSpoolGaps, float64(sp.Gaps))
	counter(dSpoolErrors, float64(c.src.SpoolErrors()))

	up := c.src.Uplink()
	connected := 0.0
	if up.Connected.Load() {
		connected = 1
	}
	gauge(dUpConnected, connected)
	counter(dUpConnects, float64(up.Connects.Load()))
	counter(dUpFailures, float64(up.Failures.Load()))
	counter(dUpGoingAway, float64(up.GoingAway.Load()))
	counter(dUpSent, float64(up.LiveSent.Load()), string(uplink.Live))
	counter(dUpSent, float64(up.BackfillSent.Load()), string(uplink.Backfill))
	counter(dUpAcked, float64(up.LiveAcked.Load()), string(uplink.Live))
	counter(dUpAcked, float64(up.BackfillAcked.Load()), string(uplink.Backfill))
	counter(dUpRejected, float64(up.Rejected.Load()))
	lastAck := 0.0
	if ns := up.LastAck.Load(); ns != 0 {
		lastAck = float64(ns) / 1e9
	}
	gauge(dUpLastAck, lastAck)

	for _, p := range c.src.Plugins() {
		for _, s := range pluginStates {
			v := 0.0
			if s == p.State {
				v = 1
			}
			gauge(dPlugState, v, p.Name, s)
		}
		counter(dPlugCollects, float64(p.Collects), p.Name)
		counter(dPlugFailures, float64(p.Failures), p.Name)
		counter(dPlugSamples, float64(p.Samples), p.Name)
		counter(dPlugDropped, float64(p.Dropped), p.Name)
		gauge(dPlugLast, unixSeconds(p.LastCollect), p.Name)
	}
}
