package agent

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/agent/internal/spool"
)

// TestOutageBeyondRealtimeWindowEndToEnd runs the agent, after a six-hour
// outage, against a simulated vCenter that keeps 20 s samples for an hour,
// 5 min samples for two and 30 min samples for four, and a real aggregator
// (a subprocess: the agent may not import its code) on real PostgreSQL.
// What reaches the database: the last hour at 20 s, the hour before at 5
// minutes, the two before at 30 minutes, in the VMs' usual series, and a
// gap record for the rest, with its source, entities, counters and
// interval, where the history API reads gaps.
func TestOutageBeyondRealtimeWindowEndToEnd(t *testing.T) {
	base := e2eDatabase(t)
	ctx := context.Background()
	log := testLogger(t)

	// vCenter, with its statistics intervals shortened.
	sim := startVCenter(t)
	vc := sim.vc
	reg := sim.model.Map()
	pm := reg.Get(*vc.ServiceContent.PerfManager).(*simulator.PerformanceManager)
	reg.WithLock(simulator.NewContext(), pm, func() {
		pm.HistoricalInterval = []types.PerfInterval{
			{Key: 1, SamplingPeriod: 300, Name: "Past day", Length: 2 * 3600, Level: 4, Enabled: true},
			{Key: 2, SamplingPeriod: 1800, Name: "Past week", Length: 4 * 3600, Level: 4, Enabled: true},
		}
	})
	source := vc.ServiceContent.About.InstanceUuid
	vms := poweredOnVMs(t, vc)

	agg := startAggregator(t, base)

	// The agent's state before the outage: it had collected every VM and
	// host until six hours ago.
	dir := t.TempDir()
	stop := time.Now().Add(-6 * time.Hour).Truncate(20 * time.Second)
	marks := map[string]int64{}
	for _, id := range append(slices.Clone(vms), hosts(t, vc)...) {
		marks[id] = stop.UnixMilli()
	}
	q, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.SetMeta("vsphere/hwm/"+source, encodeMarks(marks, 20)); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	cfg := agentConfig(t, "outage-agent", sim, agg)
	cfg.DataDir = dir
	a := runAgent(t, cfg, log)
	db, err := pgx.Connect(ctx, agg.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	// Wait for the gap records and for the realtime samples of the first
	// cycle (it sends them last) of every VM.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var gaps, recent int
		err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM ingest_gaps WHERE source IS NOT NULL),
			(SELECT count(DISTINCT se.entity_id) FROM samples s JOIN series se ON se.id = s.series_id
			 WHERE se.entity_kind = 'vm' AND s.ts > now() - interval '5 minutes')`).Scan(&gaps, &recent)
		if err != nil {
			t.Fatal(err)
		}
		if gaps > 0 && recent == len(vms) && a.Spool().Depth == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes: %d collection gaps, %d of %d VMs with recent samples, spool depth %d", gaps, recent, len(vms), a.Spool().Depth)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// The gap records: one per kind (the intervals keep every counter
	// here), from the mark to where the 30 min interval's samples begin.
	rows, err := db.Query(ctx, `SELECT site, source, entity_kind, entity_ids, cardinality(counters), interval_s, first_ts, last_ts, reason, batches
		FROM ingest_gaps WHERE source IS NOT NULL ORDER BY entity_kind`)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for rows.Next() {
		var (
			site, src, kind, reason string
			ids                     []string
			ncounters, interval     int
			first, last             time.Time
			batches                 int64
		)
		if err := rows.Scan(&site, &src, &kind, &ids, &ncounters, &interval, &first, &last, &reason, &batches); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, kind)
		lostTo := time.Now().Add(-4 * time.Hour)
		if site != "dc1" || src != source || reason != "beyond vCenter retention" || interval != 20 || ncounters == 0 || batches != 0 ||
			!first.Equal(stop) || last.Before(lostTo.Add(-31*time.Minute)) || last.After(lostTo) {
			t.Errorf("gap record %s %s %s %d ids, %d counters, %ds, (%s, %s], %q, %d batches; want lost (%s, ≈%s]",
				site, src, kind, len(ids), ncounters, interval, first.UTC(), last.UTC(), reason, batches, stop.UTC(), lostTo.UTC())
		}
		if kind == "vm" && !slices.Equal(ids, vms) {
			t.Errorf("vm gap names %v, want %v", ids, vms)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(kinds, []string{"host", "vm"}) {
		t.Errorf("collection gaps for %v, want host and vm", kinds)
	}

	// A VM's samples: one series, 30 min, 5 min, then ~20 s apart, and
	// nothing from the stretch the gap records.
	var ts []time.Time
	var nseries int
	if err := db.QueryRow(ctx, `SELECT count(DISTINCT se.id), array_agg(s.ts ORDER BY s.ts) FROM samples s JOIN series se ON se.id = s.series_id
		WHERE se.entity_id = $1 AND se.instance = ''`, vms[0]).Scan(&nseries, &ts); err != nil {
		t.Fatal(err)
	}
	if nseries != 1 {
		t.Errorf("%s: samples in %d series, want 1", vms[0], nseries)
	}
	steps := map[time.Duration]int{}
	for i := 1; i < len(ts); i++ {
		d := ts[i].Sub(ts[i-1])
		switch {
		case d == 30*time.Minute, d == 5*time.Minute:
			steps[d]++
		case d <= 25*time.Second:
			steps[20*time.Second]++
		default:
			if !(d < 5*time.Minute && ts[i-1].Truncate(5*time.Minute).Equal(ts[i-1])) { // the 5 min → 20 s seam
				t.Errorf("%s: %s between samples at %s and %s", vms[0], d, ts[i-1].UTC(), ts[i].UTC())
			}
		}
	}
	t.Logf("%s: %d samples from %s to %s; steps %v", vms[0], len(ts), ts[0].UTC(), ts[len(ts)-1].UTC(), steps)
	if ts[0].Before(time.Now().Add(-4*time.Hour - 31*time.Minute)) {
		t.Errorf("%s: a sample at %s, older than vCenter keeps any", vms[0], ts[0].UTC())
	}
	if steps[30*time.Minute] < 3 || steps[5*time.Minute] < 6 || steps[20*time.Second] < 160 {
		t.Errorf("%s: steps %v; want ≥3 of 30 min, ≥6 of 5 min, ≥160 of 20 s", vms[0], steps)
	}
}

// encodeMarks writes high-water marks as the vsphere package persists
// them (hwm.go: format 1, entries sorted by entity id).
func encodeMarks(marks map[string]int64, interval int32) []byte {
	ids := make([]string, 0, len(marks))
	for id := range marks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b := []byte{1}
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
		b = binary.AppendUvarint(b, uint64(interval))
		b = binary.AppendUvarint(b, uint64(marks[id]))
	}
	return b
}
