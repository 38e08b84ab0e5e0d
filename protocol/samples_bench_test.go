package protocol

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

// vmCounters are the 15 VM realtime counters the benchmark sends, with
// vSphere's units (percentages are hundredths of a percent on the wire).
var vmCounters = []Counter{
	{"cpu.usage.average", "%"},
	{"cpu.usagemhz.average", "MHz"},
	{"cpu.ready.summation", "ms"},
	{"cpu.costop.summation", "ms"},
	{"mem.usage.average", "%"},
	{"mem.active.average", "KB"},
	{"mem.consumed.average", "KB"},
	{"mem.swapped.average", "KB"},
	{"mem.vmmemctl.average", "KB"},
	{"net.usage.average", "KBps"},
	{"net.packetsRx.summation", "number"},
	{"net.packetsTx.summation", "number"},
	{"disk.usage.average", "KBps"},
	{"disk.read.average", "KBps"},
	{"disk.write.average", "KBps"},
}

// vmState is one simulated VM's slowly drifting load.
type vmState struct {
	cpu, ready, memPct, active, consumed, swapped, balloon float64
	net, disk, mhzPerPct                                   float64
}

// walk moves v by a relative step of at most frac, clamped to [lo, hi].
func walk(r *rand.Rand, v, frac, lo, hi float64) float64 {
	v += v * frac * (2*r.Float64() - 1)
	return math.Max(lo, math.Min(hi, v))
}

// genVSphere simulates nVMs VMs polled at 20 s for points samples each,
// ending on a 20 s boundary, as the agent would batch them. A few values are
// missing (NaN), as vCenter leaves holes when a VM is busy or migrating.
func genVSphere(nVMs, points int, seed uint64) *Samples {
	r := rand.New(rand.NewPCG(seed, 42))
	const step = 20_000
	end := int64(1_760_000_000_000) / step * step
	s := &Samples{Series: make([]SeriesData, nVMs)}
	for v := range s.Series {
		st := vmState{
			cpu:       500 + r.Float64()*8500,
			ready:     5 + r.ExpFloat64()*80,
			memPct:    300 + r.Float64()*6000,
			consumed:  float64(1+r.IntN(32)) * 1048576 * (0.6 + 0.4*r.Float64()),
			net:       r.ExpFloat64() * 400,
			disk:      r.ExpFloat64() * 600,
			mhzPerPct: float64(1+r.IntN(8)) * 2.4,
		}
		st.active = st.consumed * (0.05 + 0.3*r.Float64())
		if r.IntN(20) == 0 {
			st.swapped = float64(r.IntN(200000))
		}
		if r.IntN(15) == 0 {
			st.balloon = float64(r.IntN(500000))
		}
		ts := make([]int64, points)
		vals := make([][]float64, len(vmCounters))
		for c := range vals {
			vals[c] = make([]float64, points)
		}
		for i := range points {
			ts[i] = end - int64(points-1-i)*step
			st.cpu = walk(r, st.cpu, 0.15, 100, 10000)
			st.ready = walk(r, st.ready, 0.4, 1, 20000)
			st.memPct = walk(r, st.memPct, 0.1, 10, 10000)
			st.active = walk(r, st.active, 0.2, 1024, st.consumed)
			st.consumed = walk(r, st.consumed, 0.002, 65536, 64<<20)
			st.net = walk(r, st.net, 0.5, 0, 1e6)
			st.disk = walk(r, st.disk, 0.5, 0, 1e6)
			read := math.Round(st.disk * r.Float64())
			row := [...]float64{
				math.Round(st.cpu),
				math.Round(st.cpu * st.mhzPerPct / 100),
				math.Round(st.ready),
				float64(r.IntN(3)) * float64(r.IntN(2)),
				math.Round(st.memPct),
				math.Round(st.active/4) * 4,
				math.Round(st.consumed/4) * 4,
				st.swapped,
				st.balloon,
				math.Round(st.net),
				math.Round(st.net * (2 + r.Float64())),
				math.Round(st.net * (1.5 + r.Float64())),
				math.Round(st.disk),
				read,
				math.Round(st.disk) - read,
			}
			for c, x := range row {
				if r.IntN(200) == 0 {
					x = math.NaN()
				}
				vals[c][i] = x
			}
		}
		s.Series[v] = SeriesData{
			Key: SeriesKey{
				Source:     "vcenter-prod-fra1.example.com",
				EntityKind: "vm",
				EntityID:   fmt.Sprintf("vm-%d", 1000+v*7+r.IntN(7)),
				Counters:   vmCounters,
			},
			Timestamps: ts,
			Values:     vals,
		}
	}
	return s
}

// figures guards the "figure:" lines so that each prints once per run.
var figures sync.Map

func figure(name string, v float64, unit string) {
	if _, dup := figures.LoadOrStore(name, true); !dup {
		fmt.Printf("figure: %s %.4g %s\n", name, v, unit)
	}
}

// wireSize is what one batch costs on the wire: frame header, batch header
// and compressed payload.
func wireSize(tb testing.TB, b *Batch) int {
	b.Epoch, b.Seq = 1, 123456
	enc, err := b.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return FrameHeaderLen + len(enc)
}

func benchmarkWire(b *testing.B, points int) {
	s := genVSphere(5000, points, 1)
	n := s.Count()
	var batch *Batch
	var err error
	b.ReportAllocs()
	for b.Loop() {
		if batch, err = NewBatch(KindSamples, CodecZstd, s); err != nil {
			b.Fatal(err)
		}
	}
	perSample := float64(wireSize(b, batch)) / float64(n)
	rate := float64(n) * float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(perSample, "wire_B/sample")
	b.ReportMetric(rate, "samples/s")
	figure(fmt.Sprintf("wire_bytes_per_sample_%dpt", points), perSample, "bytes")
	figure(fmt.Sprintf("encode_samples_per_sec_%dpt", points), rate, "samples/s")
}

// BenchmarkSamplesWire1pt measures a batch per 20 s poll (5,000 VMs × 15
// counters × 1 point): wire size per sample and encode+compress rate.
func BenchmarkSamplesWire1pt(b *testing.B) { benchmarkWire(b, 1) }

// BenchmarkSamplesWire3pt is one batch per minute.
func BenchmarkSamplesWire3pt(b *testing.B) { benchmarkWire(b, 3) }

// BenchmarkSamplesWire15pt is one batch per 5 minutes (e.g. backfill).
func BenchmarkSamplesWire15pt(b *testing.B) { benchmarkWire(b, 15) }

func benchmarkDecode(b *testing.B, points int) {
	s := genVSphere(5000, points, 1)
	n := s.Count()
	batch, err := NewBatch(KindSamples, CodecZstd, s)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := batch.Samples()
		if err != nil {
			b.Fatal(err)
		}
		if len(got.Series) != len(s.Series) {
			b.Fatalf("decoded %d series, want %d", len(got.Series), len(s.Series))
		}
	}
	rate := float64(n) * float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "samples/s")
	figure(fmt.Sprintf("decode_samples_per_sec_%dpt", points), rate, "samples/s")
}

// BenchmarkSamplesDecode1pt measures decompress+decode of a 1-point batch.
func BenchmarkSamplesDecode1pt(b *testing.B) { benchmarkDecode(b, 1) }

// BenchmarkSamplesDecode3pt measures decompress+decode of a 3-point batch.
func BenchmarkSamplesDecode3pt(b *testing.B) { benchmarkDecode(b, 3) }

// BenchmarkSamplesDecode15pt measures decompress+decode of a 15-point batch.
func BenchmarkSamplesDecode15pt(b *testing.B) { benchmarkDecode(b, 15) }
