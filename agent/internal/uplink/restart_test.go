package uplink_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/agent/internal/spool"
	"github.com/vmpulse/vmpulse/agent/internal/uplink"
	"github.com/vmpulse/vmpulse/protocol"
)

// levelCounter is a slog handler that logs to the test and counts records
// by level.
type levelCounter struct {
	t      testing.TB
	attrs  []slog.Attr
	errors *atomic.Int64
}

func newLevelCounter(t testing.TB) (*slog.Logger, *atomic.Int64) {
	n := new(atomic.Int64)
	return slog.New(levelCounter{t: t, errors: n}), n
}

func (h levelCounter) Enabled(context.Context, slog.Level) bool { return true }

func (h levelCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.errors.Add(1)
	}
	line := r.Level.String() + " " + r.Message
	for _, a := range h.attrs {
		line += " " + a.String()
	}
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	h.t.Log("agent: " + line)
	return nil
}

func (h levelCounter) WithAttrs(as []slog.Attr) slog.Handler {
	h.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return h
}

func (h levelCounter) WithGroup(string) slog.Handler { return h }

// waitConnects waits until the client has connected more than n times and
// returns when it did.
func waitConnects(t testing.TB, a *agentUnderTest, n int64, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for a.client.Stats.Connects.Load() <= n {
		if time.Now().After(deadline) {
			t.Fatalf("not reconnected within %s", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Now()
}

// TestPlannedRestartNoDuplicates: the aggregator is stopped with SIGTERM
// while the agent streams, and started again. It drains: what it read is
// committed and acknowledged, the agent hears it is going away, logs no
// error, reconnects at once, and sends only what was never read: no
// duplicate ack, every batch stored once.
func TestPlannedRestartNoDuplicates(t *testing.T) {
	agg := newAggregator(t)
	log, errorsLogged := newLevelCounter(t)
	var dups, acks atomic.Int64
	a := newAgent(t, agg, spool.Options{}, uplink.Config{Logger: log,
		OnAck: func(_ uplink.Lane, _ uint64, st protocol.AckStatus, _ time.Time) {
			acks.Add(1)
			if st == protocol.AckDuplicate {
				dups.Add(1)
			}
		}})
	start := time.Now().Add(-time.Hour)
	var appended atomic.Int64
	var mu sync.Mutex // serializes appends with the test's own
	appendOne := func() {
		mu.Lock()
		defer mu.Unlock()
		i := appended.Add(1)
		a.append(t, samplesBatch(t, 200, start.Add(time.Duration(i)*20*time.Second), uint64(i)))
	}
	for range 100 { // a backlog, so that the backfill lane is busy too
		appendOne()
	}
	a.run()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				appendOne()
			}
		}
	}()
	waitConnects(t, a, 0, 20*time.Second)
	for acks.Load() < 150 {
		time.Sleep(5 * time.Millisecond)
	}
	stopped := time.Now()
	agg.stop(syscall.SIGTERM)
	t.Logf("aggregator stopped (drained) in %s; %d acks so far, spool depth %d",
		time.Since(stopped).Round(time.Millisecond), acks.Load(), a.sp.Stats().Depth)
	agg.start()
	ready := time.Now()
	back := waitConnects(t, a, 1, 15*time.Second)
	t.Logf("agent reconnected %s after the restarted aggregator was ready", back.Sub(ready).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done
	waitDrained(t, a, 60*time.Second)

	st := &a.client.Stats
	n := appended.Load()
	t.Logf("%d batches appended, %d acks, %d duplicate; going away %d, failures %d", n, acks.Load(), dups.Load(), st.GoingAway.Load(), st.Failures.Load())
	if st.GoingAway.Load() == 0 {
		t.Fatal("the agent never heard the aggregator was going away")
	}
	if dups.Load() != 0 {
		t.Fatalf("%d duplicate acks after a planned restart, want 0", dups.Load())
	}
	if got := agg.count(`SELECT count(*) FROM ingest_ledger`); got != n {
		t.Fatalf("ledger holds %d batches, want %d", got, n)
	}
	if got := agg.count(`SELECT count(*) FROM samples`); got != n*200 {
		t.Fatalf("rows = %d, want %d", got, n*200)
	}
	if e := errorsLogged.Load(); e != 0 {
		t.Fatalf("%d error-level log records from the uplink over a planned restart", e)
	}
	if d := back.Sub(ready); d > 10*time.Second {
		t.Fatalf("reconnected %s after the aggregator was back, want ≤ 10 s", d)
	}
}

// TestReconnectAfterLongOutage: the aggregator is killed (no goodbye) and
// stays down long enough for the agents' backoff to reach its cap; once it
// is back, every agent is connected within 10 s.
func TestReconnectAfterLongOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: this test keeps the aggregator down for 50 s (make test runs it)")
	}
	agg := newAggregator(t)
	const agents = 3
	var all []*agentUnderTest
	for range agents {
		a := newAgent(t, agg, spool.Options{}, uplink.Config{})
		a.run()
		all = append(all, a)
	}
	for _, a := range all {
		waitConnects(t, a, 0, 20*time.Second)
	}
	agg.stop(syscall.SIGKILL)
	// Idle timeout (20 s), then the backoff climbs to its cap (~25 s).
	time.Sleep(50 * time.Second)
	for i, a := range all {
		if a.client.Stats.Connected.Load() {
			t.Fatalf("agent %d still connected to a killed aggregator", i)
		}
	}
	agg.start()
	ready := time.Now()
	backs := make([]time.Time, agents)
	var wg sync.WaitGroup
	for i, a := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := ready.Add(20 * time.Second)
			for a.client.Stats.Connects.Load() < 2 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			backs[i] = time.Now()
		}()
	}
	wg.Wait()
	var delays []string
	for _, back := range backs {
		d := back.Sub(ready)
		delays = append(delays, fmt.Sprintf("%.1fs", d.Seconds()))
		if d > 10*time.Second {
			t.Errorf("agent reconnected %s after the aggregator was back, want ≤ 10 s", d)
		}
	}
	t.Logf("after a 50 s outage, reconnected %v after the aggregator was ready (failed dials: %d, %d, %d)",
		delays, all[0].client.Stats.Failures.Load(), all[1].client.Stats.Failures.Load(), all[2].client.Stats.Failures.Load())
}
