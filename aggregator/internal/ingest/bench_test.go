package ingest_test

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
	"github.com/vmpulse/vmpulse/protocol"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkIngest measures, in one run on the same machine and data:
//   - end to end: batches over loopback QUIC → decoded → committed → acked;
//   - raw: the same rows with pgx CopyFrom straight into the same table;
//
// and reports their ratio, bytes per sample on the wire and on disk.
// Run it with -benchtime=4x: each run loads millions of samples.
func BenchmarkIngest(b *testing.B) {
	// The aggregator binary runs with GOGC=200 (see gcPercent in its main);
	// measure what ships. Both sides of the comparison run under it.
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(200))
	}
	vms := envInt("VMPULSE_BENCH_VMS", 5000)
	points := envInt("VMPULSE_BENCH_POINTS", 3)
	batches := envInt("VMPULSE_BENCH_BATCHES", 24)
	par := envInt("VMPULSE_BENCH_PAR", 2)
	start := time.Now().Add(-2 * time.Hour).Truncate(time.Hour).UnixMilli()

	// One payload per stream × round: VM sets differ per stream, like agents.
	payloads := make([]*protocol.Samples, batches)
	wire := make([]*protocol.Batch, batches)
	var samples, wireBytes int
	for i := range payloads {
		stream, round := i%par, i/par
		p := ingesttest.Samples(fmt.Sprintf("vc-%d", stream), vms, points, start+int64(round)*int64(points)*20_000, uint64(i))
		payloads[i] = p
		wire[i] = ingesttest.MustBatch(protocol.KindSamples, p, 1, uint64(i+1))
		enc, _ := wire[i].MarshalBinary()
		wireBytes += len(enc) + protocol.FrameHeaderLen
		samples += p.Count()
	}

	// Alternate which goes first so neither always meets a colder cluster,
	// and report totals over all iterations (-benchtime=4x: two of each).
	var copyTime, ingestTime float64
	var copyBytes, diskBytes int64
	for n := 0; n < b.N; n++ {
		if n%2 == 0 {
			c, cb := rawCopy(b, payloads, par)
			i, db := endToEnd(b, wire, par, samples)
			copyTime, ingestTime, copyBytes, diskBytes = copyTime+float64(samples)/c, ingestTime+float64(samples)/i, cb, db
		} else {
			i, db := endToEnd(b, wire, par, samples)
			c, cb := rawCopy(b, payloads, par)
			copyTime, ingestTime, copyBytes, diskBytes = copyTime+float64(samples)/c, ingestTime+float64(samples)/i, cb, db
		}
	}
	total := float64(samples) * float64(b.N)
	ingestRate, copyRate := total/ingestTime, total/copyTime
	b.ReportMetric(ingestRate, "samples/s")
	b.ReportMetric(copyRate, "copy-samples/s")
	b.ReportMetric(ingestRate/copyRate, "ratio")
	if b.N < 2 {
		return // the probe run with b.N == 1; the figures come from the real one
	}
	fmt.Printf("figure: ingest_samples_per_s %.0f samples/s\n", ingestRate)
	fmt.Printf("figure: copy_samples_per_s %.0f samples/s\n", copyRate)
	fmt.Printf("figure: ingest_vs_copy_ratio %.2f ratio\n", ingestRate/copyRate)
	fmt.Printf("figure: wire_bytes_per_sample %.2f bytes\n", float64(wireBytes)/float64(samples))
	fmt.Printf("figure: disk_bytes_per_sample %.2f bytes\n", float64(diskBytes)/float64(samples))
	fmt.Printf("figure: copy_disk_bytes_per_sample %.2f bytes\n", float64(copyBytes)/float64(samples))
	fmt.Printf("# %d samples x %d runs, %d batches (%d VMs x 15 counters x %d points), %d streams\n", samples, b.N, batches, vms, points, par)
}

