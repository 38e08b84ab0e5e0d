package ingest_test

import (
	"sync"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/protocol"
)

// recordingPublisher checks, at each publication, that the batch is already
// committed: its ledger row and its samples are visible to another
// connection.
type recordingPublisher struct {
	h   *harness
	mu  sync.Mutex
	got []published
}

type published struct {
	site, agent string
	samples     int
	ledger      int64 // ledger rows of the agent visible at publication
	stored      int64 // samples visible at publication
}

func (p *recordingPublisher) PublishSamples(site, agentID string, s *protocol.Samples) {
	pub := published{site: site, agent: agentID, samples: s.Count(),
		ledger: p.h.count(`SELECT count(*) FROM ingest_ledger WHERE agent_id = $1`, agentID),
		stored: p.h.count(`SELECT count(*) FROM samples_named`)}
	p.mu.Lock()
	p.got = append(p.got, pub)
	p.mu.Unlock()
}

func (p *recordingPublisher) list() []published {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]published(nil), p.got...)
}

// TestPublishAfterCommit: ingest hands each new samples batch to its
// Publisher after COMMIT and before the ack, with the site of the agent's
// certificate; a redelivery (duplicate) and other kinds of batch are not
// published.
func TestPublishAfterCommit(t *testing.T) {
	h := newHarness(t, "", nil)
	id := h.enroll("dc1")
	h.stop()
	pub := &recordingPublisher{h: h}
	h.cfg.Publisher = pub
	h.start(nil)
	c := h.dial(id, 1)
	d := mustOpen(t, c)
	inv := &protocol.Inventory{Source: "vc-a", Full: true, At: time.Now().UnixMilli(),
		Objects: []protocol.InventoryObject{{Source: "vc-a", Kind: "vm", ID: "vm-1000", Name: "a"}}}
	sendAndAck(t, d, ingesttest.MustBatch(protocol.KindInventory, inv, 1, 1))
	p1 := ingesttest.Samples("vc-a", 10, 3, t0, 1)
	p2 := ingesttest.Samples("vc-a", 10, 3, t0+60_000, 2)
	b2 := ingesttest.MustBatch(protocol.KindSamples, p2, 1, 3)
	for _, b := range []*protocol.Batch{ingesttest.MustBatch(protocol.KindSamples, p1, 1, 2), b2} {
		if a := sendAndAck(t, d, b); a.Status != protocol.AckStored {
			t.Fatalf("seq %d: %+v", b.Seq, a)
		}
	}
	if a := sendAndAck(t, d, b2); a.Status != protocol.AckDuplicate {
		t.Fatalf("redelivery: %+v", a)
	}
	got := pub.list()
	if len(got) != 2 {
		t.Fatalf("published %d batches, want 2 (the samples batches, once each): %+v", len(got), got)
	}
	n := p1.Count()
	for i, g := range got {
		if g.site != "dc1" || g.agent != id.AgentID || g.samples != n {
			t.Errorf("publication %d = %+v", i, g)
		}
		// Published after COMMIT: the batch is visible to others.
		if g.ledger != int64(i+2) || g.stored != int64((i+1)*n) {
			t.Errorf("publication %d saw %d ledger rows and %d samples: not yet committed", i, g.ledger, g.stored)
		}
	}
}
