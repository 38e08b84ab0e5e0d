package vsphere

import (
	"context"
	"log/slog"
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
