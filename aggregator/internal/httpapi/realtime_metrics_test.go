package httpapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/realtime"
)

// TestRealtimeCountersExposed: the hub's counters are in /metrics and in
// /system/health. A subscriber that never reads is dropped as a slow
// consumer; another stays open; both show.
func TestRealtimeCountersExposed(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Metrics.Auth = MetricsAuthNone })
	hub := e.hub()
	base := hub.Stats()
	vm := realtime.Entity{Site: "dc-east", Source: vcEast, Kind: "vm", ID: "vm-1"}

	slow := hub.Subscribe(1) // room for one delivery: the second drops it
	if _, err := slow.Add([]realtime.Entity{vm}, nil, 10); err != nil {
		t.Fatal(err)
	}
	open := hub.Subscribe(8) // subscribed to nothing: stays open
	defer open.Close()
	const n = 5
	for i := range n {
		hub.PublishSamples("dc-east", "agent", vmSamples(vcEast, time.Now().Add(time.Duration(i)*time.Second), 1000, "vm-1"))
	}
	select {
	case <-slow.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("the subscriber that does not read was not dropped: %+v", hub.Stats())
	}
	if !errors.Is(slow.Err(), realtime.ErrSlowConsumer) {
		t.Fatalf("slow subscriber ended with %v", slow.Err())
	}
	deadline := time.Now().Add(10 * time.Second)
	for hub.Stats().Dispatched < base.Dispatched+n {
		if time.Now().After(deadline) {
			t.Fatalf("the hub did not dispatch %d batches: %+v", n, hub.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := hub.Stats()
	if st.Published != base.Published+n || st.SlowConsumers != base.SlowConsumers+1 || st.Subscriptions != base.Subscriptions+1 ||
		st.Delivered <= base.Delivered || st.QueueDrops != base.QueueDrops {
		t.Fatalf("hub stats %+v (before %+v)", st, base)
	}

	res := e.scrape("")
	if res.status != 200 {
		t.Fatalf("/metrics: %d %s", res.status, res.raw)
	}
	body := string(res.raw)
	wantMetricLines(t, body,
		"# HELP vmpulse_realtime_slow_consumers_total Realtime subscriptions and feeds dropped for a full buffer.",
		"# TYPE vmpulse_realtime_slow_consumers_total counter",
		"# TYPE vmpulse_realtime_subscriptions gauge",
		"# TYPE vmpulse_realtime_relay_listening gauge",
		fmt.Sprintf("vmpulse_realtime_batches_published_total %d\n", st.Published),
		fmt.Sprintf("vmpulse_realtime_batches_received_total %d\n", st.Received),
		fmt.Sprintf("vmpulse_realtime_batches_dispatched_total %d\n", st.Dispatched),
		fmt.Sprintf("vmpulse_realtime_queue_drops_total %d\n", st.QueueDrops),
		fmt.Sprintf("vmpulse_realtime_samples_delivered_total %d\n", st.Delivered),
		fmt.Sprintf("vmpulse_realtime_slow_consumers_total %d\n", st.SlowConsumers),
		fmt.Sprintf("vmpulse_realtime_subscriptions %d\n", st.Subscriptions),
		fmt.Sprintf("vmpulse_realtime_feeds %d\n", st.Feeds),
		// The test API's own hub does not relay.
		"vmpulse_realtime_relay_enabled 0\n",
		"vmpulse_realtime_relay_listening 0\n",
		"vmpulse_realtime_relay_notifications_sent_total 0\n",
		"vmpulse_realtime_relay_notifications_received_total 0\n",
		"vmpulse_realtime_relay_own_skipped_total 0\n",
		"vmpulse_realtime_relay_drops_total 0\n",
		"vmpulse_realtime_relay_oversize_total 0\n",
		"vmpulse_realtime_relay_errors_total 0\n",
	)
	if st.SlowConsumers < 1 || !strings.Contains(body, fmt.Sprintf("vmpulse_realtime_batches_published_total %d\n", base.Published+n)) {
		t.Errorf("exposition does not count this test's batches and drop")
	}

	_, h := e.health()
	rt := h.Components.Realtime
	if rt == nil {
		t.Fatalf("no realtime component in %+v", h.Components)
	}
	want := RealtimeHealth{Status: HealthOK, Reasons: []string{},
		Subscriptions: st.Subscriptions, Feeds: st.Feeds,
		BatchesPublished: st.Published, BatchesReceived: st.Received, BatchesDispatched: st.Dispatched, QueueDrops: st.QueueDrops,
		SamplesDelivered: st.Delivered, SlowConsumers: st.SlowConsumers}
	if fmt.Sprintf("%+v", *rt) != fmt.Sprintf("%+v", want) {
		t.Errorf("health realtime = %+v; want %+v", *rt, want)
	}
	// The raw document uses the schema's names.
	raw := string(e.do("GET", "/api/v1/system/health", e.tokens["operator"], "").raw)
	for _, k := range []string{`"realtime":{"status":"ok"`, `"slow_consumers":` + fmt.Sprint(st.SlowConsumers), `"subscriptions":` + fmt.Sprint(st.Subscriptions),
		`"batches_published":` + fmt.Sprint(st.Published), `"relay":false`, `"relay_listening":false`} {
		if !strings.Contains(raw, k) {
			t.Errorf("health document lacks %s: %s", k, raw)
		}
	}
}

// TestRealtimeHealthRelay: a relay that is on but not listening makes the
// component degraded, with a reason; counters alone never do.
func TestRealtimeHealthRelay(t *testing.T) {
	for _, c := range []struct {
		st   realtime.Stats
		want string
	}{
		{realtime.Stats{}, HealthOK},
		{realtime.Stats{QueueDrops: 9, SlowConsumers: 3, RelayErrors: 2}, HealthOK},
		{realtime.Stats{Relay: true, RelayListening: true, RelayErrors: 4, RelayDrops: 1}, HealthOK},
		{realtime.Stats{Relay: true}, HealthDegraded},
	} {
		h := realtimeHealth(c.st)
		if h.Status != c.want || (c.want == HealthOK) != (len(h.Reasons) == 0) {
			t.Errorf("stats %+v: %s %q; want %s", c.st, h.Status, h.Reasons, c.want)
		}
		if h.QueueDrops != c.st.QueueDrops || h.SlowConsumers != c.st.SlowConsumers || h.RelayErrors != c.st.RelayErrors || h.Relay != c.st.Relay {
			t.Errorf("stats %+v: counters %+v", c.st, h)
		}
	}
}

// TestRealtimeRelayExposed: with a relay that is on, the health component
// is degraded until its LISTEN connection is up, and /metrics says whether
// it is on and listening.
func TestRealtimeRelayExposed(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Metrics.Auth = MetricsAuthNone })
	hub := realtime.New(realtime.Options{Pool: e.pool, Relay: true})
	e.api.realtime = hub // not running yet: the relay does not listen

	_, h := e.health()
	rt := h.Components.Realtime
	if rt == nil || rt.Status != HealthDegraded || !rt.Relay || rt.RelayListening || len(rt.Reasons) != 1 || h.Status != HealthDegraded {
		t.Fatalf("health before the relay listens: %s %+v", h.Status, rt)
	}
	wantMetricLines(t, string(e.scrape("").raw), "vmpulse_realtime_relay_enabled 1\n", "vmpulse_realtime_relay_listening 0\n")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = hub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := hub.WaitRelay(wctx); err != nil {
		t.Fatal(err)
	}
	_, h = e.health()
	if rt = h.Components.Realtime; rt == nil || rt.Status != HealthOK || !rt.RelayListening || len(rt.Reasons) != 0 {
		t.Fatalf("health once the relay listens: %+v", rt)
	}
	wantMetricLines(t, string(e.scrape("").raw), "vmpulse_realtime_relay_enabled 1\n", "vmpulse_realtime_relay_listening 1\n")
}
