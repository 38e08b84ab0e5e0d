package ingest_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest"
	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

var t0 = time.Now().Add(-time.Hour).Truncate(20 * time.Second).UnixMilli()

func TestBatchesLandAckedAndQueryable(t *testing.T) {
	h := newHarness(t, "", nil)
	id := h.enroll("dc1")
	c := h.dial(id, 7)
	if c.Welcome.Site != "dc1" || c.Welcome.AgentID != id.AgentID || c.Welcome.Version != protocol.Version {
		t.Fatalf("welcome = %+v", c.Welcome)
	}
	d := mustOpen(t, c)
	const batches, vms, points = 5, 50, 3
	want := 0
	for seq := uint64(1); seq <= batches; seq++ {
		p := ingesttest.Samples("vc-a", vms, points, t0+int64(seq)*60_000, seq)
		want += p.Count()
		if a := sendAndAck(t, d, ingesttest.MustBatch(protocol.KindSamples, p, 7, seq)); a.Status != protocol.AckStored {
			t.Fatalf("seq %d: status %d code %d", seq, a.Status, a.Code)
		}
	}
	if got := h.count(`SELECT count(*) FROM samples_named`); got != int64(want) {
		t.Fatalf("stored %d samples, want %d", got, want)
	}
	if got := h.count(`SELECT count(*) FROM ingest_ledger WHERE agent_id = $1`, id.AgentID); got != batches {
		t.Fatalf("ledger has %d batches, want %d", got, batches)
	}
	if got := h.count(`SELECT count(*) FROM series WHERE site = 'dc1'`); got != vms {
		t.Fatalf("series = %d, want %d", got, vms)
	}
	// The value of one counter at one time reads back as sent.
	p := ingesttest.Samples("vc-a", vms, points, t0+60_000, 1)
	wantV := int64(p.Series[3].Values[6][2])
	got := h.count(`SELECT value::bigint FROM samples_named WHERE entity_id = $1 AND counter = 'mem.consumed.average' AND ts = $2`,
		p.Series[3].Key.EntityID, time.UnixMilli(p.Series[3].Timestamps[2]))
	if got != wantV {
		t.Fatalf("mem.consumed of %s = %d, want %d", p.Series[3].Key.EntityID, got, wantV)
	}
	if got := h.count(`SELECT count(*) FROM agents WHERE id = $1 AND connected AND epoch = 7`, id.AgentID); got != 1 {
		t.Fatal("registry does not show the agent connected with its epoch")
	}
}

