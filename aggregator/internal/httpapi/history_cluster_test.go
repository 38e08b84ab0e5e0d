package httpapi

import (
	"context"
	"math"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// TestClusterHistoryOfVMs checks GET /clusters/{id}/metrics?of=vms against
// real PostgreSQL: samples of the cluster's VMs written through the ingest
// path and rolled up by the job are answered from the cluster's hourly
// aggregates (path cluster_1h) with the values computed here, a finer step
// from the VMs' series (path vms, with the reason), and bad input and other
// sites' callers as they must be.
func TestClusterHistoryOfVMs(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	ctx := store.AllSites(context.Background())
	viewer := e.tokens["viewer"]
	base := time.Now().UTC().Truncate(24 * time.Hour).Add(-2 * 24 * time.Hour)
	if err := e.store.EnsurePartitions(ctx, base, base.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// vm-1 (4 vCPUs) and vm-3 of cluster domain-c1: two hours of samples,
	// 10 minutes apart; cpu.usage.average in hundredths of a percent.
	var ts []int64
	var v1, v3 []float64
	for m := 0; m < 120; m += 10 {
		ts = append(ts, base.Add(time.Duration(m)*time.Minute).UnixMilli())
		v1 = append(v1, float64(1000+m))
		v3 = append(v3, float64(3000+2*m))
	}
	counters := []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}}
	if _, err := e.store.WriteSamples(ctx, store.BatchMeta{AgentID: f.east.ID, Site: "dc-east", Epoch: 1, Seq: 20, Kind: protocol.KindSamples},
		&protocol.Samples{Series: []protocol.SeriesData{
			{Key: protocol.SeriesKey{Source: vcEast, EntityKind: "vm", EntityID: "vm-1", Counters: counters}, Timestamps: ts, Values: [][]float64{v1}},
			{Key: protocol.SeriesKey{Source: vcEast, EntityKind: "vm", EntityID: "vm-3", Counters: counters}, Timestamps: ts, Values: [][]float64{v3}},
		}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.RunRollups(ctx, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	cluster := "/api/v1/clusters/" + url.PathEscape(objectID(vcEast, "domain-c1")) + "/metrics?of=vms&metric=cpu.usage.average"
	span := "&from=" + base.Format(time.RFC3339) + "&to=" + base.Add(2*time.Hour).Format(time.RFC3339)

	var h HistoryAnswer
	res := e.do("GET", cluster+"&step=1h"+span, viewer, "")
	res.data(&h)
	if res.status != 200 || h.Of != "vms" || h.Path != store.ClusterPathRollup || h.VMs == nil || *h.VMs != 2 || len(h.Series) != 1 || len(h.Timestamps) != 2 {
		t.Fatalf("of=vms, 1h: %d %.600s", res.status, res.raw)
	}
	// Each hour: the mean of both VMs' six values, in percent.
	for i, want := range []float64{(1025.0 + 3050) / 2 / 100, (1085.0 + 3170) / 2 / 100} {
		if v := h.Series[0].Values[i]; v == nil || math.Abs(*v-want) > 1e-9 || h.Series[0].Unit != "%" {
			t.Errorf("hour %d: %v %s, want %v", i, deref64(v), h.Series[0].Unit, want)
		}
	}
	res = e.do("GET", cluster+"&step=2h&agg=max"+span, viewer, "")
	res.data(&h)
	if v := h.Series[0].Values[0]; res.status != 200 || h.Path != store.ClusterPathRollup || v == nil || *v != 32.2 {
		t.Errorf("of=vms, 2h max: %d %.400s", res.status, res.raw)
	}
	res = e.do("GET", cluster+"&step=10m&agg=count"+span, viewer, "")
	res.data(&h)
	if res.status != 200 || h.Path != store.ClusterPathVMs || !strings.Contains(h.PathReason, "finer") || len(h.Timestamps) != 12 ||
		h.Series[0].Values[0] == nil || *h.Series[0].Values[0] != 2 {
		t.Errorf("of=vms, 10m: %d %.400s", res.status, res.raw)
	}
	// Without of, the cluster's own counters (none stored): no VM data.
	res = e.do("GET", "/api/v1/clusters/"+url.PathEscape(objectID(vcEast, "domain-c1"))+"/metrics?metric=cpu.usage.average&step=1h"+span, viewer, "")
	h = HistoryAnswer{}
	res.data(&h)
	if res.status != 200 || h.Of != "" || h.Path != "" || h.Series[0].Values[0] != nil {
		t.Errorf("without of: %d %.400s", res.status, res.raw)
	}

	// Bad input names the field.
	for path, field := range map[string]string{
		"/api/v1/clusters/" + url.PathEscape(objectID(vcEast, "domain-c1")) + "/metrics?of=hosts":                     "of",
		"/api/v1/vms/" + url.PathEscape(objectID(vcEast, "vm-1")) + "/metrics?of=vms":                                 "of",
		cluster + "&metric=cpu.ready.percent":                                                                         "metric",
		cluster + "&instance=scsi0:0":                                                                                 "instance",
		cluster + "&step=1s&from=" + base.Format(time.RFC3339) + "&to=" + base.Add(24*time.Hour).Format(time.RFC3339): "step",
	} {
		res := e.do("GET", path, viewer, "")
		if res.status != 422 || !strings.Contains(string(res.raw), `"field":"`+field+`"`) {
			t.Errorf("%s = %d %.300s, want 422 on %s", path, res.status, res.raw, field)
		}
	}
	// Another site's user: 404, as for a missing cluster.
	west, _ := e.scopedToken("west-only", "dc-west")
	if res := e.do("GET", cluster+"&step=1h"+span, west, ""); res.status != 404 {
		t.Errorf("scoped to dc-west: %d %.300s", res.status, res.raw)
	}
}
