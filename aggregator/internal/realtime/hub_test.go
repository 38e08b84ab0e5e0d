package realtime

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/protocol"
)

var cpu = protocol.Counter{Name: "cpu.usage.average", Unit: "%"}
var mem = protocol.Counter{Name: "mem.usage.average", Unit: "%"}

// samples is a batch of one point of cpu and mem for each VM of source.
func samples(source string, ts int64, vms ...string) *protocol.Samples {
	p := &protocol.Samples{}
	for i, vm := range vms {
		p.Series = append(p.Series, protocol.SeriesData{
			Key:        protocol.SeriesKey{Source: source, EntityKind: "vm", EntityID: vm, Counters: []protocol.Counter{cpu, mem}},
			Timestamps: []int64{ts}, Values: [][]float64{{float64(100 + i)}, {float64(200 + i)}},
		})
	}
	return p
}

func startHub(t *testing.T, opts Options) *Hub {
	t.Helper()
	h := New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

func recv(t *testing.T, s *Subscription) Delivery {
	t.Helper()
	select {
	case d := <-s.C():
		return d
	case <-s.Done():
		t.Fatalf("subscription ended: %v", s.Err())
	case <-time.After(5 * time.Second):
		t.Fatal("nothing delivered within 5s")
	}
	return Delivery{}
}

func quiet(t *testing.T, s *Subscription) {
	t.Helper()
	select {
	case d := <-s.C():
		t.Fatalf("unexpected delivery %+v", d)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestSubscriptionFilters(t *testing.T) {
	h := startHub(t, Options{})
	vm1 := Entity{Site: "dc1", Source: "vc", Kind: "vm", ID: "vm-1"}
	vm2 := Entity{Site: "dc1", Source: "vc", Kind: "vm", ID: "vm-2"}
	s := h.Subscribe(8)
	defer s.Close()
	if n, err := s.Add([]Entity{vm1}, []string{"cpu.usage.average"}, 10); err != nil || n != 1 {
		t.Fatalf("Add = %d, %v", n, err)
	}
	h.PublishSamples("dc1", "a", samples("vc", 1000, "vm-1", "vm-2", "vm-3"))
	d := recv(t, s)
	if len(d.Samples) != 1 || d.Samples[0].Entity != vm1 || d.Samples[0].Metric != "cpu.usage.average" || d.Samples[0].Value != 100 ||
		d.Samples[0].Time != 1000 || d.Samples[0].Unit != "%" || d.Seq != 1 || d.Origin != h.ID() {
		t.Fatalf("delivery = %+v", d)
	}
	// The same moref of another site or source is another entity.
	h.PublishSamples("dc2", "b", samples("vc", 2000, "vm-1"))
	h.PublishSamples("dc1", "a", samples("vc-other", 2000, "vm-1"))
	quiet(t, s)

	// Every metric of vm-2 as well.
	if n, err := s.Add([]Entity{vm2}, nil, 10); err != nil || n != 2 {
		t.Fatalf("Add = %d, %v", n, err)
	}
	h.PublishSamples("dc1", "a", samples("vc", 3000, "vm-1", "vm-2"))
	if d := recv(t, s); len(d.Samples) != 3 {
		t.Fatalf("delivery = %+v, want vm-1 cpu and vm-2 cpu and mem", d.Samples)
	}
	// Limits are all or nothing.
	if n, err := s.Add([]Entity{{Site: "dc1", Source: "vc", Kind: "vm", ID: "vm-3"}}, []string{"a.b.c", "d.e.f"}, 3); !errors.Is(err, ErrTooManySubscriptions) || n != 2 {
		t.Fatalf("Add over the limit = %d, %v", n, err)
	}
	if got := len(s.Entities()); got != 2 {
		t.Fatalf("%d entities after a refused Add", got)
	}
	// Unsubscribe.
	if n := s.Remove([]Entity{vm1}, nil); n != 1 {
		t.Fatalf("Remove = %d", n)
	}
	h.PublishSamples("dc1", "a", samples("vc", 4000, "vm-1"))
	quiet(t, s)
	if n := s.Remove(nil, nil); n != 0 {
		t.Fatalf("Remove all = %d", n)
	}
	h.PublishSamples("dc1", "a", samples("vc", 5000, "vm-2"))
	quiet(t, s)
}

func TestNonFiniteNotDelivered(t *testing.T) {
	h := startHub(t, Options{})
	s := h.Subscribe(8)
	s.Add([]Entity{{Site: "dc1", Source: "vc", Kind: "vm", ID: "vm-1"}}, nil, 10)
	p := samples("vc", 1000, "vm-1")
	p.Series[0].Timestamps = []int64{1000, 2000, 3000}
	p.Series[0].Values = [][]float64{{math.NaN(), math.Inf(1), 1e300}, {1, 2, 3.3}}
	h.PublishSamples("dc1", "a", p)
	d := recv(t, s)
	if len(d.Samples) != 3 || d.Samples[2].Value != float64(float32(3.3)) {
		t.Fatalf("delivery = %+v; want mem's three values at float32 precision, no cpu", d.Samples)
	}
}

// TestSlowConsumerDropped: a subscriber that does not read is dropped with
// ErrSlowConsumer once its buffer is full; another keeps receiving every
// batch, and publishing never blocks.
func TestSlowConsumerDropped(t *testing.T) {
	h := startHub(t, Options{QueueSize: 4096})
	e := Entity{Site: "dc1", Source: "vc", Kind: "vm", ID: "vm-1"}
	slow, fast := h.Subscribe(4), h.Subscribe(64) // both slower than a burst, one with room for it
	slow.Add([]Entity{e}, nil, 10)
	fast.Add([]Entity{e}, nil, 10)
	const n = 50
	got := make(chan int)
	go func() {
		c := 0
		for c < n {
			select {
			case <-fast.C():
				c++
			case <-fast.Done():
				got <- -1
				return
			}
		}
		got <- c
	}()
	start := time.Now()
	for i := range n {
		h.PublishSamples("dc1", "a", samples("vc", int64(i), "vm-1"))
	}
	if d := time.Since(start); d > time.Second { // blocking would wait on the slow subscriber for seconds
		t.Errorf("publishing %d batches took %s", n, d)
	}
	if c := <-got; c != n {
		t.Fatalf("the fast subscriber got %d of %d batches", c, n)
	}
	select {
	case <-slow.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the slow subscriber was not dropped")
	}
	if !errors.Is(slow.Err(), ErrSlowConsumer) || h.Stats().SlowConsumers != 1 {
		t.Fatalf("slow: err %v, stats %+v", slow.Err(), h.Stats())
	}
	if _, err := slow.Add([]Entity{e}, nil, 10); err == nil {
		t.Fatal("Add on a dropped subscription succeeded")
	}
}

// TestPublishNeverBlocks: without a running dispatcher the queue fills and
// further batches are dropped and counted, at once.
func TestPublishNeverBlocks(t *testing.T) {
	h := New(Options{QueueSize: 2})
	start := time.Now()
	for range 10 {
		h.PublishSamples("dc1", "a", samples("vc", 1, "vm-1"))
	}
	if time.Since(start) > time.Second { // a loaded CI machine may pause us; blocking would not return at all
		t.Fatal("publishing blocked")
	}
	if st := h.Stats(); st.Published != 10 || st.QueueDrops != 8 {
		t.Fatalf("stats = %+v", st)
	}
	// The queue is bounded by values too: a burst of large batches does
	// not pin memory.
	h = New(Options{QueueValues: 10})
	for range 3 {
		h.PublishSamples("dc1", "a", samples("vc", 1, "vm-1", "vm-2")) // 4 values
	}
	if st := h.Stats(); st.QueueDrops != 1 {
		t.Fatalf("stats = %+v; want the third batch of 4 values dropped at 10", st)
	}
}

func TestFeedAndClose(t *testing.T) {
	h := New(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(ctx) }()
	f := h.Feed(4)
	s := h.Subscribe(4)
	p := samples("vc", 1, "vm-1", "vm-2")
	h.PublishSamples("dc1", "agent-1", p)
	select {
	case b := <-f.C():
		if b.Samples != p || b.Site != "dc1" || b.AgentID != "agent-1" || b.Seq != 1 {
			t.Fatalf("feed got %+v", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("feed got nothing")
	}
	cancel()
	<-done
	for _, d := range []<-chan struct{}{f.Done(), s.Done(), h.Done()} {
		select {
		case <-d:
		case <-time.After(time.Second):
			t.Fatal("not ended by the hub's stop")
		}
	}
	if !errors.Is(f.Err(), ErrClosed) || !errors.Is(s.Err(), ErrClosed) {
		t.Fatalf("errs %v %v", f.Err(), s.Err())
	}
	if s2 := h.Subscribe(1); !errors.Is(s2.Err(), ErrClosed) {
		t.Fatalf("Subscribe after stop: %v", s2.Err())
	}
}

// TestReplayRing: Since replays what a subscription would have received,
// and says when the ring no longer reaches back far enough.
func TestReplayRing(t *testing.T) {
	h := startHub(t, Options{RingValues: 10}) // 5 batches of one VM's 2 values
	e := Entity{Site: "dc1", Source: "vc", Kind: "vm", ID: "vm-1"}
	probe := h.Feed(64)
	for i := range 8 {
		h.PublishSamples("dc1", "a", samples("vc", int64(i), "vm-1", "vm-2"))
	}
	for range 8 {
		<-probe.C()
	}
	s := h.Subscribe(8)
	s.Add([]Entity{e}, []string{"cpu.usage.average"}, 10)
	// 8 batches of 4 values: the ring keeps the newest 2 (seq 7, 8).
	got, complete := h.Since(6, s)
	if !complete || len(got) != 2 || got[0].Seq != 7 || got[1].Seq != 8 || len(got[0].Samples) != 1 || got[1].Samples[0].Time != 7 {
		t.Fatalf("Since(6) = %+v, %v", got, complete)
	}
	if got, complete := h.Since(2, s); complete || len(got) != 2 {
		t.Fatalf("Since(2) = %d deliveries, complete %v; want 2, false", len(got), complete)
	}
	if h.LastSeq() != 8 {
		t.Fatalf("LastSeq = %d", h.LastSeq())
	}
}
