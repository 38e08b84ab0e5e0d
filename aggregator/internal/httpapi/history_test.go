package httpapi

import (
	"context"
	"math"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

func TestHistory(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	viewer := e.tokens["viewer"]
	ctx := context.Background()

	// Samples of web-01 each minute from 30 to 21 minutes ago, then a
	// recorded spool drop from 20 to 11 minutes ago, then samples again
	// (the fixture's two, 2 and 1 minute ago).
	now := time.Now().UTC().Truncate(time.Minute)
	var ts []int64
	var vals []float64
	for m := 30; m >= 21; m-- {
		ts = append(ts, now.Add(-time.Duration(m)*time.Minute).UnixMilli())
		vals = append(vals, float64(100*m)) // m % in hundredths
	}
	if _, err := e.store.WriteSamples(ctx, store.BatchMeta{AgentID: f.east.ID, Site: "dc-east", Epoch: 1, Seq: 10, Kind: protocol.KindSamples},
		&protocol.Samples{Series: []protocol.SeriesData{{
			Key:        protocol.SeriesKey{Source: vcEast, EntityKind: "vm", EntityID: "vm-1", Counters: []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}}},
			Timestamps: ts, Values: [][]float64{vals},
		}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.WriteGap(ctx, store.BatchMeta{AgentID: f.east.ID, Site: "dc-east", Epoch: 1, Seq: 11, Kind: protocol.KindGap},
		&protocol.Gap{Epoch: 1, FromSeq: 100, ToSeq: 140, Batches: 40, Bytes: 1 << 20, Reason: "spool full",
			First: now.Add(-20 * time.Minute).UnixMilli(), Last: now.Add(-11 * time.Minute).UnixMilli(), Detected: now.UnixMilli()}); err != nil {
		t.Fatal(err)
	}

	get := func(path string) *response {
		t.Helper()
		return e.do("GET", path, viewer, "")
	}
	web01 := url.PathEscape(objectID(vcEast, "vm-1"))
	from, to := now.Add(-30*time.Minute), now
	res := get("/api/v1/vms/" + web01 + "/metrics?metric=cpu.usage.average&step=1m&from=" + from.Format(time.RFC3339) + "&to=" + to.Format(time.RFC3339))
	if res.status != 200 {
		t.Fatalf("history = %d %s", res.status, res.raw)
	}
	var h HistoryAnswer
	res.data(&h)
	if h.Step != "1m" || h.Resolution != "raw" || len(h.Timestamps) != 30 || len(h.Series) != 1 {
		t.Fatalf("answer: step %s resolution %s, %d timestamps, %d series", h.Step, h.Resolution, len(h.Timestamps), len(h.Series))
	}
	s := h.Series[0]
	if s.Metric != "cpu.usage.average" || s.Unit != "%" || len(s.Values) != 30 {
		t.Fatalf("series %+v", s)
	}
	// Percent counters come out in percent; steps without data are null.
	for i, v := range s.Values {
		m := 30 - i
		switch {
		case m >= 21:
			if v == nil || math.Abs(*v-float64(m)) > 1e-3 {
				t.Errorf("value %d minutes ago = %v, want %d", m, deref64(v), m)
			}
		case m == 2 || m == 1:
			if v == nil {
				t.Errorf("value %d minutes ago is null", m)
			}
		default:
			if v != nil {
				t.Errorf("value %d minutes ago = %v, want null", m, *v)
			}
		}
	}
	var got []string
	for _, c := range s.Coverage {
		got = append(got, c.State+"/"+c.Cause+" "+c.From.Sub(from).String()+"-"+c.To.Sub(from).String())
	}
	want := []string{"data/ 0s-10m0s", "missing/spool_drop 10m0s-20m0s", "missing/no_data 20m0s-28m0s", "data/ 28m0s-30m0s"}
	if !slices.Equal(got, want) {
		t.Errorf("coverage = %q\nwant       %q", got, want)
	}

	// A powered-off VM without samples: nulls, and why.
	res = get("/api/v1/vms/" + url.PathEscape(objectID(vcEast, "vm-2")) + "/metrics?metric=cpu.usage.average")
	res.data(&h)
	if res.status != 200 || len(h.Series) != 1 || len(h.Coverage) == 0 {
		t.Fatalf("web-02: %d %s", res.status, res.raw)
	}
	for _, c := range h.Coverage {
		if c.State != "missing" || c.Cause != store.CausePoweredOff || c.Detail != "poweredOff" {
			t.Errorf("web-02 coverage %+v, want powered_off", c)
		}
	}

	// The latest value of a percent counter is in percent too.
	res = get("/api/v1/vms/" + web01)
	if !strings.Contains(string(res.raw), `"value":0.425`) {
		t.Errorf("latest cpu.usage.average not in percent: %s", res.raw)
	}

	// p95 from raw samples; refused where a rollup tier would answer.
	res = get("/api/v1/vms/" + web01 + "/metrics?metric=cpu.usage.average&agg=p95&step=1m&from=" + from.Format(time.RFC3339) + "&to=" + to.Format(time.RFC3339))
	res.data(&h)
	if res.status != 200 || h.Agg != "p95" || len(h.Series) != 1 || h.Series[0].Values[0] == nil || math.Abs(*h.Series[0].Values[0]-30) > 1e-3 {
		t.Errorf("p95 = %d %.300s", res.status, res.raw)
	}
	if res := get("/api/v1/vms/" + web01 + "/metrics?agg=p95&from=" + to.Add(-48*time.Hour).Format(time.RFC3339)); res.status != 422 || !strings.Contains(string(res.raw), `"field":"agg"`) {
		t.Errorf("p95 over two days = %d %.300s", res.status, res.raw)
	}

	// Top, summary, export and the many-entity query over the same data.
	span := "&from=" + from.Add(-time.Minute).Format(time.RFC3339) + "&to=" + to.Add(time.Minute).Format(time.RFC3339)
	res = get("/api/v1/metrics/top?metric=cpu.usage.average&kind=vm&agg=max" + span)
	var top struct {
		Items []TopItem `json:"items"`
	}
	res.data(&top)
	if res.status != 200 || len(top.Items) != 1 || top.Items[0].Name != "web-01" || math.Abs(top.Items[0].Value-30) > 1e-3 {
		t.Errorf("top = %d %s", res.status, res.raw)
	}
	res = get("/api/v1/metrics/summary?kind=vm&entity=" + web01 + span)
	var sum struct {
		Items []SummaryItem `json:"items"`
	}
	res.data(&sum)
	if res.status != 200 || len(sum.Items) != 1 || sum.Items[0].Count != 12 || math.Abs(*sum.Items[0].Min-0.125) > 1e-3 ||
		math.Abs(*sum.Items[0].Max-30) > 1e-3 || math.Abs(*sum.Items[0].Avg-(255+0.55)/12) > 1e-3 {
		t.Errorf("summary = %d %s", res.status, res.raw)
	}
	res = get("/api/v1/metrics/export?format=csv&kind=vm&step=1m&metric=cpu.usage.average&entity=" + web01 + "&from=" + from.Format(time.RFC3339) + "&to=" + to.Format(time.RFC3339))
	lines := strings.Split(strings.TrimSpace(string(res.raw)), "\n")
	if res.status != 200 || !strings.HasPrefix(res.header.Get("Content-Type"), "text/csv") || len(lines) != 31 ||
		lines[0] != "time,entity,name,metric,instance,unit,value" || !strings.HasSuffix(lines[1], ",cpu.usage.average,,%,30") || !strings.HasSuffix(lines[12], ",%,") {
		t.Errorf("export = %d %q", res.status, lines)
	}
	res = e.do("POST", "/api/v1/metrics/query", viewer, `{"entities":[{"kind":"vm","id":"`+objectID(vcEast, "vm-1")+`"},{"kind":"host","id":"`+objectID(vcEast, "nope")+`"}],
		"metrics":["cpu.usage.average"],"step":"1m","from":"`+from.Format(time.RFC3339)+`","to":"`+to.Format(time.RFC3339)+`"}`)
	var mq struct {
		Items []MetricsQueryItem `json:"items"`
	}
	res.data(&mq)
	if res.status != 200 || len(mq.Items) != 2 || !mq.Items[0].Found || mq.Items[1].Found || len(mq.Items[0].History.Series[0].Values) != 30 {
		t.Errorf("query = %d %.500s", res.status, res.raw)
	}
	if res := e.do("POST", "/api/v1/metrics/query", viewer, `{"entities":[{"kind":"pod","id":"x"}]}`); res.status != 422 {
		t.Errorf("query with a bad entity = %d %s", res.status, res.raw)
	}

	// The site timeline carries the gap record.
	res = get("/api/v1/sites/dc-east/timeline?from=" + from.Format(time.RFC3339))
	var tl SiteTimeline
	res.data(&tl)
	if res.status != 200 || len(tl.Gaps) != 1 || tl.Gaps[0].Reason != "spool full" || tl.Gaps[0].Batches != 40 {
		t.Errorf("timeline = %d %s", res.status, res.raw)
	}
	if res := get("/api/v1/sites/dc-east/timeline?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"); res.status != 422 {
		t.Errorf("timeline with a reversed range = %d", res.status)
	}

	// The catalog.
	res = get("/api/v1/metrics")
	if res.status != 200 || !strings.Contains(string(res.raw), `{"name":"cpu.usage.average","unit":"%","entity_kinds":["vm"],"per_instance":false}`) {
		t.Errorf("catalog = %d %s", res.status, res.raw)
	}

	// Bad input: 4xx naming the field; a missing or out-of-scope entity 404.
	for q, field := range map[string]string{
		"metric=cpu%3Bdrop": "metric",
		"step=soon":         "step",
		"step=500ms":        "step",
		"agg=median":        "agg",
		"from=yesterday":    "from",
		"from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z":         "to",
		"from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z":         "from",
		"step=1s&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z": "step",
		"instance=%00":   "instance",
		"metric=%ff.cpu": "metric",
	} {
		res := get("/api/v1/vms/" + web01 + "/metrics?" + q)
		var ed errData
		if res.status == 422 {
			res.data(&ed)
		}
		if res.status != 422 || len(ed.Fields) == 0 || ed.Fields[0].Field != field {
			t.Errorf("?%s = %d %.300s, want 422 naming %s", q, res.status, res.raw, field)
		}
	}
	if res := get("/api/v1/hosts/" + url.PathEscape(objectID(vcEast, "nope")) + "/metrics"); res.status != 404 || res.code() != CodeHostNotFound {
		t.Errorf("unknown host = %d %s", res.status, res.raw)
	}
	if res := e.do("GET", "/api/v1/vms/"+web01+"/metrics", e.tokens["auditor"], ""); res.status != 403 {
		t.Errorf("auditor = %d, want 403 (metric:read)", res.status)
	}
}

func deref64(v *float64) any {
	if v == nil {
		return nil
	}
	return *v
}

// TestHistoryReadyPercent: the derived cpu.ready.percent in the catalog,
// the history, the export and the latest values, against ready ms ÷ the
// 20 s interval ÷ the VM's 4 vCPUs computed here.
func TestHistoryReadyPercent(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	viewer := e.tokens["viewer"]
	now := time.Now().UTC().Truncate(2 * time.Minute) // whole 2-minute steps
	// Three realtime samples a minute (20 s apart) for ten minutes: 800 ms
	// ready of 20 s is 4 % of the VM's time, 1 % per vCPU; vCPU 0 alone
	// had 400 ms, 2 %.
	counters := []protocol.Counter{{Name: store.CounterCPUReady, Unit: "ms"}}
	agg := protocol.SeriesData{Key: protocol.SeriesKey{Source: vcEast, EntityKind: "vm", EntityID: "vm-1", Counters: counters}, Values: [][]float64{nil}}
	cpu0 := protocol.SeriesData{Key: protocol.SeriesKey{Source: vcEast, EntityKind: "vm", EntityID: "vm-1", Instance: "0", Counters: counters}, Values: [][]float64{nil}}
	for ts := now.Add(-10 * time.Minute); ts.Before(now); ts = ts.Add(20 * time.Second) {
		agg.Timestamps, cpu0.Timestamps = append(agg.Timestamps, ts.UnixMilli()), append(cpu0.Timestamps, ts.UnixMilli())
		agg.Values[0], cpu0.Values[0] = append(agg.Values[0], 800), append(cpu0.Values[0], 400)
	}
	if _, err := e.store.WriteSamples(context.Background(), store.BatchMeta{AgentID: f.east.ID, Site: "dc-east", Epoch: 1, Seq: 20, Kind: protocol.KindSamples},
		&protocol.Samples{Series: []protocol.SeriesData{agg, cpu0}}); err != nil {
		t.Fatal(err)
	}
	get := func(path string) *response {
		t.Helper()
		res := e.do("GET", path, viewer, "")
		if res.status != 200 {
			t.Fatalf("%s: %d %s", path, res.status, res.raw)
		}
		return res
	}
	const perVCPU, vcpu0 = 800.0 / 20000 * 100 / 4, 400.0 / 20000 * 100

	res := get("/api/v1/metrics")
	if !strings.Contains(string(res.raw), `{"name":"cpu.ready.percent","unit":"%","entity_kinds":["vm"],"per_instance":true,"derived":"cpu.ready.summation ms`) {
		t.Errorf("catalog: %s", res.raw)
	}

	web01 := url.PathEscape(objectID(vcEast, "vm-1"))
	span := "&from=" + now.Add(-10*time.Minute).Format(time.RFC3339) + "&to=" + now.Format(time.RFC3339)
	var h HistoryAnswer
	get("/api/v1/vms/" + web01 + "/metrics?metric=cpu.ready.percent&step=2m" + span).data(&h)
	if len(h.Series) != 2 {
		t.Fatalf("history: %+v", h)
	}
	for _, s := range h.Series {
		want := map[string]float64{"": perVCPU, "0": vcpu0}[s.Instance]
		if s.Metric != "cpu.ready.percent" || s.Unit != "%" || len(s.Values) != 5 {
			t.Fatalf("series %+v", s)
		}
		for _, v := range s.Values {
			if v == nil || math.Abs(*v-want) > 1e-9 {
				t.Errorf("instance %q: %v, want %v", s.Instance, deref64(v), want)
			}
		}
	}

	res = get("/api/v1/metrics/export?format=csv&kind=vm&step=2m&metric=cpu.ready.percent&entity=" + web01 + span)
	lines := strings.Split(strings.TrimSpace(string(res.raw)), "\n")
	counts := map[string]int{}
	for _, l := range lines[1:] {
		counts[l[strings.Index(l, ",cpu.ready.percent,"):]]++
	}
	if len(lines) != 11 || counts[",cpu.ready.percent,,%,1"] != 5 || counts[",cpu.ready.percent,0,%,2"] != 5 {
		t.Errorf("export %q", lines)
	}

	var vm RealtimeVM
	get("/api/v1/realtime/vms/" + web01).data(&vm)
	found := map[string]float64{}
	for _, v := range vm.Values {
		if v.Metric == "cpu.ready.percent" {
			found[v.Instance] = v.Value
		}
	}
	if len(found) != 2 || math.Abs(found[""]-perVCPU) > 1e-9 || math.Abs(found["0"]-vcpu0) > 1e-9 {
		t.Errorf("realtime vm ready: %v in %+v", found, vm.Values)
	}
	res = get("/api/v1/vms/" + web01)
	if !strings.Contains(string(res.raw), `"metric":"cpu.ready.percent","instance":"","unit":"%","value":1,`) {
		t.Errorf("latest: %s", res.raw)
	}
}
