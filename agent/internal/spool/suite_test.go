package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/protocol"
)

// opener opens a Queue in dir. The suite reopens the same dir to test
// persistence, so an opener must not ignore dir.
type opener func(t *testing.T, dir string, opts Options) *Queue

// TestQueue runs the contract suite over each way the spool can be
// configured to commit.
func TestQueue(t *testing.T) {
	configs := map[string]func(*Options){
		"group-commit": func(o *Options) { o.SyncInterval = 10 * time.Millisecond },
		"sync-writes":  func(o *Options) { o.SyncInterval = -1 },
	}
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			runSuite(t, func(t *testing.T, dir string, opts Options) *Queue {
				t.Helper()
				cfg(&opts)
				if opts.Logger == nil {
					opts.Logger = testLogger(t)
				}
				q, err := Open(dir, opts)
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				return q
			})
		})
	}
}

func runSuite(t *testing.T, open opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, opener)
	}{
		{"AppendReadOrder", testAppendReadOrder},
		{"NewestOldestAfter", testNewestOldestAfter},
		{"AckDeletes", testAckDeletes},
		{"Reopen", testReopen},
		{"Concurrent", testConcurrent},
		{"QuotaDropsOldest", testQuotaDropsOldest},
		{"DiskFloorDropsOldest", testDiskFloor},
		{"Oversized", testOversized},
		{"Meta", testMeta},
		{"Closed", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// batch returns a distinguishable data batch: its payload and timestamps
// derive from i.
func batch(i, size int) *protocol.Batch {
	p := bytes.Repeat([]byte{byte(i)}, size)
	copy(p, fmt.Sprintf("batch-%d;", i))
	return &protocol.Batch{
		Kind:    protocol.KindSamples,
		First:   int64(1_700_000_000_000 + i*1000),
		Last:    int64(1_700_000_000_000 + i*1000 + 999),
		Codec:   protocol.CodecZstd,
		Payload: p,
	}
}

func mustAppend(t *testing.T, q *Queue, b *protocol.Batch) uint64 {
	t.Helper()
	if err := q.Append(b); err != nil {
		t.Fatalf("append: %v", err)
	}
	return b.Seq
}

func seqsOf(bs []*protocol.Batch) []uint64 {
	var s []uint64
	for _, b := range bs {
		s = append(s, b.Seq)
	}
	return s
}

func mustClose(t *testing.T, q *Queue) {
	t.Helper()
	if err := q.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func all(t *testing.T, q *Queue) []*protocol.Batch {
	t.Helper()
	bs, err := q.Oldest(1<<20, 0)
	if err != nil {
		t.Fatalf("oldest: %v", err)
	}
	return bs
}

func sameBatch(t *testing.T, got, want *protocol.Batch) {
	t.Helper()
	if got.Kind != want.Kind || got.Epoch != want.Epoch || got.Seq != want.Seq ||
		got.First != want.First || got.Last != want.Last || got.Codec != want.Codec ||
		!bytes.Equal(got.Payload, want.Payload) {
		t.Fatalf("batch %d: got {%v %d %d %d %d %v %d bytes}, want {%v %d %d %d %d %v %d bytes}",
			want.Seq, got.Kind, got.Epoch, got.Seq, got.First, got.Last, got.Codec, len(got.Payload),
			want.Kind, want.Epoch, want.Seq, want.First, want.Last, want.Codec, len(want.Payload))
	}
}

func testAppendReadOrder(t *testing.T, open opener) {
	q := open(t, t.TempDir(), Options{})
	defer mustClose(t, q)

	var want []*protocol.Batch
	for i := range 10 {
		b := batch(i, 100+i)
		if i == 3 {
			b.Kind, b.Codec, b.Payload = protocol.KindEvents, protocol.CodecNone, nil
		}
		mustAppend(t, q, b)
		if b.Seq != uint64(i+1) {
			t.Fatalf("append %d: seq %d, want %d", i, b.Seq, i+1)
		}
		if b.Epoch == 0 || b.Epoch != q.Epoch() {
			t.Fatalf("append %d: epoch %d, spool epoch %d", i, b.Epoch, q.Epoch())
		}
		stored := *b
		stored.Payload = slices.Clone(b.Payload)
		want = append(want, &stored)
		if len(b.Payload) > 0 {
			b.Payload[0] ^= 0xff // the spool must have copied it
		}
	}

	got := all(t, q)
	if len(got) != len(want) {
		t.Fatalf("oldest: %d batches, want %d", len(got), len(want))
	}
	for i := range want {
		sameBatch(t, got[i], want[i])
	}
	g, err := q.Get(5)
	if err != nil {
		t.Fatalf("get 5: %v", err)
	}
	sameBatch(t, g, want[4])
	g.Payload[0] ^= 0xff // the caller owns what it got
	if g, _ = q.Get(5); !bytes.Equal(g.Payload, want[4].Payload) {
		t.Fatal("get 5: modifying a returned payload changed the stored batch")
	}
	if _, err := q.Get(11); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get 11: err %v, want ErrNotFound", err)
	}
	s := q.Stats()
	if s.Depth != 10 || s.OldestSeq != 1 || s.NewestSeq != 10 || s.Appended != 10 ||
		s.OldestFirst.UnixMilli() != want[0].First || s.Epoch != q.Epoch() {
		t.Fatalf("stats: %+v", s)
	}
	var size int64
	for _, b := range want {
		size += int64(headerLen + len(b.Payload))
	}
	if s.Bytes != size {
		t.Fatalf("stats: bytes %d, want %d", s.Bytes, size)
	}
}

func testNewestOldestAfter(t *testing.T, open opener) {
	q := open(t, t.TempDir(), Options{})
	defer mustClose(t, q)
	for i := range 10 {
		mustAppend(t, q, batch(i, 64))
	}
	cases := []struct {
		name string
		read func() ([]*protocol.Batch, error)
		want []uint64
	}{
		{"newest 3", func() ([]*protocol.Batch, error) { return q.Newest(3) }, []uint64{10, 9, 8}},
		{"newest 20", func() ([]*protocol.Batch, error) { return q.Newest(20) }, []uint64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{"newest 0", func() ([]*protocol.Batch, error) { return q.Newest(0) }, nil},
		{"oldest 3 after 0", func() ([]*protocol.Batch, error) { return q.Oldest(3, 0) }, []uint64{1, 2, 3}},
		{"oldest 3 after 4", func() ([]*protocol.Batch, error) { return q.Oldest(3, 4) }, []uint64{5, 6, 7}},
		{"oldest 5 after 8", func() ([]*protocol.Batch, error) { return q.Oldest(5, 8) }, []uint64{9, 10}},
		{"oldest after 10", func() ([]*protocol.Batch, error) { return q.Oldest(5, 10) }, nil},
		{"oldest 0", func() ([]*protocol.Batch, error) { return q.Oldest(0, 0) }, nil},
	}
	for _, c := range cases {
		got, err := c.read()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !slices.Equal(seqsOf(got), c.want) {
			t.Errorf("%s: seqs %v, want %v", c.name, seqsOf(got), c.want)
		}
		for _, b := range got {
			sameBatch(t, b, &protocol.Batch{Kind: protocol.KindSamples, Epoch: q.Epoch(), Seq: b.Seq,
				First: batch(int(b.Seq-1), 64).First, Last: batch(int(b.Seq-1), 64).Last,
				Codec: protocol.CodecZstd, Payload: batch(int(b.Seq-1), 64).Payload})
		}
	}
}

func testAckDeletes(t *testing.T, open opener) {
	q := open(t, t.TempDir(), Options{})
	defer mustClose(t, q)
	for i := range 8 {
		mustAppend(t, q, batch(i, 64))
	}
	if err := q.Ack(1, 2, 5); err != nil {
		t.Fatalf("ack: %v", err)
	}
	if got := seqsOf(all(t, q)); !slices.Equal(got, []uint64{3, 4, 6, 7, 8}) {
		t.Fatalf("after ack: seqs %v", got)
	}
	if got, _ := q.Newest(2); !slices.Equal(seqsOf(got), []uint64{8, 7}) {
		t.Fatalf("newest after ack: %v", seqsOf(got))
	}
	if _, err := q.Get(5); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get acked 5: err %v, want ErrNotFound", err)
	}
	s := q.Stats()
	if s.Depth != 5 || s.OldestSeq != 3 || s.NewestSeq != 8 || s.Acked != 3 ||
		s.Bytes != 5*(headerLen+64) || s.OldestFirst.UnixMilli() != batch(2, 64).First {
		t.Fatalf("stats after ack: %+v", s)
	}
	// Unknown, already acked and never assigned seqs are not errors.
	if err := q.Ack(5, 1, 0, 999); err != nil {
		t.Fatalf("ack unknown: %v", err)
	}
	if err := q.Ack(); err != nil {
		t.Fatalf("empty ack: %v", err)
	}
	if s := q.Stats(); s.Depth != 5 || s.Acked != 3 {
		t.Fatalf("stats after unknown ack: %+v", s)
	}
	if err := q.Ack(3, 4, 6, 7, 8); err != nil {
		t.Fatalf("ack rest: %v", err)
	}
	if s := q.Stats(); s.Depth != 0 || s.Bytes != 0 || s.OldestSeq != 0 || s.NewestSeq != 0 || !s.OldestFirst.IsZero() {
		t.Fatalf("stats when empty: %+v", s)
	}
	// An emptied spool keeps counting.
	if seq := mustAppend(t, q, batch(9, 64)); seq != 9 {
		t.Fatalf("append after emptying: seq %d, want 9", seq)
	}
}

func testReopen(t *testing.T, open opener) {
	dir := t.TempDir()
	q := open(t, dir, Options{})
	for i := range 5 {
		mustAppend(t, q, batch(i, 200))
	}
	if err := q.Ack(2); err != nil {
		t.Fatalf("ack: %v", err)
	}
	epoch, before, stats := q.Epoch(), all(t, q), q.Stats()
	mustClose(t, q)

	q = open(t, dir, Options{})
	if q.Epoch() != epoch {
		t.Fatalf("reopen: epoch %d, want %d", q.Epoch(), epoch)
	}
	after := all(t, q)
	if len(after) != len(before) {
		t.Fatalf("reopen: %d batches, want %d", len(after), len(before))
	}
	for i := range before {
		sameBatch(t, after[i], before[i])
	}
	s := q.Stats()
	if s.Depth != stats.Depth || s.Bytes != stats.Bytes || s.OldestSeq != 1 || s.NewestSeq != 5 ||
		!s.OldestFirst.Equal(stats.OldestFirst) {
		t.Fatalf("reopen: stats %+v, before %+v", s, stats)
	}
	if seq := mustAppend(t, q, batch(5, 200)); seq != 6 {
		t.Fatalf("append after reopen: seq %d, want 6", seq)
	}
	// Acking the newest must not let its seq be reused.
	if err := q.Ack(1, 3, 4, 5, 6); err != nil {
		t.Fatalf("ack all: %v", err)
	}
	mustClose(t, q)

	q = open(t, dir, Options{})
	defer mustClose(t, q)
	if s := q.Stats(); s.Depth != 0 || s.Epoch != epoch {
		t.Fatalf("reopen empty: stats %+v", s)
	}
	if seq := mustAppend(t, q, batch(6, 200)); seq != 7 {
		t.Fatalf("append after reopening an empty spool: seq %d, want 7", seq)
	}
	// A different directory is a different spool with its own epoch.
	other := open(t, t.TempDir(), Options{})
	defer mustClose(t, other)
	if other.Epoch() == epoch || other.Epoch() == 0 {
		t.Fatalf("new spool: epoch %d, first spool's %d", other.Epoch(), epoch)
	}
}

func testConcurrent(t *testing.T, open opener) {
	q := open(t, t.TempDir(), Options{})
	defer mustClose(t, q)
	const appenders, perAppender = 4, 150

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		seqs    []uint64
		acked   = map[uint64]bool{}
		stop    = make(chan struct{})
		errc    = make(chan error, 16)
		readers sync.WaitGroup
	)
	for a := range appenders {
		wg.Go(func() {
			for i := range perAppender {
				b := batch(a*perAppender+i, 512)
				if err := q.Append(b); err != nil {
					errc <- err
					return
				}
				mu.Lock()
				seqs = append(seqs, b.Seq)
				mu.Unlock()
			}
		})
	}
	ack := func(read func() ([]*protocol.Batch, error)) {
		for {
			select {
			case <-stop:
				return
			default:
			}
			bs, err := read()
			if err != nil {
				errc <- err
				return
			}
			if len(bs) == 0 {
				continue
			}
			if err := q.Ack(seqsOf(bs)...); err != nil {
				errc <- err
				return
			}
			mu.Lock()
			for _, b := range bs {
				acked[b.Seq] = true
			}
			mu.Unlock()
		}
	}
	readers.Go(func() { ack(func() ([]*protocol.Batch, error) { return q.Oldest(7, 0) }) })
	readers.Go(func() { ack(func() ([]*protocol.Batch, error) { return q.Newest(5) }) })
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if s := q.Stats(); s.Depth < 0 || s.Bytes < 0 {
				errc <- fmt.Errorf("stats: %+v", s)
				return
			}
		}
	})
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}

	slices.Sort(seqs)
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("seqs not 1..%d without reuse: position %d has %d", len(seqs), i, s)
		}
	}
	rest := seqsOf(all(t, q))
	if !slices.IsSorted(rest) {
		t.Fatalf("remaining seqs out of order: %v", rest)
	}
	for _, s := range rest {
		if acked[s] {
			t.Fatalf("acked seq %d still stored", s)
		}
	}
	if len(rest)+len(acked) != appenders*perAppender {
		t.Fatalf("%d remaining + %d acked != %d appended", len(rest), len(acked), appenders*perAppender)
	}
	if s := q.Stats(); s.Depth != len(rest) || s.Acked != uint64(len(acked)) || s.Bytes != int64(len(rest))*(headerLen+512) {
		t.Fatalf("stats: %+v, %d remaining, %d acked", s, len(rest), len(acked))
	}
}

