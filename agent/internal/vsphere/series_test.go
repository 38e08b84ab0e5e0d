package vsphere

import (
	"math"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"
)

// Per-instance results (each vNIC, each disk) become one series per
// instance. The simulator answers "*" with a single aggregate series, so
// this builds the shape a real vCenter returns.
func TestToSeriesPerInstance(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * 20 * time.Second) }
	cols := []resolvedCounter{
		{key: 2, name: "cpu.usage.average", unit: "percent"},
		{key: 143, name: "net.usage.average", unit: "kiloBytesPerSecond"},
		{key: 130, name: "disk.read.average", unit: "kiloBytesPerSecond"},
	}
	series := func(counter int32, inst string, vals ...int64) types.BasePerfMetricSeries {
		return &types.PerfMetricIntSeries{PerfMetricSeries: types.PerfMetricSeries{Id: types.PerfMetricId{CounterId: counter, Instance: inst}}, Value: vals}
	}
	em := &types.PerfEntityMetric{
		PerfEntityMetricBase: types.PerfEntityMetricBase{Entity: types.ManagedObjectReference{Type: "VirtualMachine", Value: "vm-7"}},
		// vCenter lists samples oldest first, but nothing relies on it.
		SampleInfo: []types.PerfSampleInfo{{Timestamp: at(2), Interval: 20}, {Timestamp: at(0), Interval: 20}, {Timestamp: at(1), Interval: 20}},
		Value: []types.BasePerfMetricSeries{
			series(2, "", 500, 300, 400),
			series(143, "", 30, 10, 20),
			series(143, "4000", 20, 7, -1), // -1: vCenter has no value
			series(143, "4001", 10, 3, 6),
			series(130, "scsi0:0", 9, 8, 7),
			series(999, "", 1, 1, 1), // a counter not asked for
		},
	}
	// The high-water mark is at(0): that sample was sent already.
	got := toSeries("vc-1", "vm", em, cols, at(0).UnixMilli())

	type want struct {
		inst   string
		values [3][2]float64 // [column][sample at(1), at(2)]
	}
	nan := math.NaN()
	wants := []want{
		{"", [3][2]float64{{400, 500}, {20, 30}, {nan, nan}}},
		{"4000", [3][2]float64{{nan, nan}, {nan, 20}, {nan, nan}}},
		{"4001", [3][2]float64{{nan, nan}, {6, 10}, {nan, nan}}},
		{"scsi0:0", [3][2]float64{{nan, nan}, {nan, nan}, {7, 9}}},
	}
	if len(got) != len(wants) {
		t.Fatalf("%d series, want %d: %+v", len(got), len(wants), got)
	}
	for i, w := range wants {
		s := got[i]
		if s.Key.Instance != w.inst || s.Key.EntityID != "vm-7" || s.Key.EntityKind != "vm" || s.Key.Source != "vc-1" || len(s.Key.Counters) != 3 {
			t.Fatalf("series %d key %+v, want instance %q of vm-7", i, s.Key, w.inst)
		}
		if len(s.Timestamps) != 2 || s.Timestamps[0] != at(1).UnixMilli() || s.Timestamps[1] != at(2).UnixMilli() {
			t.Fatalf("series %q timestamps %v, want the two samples after the mark, ascending", w.inst, s.Timestamps)
		}
		for c := range 3 {
			for j := range 2 {
				g, e := s.Values[c][j], w.values[c][j]
				if math.IsNaN(e) != math.IsNaN(g) || !math.IsNaN(e) && g != e {
					t.Errorf("series %q %s sample %d = %v, want %v", w.inst, cols[c].name, j, g, e)
				}
			}
		}
	}
}
