package metrics

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	plugins "github.com/vmpulse/vmpulse/agent/internal/collectors"
	"github.com/vmpulse/vmpulse/agent/internal/spool"
	"github.com/vmpulse/vmpulse/agent/internal/uplink"
	"github.com/vmpulse/vmpulse/protocol"
)

type fakeSource struct{ up uplink.Stats }

func (f *fakeSource) Spool() spool.Stats {
	return spool.Stats{Depth: 7, Bytes: 4096, OldestFirst: time.Now().Add(-90 * time.Second), Appended: 100, Acked: 93, Dropped: 2, DroppedBytes: 512, Gaps: 1}
}
func (f *fakeSource) Uplink() *uplink.Stats        { return &f.up }
func (f *fakeSource) SpoolErrors() int64           { return 3 }
func (f *fakeSource) CollectionLag() time.Duration { return 25 * time.Second }
func (f *fakeSource) Cycles() []Cycle {
	return []Cycle{
		{Endpoint: "vc1", Interval: 20 * time.Second, Start: time.Unix(1_770_000_000, 0), Duration: 1500 * time.Millisecond, Entities: 40, Values: 900},
		{Endpoint: "vc1", Interval: 300 * time.Second}, // no cycle yet: not reported
	}
}
func (f *fakeSource) Plugins() []plugins.Status {
	return []plugins.Status{{Name: "promexec", State: "restarting", Restarts: 2, Collects: 5, Failures: 1, Samples: 60, LastCollect: time.Unix(1_770_000_100, 0)}}
}

func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("content type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("the exposition does not parse: %v", err)
	}
	return fams
}

// value returns the value of the family's metric whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Errorf("no %s", name)
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if have[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Errorf("%s: no metric with labels %v", name, want)
	return -1
}

func TestMetricsExposition(t *testing.T) {
	src := &fakeSource{}
	src.up.Connected.Store(true)
	src.up.Connects.Store(4)
	src.up.LiveSent.Store(50)
	src.up.LiveAcked.Store(48)
	src.up.BackfillSent.Store(9)
	m := New(Info{Version: "1.2.3", AgentID: "a-1", Site: "dc1"}, src)
	m.ObserveAck(uplink.Live, 1, protocol.AckStored, time.Now().Add(-40*time.Millisecond))
	m.ObserveAck(uplink.Live, 2, protocol.AckDuplicate, time.Now().Add(-10*time.Millisecond))
	m.ObserveAck(uplink.Backfill, 3, protocol.AckRejected, time.Now())
	fams := scrape(t, m.Handler())

	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"vmpulse_agent_info", []string{"version", "1.2.3", "commit", "unknown", "agent_id", "a-1", "site", "dc1"}, 1},
		{"vmpulse_agent_collection_duration_seconds", []string{"endpoint", "vc1", "interval", "20s"}, 1.5},
		{"vmpulse_agent_collection_entities", []string{"endpoint", "vc1", "interval", "20s"}, 40},
		{"vmpulse_agent_collection_values", []string{"endpoint", "vc1", "interval", "20s"}, 900},
		{"vmpulse_agent_collection_lag_seconds", nil, 25},
		{"vmpulse_agent_spool_batches", nil, 7},
		{"vmpulse_agent_spool_bytes", nil, 4096},
		{"vmpulse_agent_spool_dropped_batches_total", nil, 2},
		{"vmpulse_agent_spool_errors_total", nil, 3},
		{"vmpulse_agent_uplink_connected", nil, 1},
		{"vmpulse_agent_uplink_connects_total", nil, 4},
		{"vmpulse_agent_uplink_sent_batches_total", []string{"lane", "live"}, 50},
		{"vmpulse_agent_uplink_sent_batches_total", []string{"lane", "backfill"}, 9},
		{"vmpulse_agent_uplink_acked_batches_total", []string{"lane", "live"}, 48},
		{"vmpulse_agent_acks_total", []string{"lane", "live", "status", "stored"}, 1},
		{"vmpulse_agent_acks_total", []string{"lane", "live", "status", "duplicate"}, 1},
		{"vmpulse_agent_acks_total", []string{"lane", "backfill", "status", "rejected"}, 1},
		{"vmpulse_agent_ack_latency_seconds", []string{"lane", "live"}, 2},
		{"vmpulse_agent_plugin_state", []string{"plugin", "promexec", "state", "restarting"}, 1},
		{"vmpulse_agent_plugin_state", []string{"plugin", "promexec", "state", "running"}, 0},
		{"vmpulse_agent_plugin_samples_total", []string{"plugin", "promexec"}, 60},
		{"vmpulse_agent_plugin_collect_failures_total", []string{"plugin", "promexec"}, 1},
		{"vmpulse_agent_plugin_last_collect_timestamp_seconds", []string{"plugin", "promexec"}, 1_770_000_100},
	} {
		if got := value(t, fams, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if age := value(t, fams, "vmpulse_agent_spool_oldest_age_seconds"); age < 89 || age > 120 {
		t.Errorf("spool oldest age %v, want ≈90", age)
	}
	for _, m := range fams["vmpulse_agent_collection_duration_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetValue() == "5m0s" {
				t.Error("an interval without a cycle yet is reported")
			}
		}
	}
	if fams["go_goroutines"] == nil || fams["process_open_fds"] == nil && fams["process_cpu_seconds_total"] == nil {
		t.Error("the Go and process collectors are missing")
	}
}
