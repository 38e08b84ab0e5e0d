package uplink_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/agent/internal/spool"
	"github.com/vmpulse/vmpulse/agent/internal/uplink"
	"github.com/vmpulse/vmpulse/protocol"
)

var counters = []protocol.Counter{
	{Name: "cpu.usage.average", Unit: "%"}, {Name: "cpu.usagemhz.average", Unit: "MHz"},
	{Name: "cpu.ready.summation", Unit: "ms"}, {Name: "mem.usage.average", Unit: "%"},
	{Name: "mem.active.average", Unit: "KB"}, {Name: "mem.consumed.average", Unit: "KB"},
	{Name: "net.usage.average", Unit: "KBps"}, {Name: "disk.usage.average", Unit: "KBps"},
}

// samplesBatch is one realtime poll of vms VMs at time at.
func samplesBatch(t testing.TB, vms int, at time.Time, seed uint64) *protocol.Batch {
	rng := rand.New(rand.NewPCG(seed, 7))
	p := &protocol.Samples{Series: make([]protocol.SeriesData, vms)}
	for v := range p.Series {
		sd := &p.Series[v]
		sd.Key = protocol.SeriesKey{Source: "vc-test", EntityKind: "vm", EntityID: fmt.Sprintf("vm-%d", v), Counters: counters}
		sd.Timestamps = []int64{at.UnixMilli()}
		sd.Values = make([][]float64, len(counters))
		for c := range sd.Values {
			sd.Values[c] = []float64{float64(rng.IntN(1_000_000))}
		}
	}
	b, err := protocol.NewBatch(protocol.KindSamples, protocol.CodecZstd, p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type agentUnderTest struct {
	idDir  string
	sp     *spool.Queue
	client *uplink.Client
	cancel context.CancelFunc
	done   chan struct{}
}

func newAgent(t testing.TB, agg *aggregator, opts spool.Options, cfg uplink.Config) *agentUnderTest {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id, err := uplink.Enroll(ctx, agg.addr, agg.token("lab"), "test-agent", "test", filepath.Join(dir, "identity"))
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	if again, err := uplink.LoadIdentity(filepath.Join(dir, "identity")); err != nil || again.AgentID != id.AgentID {
		t.Fatalf("identity did not persist: %v", err)
	}
	sp, err := spool.Open(filepath.Join(dir, "spool"), opts)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr, cfg.ServerName = agg.addr, "localhost"
	a := &agentUnderTest{idDir: filepath.Join(dir, "identity"), sp: sp, client: uplink.New(cfg, id, sp)}
	t.Cleanup(func() {
		a.stop()
		sp.Close()
	})
	return a
}

func (a *agentUnderTest) run() {
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done = cancel, make(chan struct{})
	go func() { defer close(a.done); _ = a.client.Run(ctx) }()
}

func (a *agentUnderTest) stop() {
	if a.cancel != nil {
		a.cancel()
		<-a.done
		a.cancel = nil
	}
}

func (a *agentUnderTest) append(t testing.TB, b *protocol.Batch) {
	t.Helper()
	if err := a.sp.Append(b); err != nil {
		t.Fatal(err)
	}
	a.client.Notify()
}

func waitDrained(t testing.TB, a *agentUnderTest, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for a.sp.Stats().Depth > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("spool not drained within %s: %+v", timeout, a.sp.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBacklogAndLiveAreDelivered(t *testing.T) {
	agg := newAggregator(t)
	a := newAgent(t, agg, spool.Options{}, uplink.Config{})
	start := time.Now().Add(-time.Hour)
	for i := range 30 {
		a.append(t, samplesBatch(t, 50, start.Add(time.Duration(i)*20*time.Second), uint64(i)))
	}
	a.run()
	for i := 30; i < 40; i++ {
		time.Sleep(20 * time.Millisecond)
		a.append(t, samplesBatch(t, 50, start.Add(time.Duration(i)*20*time.Second), uint64(i)))
	}
	waitDrained(t, a, 30*time.Second)
	if n := agg.count(`SELECT count(*) FROM ingest_ledger`); n != 40 {
		t.Fatalf("ledger = %d batches, want 40", n)
	}
	if n := agg.count(`SELECT count(*) FROM samples`); n != 40*50 {
		t.Fatalf("rows = %d, want %d", n, 40*50)
	}
	st := &a.client.Stats
	if st.BackfillAcked.Load() != 30 || st.LiveAcked.Load() != 10 {
		t.Fatalf("backfill acked %d (want 30), live acked %d (want 10)", st.BackfillAcked.Load(), st.LiveAcked.Load())
	}
}

func TestAggregatorOutageLosesNothing(t *testing.T) {
	agg := newAggregator(t)
	a := newAgent(t, agg, spool.Options{}, uplink.Config{MaxBackoff: time.Second})
	a.run()
	start := time.Now().Add(-time.Hour)
	a.append(t, samplesBatch(t, 20, start, 1))
	waitDrained(t, a, 20*time.Second)
	agg.stop(syscall.SIGKILL)
	for i := 1; i <= 25; i++ {
		a.append(t, samplesBatch(t, 20, start.Add(time.Duration(i)*20*time.Second), uint64(i)))
	}
	time.Sleep(time.Second)
	if d := a.sp.Stats().Depth; d != 25 {
		t.Fatalf("spool depth during the outage = %d, want 25", d)
	}
	agg.start()
	waitDrained(t, a, 30*time.Second)
	if n := agg.count(`SELECT count(*) FROM samples`); n != 26*20 {
		t.Fatalf("rows = %d, want %d", n, 26*20)
	}
	if a.client.Stats.Failures.Load() == 0 {
		t.Fatal("no reconnect was counted")
	}
}

func TestSpoolQuotaDropsOldestAndTheGapIsStored(t *testing.T) {
	agg := newAggregator(t)
	a := newAgent(t, agg, spool.Options{MaxBytes: 256 << 10}, uplink.Config{})
	agg.stop(syscall.SIGKILL) // the site is offline while the spool fills
	start := time.Now().Add(-time.Hour)
	const n = 40
	for i := range n {
		a.append(t, samplesBatch(t, 300, start.Add(time.Duration(i)*20*time.Second), uint64(i)))
	}
	st := a.sp.Stats()
	if st.Dropped == 0 || st.Gaps == 0 {
		t.Fatalf("nothing dropped with a 256 KiB quota: %+v", st)
	}
	agg.start()
	a.run()
	waitDrained(t, a, 30*time.Second)
	kept := agg.count(`SELECT count(*) FROM ingest_ledger WHERE kind = $1`, int(protocol.KindSamples))
	if kept+int64(st.Dropped) != n {
		t.Fatalf("stored %d + dropped %d batches != %d appended", kept, st.Dropped, n)
	}
	if got := agg.count(`SELECT sum(batches) FROM ingest_gaps WHERE reason = 'spool quota'`); got != int64(st.Dropped) {
		t.Fatalf("gap records count %d dropped batches, the spool dropped %d", got, st.Dropped)
	}
	// The newest data survived: the last batch's samples are stored.
	if got := agg.count(`SELECT count(*) FROM samples WHERE ts = $1`, start.Add((n-1)*20*time.Second).Truncate(time.Millisecond)); got != 300 {
		t.Fatalf("newest batch rows = %d, want 300", got)
	}
}

// BenchmarkAgentBackfill drains the backlog of an outage (realtime polls of
// 5,000 VMs, one per 20 s) while live batches keep arriving, and reports the
// drain rate as a multiple of real time and the live batches' freshness
// (append → acknowledged after commit) during the drain.
func BenchmarkAgentBackfill(b *testing.B) {
	const vms, outage = 5000, time.Hour
	polls := int(outage / (20 * time.Second))
	agg := newAggregator(b)
	start := time.Now().Add(-2 * outage)
	backlog := make([]*protocol.Batch, polls)
	for i := range backlog {
		backlog[i] = samplesBatch(b, vms, start.Add(time.Duration(i)*20*time.Second), uint64(i))
	}
	for n := 0; n < b.N; n++ {
		var mu sync.Mutex
		appended := map[uint64]time.Time{}
		var fresh []time.Duration
		a := newAgent(b, agg, spool.Options{}, uplink.Config{OnAck: func(lane uplink.Lane, seq uint64, _ protocol.AckStatus, _ time.Time) {
			if lane != uplink.Live {
				return
			}
			mu.Lock()
			if at, ok := appended[seq]; ok {
				fresh = append(fresh, time.Since(at))
			}
			mu.Unlock()
		}})
		for _, bt := range backlog {
			c := *bt
			a.append(b, &c)
		}
		b.ResetTimer()
		t0 := time.Now()
		a.run()
		// Live polls every 250 ms (80x faster than vCenter's 20 s, to get
		// enough of them to measure during the drain).
		stopLive := make(chan struct{})
		liveDone := make(chan struct{})
		go func() {
			defer close(liveDone)
			for i := 0; ; i++ {
				select {
				case <-stopLive:
					return
				case <-time.After(250 * time.Millisecond):
				}
				bt := samplesBatch(b, 200, time.Now().Add(-time.Duration(i)*time.Millisecond), uint64(1000+i))
				mu.Lock()
				if err := a.sp.Append(bt); err != nil {
					mu.Unlock()
					b.Error(err)
					return
				}
				appended[bt.Seq] = time.Now()
				mu.Unlock()
				a.client.Notify()
			}
		}()
		for a.client.Stats.BackfillAcked.Load() < int64(polls) {
			time.Sleep(5 * time.Millisecond)
		}
		drain := time.Since(t0)
		close(stopLive)
		<-liveDone
		b.StopTimer()
		waitDrained(b, a, 30*time.Second)
		a.stop()
		mu.Lock()
		sort.Slice(fresh, func(i, j int) bool { return fresh[i] < fresh[j] })
		var p99 time.Duration
		if len(fresh) > 0 {
			p99 = fresh[min(len(fresh)-1, len(fresh)*99/100)]
		}
		live := len(fresh)
		mu.Unlock()
		speedup := outage.Seconds() / drain.Seconds()
		b.ReportMetric(speedup, "x-realtime")
		b.ReportMetric(p99.Seconds(), "live-p99-s")
		if n == b.N-1 {
			fmt.Printf("figure: backfill_speedup %.0f x\n", speedup)
			fmt.Printf("figure: live_freshness_p99_s %.2f s\n", p99.Seconds())
			fmt.Printf("# backlog: %d polls of %d VMs x %d counters (%s of realtime data) drained in %s; %d live batches measured\n",
				polls, vms, len(counters), outage, drain.Round(time.Millisecond), live)
		}
	}
}
