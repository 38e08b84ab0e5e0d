package ingest_test

import (
	"sync"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/protocol"
)

// recordingEvents checks, at each publication, that the events are
// already committed: visible in vcenter_events to another connection.
type recordingEvents struct {
	h   *harness
	mu  sync.Mutex
	got []publishedEvents
}

type publishedEvents struct {
	site, agent string
	events      int
	stored      int64 // vcenter_events rows visible at publication
}

func (p *recordingEvents) PublishEvents(site, agentID string, ev *protocol.Events) {
	pub := publishedEvents{site: site, agent: agentID, events: len(ev.Events), stored: p.h.count(`SELECT count(*) FROM vcenter_events`)}
	p.mu.Lock()
	p.got = append(p.got, pub)
	p.mu.Unlock()
}

// TestEventsPublishedAfterCommit: ingest hands each new events batch to
// Config.Events after COMMIT and before the ack, with the site of the
// agent's certificate; a redelivery and other kinds of batch are not
// handed over.
func TestEventsPublishedAfterCommit(t *testing.T) {
	h := newHarness(t, "", nil)
	id := h.enroll("dc1")
	h.stop()
	pub := &recordingEvents{h: h}
	h.cfg.Events = pub
	h.start(nil)
	c := h.dial(id, 1)
	d := mustOpen(t, c)
	now := time.Now().UnixMilli()
	alarm := func(key int64) protocol.Event {
		return protocol.Event{Source: "vc-a", Key: key, Type: "AlarmStatusChangedEvent", Time: now, EntityKind: "vm", EntityID: "vm-1",
			Extra: map[string]any{"alarm": "alarm-1", "from": "green", "to": "red"}}
	}
	sendAndAck(t, d, ingesttest.MustBatch(protocol.KindSamples, ingesttest.Samples("vc-a", 2, 1, now, 1), 1, 1))
	b2 := ingesttest.MustBatch(protocol.KindEvents, &protocol.Events{Events: []protocol.Event{alarm(1), alarm(2)}}, 1, 2)
	b3 := ingesttest.MustBatch(protocol.KindEvents, &protocol.Events{Events: []protocol.Event{alarm(3)}}, 1, 3)
	for _, b := range []*protocol.Batch{b2, b3} {
		if a := sendAndAck(t, d, b); a.Status != protocol.AckStored {
			t.Fatalf("seq %d: %+v", b.Seq, a)
		}
	}
	if a := sendAndAck(t, d, b3); a.Status != protocol.AckDuplicate {
		t.Fatalf("redelivery: %+v", a)
	}
	pub.mu.Lock()
	got := append([]publishedEvents(nil), pub.got...)
	pub.mu.Unlock()
	want := []publishedEvents{{"dc1", id.AgentID, 2, 2}, {"dc1", id.AgentID, 1, 3}}
	if len(got) != len(want) {
		t.Fatalf("published %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("publication %d = %+v, want %+v (site, agent, events, rows committed)", i, got[i], want[i])
		}
	}
}
