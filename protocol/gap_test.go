package protocol

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestGapCollectionFields round-trips a collection gap and checks both
// directions of compatibility: a spool gap of an older agent decodes with
// the new fields empty, and a collection gap reads, for an aggregator that
// predates its fields, as a plain gap over the same span.
func TestGapCollectionFields(t *testing.T) {
	g := &Gap{First: 1_700_000_000_000, Last: 1_700_003_600_000, Reason: "beyond vCenter retention", Detected: 1_700_010_000_000,
		Source: "vc-uuid", EntityKind: "vm", EntityIDs: []string{"vm-1", "vm-7"}, Counters: []string{"cpu.usage.average", "mem.usage.average"}, Interval: 20}
	b, err := NewBatch(KindGap, CodecZstd, g)
	if err != nil {
		t.Fatal(err)
	}
	if b.First != g.First || b.Last != g.Last {
		t.Errorf("batch span [%d, %d], want the gap's [%d, %d]", b.First, b.Last, g.First, g.Last)
	}
	got, err := b.Gap()
	if err != nil || !reflect.DeepEqual(got, g) {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, g)
	}

	old := []byte(`{"epoch":3,"from_seq":10,"to_seq":19,"batches":10,"bytes":4096,"first":1,"last":2,"reason":"spool quota","detected":3}`)
	ob, err := NewBatch(KindGap, CodecNone, &Gap{})
	if err != nil {
		t.Fatal(err)
	}
	ob.Payload = old
	og, err := ob.Gap()
	if err != nil {
		t.Fatal(err)
	}
	if og.Source != "" || og.EntityKind != "" || og.EntityIDs != nil || og.Counters != nil || og.Interval != 0 || og.ToSeq != 19 {
		t.Errorf("older spool gap decoded as %+v", og)
	}
	if raw, _ := json.Marshal(og); string(raw) != string(old) {
		t.Errorf("a spool gap encodes as %s, want the unchanged %s", raw, old)
	}

	// What an aggregator that predates the fields reads.
	var before struct {
		Epoch, FromSeq, ToSeq uint64
		First                 int64 `json:"first"`
		Last                  int64 `json:"last"`
		Reason                string
	}
	raw, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &before); err != nil {
		t.Fatal(err)
	}
	if before.First != g.First || before.Last != g.Last || before.Reason != g.Reason || before.FromSeq != 0 || before.ToSeq != 0 {
		t.Errorf("older reader sees %+v", before)
	}
}