// checkGaps verifies the drop policy after appending data batches
// batch(i, size) for i in 0..len(seqs)-1, which got seqs[i]: the newest
// batch survived, the data batches still stored are the newest ones, and
// the one stored gap batch describes exactly the dropped ones.
func checkGaps(t *testing.T, q *Queue, seqs []uint64, size int, reason string, now time.Time) {
	t.Helper()
	stored := all(t, q)
	storedSeq := map[uint64]bool{}
	var gaps []*protocol.Batch
	for _, b := range stored {
		storedSeq[b.Seq] = true
		if b.Kind == protocol.KindGap {
			gaps = append(gaps, b)
		}
	}
	if len(gaps) != 1 {
		t.Fatalf("%d gap batches stored, want 1", len(gaps))
	}
	n := len(seqs)
	if !storedSeq[seqs[n-1]] {
		t.Fatal("the newest batch was dropped")
	}
	kept := 0
	for kept < n && storedSeq[seqs[n-1-kept]] {
		kept++
	}
	dropped := n - kept
	if dropped == 0 {
		t.Fatal("nothing was dropped")
	}
	for i := range dropped {
		if storedSeq[seqs[i]] {
			t.Fatalf("batch %d (seq %d) kept while the newer batch %d was dropped", i, seqs[i], dropped-1)
		}
	}
	var first, last int64
	for i := range dropped {
		if first == 0 || batch(i, size).First < first {
			first = batch(i, size).First
		}
		last = max(last, batch(i, size).Last)
	}

	gb := gaps[0]
	if gb.Epoch != q.Epoch() || gb.Codec != protocol.CodecNone || gb.Seq <= seqs[dropped-1] {
		t.Fatalf("gap batch %d: epoch %d codec %d, newest dropped data seq %d", gb.Seq, gb.Epoch, gb.Codec, seqs[dropped-1])
	}
	var g protocol.Gap
	if err := json.Unmarshal(gb.Payload, &g); err != nil {
		t.Fatalf("gap payload: %v", err)
	}
	want := protocol.Gap{
		Epoch:    q.Epoch(),
		FromSeq:  1,
		ToSeq:    g.ToSeq, // checked below
		Batches:  uint64(dropped),
		Bytes:    uint64(dropped * (headerLen + size)),
		First:    first,
		Last:     last,
		Reason:   reason,
		Detected: now.UnixMilli(),
	}
	if !reflect.DeepEqual(g, want) {
		t.Fatalf("gap %+v, want %+v", g, want)
	}
	if g.ToSeq < seqs[dropped-1] || g.ToSeq >= gb.Seq {
		t.Fatalf("gap to_seq %d, last dropped seq %d, gap seq %d", g.ToSeq, seqs[dropped-1], gb.Seq)
	}
	for seq := g.FromSeq; seq <= g.ToSeq; seq++ {
		if storedSeq[seq] {
			t.Fatalf("gap %d..%d covers stored seq %d", g.FromSeq, g.ToSeq, seq)
		}
	}
	s := q.Stats()
	if s.Dropped != uint64(dropped) || s.DroppedBytes != uint64(dropped*(headerLen+size)) || s.Gaps == 0 {
		t.Fatalf("stats: %+v, want %d dropped", s, dropped)
	}
	if s.Depth != len(stored) || s.OldestSeq != stored[0].Seq || s.NewestSeq != seqs[n-1] {
		t.Fatalf("stats: %+v, stored %v", s, seqsOf(stored))
	}
}

