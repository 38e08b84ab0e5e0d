package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest"
	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/protocol"
)

// drainLane is one data stream's worth of batches, sent in order with up to
// window unacknowledged, resumed after a reconnect from the first
// unacknowledged one, as the agent's uplink does.
type drainLane struct {
	batches []*protocol.Batch
	acked   int // batches[:acked] are acknowledged
}

// drainAgent is a minimal agent: lanes pipelined over one connection; told
// the aggregator is going away, it stops sending, reads the acks still due
// up to the going-away Error, hangs up and reconnects.
type drainAgent struct {
	t      *testing.T
	id     *ingesttest.Identity
	epoch  uint64
	lanes  []*drainLane
	window int

	stored, duplicate, rejected atomic.Int64
	goingAway                   atomic.Int64 // sessions ended by going away
	resent                      atomic.Int64 // batches sent again after a reconnect
}

func isGoingAwayErr(err error) bool {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Code == protocol.ErrCodeGoingAway
	}
	var se *quic.StreamError
	return errors.As(err, &se) && se.ErrorCode == quic.StreamErrorCode(protocol.ErrCodeGoingAway)
}

// run delivers every lane, reconnecting to addr() until done or ctx ends.
func (a *drainAgent) run(ctx context.Context, addr func() string) error {
	sent := make([]int, len(a.lanes)) // high-water mark of what was ever sent, per lane
	for ctx.Err() == nil {
		done := true
		for _, l := range a.lanes {
			done = done && l.acked == len(l.batches)
		}
		if done {
			return nil
		}
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := ingesttest.Dial(dctx, addr(), a.id, a.epoch)
		cancel()
		if err != nil {
			time.Sleep(50 * time.Millisecond) // the aggregator is restarting
			continue
		}
		if err := a.session(ctx, c, sent); err != nil && !isGoingAwayErr(err) {
			return err
		}
		a.goingAway.Add(1)
	}
	return ctx.Err()
}

// session runs the lanes over c until they are done or the aggregator goes
// away (returned as a going-away error).
func (a *drainAgent) session(ctx context.Context, c *ingesttest.Conn, sent []int) error {
	defer c.Close()
	stop := make(chan struct{})
	var stopOnce sync.Once
	goAway := func() { stopOnce.Do(func() { close(stop) }) }
	go func() {
		// Nothing else comes on the control stream here: the going-away
		// Error (or the connection's end) stops the senders.
		_, _ = protocol.ReadMessage(c.Control)
		goAway()
	}()
	errs := make([]error, len(a.lanes))
	var wg sync.WaitGroup
	for i, l := range a.lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = a.lane(ctx, c, l, &sent[i], stop)
		}()
	}
	wg.Wait()
	goAway()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *drainAgent) lane(ctx context.Context, c *ingesttest.Conn, l *drainLane, sent *int, stop <-chan struct{}) error {
	if l.acked == len(l.batches) {
		return nil
	}
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	d, err := c.OpenData(octx)
	cancel()
	if err != nil {
		return err
	}
	inflight := make(chan int, a.window)
	go func() {
		defer close(inflight)
		for i := l.acked; i < len(l.batches); i++ {
			select {
			case inflight <- i:
			case <-stop:
				return
			}
			select {
			case <-stop:
				return // the slot is acked or answered with going-away
			default:
			}
			if i < *sent {
				a.resent.Add(1)
			} else {
				*sent = i + 1
			}
			if err := d.Send(l.batches[i]); err != nil {
				return // stopped by the aggregator; the acker reads what is due
			}
		}
	}()
	var goingAway error
	for i := range inflight {
		if goingAway != nil {
			continue // nothing more can arrive
		}
		ack, err := d.Recv()
		if err != nil {
			if isGoingAwayErr(err) {
				goingAway = err
				continue
			}
			return fmt.Errorf("ack of seq %d: %w", l.batches[i].Seq, err)
		}
		if ack.Seq != l.batches[i].Seq {
			return fmt.Errorf("ack for seq %d, want %d", ack.Seq, l.batches[i].Seq)
		}
		switch ack.Status {
		case protocol.AckStored:
			a.stored.Add(1)
		case protocol.AckDuplicate:
			a.duplicate.Add(1)
		default:
			a.rejected.Add(1)
		}
		l.acked = i + 1
	}
	return goingAway
}

