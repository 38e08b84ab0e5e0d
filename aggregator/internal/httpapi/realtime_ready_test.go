package httpapi

import (
	"math"
	"net/url"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/protocol"
)

// readySamples is a cpu.ready.summation series of vm (ms per sample) at
// the given times.
func readySamples(vm string, at []time.Time, ms ...float64) *protocol.Samples {
	sd := protocol.SeriesData{Key: protocol.SeriesKey{Source: vcEast, EntityKind: "vm", EntityID: vm,
		Counters: []protocol.Counter{{Name: "cpu.ready.summation", Unit: "ms"}}}, Values: [][]float64{ms}}
	for _, t := range at {
		sd.Timestamps = append(sd.Timestamps, t.UnixMilli())
	}
	return &protocol.Samples{Series: []protocol.SeriesData{sd}}
}

// TestRealtimeReadyPercent checks the derived CPU ready % next to the raw
// value in the WebSocket and SSE feeds (per vCPU of the subscribed VM; a
// sample 5 minutes after the previous one of its series counts 5
// minutes), and in GET /metrics/top?metric=cpu.ready.percent, against
// real PostgreSQL.
func TestRealtimeReadyPercent(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	srv := e.serve()
	viewer := e.tokens["viewer"]
	web01 := entityRef{Kind: "vm", ID: objectID(vcEast, "vm-1")} // 4 vCPUs
	c, err := dialWS(t, wsURL(srv), viewer, byHeader, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.expect("welcome")
	c.send(subscribe("r", []string{"cpu.ready.summation"}, web01))
	c.expect("subscribed")
	s := openStream(t, srv, viewer, "?vm="+url.QueryEscape(web01.ID)+"&metric=cpu.ready.summation", "")
	s.expect("subscribed")

	at := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	e.commit(e.hub(), f.east, readySamples("vm-1", []time.Time{at, at.Add(20 * time.Second), at.Add(320 * time.Second)}, 400, 800, 6000))
	// 400 ms of 20 s over 4 vCPUs: 0.5 %; 800 ms: 1 %; 6,000 ms of the
	// 5 minutes since the previous sample: 0.5 %.
	want := []float64{0.5, 1, 0.5}
	check := func(feed string, got []RealtimeSample) {
		t.Helper()
		if len(got) != 3 {
			t.Fatalf("%s: %+v", feed, got)
		}
		for i, smp := range got {
			if smp.Metric != "cpu.ready.summation" || smp.Unit != "ms" || smp.ReadyPercent == nil || math.Abs(*smp.ReadyPercent-want[i]) > 1e-6 {
				t.Errorf("%s sample %d: %+v (ready_percent %v), want %v", feed, i, smp, deref64(smp.ReadyPercent), want[i])
			}
		}
	}
	check("websocket", c.expect("samples").Samples)
	check("sse", s.expect("samples").Samples)
	s.close()

	// GET /metrics/top ranks by the derived percentage, per vCPU: web-01's
	// 7,200 ms over 340 s of samples ÷ 4 vCPUs, and db-01 (8 vCPUs) with
	// 1,600 ms in one 20 s sample.
	e.commit(e.hub(), f.east, readySamples("vm-3", []time.Time{at}, 1600))
	res := e.do("GET", "/api/v1/metrics/top?metric=cpu.ready.percent&kind=vm&from="+at.Add(-time.Minute).Format(time.RFC3339)+
		"&to="+at.Add(time.Hour).Format(time.RFC3339), viewer, "")
	var top struct {
		Metric string    `json:"metric"`
		Items  []TopItem `json:"items"`
	}
	res.data(&top)
	if res.status != 200 || len(top.Items) != 2 {
		t.Fatalf("top = %d %s", res.status, res.raw)
	}
	wantTop := []struct {
		name string
		pct  float64
	}{{"db-01", 1600.0 / 20000 * 100 / 8}, {"web-01", 7200.0 / 340000 * 100 / 4}}
	for i, w := range wantTop {
		if it := top.Items[i]; it.Name != w.name || it.Unit != "%" || math.Abs(it.Value-w.pct) > 1e-9 {
			t.Errorf("top %d: %+v, want %s %.6f %%", i, it, w.name, w.pct)
		}
	}
	// Another site's user ranks nothing of dc-east.
	west, _ := e.scopedToken("west-ready", "dc-west")
	res = e.do("GET", "/api/v1/metrics/top?metric=cpu.ready.percent&from="+at.Add(-time.Minute).Format(time.RFC3339), west, "")
	res.data(&top)
	if res.status != 200 || len(top.Items) != 0 {
		t.Errorf("top for dc-west = %d %s", res.status, res.raw)
	}
}