func testQuotaDropsOldest(t *testing.T, open opener) {
	now := time.UnixMilli(1_800_000_000_000)
	const size, n, quota = 1000, 60, 16 << 10
	q := open(t, t.TempDir(), Options{MaxBytes: quota, Now: func() time.Time { return now }})
	defer mustClose(t, q)
	var seqs []uint64
	for i := range n {
		seqs = append(seqs, mustAppend(t, q, batch(i, size)))
		if s := q.Stats(); s.Bytes > quota {
			t.Fatalf("append %d: %d stored bytes over the %d quota", i, s.Bytes, quota)
		}
	}
	checkGaps(t, q, seqs, size, ReasonQuota, now)
}

func testDiskFloor(t *testing.T, open opener) {
	now := time.UnixMilli(1_800_000_000_000)
	const size, n = 1000, 60
	// 64 KiB between free and used, a 48 KiB floor: 16 KiB for the spool.
	fake := func(string) (uint64, uint64, error) { return 60 << 10, 4 << 10, nil }
	q := open(t, t.TempDir(), Options{MinFreeBytes: 48 << 10, Now: func() time.Time { return now }, diskSpace: fake})
	defer mustClose(t, q)
	var seqs []uint64
	for i := range n {
		seqs = append(seqs, mustAppend(t, q, batch(i, size)))
		if s := q.Stats(); s.Bytes > 16<<10 {
			t.Fatalf("append %d: %d stored bytes over the floor", i, s.Bytes)
		}
	}
	checkGaps(t, q, seqs, size, ReasonDiskFloor, now)

	before := q.Stats()
	err := q.Append(batch(n, 20<<10))
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("append above the floor: err %v, want ErrDiskFull", err)
	}
	if after := q.Stats(); after.Depth != before.Depth || after.Dropped != before.Dropped {
		t.Fatalf("a batch that cannot fit dropped others: %+v -> %+v", before, after)
	}
}