func TestRedeliveryInAnyOrderStoresOnce(t *testing.T) {
	h := newHarness(t, "", nil)
	id := h.enroll("dc1")
	c := h.dial(id, 1)
	d := mustOpen(t, c)
	var batches []*protocol.Batch
	want := 0
	for seq := uint64(1); seq <= 4; seq++ {
		p := ingesttest.Samples("vc-a", 20, 3, t0+int64(seq)*60_000, seq)
		want += p.Count()
		batches = append(batches, ingesttest.MustBatch(protocol.KindSamples, p, 1, seq))
	}
	// Each batch ten times, shuffled, over two streams.
	var order []*protocol.Batch
	for range 10 {
		order = append(order, batches...)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	d2 := mustOpen(t, c)
	stored, dups := 0, 0
	for i, b := range order {
		s := d
		if i%2 == 1 {
			s = d2
		}
		switch a := sendAndAck(t, s, b); a.Status {
		case protocol.AckStored:
			stored++
		case protocol.AckDuplicate:
			dups++
		default:
			t.Fatalf("status %d", a.Status)
		}
	}
	if stored != 4 || dups != 36 {
		t.Fatalf("stored %d, duplicates %d; want 4 and 36", stored, dups)
	}
	if got := h.count(`SELECT count(*) FROM samples_named`); got != int64(want) {
		t.Fatalf("stored %d samples, want %d", got, want)
	}
}

func TestOverlappingBatchesStoreEachSampleOnce(t *testing.T) {
	// An agent that re-reads a gap from vCenter may put the same samples in
	// a new batch: the unique key stores them once and the batch is acked.
	h := newHarness(t, "", nil)
	c := h.dial(h.enroll("dc1"), 1)
	d := mustOpen(t, c)
	p := ingesttest.Samples("vc-a", 10, 6, t0, 9)
	sendAndAck(t, d, ingesttest.MustBatch(protocol.KindSamples, p, 1, 1))
	if a := sendAndAck(t, d, ingesttest.MustBatch(protocol.KindSamples, p, 1, 2)); a.Status != protocol.AckStored {
		t.Fatalf("overlapping batch status %d", a.Status)
	}
	if got := h.count(`SELECT count(*) FROM samples`); got != 60 {
		t.Fatalf("rows = %d, want 60", got)
	}
}

// crashAfterCommit commits through the real store, then kills the server
// before the ack can be written.
type crashAfterCommit struct {
	ingest.Store
	kill func()
}

func (c crashAfterCommit) WriteSamples(ctx context.Context, m store.BatchMeta, p *protocol.Samples) (store.Result, error) {
	res, err := c.Store.WriteSamples(ctx, m, p)
	if err == nil {
		c.kill()
		<-ctx.Done()
		return res, ctx.Err()
	}
	return res, err
}

func TestCrashBetweenCommitAndAck(t *testing.T) {
	h := newHarness(t, "", nil)
	id := h.enroll("dc1")
	h.stop()
	// No drain to speak of: the commit in flight is cut short, as by a
	// crash, before its ack.
	h.cfg.DrainTimeout = time.Millisecond
	h.start(func(s ingest.Store) ingest.Store {
		return crashAfterCommit{Store: s, kill: func() { go h.stop() }}
	})
	h.cfg.DrainTimeout = 0
	c := h.dial(id, 3)
	d := mustOpen(t, c)
	p := ingesttest.Samples("vc-a", 10, 3, t0, 5)
	b := ingesttest.MustBatch(protocol.KindSamples, p, 3, 1)
	if err := d.Send(b); err != nil {
		t.Fatal(err)
	}
	if a, err := d.Recv(); err == nil {
		t.Fatalf("got ack %+v from a server killed before acking", a)
	}
	<-h.done
	// The aggregator comes back; the agent resends the unacked batch.
	h.start(nil)
	c = h.dial(id, 3)
	d = mustOpen(t, c)
	if a := sendAndAck(t, d, b); a.Status != protocol.AckDuplicate {
		t.Fatalf("resent batch status %d, want duplicate", a.Status)
	}
	if got := h.count(`SELECT count(*) FROM samples_named`); got != int64(p.Count()) {
		t.Fatalf("stored %d samples, want %d", got, p.Count())
	}
}

func TestInventoryEventsAndGaps(t *testing.T) {
	h := newHarness(t, "", nil)
	id := h.enroll("dc1")
	c := h.dial(id, 1)
	d := mustOpen(t, c)
	now := time.Now().UnixMilli()
	full := &protocol.Inventory{Source: "vc-a", Full: true, At: now - 2000, Objects: []protocol.InventoryObject{
		{Kind: "vm", ID: "vm-1", Name: "web-1", Props: map[string]any{"power_state": "poweredOn"}},
		{Kind: "vm", ID: "vm-2", Name: "db-1", Props: map[string]any{"power_state": "poweredOn"}},
		{Kind: "host", ID: "host-9", Name: "esx9"},
	}}
	sendAndAck(t, d, ingesttest.MustBatch(protocol.KindInventory, full, 1, 1))
	delta := &protocol.Inventory{Source: "vc-a", At: now - 1000, Objects: []protocol.InventoryObject{
		{Kind: "vm", ID: "vm-1", Name: "web-1", Props: map[string]any{"power_state": "poweredOff"}},
		{Kind: "vm", ID: "vm-2", Deleted: true},
	}}
	sendAndAck(t, d, ingesttest.MustBatch(protocol.KindInventory, delta, 1, 2))
	// An older observation arriving late (backfill) must not win.
	stale := &protocol.Inventory{Source: "vc-a", At: now - 1500, Objects: []protocol.InventoryObject{
		{Kind: "vm", ID: "vm-1", Name: "web-1", Props: map[string]any{"power_state": "suspended"}},
	}}
	sendAndAck(t, d, ingesttest.MustBatch(protocol.KindInventory, stale, 1, 3))
	if got := h.count(`SELECT count(*) FROM inventory_objects WHERE moref = 'vm-1' AND props->>'power_state' = 'poweredOff'`); got != 1 {
		t.Fatal("vm-1 is not poweredOff")
	}
	if got := h.count(`SELECT count(*) FROM inventory_objects WHERE moref = 'vm-2' AND deleted_at IS NOT NULL`); got != 1 {
		t.Fatal("vm-2 not marked deleted")
	}
	if got := h.count(`SELECT count(*) FROM inventory_changes WHERE moref = 'vm-1' AND op = 'update' AND changes ? 'props.power_state'`); got != 1 {
		t.Fatalf("power change history rows = %d, want 1", got)
	}
	ev := &protocol.Events{Events: []protocol.Event{
		{Source: "vc-a", Key: 100, Type: "VmPoweredOffEvent", Time: now - 1000, User: "VSPHERE.LOCAL\\ops", EntityKind: "vm", EntityID: "vm-1"},
		{Source: "vc-a", Key: 101, Type: "UserLoginSessionEvent", Time: now - 900, User: "root"},
	}}
	sendAndAck(t, d, ingesttest.MustBatch(protocol.KindEvents, ev, 1, 4))
	sendAndAck(t, d, ingesttest.MustBatch(protocol.KindEvents, ev, 1, 5)) // same events again in a new batch
	if got := h.count(`SELECT count(*) FROM vcenter_events WHERE site = 'dc1'`); got != 2 {
		t.Fatalf("events = %d, want 2", got)
	}
	if got := h.count(`SELECT count(*) FROM vcenter_events WHERE key = 100 AND username = 'VSPHERE.LOCAL\ops'`); got != 1 {
		t.Fatal("event user not stored")
	}
	gap := &protocol.Gap{Epoch: 1, FromSeq: 10, ToSeq: 19, Batches: 10, Bytes: 12345, First: now - 600_000, Last: now - 300_000, Reason: "spool quota", Detected: now}
	sendAndAck(t, d, ingesttest.MustBatch(protocol.KindGap, gap, 1, 20))
	if got := h.count(`SELECT count(*) FROM ingest_gaps WHERE agent_id = $1 AND from_seq = 10 AND to_seq = 19 AND reason = 'spool quota'`, id.AgentID); got != 1 {
		t.Fatal("gap record not stored")
	}
	// The spool widens its open gap: the wider one replaces it, and the
	// narrower one arriving again late changes nothing.
	wider := *gap
	wider.ToSeq, wider.Batches = 29, 20
	sendAndAck(t, d, ingesttest.MustBatch(protocol.KindGap, &wider, 1, 30))
	sendAndAck(t, d, ingesttest.MustBatch(protocol.KindGap, gap, 1, 31))
	if got := h.count(`SELECT count(*) FROM ingest_gaps WHERE agent_id = $1`, id.AgentID); got != 1 {
		t.Fatalf("gap rows = %d, want 1", got)
	}
	if got := h.count(`SELECT to_seq FROM ingest_gaps WHERE agent_id = $1`, id.AgentID); got != 29 {
		t.Fatalf("gap to_seq = %d, want 29", got)
	}
}

func TestMalformedFrameClosesOnlyThatStream(t *testing.T) {
	h := newHarness(t, "", nil)
	c := h.dial(h.enroll("dc1"), 1)
	bad := mustOpen(t, c)
	// A batch frame whose length field claims 1 GiB.
	if err := bad.WriteRaw([]byte{byte(protocol.MsgBatch), 0x40, 0, 0, 0, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	_, err := bad.Recv()
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.ErrCodeTooLarge {
		t.Fatalf("oversized frame: got %v, want a protocol error with code TooLarge", err)
	}
	// A well-framed batch with a corrupt payload is rejected by ack, so the
	// agent drops it instead of resending it forever.
	good := mustOpen(t, c)
	b := ingesttest.MustBatch(protocol.KindSamples, ingesttest.Samples("vc-a", 2, 2, t0, 1), 1, 1)
	b.Payload = b.Payload[:len(b.Payload)/2]
	if a := sendAndAck(t, good, b); a.Status != protocol.AckRejected || a.Code != protocol.ErrCodeMalformed {
		t.Fatalf("corrupt payload: ack %+v", a)
	}
	// The connection and the server are fine.
	b = ingesttest.MustBatch(protocol.KindSamples, ingesttest.Samples("vc-a", 2, 2, t0, 1), 1, 2)
	if a := sendAndAck(t, good, b); a.Status != protocol.AckStored {
		t.Fatalf("good batch after bad ones: %+v", a)
	}
}

func TestPoisonBatchIsRejectedAndRecorded(t *testing.T) {
	// Valid on the wire, refused by PostgreSQL (text cannot hold NUL): it must
	// be rejected, not retried forever, and the loss must be queryable.
	h := newHarness(t, "", nil)
	id := h.enroll("dc1")
	d := mustOpen(t, h.dial(id, 1))
	ev := &protocol.Events{Events: []protocol.Event{{Source: "vc-a", Key: 1, Type: "GeneralUserEvent", Time: time.Now().UnixMilli(), Message: "a\x00b"}}}
	if a := sendAndAck(t, d, ingesttest.MustBatch(protocol.KindEvents, ev, 1, 1)); a.Status != protocol.AckRejected || a.Code != protocol.ErrCodeMalformed {
		t.Fatalf("poison batch: ack %+v, want rejected/malformed", a)
	}
	if n := h.count(`SELECT count(*) FROM ingest_gaps WHERE agent_id = $1 AND from_seq = 1 AND reason LIKE 'rejected%'`, id.AgentID); n != 1 {
		t.Fatalf("rejection not recorded as a gap (%d rows)", n)
	}
	if a := sendAndAck(t, d, ingesttest.MustBatch(protocol.KindSamples, ingesttest.Samples("vc-a", 2, 1, t0, 1), 1, 2)); a.Status != protocol.AckStored {
		t.Fatalf("next batch: %+v", a)
	}
}

func TestConcurrentHellosDoNotCrash(t *testing.T) {
	h := newHarness(t, "", nil)
	id := h.enroll("dc1")
	conn, err := ingesttest.DialRaw(dialCtx(t), h.addr, id)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	var wg sync.WaitGroup
	welcomes := make(chan bool, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := conn.OpenStreamSync(dialCtx(t))
			if err != nil {
				return
			}
			_ = protocol.WriteMessage(st, &protocol.Hello{AgentID: id.AgentID, AgentVersion: "t", MinVersion: 1, MaxVersion: 1, Epoch: 1})
			m, err := protocol.ReadMessage(st)
			_, ok := m.(*protocol.Welcome)
			welcomes <- err == nil && ok
		}()
	}
	wg.Wait()
	close(welcomes)
	n := 0
	for ok := range welcomes {
		if ok {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d control streams welcomed, want exactly 1", n)
	}
	h.dial(h.enroll("dc2"), 1) // the server is still up
}

func TestBatchSpanningYearsIsRejectedQuickly(t *testing.T) {
	h := newHarness(t, "", nil)
	d := mustOpen(t, h.dial(h.enroll("dc1"), 1))
	p := ingesttest.Samples("vc-a", 2, 1, t0, 1)
	p.Series[0].Timestamps[0] = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	start := time.Now()
	a := sendAndAck(t, d, ingesttest.MustBatch(protocol.KindSamples, p, 1, 1))
	if a.Status != protocol.AckRejected || a.Code != protocol.ErrCodeMalformed {
		t.Fatalf("ack %+v, want rejected/malformed", a)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("rejection took %s", time.Since(start))
	}
	if n := h.count(`SELECT count(*) FROM pg_inherits WHERE inhparent = 'samples'::regclass`); n > 10 {
		t.Fatalf("%d partitions created for a broken batch", n)
	}
}
