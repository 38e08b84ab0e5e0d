package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/access"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// TestSiteTimeline: sessions (ended cleanly, replaced, lost with a dead
// replica), the offline stretches between them, late batches as backfill,
// and the offline stretch as a cause of missing data.
func TestSiteTimeline(t *testing.T) {
	f := inventoryFixture(t)
	ctx := f.ctx
	pool := f.st.Pool()
	start := time.Now().Add(-time.Second)

	// Session 1: connected, then a clean disconnect.
	if err := f.st.AgentConnected(ctx, f.agent, "1", "192.0.2.1:1", 1, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.AgentHeartbeat(ctx, f.agent, &protocol.Heartbeat{}); err != nil {
		t.Fatal(err)
	}
	if err := f.st.AgentDisconnected(ctx, f.agent); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	// Session 2: connected, then its replica dies (no disconnect recorded;
	// its lease runs out).
	if err := f.st.AgentConnected(ctx, f.agent, "1", "192.0.2.1:1", 1, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE agent_sessions SET lease_until = now() - interval '1 second', last_seen = now() - interval '40 millisecond' WHERE ended_at IS NULL`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	// A late batch: samples 10 minutes old arrive now.
	old := time.Now().Add(-10 * time.Minute)
	if _, err := f.st.WriteSamples(ctx, store.BatchMeta{AgentID: f.agent, Site: "dc1", Epoch: 1, Seq: 100, Kind: protocol.KindSamples},
		&protocol.Samples{Series: []protocol.SeriesData{{
			Key:        protocol.SeriesKey{Source: vcA, EntityKind: "vm", EntityID: "vm-1", Counters: []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}}},
			Timestamps: []int64{old.UnixMilli()}, Values: [][]float64{{100}},
		}}}); err != nil {
		t.Fatal(err)
	}

	end := time.Now().Add(time.Second)
	tl, err := f.st.SiteTimeline(ctx, "dc1", start.Add(-time.Hour), end)
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.Sessions) != 2 || tl.Sessions[0].EndReason != "disconnected" || tl.Sessions[0].To == nil ||
		tl.Sessions[1].EndReason != "lost" || tl.Sessions[1].To == nil {
		t.Fatalf("sessions = %+v", tl.Sessions)
	}
	// Offline: between the two sessions, and after the lost one; never
	// before the first (the site was not monitored yet).
	if len(tl.Offline) != 2 || !tl.Offline[0].From.Equal(*tl.Sessions[0].To) || !tl.Offline[0].To.Equal(tl.Sessions[1].From) ||
		!tl.Offline[1].From.Equal(*tl.Sessions[1].To) {
		t.Errorf("offline = %+v (sessions %+v)", tl.Offline, tl.Sessions)
	}
	if len(tl.Backfills) != 1 || tl.Backfills[0].Batches != 1 || tl.Backfills[0].DataTo.Sub(old).Abs() > time.Millisecond {
		t.Errorf("backfills = %+v", tl.Backfills)
	}
	out, err := f.st.Outages(ctx, "dc1", vcA, store.KindVM, "vm-1", start.Add(-time.Hour), end)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range out {
		if o.Cause == store.CauseSiteOffline {
			n++
		}
	}
	if n != 2 {
		t.Errorf("outages = %+v, want the two offline stretches", out)
	}
	dc2 := access.WithScope(context.Background(), access.Scope{Sites: []string{"dc2"}})
	if _, err := f.st.SiteTimeline(dc2, "dc1", start, end); !errors.Is(err, store.ErrNotFound) {
		t.Error("timeline of a site outside the scope")
	}
}

// TestOutagesCollectionGap: a gap record naming its entities (a collection
// gap, migration 010) is a cause for those entities only; a spool gap for
// the whole site.
func TestOutagesCollectionGap(t *testing.T) {
	f := inventoryFixture(t)
	now := time.Now().UTC()
	if _, err := f.st.Pool().Exec(f.ctx, `INSERT INTO ingest_gaps (agent_id, site, epoch, from_seq, to_seq, batches, bytes, first_ts, last_ts, reason,
		    source, entity_kind, entity_ids, interval_s)
		VALUES ($1, 'dc1', 1, 7, 7, 0, 0, $2, $3, 'beyond vCenter retention', $4, 'vm', ARRAY['vm-2'], 20),
		       ($1, 'dc1', 1, 8, 9, 2, 100, $2, $3, 'spool full', NULL, NULL, NULL, NULL)`,
		f.agent, now.Add(-3*time.Hour), now.Add(-2*time.Hour), vcA); err != nil {
		t.Fatal(err)
	}
	causes := func(vm string) []string {
		out, err := f.st.Outages(f.ctx, "dc1", vcA, store.KindVM, vm, now.Add(-4*time.Hour), now)
		if err != nil {
			t.Fatal(err)
		}
		var c []string
		for _, o := range out {
			if o.Cause != store.CausePoweredOff {
				c = append(c, o.Cause)
			}
		}
		return c
	}
	if got := causes("vm-2"); len(got) != 2 || got[0] != store.CauseBeyondRetention && got[1] != store.CauseBeyondRetention {
		t.Errorf("vm-2 outages = %v, want the retention gap and the spool gap", got)
	}
	if got := causes("vm-1"); len(got) != 1 || got[0] != store.CauseSpoolDrop {
		t.Errorf("vm-1 outages = %v, want only the spool gap", got)
	}
}
