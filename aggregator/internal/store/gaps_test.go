package store_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
	"github.com/vmpulse/vmpulse/protocol"
)

// TestWriteCollectionGap stores what an agent could not re-read from
// vCenter (a collection gap: source, entities, counters, interval) beside a
// spool gap of the same epoch, and reads both back the way a coverage query
// would: by site and time, and by entity.
func TestWriteCollectionGap(t *testing.T) {
	ctx := store.AllSites(context.Background())
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, site := range []string{"dc1", "dc2"} {
		if err := st.EnsureSite(ctx, site, ""); err != nil {
			t.Fatal(err)
		}
	}
	const agent = "00000000-0000-0000-0000-0000000000a1"
	meta := func(seq uint64) store.BatchMeta {
		return store.BatchMeta{AgentID: agent, Site: "dc1", Epoch: 7, Seq: seq, Kind: protocol.KindGap}
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	lostFrom, lostTo := now.Add(-3*time.Hour), now.Add(-2*time.Hour)
	vms := &protocol.Gap{First: lostFrom.UnixMilli(), Last: lostTo.UnixMilli(), Reason: "beyond vCenter retention", Detected: now.UnixMilli(),
		Source: "vc-1", EntityKind: "vm", EntityIDs: []string{"vm-1", "vm-2"}, Counters: []string{"cpu.usage.average", "mem.usage.average"}, Interval: 20}
	hosts := &protocol.Gap{First: lostFrom.UnixMilli(), Last: lostTo.UnixMilli(), Reason: "beyond vCenter retention", Detected: now.UnixMilli(),
		Source: "vc-1", EntityKind: "host", EntityIDs: []string{"host-9"}, Interval: 20}
	spool := &protocol.Gap{Epoch: 7, FromSeq: 1, ToSeq: 4, Batches: 4, Bytes: 4096, First: now.Add(-time.Hour).UnixMilli(), Last: now.Add(-50 * time.Minute).UnixMilli(),
		Reason: "spool quota", Detected: now.UnixMilli()}

	// Two collection gaps have no seqs of their own: each is keyed by its
	// batch, so neither replaces the other nor the spool gap.
	for i, g := range []*protocol.Gap{vms, hosts, spool} {
		seq := uint64(10 + i)
		res, err := st.WriteGap(ctx, meta(seq), g)
		if err != nil || res.Duplicate {
			t.Fatalf("write gap %d: %+v, %v", seq, res, err)
		}
	}
	if res, err := st.WriteGap(ctx, meta(10), vms); err != nil || !res.Duplicate {
		t.Fatalf("redelivered gap batch: %+v, %v; want a duplicate", res, err)
	}

	type row struct {
		reason      string
		first, last time.Time
		source      *string
		kind        *string
		ids         []string
		counters    []string
		interval    *int32
		batches     int64
	}
	read := func(where string, args ...any) []row {
		t.Helper()
		rows, err := st.Pool().Query(ctx, `SELECT reason, first_ts, last_ts, source, entity_kind, entity_ids, counters, interval_s, batches
			FROM ingest_gaps WHERE `+where+` ORDER BY id`, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.reason, &r.first, &r.last, &r.source, &r.kind, &r.ids, &r.counters, &r.interval, &r.batches); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}

	// A coverage query for vm-2 over the last four hours: the gap naming it,
	// and the spool gap, which concerns the whole site.
	got := read(`site = $1 AND last_ts >= $2 AND first_ts < $3
		AND (entity_kind IS NULL OR entity_kind = $4 AND (entity_ids IS NULL OR entity_ids @> ARRAY[$5]))`,
		"dc1", now.Add(-4*time.Hour), now, "vm", "vm-2")
	if len(got) != 2 {
		t.Fatalf("coverage of vm-2: %d gaps, want 2: %+v", len(got), got)
	}
	g := got[0]
	if g.reason != "beyond vCenter retention" || !g.first.Equal(lostFrom) || !g.last.Equal(lostTo) ||
		g.source == nil || *g.source != "vc-1" || g.kind == nil || *g.kind != "vm" ||
		!slices.Equal(g.ids, vms.EntityIDs) || !slices.Equal(g.counters, vms.Counters) ||
		g.interval == nil || *g.interval != 20 || g.batches != 0 {
		t.Errorf("collection gap stored as %+v", g)
	}
	if s := got[1]; s.reason != "spool quota" || s.source != nil || s.kind != nil || s.ids != nil || s.counters != nil || s.interval != nil || s.batches != 4 {
		t.Errorf("spool gap stored as %+v", s)
	}
	// Counters left out mean all of them: NULL, not an empty array.
	if h := read(`entity_kind = 'host'`); len(h) != 1 || h[0].counters != nil || !slices.Equal(h[0].ids, []string{"host-9"}) {
		t.Errorf("host gap stored as %+v", h)
	}
	// The entity and site/time lookups can use their indexes (the table is
	// tiny, so the planner must be told to prefer them).
	tx, err := st.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	for q, idx := range map[string]string{
		`SELECT id FROM ingest_gaps WHERE entity_ids @> ARRAY['vm-1']`:                          "ingest_gaps_entities_idx",
		`SELECT id FROM ingest_gaps WHERE site = 'dc1' AND last_ts >= now() - interval '1 day'`: "ingest_gaps_site_time_idx",
	} {
		rows, err := tx.Query(ctx, `EXPLAIN (COSTS OFF) `+q)
		if err != nil {
			t.Fatal(err)
		}
		var all []string
		for rows.Next() {
			var l string
			if err := rows.Scan(&l); err != nil {
				t.Fatal(err)
			}
			all = append(all, l)
		}
		rows.Close()
		if !slices.ContainsFunc(all, func(l string) bool { return strings.Contains(l, idx) }) {
			t.Errorf("%s: plan %q does not use %s", q, all, idx)
		}
	}
	tx.Rollback(ctx)

	// The history API's coverage reads it as data beyond retention.
	outs, err := st.Outages(ctx, "dc1", "vc-1", "vm", "vm-2", now.Add(-4*time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(outs, func(o store.Outage) bool {
		return o.Cause == store.CauseBeyondRetention && o.From.Equal(lostFrom) && !o.To.Before(lostTo)
	}) {
		t.Errorf("outages of vm-2: %+v, want beyond_retention from %s to %s", outs, lostFrom, lostTo)
	}

	// A collection gap about a source of another site is refused.
	other := *vms
	other.Source = "vc-2"
	if _, err := st.WriteSamples(ctx, store.BatchMeta{AgentID: "00000000-0000-0000-0000-0000000000b2", Site: "dc2", Epoch: 1, Seq: 1, Kind: protocol.KindSamples},
		&protocol.Samples{Series: []protocol.SeriesData{{
			Key:        protocol.SeriesKey{Source: "vc-2", EntityKind: "vm", EntityID: "vm-1", Counters: []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}}},
			Timestamps: []int64{now.UnixMilli()}, Values: [][]float64{{1}},
		}}}); err != nil {
		t.Fatal(err)
	}
	_, err = st.WriteGap(ctx, meta(13), &other)
	var rej *store.RejectError
	if !errors.As(err, &rej) || rej.Code != protocol.ErrCodeForbidden {
		t.Fatalf("gap about another site's source: %v, want a forbidden rejection", err)
	}
}