// endToEnd sends the batches over par QUIC data streams, each keeping the
// window of unacked batches the server allows, and times first send → last ack.
func endToEnd(b *testing.B, wire []*protocol.Batch, par, samples int) (rate float64, diskBytes int64) {
	h := newHarness(b, "", nil)
	id := h.enroll("bench")
	c := h.dial(id, 1)
	streams := make([]*ingesttest.Stream, par)
	for i := range streams {
		streams[i] = mustOpen(b, c)
	}
	// Create the series and partitions first, as a running system has them:
	// one earlier point of every series, under another epoch.
	for s := 0; s < par && s < len(wire); s++ {
		p, err := wire[s].Samples()
		if err != nil {
			b.Fatal(err)
		}
		for i := range p.Series {
			sd := &p.Series[i]
			sd.Timestamps = []int64{sd.Timestamps[0] - 3_600_000}
			for c := range sd.Values {
				sd.Values[c] = sd.Values[c][:1]
			}
		}
		sendAndAck(b, streams[0], ingesttest.MustBatch(protocol.KindSamples, p, 2, uint64(s+1)))
	}
	window := c.Welcome.MaxInFlight
	b.ResetTimer()
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, par)
	for s := 0; s < par; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			var mine []*protocol.Batch
			for i := s; i < len(wire); i += par {
				mine = append(mine, wire[i])
			}
			sent, acked := 0, 0
			for acked < len(mine) {
				for sent < len(mine) && sent-acked < window {
					if err := streams[s].Send(mine[sent]); err != nil {
						errs <- err
						return
					}
					sent++
				}
				a, err := streams[s].Recv()
				if err != nil {
					errs <- err
					return
				}
				if a.Status != protocol.AckStored {
					errs <- fmt.Errorf("batch %d: status %v code %v", a.Seq, a.Status, a.Code)
					return
				}
				acked++
			}
		}(s)
	}
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if got := h.count(`SELECT sum(samples) FROM ingest_ledger WHERE epoch = 1`); got != int64(samples) {
		b.Fatalf("ledger counts %d samples, want %d", got, samples)
	}
	diskBytes = h.count(`SELECT sum(pg_total_relation_size(c.oid)) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'samples'::regclass`)
	// Per stored sample, warm-up rows included.
	stored := h.count(`SELECT sum(samples) FROM ingest_ledger`)
	return float64(samples) / elapsed.Seconds(), diskBytes * int64(samples) / stored
}

// rawCopy loads the same rows with pgx CopyFrom from prebuilt rows over par
// connections into a fresh, identically migrated database.
func rawCopy(b *testing.B, payloads []*protocol.Samples, par int) (rate float64, diskBytes int64) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(b)
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if err := st.EnsureSite(ctx, "bench", ""); err != nil {
		b.Fatal(err)
	}
	lo, hi := payloads[0].Series[0].Timestamps[0], payloads[0].Series[0].Timestamps[0]
	ids := map[string]int64{}
	for _, p := range payloads {
		for _, sd := range p.Series {
			lo, hi = min(lo, sd.Timestamps[0]), max(hi, sd.Timestamps[len(sd.Timestamps)-1])
			k := sd.Key.Source + "/" + sd.Key.EntityID
			if _, ok := ids[k]; ok {
				continue
			}
			var id int64
			names := make([]string, len(sd.Key.Counters))
			for i, c := range sd.Key.Counters {
				names[i] = c.Name
			}
			if err := pool.QueryRow(ctx, `INSERT INTO series (site, source, entity_kind, entity_id, instance, counters, units)
				VALUES ('bench', $1, 'vm', $2, '', $3, $3) RETURNING id`, sd.Key.Source, sd.Key.EntityID, names).Scan(&id); err != nil {
				b.Fatal(err)
			}
			ids[k] = id
		}
	}
	if err := st.EnsurePartitions(ctx, time.UnixMilli(lo), time.UnixMilli(hi)); err != nil {
		b.Fatal(err)
	}
	// Prebuilt rows: the raw rate excludes decoding and row building.
	rows := make([][][]any, len(payloads))
	samples := 0
	for i, p := range payloads {
		for _, sd := range p.Series {
			id := ids[sd.Key.Source+"/"+sd.Key.EntityID]
			for t, ts := range sd.Timestamps {
				v := make([]float32, len(sd.Values))
				for c := range sd.Values {
					v[c] = float32(sd.Values[c][t])
				}
				rows[i] = append(rows[i], []any{id, time.UnixMilli(ts).UTC(), v})
				samples += len(v)
			}
		}
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, par)
	for s := 0; s < par; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			for i := s; i < len(rows); i += par {
				if _, err := pool.CopyFrom(ctx, pgx.Identifier{"samples"}, []string{"series_id", "ts", "v"}, pgx.CopyFromRows(rows[i])); err != nil {
					errs <- err
					return
				}
			}
		}(s)
	}
	wg.Wait()
	elapsed := time.Since(t0)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	var size int64
	if err := pool.QueryRow(ctx, `SELECT sum(pg_total_relation_size(c.oid)) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'samples'::regclass`).Scan(&size); err != nil {
		b.Fatal(err)
	}
	return float64(samples) / elapsed.Seconds(), size
}