func testOversized(t *testing.T, open opener) {
	q := open(t, t.TempDir(), Options{MaxBytes: 4096})
	defer mustClose(t, q)
	mustAppend(t, q, batch(0, 1000))
	mustAppend(t, q, batch(1, 1000))
	big := batch(2, 5000)
	err := q.Append(big)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized append: err %v, want ErrTooLarge", err)
	}
	if big.Seq != 0 || big.Epoch != 0 {
		t.Fatalf("failed append assigned epoch %d seq %d", big.Epoch, big.Seq)
	}
	if got := seqsOf(all(t, q)); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("oversized append dropped batches: %v", got)
	}
	if s := q.Stats(); s.Dropped != 0 || s.Gaps != 0 {
		t.Fatalf("stats: %+v", s)
	}
	if seq := mustAppend(t, q, batch(3, 1000)); seq != 3 {
		t.Fatalf("append after failure: seq %d, want 3", seq)
	}
}

func testMeta(t *testing.T, open opener) {
	dir := t.TempDir()
	q := open(t, dir, Options{})
	if v, err := q.GetMeta("hwm/vm-1"); v != nil || err != nil {
		t.Fatalf("absent meta: %q, %v", v, err)
	}
	mustAppend(t, q, batch(0, 10))
	if err := q.SetMeta("events/vc1", []byte("4711")); err != nil {
		t.Fatalf("set meta: %v", err)
	}
	if err := q.SetMetaBatch(map[string][]byte{"hwm/vm-1": []byte("a"), "hwm/vm-2": []byte("b"), "gone": []byte("x")}); err != nil {
		t.Fatalf("set meta batch: %v", err)
	}
	if err := q.SetMeta("gone", nil); err != nil {
		t.Fatalf("delete meta: %v", err)
	}
	if err := q.SetMeta("", []byte("x")); err == nil {
		t.Fatal("set meta with an empty key succeeded")
	}
	mustClose(t, q)

	q = open(t, dir, Options{})
	defer mustClose(t, q)
	want := map[string]string{"events/vc1": "4711", "hwm/vm-1": "a", "hwm/vm-2": "b", "gone": ""}
	for k, w := range want {
		v, err := q.GetMeta(k)
		if err != nil || string(v) != w || (w == "" && v != nil) {
			t.Fatalf("meta %q after reopen: %q, %v; want %q", k, v, err, w)
		}
	}
	if s := q.Stats(); s.Depth != 1 || s.NewestSeq != 1 {
		t.Fatalf("meta leaked into the queue: %+v", s)
	}
}

func testClosed(t *testing.T, open opener) {
	q := open(t, t.TempDir(), Options{})
	mustAppend(t, q, batch(0, 10))
	mustClose(t, q)
	errs := map[string]error{
		"append": q.Append(batch(1, 10)),
		"ack":    q.Ack(1),
		"close":  q.Close(),
		"set":    q.SetMeta("k", nil),
	}
	_, errs["get"] = q.Get(1)
	_, errs["oldest"] = q.Oldest(1, 0)
	_, errs["newest"] = q.Newest(1)
	_, errs["getmeta"] = q.GetMeta("k")
	for name, err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after close: err %v, want ErrClosed", name, err)
		}
	}
}
