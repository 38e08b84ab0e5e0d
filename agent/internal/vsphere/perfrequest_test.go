package vsphere

import (
	"bytes"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

// govmomiRequest is the document soap.Client would send for req.
func govmomiRequest(t testing.TB, h soap.Header, req *types.QueryPerf) []byte {
	t.Helper()
	env := soap.Envelope{Body: &methods.QueryPerfBody{Req: req}}
	if h.Cookie != nil || h.ID != "" {
		env.Header = &h
	}
	b, err := xml.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(xml.Header), b...)
}

func TestQueryPerfRequestMatchesGovmomi(t *testing.T) {
	start := time.Date(2026, 11, 22, 10, 0, 20, 123456000, time.UTC)
	end := time.Date(2026, 11, 22, 11, 0, 0, 0, time.FixedZone("CET", 3600))
	this := types.ManagedObjectReference{Type: "PerformanceManager", Value: "PerfMgr"}
	cases := map[string]struct {
		h   soap.Header
		req *types.QueryPerf
	}{
		"no header, no specs": {req: &types.QueryPerf{This: this}},
		"typical latest-sample query": {
			h: soap.Header{Cookie: &soap.HeaderElement{Value: `vmware_soap_session="52a1&b"`}},
			req: &types.QueryPerf{This: this, QuerySpec: []types.PerfQuerySpec{
				{Entity: types.ManagedObjectReference{Type: "VirtualMachine", Value: "vm-42"}, MaxSample: 1, IntervalId: 20, Format: "normal",
					MetricId: []types.PerfMetricId{{CounterId: 2, Instance: ""}, {CounterId: 24, Instance: "*"}}},
				{Entity: types.ManagedObjectReference{Type: "HostSystem", Value: "host-9", ServerGUID: "g<1>"}, StartTime: &start, IntervalId: 20,
					MetricId: []types.PerfMetricId{{CounterId: 143, Instance: "vmnic0"}}},
			}},
		},
		"range, odd strings, operation ID": {
			h: soap.Header{ID: "op&<1>", Cookie: &soap.HeaderElement{Value: "c"}},
			req: &types.QueryPerf{This: this, QuerySpec: []types.PerfQuerySpec{
				{Entity: types.ManagedObjectReference{Type: "Datastore", Value: "datastore-'1\"&\t\n\r"}, StartTime: &start, EndTime: &end, IntervalId: 300,
					MetricId: []types.PerfMetricId{{CounterId: -1, Instance: "naa.6000\u00e9\xff<>"}}, Format: "csv"},
			}},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			want := govmomiRequest(t, c.h, c.req)
			got, err := soapRequest(c.h, func(b []byte) []byte { return appendQueryPerf(b, c.req) })
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("request differs from govmomi's:\ngot  %s\nwant %s", got, want)
			}
		})
	}
}

func FuzzQueryPerfRequest(f *testing.F) {
	f.Add("VirtualMachine", "vm-1", "", "", int32(2), int32(1), int32(20), "normal", int64(1763805620), int64(0), false, "cookie")
	f.Add("HostSystem", "host-<&>", "guid\"", "vmhba0:C0:T0:L0", int32(-5), int32(0), int32(300), "", int64(0), int64(999999999), true, "")
	f.Fuzz(func(t *testing.T, typ, value, guid, instance string, counter, maxSample, interval int32, format string, sec, nsec int64, withStart bool, cookie string) {
		if sec < 0 || sec > 253402300799 { // years 1970–9999: what xml.Marshal can write
			sec = 0
		}
		ts := time.Unix(sec, nsec%1e9).UTC()
		spec := types.PerfQuerySpec{
			Entity:     types.ManagedObjectReference{Type: typ, Value: value, ServerGUID: guid},
			MaxSample:  maxSample,
			IntervalId: interval,
			Format:     format,
			MetricId:   []types.PerfMetricId{{CounterId: counter, Instance: instance}, {CounterId: counter + 1, Instance: "*"}},
		}
		if withStart {
			spec.StartTime = &ts
		} else {
			spec.EndTime = &ts
		}
		req := &types.QueryPerf{This: types.ManagedObjectReference{Type: "PerformanceManager", Value: value}, QuerySpec: []types.PerfQuerySpec{spec, spec}}
		var h soap.Header
		if cookie != "" {
			h.Cookie = &soap.HeaderElement{Value: cookie}
		}
		want := govmomiRequest(t, h, req)
		got, err := soapRequest(h, func(b []byte) []byte { return appendQueryPerf(b, req) })
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("request differs from govmomi's:\ngot  %q\nwant %q", got, want)
		}
	})
}
