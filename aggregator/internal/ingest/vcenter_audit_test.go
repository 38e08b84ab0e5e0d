package ingest_test

import (
	"context"
	"encoding/json"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/event"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/protocol"
)

// simulatorEvents powers a VM of govmomi's simulator off and on and returns
// every event the simulator's EventManager then holds, as the agent
// forwards them (key, chain, type, vCenter time, user, message, entity).
func simulatorEvents(t *testing.T) []protocol.Event {
	t.Helper()
	ctx := context.Background()
	model := simulator.VPX()
	if err := model.Create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(model.Remove)
	srv := model.Service.NewServer()
	t.Cleanup(srv.Close)
	c, err := govmomi.NewClient(ctx, srv.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	finder := find.NewFinder(c.Client)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	finder.SetDatacenter(dc)
	vms, err := finder.VirtualMachineList(ctx, "*")
	if err != nil {
		t.Fatal(err)
	}
	for _, vm := range vms[:2] {
		for _, op := range []func(context.Context) (*object.Task, error){vm.PowerOff, vm.PowerOn} {
			task, err := op(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := task.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	source := c.Client.ServiceContent.About.InstanceUuid
	bes, err := event.NewManager(c.Client).QueryEvents(ctx, types.EventFilterSpec{})
	if err != nil {
		t.Fatal(err)
	}
	var out []protocol.Event
	for _, be := range bes {
		e := be.GetEvent()
		pe := protocol.Event{Source: source, Key: int64(e.Key), ChainID: int64(e.ChainId), Type: reflect.TypeOf(be).Elem().Name(),
			Time: e.CreatedTime.UnixMilli(), User: e.UserName, Message: e.FullFormattedMessage, Severity: "info"}
		if e.Vm != nil {
			pe.EntityKind, pe.EntityID, pe.EntityName = "vm", e.Vm.Vm.Value, e.Vm.Name
		}
		if e.Datacenter != nil {
			pe.Datacenter = e.Datacenter.Name
		}
		out = append(out, pe)
	}
	return out
}

// TestVCenterEventsInAuditChainOnce sends the simulator's events over QUIC
// to the ingest server (one batch redelivered, one delivered late, across
// a server restart) and appends them to the operation log from two
// appenders at once: every event is in the chain exactly once, in vCenter
// time order within each append, the late one marked, and the chain
// verifies.
func TestVCenterEventsInAuditChainOnce(t *testing.T) {
	evs := simulatorEvents(t)
	if len(evs) < 6 {
		t.Fatalf("the simulator produced %d events, want at least 6", len(evs))
	}
	var powered int
	for _, e := range evs {
		if e.Type == "VmPoweredOffEvent" || e.Type == "VmPoweredOnEvent" {
			powered++
		}
	}
	if powered < 4 {
		t.Fatalf("%d power events among %d, want 4", powered, len(evs))
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].Key < evs[j].Key })
	// The oldest event is held back and delivered after the others were
	// appended: an offline site's backlog.
	lateEv, rest := evs[0], evs[1:]
	t.Logf("%d simulator events (%d power operations); event %d held back", len(evs), powered, lateEv.Key)
	half := len(rest) / 2
	var wantLate bool // older than an event appended before it
	for _, e := range rest {
		wantLate = wantLate || e.Time > lateEv.Time
	}
	if !wantLate {
		t.Fatalf("the simulator's events all have one time (%d); the late event would not be late", lateEv.Time)
	}

	h := newHarness(t, "", nil)
	id := h.enroll("s1")
	c := h.dial(id, 1)
	d := mustOpen(t, c)
	sendAndAck(t, d, ingesttest.MustBatch(protocol.KindEvents, &protocol.Events{Events: rest[:half]}, 1, 1))
	sendAndAck(t, d, ingesttest.MustBatch(protocol.KindEvents, &protocol.Events{Events: rest[half:]}, 1, 2))

	ctx := context.Background()
	pool := h.st.Pool()
	w := audit.NewWriter(pool, audit.WriterOptions{})
	appendAll := func() {
		t.Helper()
		// Two appenders (two replicas' jobs) and the API's writer at once.
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := audit.AppendVCenterEvents(ctx, pool, audit.VCenterOptions{Settle: time.Nanosecond, BatchSize: 3})
				errs <- err
			}()
		}
		for i := range 5 {
			if err := w.Append(ctx, audit.Record{Source: "api", ActorType: "user", ActorName: "op", Action: "test.noise",
				ResourceID: string(rune('a' + i)), Result: audit.ResultSuccess}); err != nil {
				t.Error(err)
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	appendAll()
	if n := h.count(`SELECT count(*) FROM audit_log WHERE source = 'vcenter'`); n != int64(len(rest)) {
		t.Fatalf("%d vcenter records after the first append, want %d", n, len(rest))
	}

	// Restart the server; the agent redelivers batch 2 (its ack was
	// "lost") and then sends the late event.
	c.Close()
	h.stop()
	h.start(nil)
	c = h.dial(id, 1)
	d = mustOpen(t, c)
	if a := sendAndAck(t, d, ingesttest.MustBatch(protocol.KindEvents, &protocol.Events{Events: rest[half:]}, 1, 2)); a.Status != protocol.AckDuplicate {
		t.Fatalf("redelivered batch: status %d, want duplicate", a.Status)
	}
	sendAndAck(t, d, ingesttest.MustBatch(protocol.KindEvents, &protocol.Events{Events: []protocol.Event{lateEv}}, 1, 3))
	appendAll()
	appendAll() // nothing left: a no-op

	logs := audit.NewStore(pool)
	recs, _, err := logs.Query(ctx, audit.Filter{Source: audit.SourceVCenter})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(evs) {
		t.Fatalf("%d vcenter records, want %d (one per event)", len(recs), len(evs))
	}
	seen := map[string]bool{}
	byKey := map[int64]protocol.Event{}
	for _, e := range evs {
		byKey[e.Key] = e
	}
	// Query is newest first: walk it oldest first.
	var prev time.Time
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if seen[r.RequestID] {
			t.Fatalf("event %s appended twice", r.RequestID)
		}
		seen[r.RequestID] = true
		var sum struct {
			Key     int64  `json:"key"`
			Site    string `json:"site"`
			Type    string `json:"type"`
			Message string `json:"message"`
			Late    bool   `json:"late"`
		}
		if err := json.Unmarshal(r.Summary, &sum); err != nil {
			t.Fatal(err)
		}
		e, ok := byKey[sum.Key]
		if !ok {
			t.Fatalf("record for unknown event key %d", sum.Key)
		}
		if r.Action != "vcenter."+e.Type || r.ActorName != e.User || r.ActorType != "vcenter" || sum.Site != "s1" ||
			sum.Message != e.Message || !r.Time.Equal(time.UnixMilli(e.Time).UTC()) {
			t.Errorf("record %d does not match event %d: %+v / %+v", r.Seq, e.Key, r, e)
		}
		if e.EntityID != "" && r.ResourceID != e.Source+":"+e.EntityID {
			t.Errorf("record %d resource %q, want %q", r.Seq, r.ResourceID, e.Source+":"+e.EntityID)
		}
		if isLate := e.Key == lateEv.Key && wantLate; sum.Late != isLate {
			t.Errorf("event %d late=%v, want %v", e.Key, sum.Late, isLate)
		}
		if e.Key != lateEv.Key {
			if r.Time.Before(prev) {
				t.Errorf("record %d (%s) is older than the one before it (%s)", r.Seq, r.Time, prev)
			}
			prev = r.Time
		}
	}
	if n := h.count(`SELECT count(*) FROM vcenter_events WHERE audit_seq IS NULL`); n != 0 {
		t.Errorf("%d events still pending", n)
	}
	if n := h.count(`SELECT count(*) FROM audit_log WHERE source = 'api'`); n != 15 {
		t.Errorf("%d api records, want 15 (the writer's records interleave)", n)
	}
	v, err := logs.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK {
		t.Fatalf("chain does not verify: %+v", v)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
