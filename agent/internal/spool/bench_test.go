package spool

import (
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/vmpulse/vmpulse/protocol"
)

// benchBatchSize is a typical compressed samples batch.
const benchBatchSize = 20 << 10

func benchBatch() *protocol.Batch {
	p := make([]byte, benchBatchSize)
	rand.Read(p) // compressed payloads do not compress further
	return &protocol.Batch{Kind: protocol.KindSamples, First: 1, Last: 2, Codec: protocol.CodecZstd, Payload: p}
}

// report prints the figure line the benchmark summary collects and the
// matching custom metrics.
func report(b *testing.B, name string, batches int) {
	secs := b.Elapsed().Seconds()
	mbps := float64(batches) * benchBatchSize / 1e6 / secs
	b.ReportMetric(float64(batches)/secs, "batches/s")
	b.ReportMetric(mbps, "MB/s")
	fmt.Printf("figure: %s %.1f MB/s\n", name, mbps)
}

// BenchmarkAppend measures the spool's write rate with the default group
// commit. The quota is large enough that nothing is dropped.
func BenchmarkAppend(b *testing.B) {
	q, err := Open(b.TempDir(), Options{MaxBytes: 8 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	tmpl := benchBatch()
	b.SetBytes(benchBatchSize)
	for b.Loop() {
		bt := *tmpl
		if err := q.Append(&bt); err != nil {
			b.Fatal(err)
		}
	}
	report(b, "spool_append_mb_per_s", b.N)
}

// BenchmarkDrain measures how fast the uplink can empty a backlog: read the
// oldest 64 batches after the last ones read, ack them, as backfill does. Refilling is not timed.
func BenchmarkDrain(b *testing.B) {
	const chunk, refill = 64, 1024
	q, err := Open(b.TempDir(), Options{MaxBytes: 8 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	tmpl := benchBatch()
	b.SetBytes(chunk * benchBatchSize)
	drained, after := 0, uint64(0)
	for b.Loop() {
		if q.Stats().Depth == 0 {
			b.StopTimer()
			for range refill {
				bt := *tmpl
				if err := q.Append(&bt); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
		}
		bs, err := q.Oldest(chunk, after)
		if err != nil {
			b.Fatal(err)
		}
		if err := q.Ack(seqsOf(bs)...); err != nil {
			b.Fatal(err)
		}
		drained += len(bs)
		after = bs[len(bs)-1].Seq
	}
	report(b, "spool_drain_mb_per_s", drained)
}
