package ingesttest

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/vmpulse/vmpulse/protocol"
)

// DefaultCounters is a realistic VM counter set (15 counters).
var DefaultCounters = []protocol.Counter{
	{Name: "cpu.usage.average", Unit: "%"}, {Name: "cpu.usagemhz.average", Unit: "MHz"},
	{Name: "cpu.ready.summation", Unit: "ms"}, {Name: "cpu.wait.summation", Unit: "ms"},
	{Name: "mem.usage.average", Unit: "%"}, {Name: "mem.active.average", Unit: "KB"},
	{Name: "mem.consumed.average", Unit: "KB"}, {Name: "mem.swapped.average", Unit: "KB"},
	{Name: "net.usage.average", Unit: "KBps"}, {Name: "net.received.average", Unit: "KBps"},
	{Name: "net.transmitted.average", Unit: "KBps"}, {Name: "disk.usage.average", Unit: "KBps"},
	{Name: "disk.read.average", Unit: "KBps"}, {Name: "disk.write.average", Unit: "KBps"},
	{Name: "disk.maxTotalLatency.latest", Unit: "ms"},
}

// Samples builds a samples payload for vms VMs of source, points 20-second
// points each starting at startMs, with values that random-walk like real
// counters. seed makes it deterministic.
func Samples(source string, vms, points int, startMs int64, seed uint64) *protocol.Samples {
	rng := rand.New(rand.NewPCG(seed, 42))
	p := &protocol.Samples{Series: make([]protocol.SeriesData, vms)}
	for v := 0; v < vms; v++ {
		sd := &p.Series[v]
		sd.Key = protocol.SeriesKey{Source: source, EntityKind: "vm", EntityID: fmt.Sprintf("vm-%d", 1000+v), Counters: DefaultCounters}
		sd.Timestamps = make([]int64, points)
		for i := range sd.Timestamps {
			sd.Timestamps[i] = startMs + int64(i)*20000
		}
		sd.Values = make([][]float64, len(DefaultCounters))
		for c := range sd.Values {
			col := make([]float64, points)
			base := float64(rng.IntN(5000) + 100)
			for i := range col {
				base = math.Max(0, base+float64(rng.IntN(201)-100))
				col[i] = math.Round(base)
			}
			sd.Values[c] = col
		}
	}
	return p
}

// MustBatch encodes p as a zstd samples batch with the given epoch and seq.
func MustBatch(kind protocol.BatchKind, v any, epoch, seq uint64) *protocol.Batch {
	b, err := protocol.NewBatch(kind, protocol.CodecZstd, v)
	if err != nil {
		panic(err)
	}
	b.Epoch, b.Seq = epoch, seq
	return b
}