// TestGracefulRestartUnderLoad: agents stream batches on two lanes each;
// the aggregator is shut down the SIGTERM way in the middle and restarted
// on the same address. Every batch it read before going away is committed
// and acknowledged, so what the agents send again is new to it: no
// duplicate ack, nothing stored twice, nothing lost.
func TestGracefulRestartUnderLoad(t *testing.T) {
	h := newHarness(t, "", nil)
	const agents, lanes, perLane, vms, points = 4, 2, 60, 30, 3
	var all []*drainAgent
	wantSamples := 0
	for n := range agents {
		id := h.enroll(fmt.Sprintf("dc%d", n))
		a := &drainAgent{t: t, id: id, epoch: 1, window: 8}
		seq := uint64(0)
		for k := range lanes {
			l := &drainLane{}
			for i := range perLane {
				seq++
				p := ingesttest.Samples(fmt.Sprintf("vc-%d", n), vms, points, t0+int64(k*perLane+i)*60_000, seq)
				wantSamples += p.Count()
				l.batches = append(l.batches, ingesttest.MustBatch(protocol.KindSamples, p, a.epoch, seq))
			}
			a.lanes = append(a.lanes, l)
		}
		all = append(all, a)
	}
	total := int64(agents * lanes * perLane)

	var addrMu sync.Mutex
	addr := h.addr
	current := func() string { addrMu.Lock(); defer addrMu.Unlock(); return addr }
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	errs := make(chan error, agents)
	for _, a := range all {
		go func() { errs <- a.run(ctx, current) }()
	}
	acked := func() int64 {
		var n int64
		for _, a := range all {
			n += a.stored.Load() + a.duplicate.Load() + a.rejected.Load()
		}
		return n
	}
	for acked() < total/3 {
		if ctx.Err() != nil {
			t.Fatal("no progress before the restart")
		}
		time.Sleep(5 * time.Millisecond)
	}

	first := h.srv
	before := acked()
	began := time.Now()
	h.stop() // drains: returns once every connection is closed
	drained := time.Since(began)
	midway := acked()
	h.cfg.Addr = h.addr // the same address, as a restarted process
	h.start(nil)
	h.cfg.Addr = ""
	addrMu.Lock()
	addr = h.addr
	addrMu.Unlock()

	for range all {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var dup, rej, stored, away, resent int64
	for _, a := range all {
		dup += a.duplicate.Load()
		rej += a.rejected.Load()
		stored += a.stored.Load()
		away += a.goingAway.Load()
		resent += a.resent.Load()
	}
	t.Logf("drain took %s; %d batches acked before it began, %d when it ended (of %d); %d sent again after the restart; "+
		"first aggregator: %d stored, %d duplicate",
		drained.Round(time.Millisecond), before, midway, total, resent, first.Stats.BatchesStored.Load(), first.Stats.BatchesDuplicate.Load())
	if away < agents {
		t.Fatalf("%d sessions ended by going away, want at least %d (one per agent)", away, agents)
	}
	if dup != 0 || first.Stats.BatchesDuplicate.Load() != 0 || h.srv.Stats.BatchesDuplicate.Load() != 0 {
		t.Fatalf("%d duplicate acks (aggregators counted %d + %d), want 0", dup, first.Stats.BatchesDuplicate.Load(), h.srv.Stats.BatchesDuplicate.Load())
	}
	if rej != 0 || stored != total {
		t.Fatalf("acks: %d stored, %d rejected; want %d stored", stored, rej, total)
	}
	if drained > ingest.DefaultDrainTimeout {
		t.Fatalf("drain took %s, over the %s timeout", drained, ingest.DefaultDrainTimeout)
	}
	if got := h.count(`SELECT count(*) FROM ingest_ledger`); got != total {
		t.Fatalf("ledger holds %d batches, want %d", got, total)
	}
	if got := h.count(`SELECT count(*) FROM samples_named`); got != int64(wantSamples) {
		t.Fatalf("stored %d samples, want %d", got, wantSamples)
	}
}

// TestDrainClosesWithGoingAway: an agent hears going-away on its control
// stream, and one that does not hang up is closed with the going-away code:
// at once when it had no data stream (no ack can be in flight), after the
// grace period when it had one.
func TestDrainClosesWithGoingAway(t *testing.T) {
	t.Run("idle", func(t *testing.T) { testDrainCloses(t, false) })
	t.Run("after data", func(t *testing.T) { testDrainCloses(t, true) })
}

func testDrainCloses(t *testing.T, data bool) {
	h := newHarness(t, "", nil)
	c := h.dial(h.enroll("dc1"), 1)
	if data {
		sendOne(t, c, 1, 1)
	}
	stopped := make(chan time.Duration, 1)
	go func() {
		began := time.Now()
		h.stop()
		stopped <- time.Since(began)
	}()
	// The going-away Error on the control stream, or (an idle connection
	// is closed at once, possibly before it is delivered) the close.
	m, err := protocol.ReadMessage(c.Control)
	var appErr *quic.ApplicationError
	switch e, ok := m.(*protocol.Error); {
	case err == nil && ok && e.Code == protocol.ErrCodeGoingAway:
	case !data && errors.As(err, &appErr) && appErr.ErrorCode == quic.ApplicationErrorCode(protocol.ErrCodeGoingAway):
	default:
		t.Fatalf("control stream: got %#v, %v; want a going-away Error", m, err)
	}
	select {
	case <-c.QUIC.Context().Done():
	case <-time.After(ingest.DefaultDrainTimeout + 5*time.Second):
		t.Fatal("connection of an agent that did not hang up is still open")
	}
	if err := context.Cause(c.QUIC.Context()); !errors.As(err, &appErr) || appErr.ErrorCode != quic.ApplicationErrorCode(protocol.ErrCodeGoingAway) {
		t.Fatalf("closed with %v, want the going-away application error", err)
	}
	d := <-stopped
	t.Logf("drain took %s", d.Round(time.Millisecond))
	if d > ingest.DefaultDrainTimeout || (!data && d > time.Second) {
		t.Fatalf("drain took %s", d)
	}
}
