package vsphere

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"
)

func TestFromCSV(t *testing.T) {
	ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: "vm-1"}
	in := []types.BasePerfEntityMetricBase{
		&types.PerfEntityMetricCSV{
			PerfEntityMetricBase: types.PerfEntityMetricBase{Entity: ref},
			SampleInfoCSV:        "20,2024-05-01T10:00:20Z, 20 ,2024-05-01T10:00:40.5+02:00",
			Value: []types.PerfMetricSeriesCSV{
				{PerfMetricSeries: types.PerfMetricSeries{Id: types.PerfMetricId{CounterId: 2, Instance: "*"}}, Value: "5, -1"},
				{PerfMetricSeries: types.PerfMetricSeries{Id: types.PerfMetricId{CounterId: 6, Instance: "vmnic0"}}, Value: ",9223372036854775807"},
			},
		},
		&types.PerfEntityMetricCSV{PerfEntityMetricBase: types.PerfEntityMetricBase{Entity: ref}},
		&types.PerfEntityMetric{PerfEntityMetricBase: types.PerfEntityMetricBase{Entity: ref}},
	}
	out, err := fromCSV(in)
	if err != nil {
		t.Fatal(err)
	}
	t1, _ := time.Parse(time.RFC3339, "2024-05-01T10:00:20Z")
	t2, _ := time.Parse(time.RFC3339Nano, "2024-05-01T10:00:40.5+02:00")
	want := &types.PerfEntityMetric{
		PerfEntityMetricBase: types.PerfEntityMetricBase{Entity: ref},
		SampleInfo:           []types.PerfSampleInfo{{Timestamp: t1, Interval: 20}, {Timestamp: t2, Interval: 20}},
		Value: []types.BasePerfMetricSeries{
			&types.PerfMetricIntSeries{PerfMetricSeries: types.PerfMetricSeries{Id: types.PerfMetricId{CounterId: 2, Instance: "*"}}, Value: []int64{5, -1}},
			&types.PerfMetricIntSeries{PerfMetricSeries: types.PerfMetricSeries{Id: types.PerfMetricId{CounterId: 6, Instance: "vmnic0"}}, Value: []int64{-1, 9223372036854775807}},
		},
	}
	if !reflect.DeepEqual(out[0], want) {
		t.Errorf("converted:\n%+v\nwant\n%+v", out[0], want)
	}
	if em, ok := out[1].(*types.PerfEntityMetric); !ok || len(em.SampleInfo) != 0 || len(em.Value) != 0 {
		t.Errorf("empty CSV result: %+v", out[1])
	}
	if out[2] != in[2] {
		t.Error("a normal result was not kept as it was")
	}

	bad := map[string]types.PerfEntityMetricCSV{
		"odd sample info":   {SampleInfoCSV: "20,2024-05-01T10:00:20Z,20"},
		"bad interval":      {SampleInfoCSV: "x,2024-05-01T10:00:20Z"},
		"bad timestamp":     {SampleInfoCSV: "20,yesterday"},
		"too few values":    {SampleInfoCSV: "20,2024-05-01T10:00:20Z,20,2024-05-01T10:00:40Z", Value: []types.PerfMetricSeriesCSV{{Value: "1"}}},
		"too many values":   {SampleInfoCSV: "20,2024-05-01T10:00:20Z", Value: []types.PerfMetricSeriesCSV{{Value: "1,2"}}},
		"trailing comma":    {SampleInfoCSV: "20,2024-05-01T10:00:20Z", Value: []types.PerfMetricSeriesCSV{{Value: "1,"}}},
		"not a number":      {SampleInfoCSV: "20,2024-05-01T10:00:20Z", Value: []types.PerfMetricSeriesCSV{{Value: "1.5"}}},
		"values, no sample": {Value: []types.PerfMetricSeriesCSV{{Value: "3"}}},
	}
	for name, c := range bad {
		c.Entity = ref
		if _, err := fromCSV([]types.BasePerfEntityMetricBase{&c}); err == nil || !strings.Contains(err.Error(), "vm-1") {
			t.Errorf("%s: err %v, want an error naming the entity", name, err)
		}
	}
}

// FuzzPerfCSV: the CSV strings come from the network; converting them must
// never panic, and an accepted result has one value per sample in every
// series.
func FuzzPerfCSV(f *testing.F) {
	f.Add("20,2024-05-01T10:00:20Z,20,2024-05-01T10:00:40Z", "1,-1", ",7")
	f.Add("", "", "")
	f.Add("20,2026-12-03T16:12:28Z", "177", "x")
	f.Fuzz(func(t *testing.T, info, v1, v2 string) {
		c := &types.PerfEntityMetricCSV{SampleInfoCSV: info, Value: []types.PerfMetricSeriesCSV{{Value: v1}, {Value: v2}}}
		em, err := csvEntityMetric(c)
		if err != nil {
			return
		}
		for _, s := range em.Value {
			if n := len(s.(*types.PerfMetricIntSeries).Value); n != len(em.SampleInfo) {
				t.Fatalf("%d values for %d samples", n, len(em.SampleInfo))
			}
		}
	})
}

// The collector's CSV queries and govmomi's normal ones return the same
// entities, counters and instances from the simulator, and the collector
// sends values for every counter it asked for.
func TestPerfCSVMatchesNormal(t *testing.T) {
	f := newPerfFixture(t, "")
	ctx := context.Background()
	conn, err := f.sess.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cases := perfQueryCases(t, f, conn)
	normal, csv := cases["realtime-latest"], cases["realtime-latest-csv"]
	got, err := queryPerf(ctx, conn.Vim(), csv)
	if err != nil {
		t.Fatal(err)
	}
	want, err := queryPerf(ctx, conn.Vim(), normal)
	if err != nil {
		t.Fatal(err)
	}
	// The simulator's encoder drops zero values from normal results (a
	// series then has fewer values than samples); CSV keeps them.
	ids := func(es []pqEntity) []string {
		var out []string
		for _, e := range es {
			for _, s := range e.Series {
				out = append(out, fmt.Sprintf("%v %d %q", e.Entity, s.CounterID, s.Instance))
			}
		}
		return out
	}
	g, w := normalizePerf(got), normalizePerf(want)
	if !reflect.DeepEqual(ids(g), ids(w)) {
		t.Fatalf("CSV and normal results differ:\ncsv    %v\nnormal %v", ids(g), ids(w))
	}
	zeros := 0
	for i, e := range g {
		if len(e.Samples) != len(w[i].Samples) {
			t.Fatalf("%v: %d samples in CSV, %d in normal", e.Entity, len(e.Samples), len(w[i].Samples))
		}
		for j, s := range e.Series {
			if len(s.Values) != len(e.Samples) || len(w[i].Series[j].Values) > len(s.Values) {
				t.Fatalf("%v counter %d: %d CSV values, %d normal, %d samples", e.Entity, s.CounterID, len(s.Values), len(w[i].Series[j].Values), len(e.Samples))
			}
			for _, v := range s.Values {
				if v == 0 {
					zeros++
				}
			}
		}
	}
	t.Logf("%d zero values kept by CSV", zeros)
}
