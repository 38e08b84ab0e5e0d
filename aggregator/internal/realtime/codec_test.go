package realtime

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/protocol"
)

// flatten lists every value of a batch as "source/kind/id/instance/metric/unit@ts=v",
// v at float32 precision, NaNs left out.
func flatten(b *Batch) map[string]float64 {
	out := map[string]float64{}
	for _, sd := range b.Samples.Series {
		for c, ctr := range sd.Key.Counters {
			for t, ts := range sd.Timestamps {
				v := float64(float32(sd.Values[c][t]))
				if math.IsNaN(v) {
					continue
				}
				k := strings.Join([]string{b.Site, sd.Key.Source, sd.Key.EntityKind, sd.Key.EntityID, sd.Key.Instance, ctr.Name, ctr.Unit}, "/")
				out[k+"@"+time.UnixMilli(ts).UTC().Format(time.RFC3339)] = v
			}
		}
	}
	return out
}

// TestNotificationsRoundTrip: a large batch becomes notifications that each
// fit PostgreSQL's payload limit and decode on their own to exactly the
// batch's values.
func TestNotificationsRoundTrip(t *testing.T) {
	origin := uuid.New()
	p := ingesttest.Samples("vc-a", 1000, 3, time.Now().Add(-time.Minute).UnixMilli(), 7)
	// Some shapes that need splitting: a series of 1,000 points, a series
	// of 512 counters, gaps and instances.
	long := ingesttest.Samples("vc-a", 1, 1000, time.Now().Add(-6*time.Hour).UnixMilli(), 8).Series[0]
	long.Key.EntityID = "vm-long"
	wide := protocol.SeriesData{Key: protocol.SeriesKey{Source: "vc-a", EntityKind: "host", EntityID: "host-1", Instance: "vmnic0"},
		Timestamps: []int64{time.Now().UnixMilli()}}
	for i := range protocol.MaxCountersPerSeries {
		wide.Key.Counters = append(wide.Key.Counters, protocol.Counter{Name: "net.counter" + strings.Repeat("x", i%40) + ".average", Unit: "KBps"})
		wide.Values = append(wide.Values, []float64{float64(i)})
	}
	wide.Values[3][0] = math.NaN()
	p.Series = append(p.Series, long, wide)
	b := &Batch{Site: "dc-east", AgentID: uuid.NewString(), Origin: origin.String(), Committed: time.Now(), Samples: p}

	payloads, skipped := encodeBatch(origin, b, maxNotifyRaw)
	if skipped != 0 {
		t.Fatalf("skipped %d pieces", skipped)
	}
	got := map[string]float64{}
	for i, pl := range payloads {
		if len(pl) >= 8000 {
			t.Fatalf("notification %d is %d bytes; PostgreSQL refuses 8000 or more", i, len(pl))
		}
		o, db, err := decodeNotification(pl)
		if err != nil {
			t.Fatalf("notification %d: %v", i, err)
		}
		if o != origin || db.Site != b.Site || db.AgentID != b.AgentID || !db.Committed.Equal(b.Committed.Truncate(time.Microsecond)) {
			t.Fatalf("notification %d header = %v %q %q %v", i, o, db.Site, db.AgentID, db.Committed)
		}
		for k, v := range flatten(db) {
			if _, dup := got[k]; dup {
				t.Fatalf("%s in two notifications", k)
			}
			got[k] = v
		}
	}
	want := flatten(b)
	if len(got) != len(want) {
		t.Fatalf("decoded %d values, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s = %v, want %v", k, got[k], v)
		}
	}
	values := 0
	for _, sd := range p.Series {
		values += len(sd.Timestamps) * len(sd.Key.Counters)
	}
	total := 0
	for _, pl := range payloads {
		total += len(pl)
	}
	t.Logf("%d values in %d notifications, %.1f bytes per value", values, len(payloads), float64(total)/float64(values))
}

// TestNotificationOversize: a value whose strings alone exceed a
// notification is not relayed, and counted.
func TestNotificationOversize(t *testing.T) {
	b := &Batch{Site: "s", Committed: time.Now(), Samples: &protocol.Samples{Series: []protocol.SeriesData{
		{Key: protocol.SeriesKey{Source: strings.Repeat("s", 4000), EntityKind: "vm", EntityID: strings.Repeat("v", 4000),
			Counters: []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}}}, Timestamps: []int64{1}, Values: [][]float64{{1}}},
		{Key: protocol.SeriesKey{Source: "vc", EntityKind: "vm", EntityID: "vm-1",
			Counters: []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}}}, Timestamps: []int64{1}, Values: [][]float64{{2}}},
	}}}
	payloads, skipped := encodeBatch(uuid.New(), b, maxNotifyRaw)
	if skipped != 1 || len(payloads) != 1 {
		t.Fatalf("skipped %d, %d payloads; want 1, 1", skipped, len(payloads))
	}
}

// TestNotificationMalformed: broken payloads are errors, never panics.
func TestNotificationMalformed(t *testing.T) {
	b := &Batch{Site: "s", Committed: time.Now(), Samples: ingesttest.Samples("vc", 2, 2, 1000, 1)}
	payloads, _ := encodeBatch(uuid.New(), b, maxNotifyRaw)
	good := payloads[0]
	for _, bad := range []string{"", "!!!", "AA==", good[:len(good)/2], good + "AAAA", strings.Repeat("A", 8001)} {
		if _, _, err := decodeNotification(bad); err == nil {
			t.Errorf("decodeNotification(%.20q…) accepted", bad)
		}
	}
}

func FuzzDecodeNotification(f *testing.F) {
	b := &Batch{Site: "s", AgentID: "a", Committed: time.Now(), Samples: ingesttest.Samples("vc", 3, 2, 1000, 1)}
	payloads, _ := encodeBatch(uuid.New(), b, 600)
	for _, p := range payloads {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		_, b, err := decodeNotification(p)
		if err == nil && b == nil {
			t.Fatal("nil batch without an error")
		}
	})
}
