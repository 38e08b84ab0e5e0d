package vsphere

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/simulator"

	"github.com/vmpulse/vmpulse/protocol"
)

// BenchmarkRealtimeCycle measures one realtime collection cycle (plan,
// QueryPerf with default counters and limits, convert, sink, persist
// marks) against a simulator with 2 hosts×100 + cluster VMs.
func BenchmarkRealtimeCycle(b *testing.B) {
	s := newSimModel(b, func(m *simulator.Model) { m.Machine = 100 })
	sess, err := NewSession(s.ep, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	invSink := newMemSink()
	inv := NewInventory(sess, invSink, InventoryConfig{MaxWait: time.Second}, nil)
	runBG(b, inv.Run)
	invSink.waitInventory(b, 60*time.Second, func(i *protocol.Inventory) bool { return i.Full })

	ctx := context.Background()
	c := NewCollector(sess, inv, discardSink{}, newMemMeta(), PerfConfig{}, nil)
	var last Stats
	for b.Loop() {
		last, err = c.Collect(ctx, IntervalRealtime)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(last.Entities), "entities")
	b.ReportMetric(float64(last.Queries), "queries")
	b.ReportMetric(float64(last.Values), "values")
}

type discardSink struct{}

func (discardSink) Samples(context.Context, *protocol.Samples) error     { return nil }
func (discardSink) Inventory(context.Context, *protocol.Inventory) error { return nil }
func (discardSink) Events(context.Context, *protocol.Events) error       { return nil }
func (discardSink) Gap(context.Context, *protocol.Gap) error             { return nil }

// seedBody returns the body stored in a fuzz seed file.
func seedBody(tb testing.TB, target, name string) []byte {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "fuzz", target, name))
	if err != nil {
		tb.Fatal(err)
	}
	lines := strings.SplitN(string(data), "\n", 3)
	if len(lines) < 2 {
		tb.Fatalf("%s/%s: not a fuzz seed", target, name)
	}
	q := strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")
	s, err := strconv.Unquote(q)
	if err != nil {
		tb.Fatalf("%s/%s: %v", target, name, err)
	}
	return []byte(s)
}

// BenchmarkQueryPerfDecode compares the fast QueryPerf decoder with
// govmomi's on a simulator response (the latest sample of VMs and hosts).
func BenchmarkQueryPerfDecode(b *testing.B) {
	body := seedBody(b, "FuzzQueryPerfResponse", "sim-latest")
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := parseQueryPerfResponse(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("govmomi", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := govmomiDecode(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
