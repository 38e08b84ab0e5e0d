package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
	"github.com/vmpulse/vmpulse/protocol"
)

// Two aggregators share a database; one's retention drops a day the other
// still has cached as created. The other's next write for that day (a late
// backfill) must recreate the partition, not fail forever.
func TestStalePartitionCacheRecovers(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	a, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.EnsureSite(ctx, "dc1", ""); err != nil {
		t.Fatal(err)
	}
	old := time.Now().UTC().AddDate(0, 0, -5).Truncate(24 * time.Hour).Add(time.Hour)
	if err := a.EnsurePartitions(ctx, old, old); err != nil { // a caches the day
		t.Fatal(err)
	}
	if _, err := b.DropPartitionsBefore(ctx, old.AddDate(0, 0, 1)); err != nil {
		t.Fatal(err)
	}
	p := &protocol.Samples{Series: []protocol.SeriesData{{
		Key:        protocol.SeriesKey{Source: "vc", EntityKind: "vm", EntityID: "vm-1", Counters: []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}}},
		Timestamps: []int64{old.UnixMilli()},
		Values:     [][]float64{{42}},
	}}}
	m := store.BatchMeta{AgentID: "00000000-0000-0000-0000-000000000001", Site: "dc1", Epoch: 1, Seq: 1, Kind: protocol.KindSamples}
	res, err := a.WriteSamples(ctx, m, p)
	if err != nil {
		t.Fatalf("write after another aggregator dropped the partition: %v", err)
	}
	if res.Duplicate || res.Samples != 1 {
		t.Fatalf("result %+v", res)
	}
}

func TestSamplesOlderThanRetentionAreRefused(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{MaxSampleAge: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.EnsureSite(ctx, "dc1", ""); err != nil {
		t.Fatal(err)
	}
	p := &protocol.Samples{Series: []protocol.SeriesData{{
		Key:        protocol.SeriesKey{Source: "vc", EntityKind: "vm", EntityID: "vm-1", Counters: []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}}},
		Timestamps: []int64{time.Now().AddDate(0, 0, -3).UnixMilli()},
		Values:     [][]float64{{42}},
	}}}
	_, err = st.WriteSamples(ctx, store.BatchMeta{AgentID: "00000000-0000-0000-0000-000000000001", Site: "dc1", Epoch: 1, Seq: 1}, p)
	var rej *store.RejectError
	if !errors.As(err, &rej) || rej.Code != protocol.ErrCodeMalformed {
		t.Fatalf("3-day-old samples with 48h retention: %v, want a rejection", err)
	}
}
