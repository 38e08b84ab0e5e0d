package vsphere

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi/performance"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

// BenchmarkAgentQueryPerfServerCost measures what one QueryPerf batch
// costs govmomi's simulator to serve (read the request, answer it, encode
// the response: its ServeSDK handler, called in-process), for the request
// shapes of the load benchmark: the agent's (CSV results, startTime only)
// against the same with normal results and against the Telegraf-like
// reference's (normal results, startTime, endTime and maxSample 10). Each
// batch is 17 VMs × the 15 default VM counters (255 metrics, one sample
// each), as a realtime cycle sends them. The figure is CPU time per metric,
// the minimum over rounds of many requests (CPU time, not wall time, and
// the minimum: other work on a shared machine inflates rounds, never
// deflates them), so the shapes compare within one run:
//
//   - vcenter_query_cpu_us_per_metric (the agent), _normal, _reference
//   - vcenter_query_cpu_ratio_vs_reference
//   - vcenter_query_bytes_per_metric (request + response), _normal, _reference
func BenchmarkAgentQueryPerfServerCost(b *testing.B) {
	s := newSim(b)
	ctx := context.Background()
	sess, err := NewSession(s.ep, nil)
	if err != nil {
		b.Fatal(err)
	}
	conn, err := sess.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sess.Close(context.Background()) })
	vc := conn.Vim()
	byName, err := performance.NewManager(vc).CounterInfoByName(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var ids []types.PerfMetricId
	for _, n := range DefaultCounters["vm"] {
		if ci := byName[n]; ci != nil {
			ids = append(ids, types.PerfMetricId{CounterId: ci.Key, Instance: "*"})
		}
	}
	// One sample per metric: the window starts just under a period ago.
	now := time.Now()
	start := now.Add(-19 * time.Second).Truncate(time.Second)
	batch := func(mod func(*types.PerfQuerySpec)) *types.QueryPerf {
		req := &types.QueryPerf{This: *vc.ServiceContent.PerfManager}
		for i := range 17 {
			spec := types.PerfQuerySpec{
				Entity:   types.ManagedObjectReference{Type: "VirtualMachine", Value: fmt.Sprintf("vm-%d", 1000+i)},
				MetricId: slices.Clone(ids), IntervalId: IntervalRealtime, StartTime: &start,
			}
			mod(&spec)
			req.QuerySpec = append(req.QuerySpec, spec)
		}
		return req
	}
	agentDoc := func(format string) []byte {
		req := batch(func(q *types.PerfQuerySpec) { q.Format = format })
		doc, err := soapRequest(soap.Header{}, func(d []byte) []byte { return appendQueryPerf(d, req) })
		if err != nil {
			b.Fatal(err)
		}
		return doc
	}
	// The reference sends what govmomi's methods.QueryPerf marshals.
	end := now
	ref := batch(func(q *types.PerfQuerySpec) {
		q.EndTime, q.MaxSample, q.Format = &end, 10, string(types.PerfFormatNormal)
	})
	refDoc, err := xml.Marshal(soap.Envelope{Body: &methods.QueryPerfBody{Req: ref}})
	if err != nil {
		b.Fatal(err)
	}
	refDoc = append([]byte(xml.Header), refDoc...)

	cookies := vc.Client.Client.Jar.Cookies(vc.Client.URL())
	serve := func(doc []byte) int {
		req := httptest.NewRequest(http.MethodPost, "/sdk", bytes.NewReader(doc))
		req.Header.Set("Content-Type", `text/xml; charset="utf-8"`)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		w := httptest.NewRecorder()
		s.model.Service.ServeSDK(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %.300s", w.Code, w.Body.String())
		}
		return w.Body.Len()
	}
	shapes := []struct {
		name string
		doc  []byte
	}{{"", agentDoc(queryFormat)}, {"_normal", agentDoc(string(types.PerfFormatNormal))}, {"_reference", refDoc}}
	metrics := 17 * len(ids)
	const rounds, perRound = 7, 40
	cost := map[string]float64{}
	for range b.N {
		for _, sh := range shapes {
			resp := serve(sh.doc) // warm
			best := time.Duration(1<<63 - 1)
			for range rounds {
				c0 := processCPU(b)
				for range perRound {
					serve(sh.doc)
				}
				best = min(best, processCPU(b)-c0)
			}
			cost[sh.name] = float64(best.Nanoseconds()) / 1e3 / perRound / float64(metrics)
			fmt.Printf("figure: vcenter_query_cpu_us_per_metric%s %.2f us\n", sh.name, cost[sh.name])
			fmt.Printf("figure: vcenter_query_bytes_per_metric%s %.1f B\n", sh.name, float64(len(sh.doc)+resp)/float64(metrics))
		}
	}
	fmt.Printf("figure: vcenter_query_cpu_ratio_vs_reference %.2f x\n", cost[""]/cost["_reference"])
	fmt.Printf("figure: vcenter_query_cpu_ratio_vs_reference_normal %.2f x\n", cost["_normal"]/cost["_reference"])
	b.ReportMetric(cost[""], "sim-us/metric")
}

// processCPU is this process's user+system CPU time.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
