package store_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/protocol"
)

// BenchmarkRollup measures the rollup job on a day of 20-second data for
// 1,000 VMs with six counters (4.32 M raw rows, 1 % missing values), sent as
// hourly batches of 100 series: raw rows rolled into 5-minute buckets (and
// on into 1 h and 1 day) per second. Each iteration starts from empty rollup
// tables and a reset watermark.
func BenchmarkRollup(b *testing.B) {
	const (
		nSeries = 1000
		perHour = 180 // 20 s points
		perBat  = 100 // series per batch
	)
	f := newFixture(b)
	counters := []protocol.Counter{{Name: "cpu.usage.average"}, {Name: "cpu.ready.summation"}, {Name: "mem.usage.average"},
		{Name: "mem.active.average"}, {Name: "net.usage.average"}, {Name: "disk.usage.average"}}
	d := testDay()
	for h := 0; h < 24; h++ {
		for s0 := 0; s0 < nSeries; s0 += perBat {
			var p protocol.Samples
			for s := s0; s < s0+perBat; s++ {
				sd := protocol.SeriesData{
					Key:    protocol.SeriesKey{Source: "vc1", EntityKind: "vm", EntityID: fmt.Sprintf("vm-%d", s), Counters: counters},
					Values: make([][]float64, len(counters)),
				}
				for i := 0; i < perHour; i++ {
					k := h*perHour + i
					sd.Timestamps = append(sd.Timestamps, d.Add(time.Duration(k)*20*time.Second).UnixMilli())
					for c := range counters {
						v := float64((s*7+k*13+c*3)%1000) / 10
						if (s+k+c)%100 == 0 {
							v = math.NaN()
						}
						sd.Values[c] = append(sd.Values[c], v)
					}
				}
				p.Series = append(p.Series, sd)
			}
			f.write(p.Series...)
		}
	}
	rawRows := int64(nSeries * perHour * 24)
	var total time.Duration
	var runs int64
	for b.Loop() {
		b.StopTimer()
		if _, err := f.st.Pool().Exec(f.ctx, `TRUNCATE samples_5m, samples_1h, samples_1d; UPDATE rollup_state SET received_until = '-infinity'`); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		rep := f.rollup()
		total += time.Since(start)
		runs++
		if rep.R5m.SourceRows != rawRows || rep.R5m.Buckets != nSeries*288 || rep.R1h.Buckets != nSeries*24 || rep.R1d.Buckets != nSeries {
			b.Fatalf("rollup report %+v, want %d raw rows into %d 5m buckets", rep, rawRows, nSeries*288)
		}
	}
	rate := float64(rawRows*runs) / total.Seconds()
	b.ReportMetric(rate, "rows/s")
	fmt.Printf("figure: rollup_rows_per_s %.0f rows/s\n", rate)
}
