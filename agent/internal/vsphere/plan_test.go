package vsphere

import (
	"fmt"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"
)

func specsFor(n, metrics int) []types.PerfQuerySpec {
	var out []types.PerfQuerySpec
	for i := range n {
		s := types.PerfQuerySpec{Entity: types.ManagedObjectReference{Type: "VirtualMachine", Value: fmt.Sprintf("vm-%d", i)}, IntervalId: 20}
		for m := range metrics {
			s.MetricId = append(s.MetricId, types.PerfMetricId{CounterId: int32(m + 1), Instance: "*"})
		}
		out = append(out, s)
	}
	return out
}

func TestPlanBatches(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		entities, metrics, max  int
		wantBatches, wantSplits int
	}{
		{"fits in one", 4, 14, 64, 1, 0},
		{"vcenter default", 100, 14, 64, 25, 0}, // 4 entities (56 metrics) per batch
		{"exact fit", 8, 8, 64, 1, 0},
		{"entity larger than limit", 2, 100, 64, 4, 2},
		{"limit 1", 3, 2, 1, 6, 3},
		{"esxi", 1000, 14, 256, 56, 0}, // 18 per batch
	} {
		t.Run(tc.name, func(t *testing.T) {
			specs := specsFor(tc.entities, tc.metrics)
			batches := planBatches(specs, tc.max)
			if len(batches) != tc.wantBatches {
				t.Errorf("got %d batches, want %d", len(batches), tc.wantBatches)
			}
			seen := map[string]int{}
			parts := map[string]int{}
			for _, b := range batches {
				if n := batchMetrics(b); n > tc.max || n == 0 {
					t.Errorf("batch with %d metrics, limit %d", n, tc.max)
				}
				for _, s := range b {
					seen[s.Entity.Value] += len(s.MetricId)
					parts[s.Entity.Value]++
				}
			}
			splits := 0
			for _, s := range specs {
				if seen[s.Entity.Value] != tc.metrics {
					t.Errorf("%s: %d metrics planned, want %d", s.Entity.Value, seen[s.Entity.Value], tc.metrics)
				}
				if parts[s.Entity.Value] > 1 {
					splits++
				}
			}
			if splits != tc.wantSplits {
				t.Errorf("%d entities split across queries, want %d", splits, tc.wantSplits)
			}
		})
	}
}

func TestHWMEncodeDecode(t *testing.T) {
	h := newHWM()
	h.advance("vm-1", 20, 1_700_000_000_000)
	h.advance("vm-1", 300, 1_700_000_100_000)
	h.advance("datastore-9", 300, 1_700_000_200_000)
	h.advance("vm-1", 20, 1_600_000_000_000) // never lowers
	b := h.encode()
	got, err := decodeHWM(b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[hwmKey]int64{{"vm-1", 20}: 1_700_000_000_000, {"vm-1", 300}: 1_700_000_100_000, {"datastore-9", 300}: 1_700_000_200_000}
	if len(got) != len(want) {
		t.Fatalf("decoded %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%v = %d, want %d", k, got[k], v)
		}
	}
	if len(b) > 64 {
		t.Errorf("encoding of 3 marks is %d bytes, expected compact", len(b))
	}
	for i := 1; i < len(b); i++ {
		if _, err := decodeHWM(b[:i]); err == nil {
			t.Errorf("truncated encoding (%d of %d bytes) accepted", i, len(b))
		}
	}
	if _, err := decodeHWM([]byte{9, 0}); err == nil {
		t.Error("unknown format accepted")
	}
	if _, err := decodeHWM(append(b, 0)); err == nil {
		t.Error("trailing garbage accepted")
	}
}

func TestHWMNewestAndPrune(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	h := newHWM()
	if h.newest(20) != 0 {
		t.Fatal("newest mark of an empty store")
	}
	h.advance("vm-1", 20, now.Add(-5*time.Minute).UnixMilli())
	h.advance("vm-2", 20, now.Add(-3*time.Hour).UnixMilli())
	h.advance("cluster-1", 300, now.Add(-3*time.Hour).UnixMilli())
	if got := h.newest(20); got != now.Add(-5*time.Minute).UnixMilli() {
		t.Errorf("newest = %d, want vm-1's mark", got)
	}
	h.prune(20, now.Add(-2*time.Hour))
	if _, ok := h.get("vm-2", 20); ok {
		t.Error("mark older than the cutoff survived prune")
	}
	if _, ok := h.get("vm-1", 20); !ok {
		t.Error("recent mark pruned")
	}
	if _, ok := h.get("cluster-1", 300); !ok {
		t.Error("prune of the realtime marks dropped a mark of another interval")
	}
}
