package host

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descUp = prometheus.NewDesc("vmpulse_plugin_up",
		"1 when the plugin is running, 0 when it is starting, restarting, refused or stopped.",
		[]string{"plugin", "version", "state"}, nil)
	descRestarts = prometheus.NewDesc("vmpulse_plugin_restarts_total",
		"Restarts of the plugin after a crash, a failed health check or repeated hangs.",
		[]string{"plugin"}, nil)
	descCalls = prometheus.NewDesc("vmpulse_plugin_calls_total",
		"Calls to the plugin by method and outcome (ok, error, timeout, unavailable, canceled).",
		[]string{"plugin", "method", "outcome"}, nil)
	descDuration = prometheus.NewDesc("vmpulse_plugin_call_duration_seconds",
		"Duration of the plugin's completed calls (ok or error) by method.",
		[]string{"plugin", "method"}, nil)
	descInFlight = prometheus.NewDesc("vmpulse_plugin_calls_in_flight",
		"Calls to the plugin in progress.",
		[]string{"plugin"}, nil)
)

// Metrics returns a prometheus.Collector exporting every plugin's
// state, restarts, calls and call durations. Register it once per Host.
func (h *Host) Metrics() prometheus.Collector { return hostCollector{h} }

type hostCollector struct{ h *Host }

func (c hostCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descRestarts, descCalls, descDuration, descInFlight} {
		ch <- d
	}
}

func (c hostCollector) Collect(ch chan<- prometheus.Metric) {
	c.h.mu.Lock()
	ms := make([]*managed, 0, len(c.h.plugins))
	for _, m := range c.h.plugins {
		ms = append(ms, m)
	}
	c.h.mu.Unlock()
	for _, m := range ms {
		st := m.status()
		up := 0.0
		if st.State == StateRunning {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, st.Name, st.Version, string(st.State))
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(st.Restarts), st.Name)
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(st.InFlight), st.Name)
		for _, ms := range m.stats.methodSnapshots() {
			for _, o := range outcomes {
				ch <- prometheus.MustNewConstMetric(descCalls, prometheus.CounterValue, float64(ms.counts[o]), st.Name, ms.method, o)
			}
			ch <- prometheus.MustNewConstHistogram(descDuration, ms.n, ms.sum, ms.buckets, st.Name, ms.method)
		}
	}
}
