package protocol

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestNewBatchSamples(t *testing.T) {
	s := genVSphere(30, 3, 5)
	s.Series[4].Timestamps = nil // a series without points does not move the span
	s.Series[4].Values = make([][]float64, len(vmCounters))
	for _, codec := range []Codec{CodecNone, CodecZstd} {
		b, err := NewBatch(KindSamples, codec, s)
		if err != nil {
			t.Fatal(err)
		}
		wantFirst, wantLast := s.Series[0].Timestamps[0], s.Series[0].Timestamps[2]
		if b.Kind != KindSamples || b.Codec != codec || b.First != wantFirst || b.Last != wantLast || b.Epoch != 0 || b.Seq != 0 {
			t.Fatalf("batch header %+v, want kind samples, codec %s, span [%d, %d], epoch and seq 0", b, codec, wantFirst, wantLast)
		}
		got, err := b.Samples()
		if err != nil {
			t.Fatal(err)
		}
		if d := diffSamples(s, got); d != "" {
			t.Fatal(d)
		}
		if _, err := b.Inventory(); CodeOf(err) != ErrCodeProtocol {
			t.Fatalf("reading samples as inventory: %v, want code protocol", err)
		}
	}
}

func TestNewBatchJSONKinds(t *testing.T) {
	inv := &Inventory{Source: "vc1", Full: true, At: 5000, Objects: []InventoryObject{
		{Source: "vc1", Kind: "vm", ID: "vm-1", Name: "web01", ParentID: "group-v3", Props: map[string]any{"power_state": "poweredOn", "cpus": 4.0}},
		{Kind: "host", ID: "host-9", Name: "esx9", Deleted: true},
	}}
	ev := &Events{Events: []Event{
		{Source: "vc1", Key: 1001, Type: "VmPoweredOffEvent", Time: 9000, User: "VSPHERE.LOCAL\\admin"},
		{Source: "vc1", Key: 1000, Type: "UserLoginSessionEvent", Time: 7000},
	}}
	gap := &Gap{Epoch: 1, FromSeq: 10, ToSeq: 20, Batches: 11, Bytes: 1 << 20, First: 100, Last: 200, Reason: "spool full", Detected: 300}

	b, err := NewBatch(KindInventory, CodecZstd, inv)
	if err != nil {
		t.Fatal(err)
	}
	if b.First != 5000 || b.Last != 5000 {
		t.Errorf("inventory span [%d, %d], want [5000, 5000]", b.First, b.Last)
	}
	gotInv, err := b.Inventory()
	if err != nil || !reflect.DeepEqual(gotInv, inv) {
		t.Fatalf("inventory round trip: %+v, %v", gotInv, err)
	}

	if b, err = NewBatch(KindEvents, CodecZstd, ev); err != nil {
		t.Fatal(err)
	}
	if b.First != 7000 || b.Last != 9000 {
		t.Errorf("events span [%d, %d], want [7000, 9000]", b.First, b.Last)
	}
	gotEv, err := b.Events()
	if err != nil || !reflect.DeepEqual(gotEv, ev) {
		t.Fatalf("events round trip: %+v, %v", gotEv, err)
	}

	if b, err = NewBatch(KindGap, CodecNone, gap); err != nil {
		t.Fatal(err)
	}
	if b.First != 100 || b.Last != 200 {
		t.Errorf("gap span [%d, %d], want [100, 200]", b.First, b.Last)
	}
	gotGap, err := b.Gap()
	if err != nil || !reflect.DeepEqual(gotGap, gap) {
		t.Fatalf("gap round trip: %+v, %v", gotGap, err)
	}
	if _, err := b.Samples(); CodeOf(err) != ErrCodeProtocol {
		t.Fatalf("reading a gap as samples: %v, want code protocol", err)
	}
}

func TestNewBatchRejects(t *testing.T) {
	tests := []struct {
		name  string
		kind  BatchKind
		codec Codec
		v     any
		code  ErrorCode
		msg   string
	}{
		{"kind mismatch", KindEvents, CodecZstd, &Samples{}, ErrCodeUnsupported, "kind events cannot carry *protocol.Samples"},
		{"unknown codec", KindSamples, 7, &Samples{}, ErrCodeUnsupported, "unknown codec 7"},
		{"unknown type", KindSamples, CodecZstd, "text", ErrCodeInternal, "cannot encode string"},
		{"inventory without source", KindInventory, CodecZstd, &Inventory{}, ErrCodeMalformed, "inventory: missing source"},
		{"object without id", KindInventory, CodecZstd, &Inventory{Source: "vc", Objects: []InventoryObject{{Kind: "vm"}}}, ErrCodeMalformed, "inventory: object 0: missing id"},
		{"object without kind", KindInventory, CodecZstd, &Inventory{Source: "vc", Objects: []InventoryObject{{ID: "vm-1"}}}, ErrCodeMalformed, "inventory: object 0: missing kind"},
		{"object of another source", KindInventory, CodecZstd, &Inventory{Source: "vc", Objects: []InventoryObject{{Source: "vc2", Kind: "vm", ID: "vm-1"}}}, ErrCodeMalformed, "differs"},
		{"event without type", KindEvents, CodecZstd, &Events{Events: []Event{{Source: "vc", Key: 1}}}, ErrCodeMalformed, "events: event 0: missing type"},
		{"event without key", KindEvents, CodecZstd, &Events{Events: []Event{{Source: "vc", Type: "X"}}}, ErrCodeMalformed, "events: event 0: key 0"},
		{"event without source", KindEvents, CodecZstd, &Events{Events: []Event{{Key: 1, Type: "X"}}}, ErrCodeMalformed, "missing source"},
		{"gap backwards", KindGap, CodecZstd, &Gap{First: 2, Last: 1}, ErrCodeMalformed, "gap: first 2 after last 1"},
		{"gap entities without source", KindGap, CodecZstd, &Gap{EntityKind: "vm", EntityIDs: []string{"vm-1"}}, ErrCodeMalformed, "without a source"},
		{"gap entities without kind", KindGap, CodecZstd, &Gap{Source: "vc", EntityIDs: []string{"vm-1"}}, ErrCodeMalformed, "without an entity_kind"},
		{"gap empty entity id", KindGap, CodecZstd, &Gap{Source: "vc", EntityKind: "vm", EntityIDs: []string{""}}, ErrCodeMalformed, "missing entity_ids[0]"},
		{"gap empty counter", KindGap, CodecZstd, &Gap{Source: "vc", Counters: []string{"a", ""}}, ErrCodeMalformed, "missing counters[1]"},
		{"gap too many counters", KindGap, CodecZstd, &Gap{Source: "vc", Counters: make([]string, MaxCountersPerSeries+1)}, ErrCodeTooLarge, "counters exceed"},
		{"gap too many entities", KindGap, CodecZstd, &Gap{Source: "vc", EntityKind: "vm", EntityIDs: make([]string, MaxGapEntities+1)}, ErrCodeTooLarge, "entity_ids exceed"},
		{"gap long source", KindGap, CodecZstd, &Gap{Source: strings.Repeat("x", MaxStringLen+1)}, ErrCodeTooLarge, "source length"},
		{"gap negative interval", KindGap, CodecZstd, &Gap{Source: "vc", Interval: -20}, ErrCodeMalformed, "interval -20"},
		{"bad samples", KindSamples, CodecZstd, oneSeries([]int64{2, 1}, []float64{1, 2}), ErrCodeMalformed, "not after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewBatch(tt.kind, tt.codec, tt.v)
			if err == nil {
				t.Fatalf("NewBatch succeeded: %+v", b)
			}
			if CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q (code %s), want code %s containing %q", err, CodeOf(err), tt.code, tt.msg)
			}
		})
	}
}

func TestBatchPayloadRejects(t *testing.T) {
	tests := []struct {
		name string
		b    Batch
		read func(*Batch) error
		code ErrorCode
		msg  string
	}{
		{"bad JSON", Batch{Kind: KindEvents, Payload: []byte(`{"events":[`)},
			func(b *Batch) error { _, err := b.Events(); return err }, ErrCodeMalformed, "events: unexpected end"},
		{"invalid inventory", Batch{Kind: KindInventory, Payload: []byte(`{"source":"vc","objects":[{"kind":"vm"}],"new_field":1}`)},
			func(b *Batch) error { _, err := b.Inventory(); return err }, ErrCodeMalformed, "object 0: missing id"},
		{"invalid gap", Batch{Kind: KindGap, Payload: []byte(`{"from_seq":5,"to_seq":4}`)},
			func(b *Batch) error { _, err := b.Gap(); return err }, ErrCodeMalformed, "from_seq 5 after to_seq 4"},
		{"corrupt zstd", Batch{Kind: KindSamples, Codec: CodecZstd, Payload: []byte{0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3}},
			func(b *Batch) error { _, err := b.Samples(); return err }, ErrCodeMalformed, "decompress: zstd"},
		{"unknown codec", Batch{Kind: KindSamples, Codec: 3},
			func(b *Batch) error { _, err := b.Samples(); return err }, ErrCodeUnsupported, "decompress: unknown codec 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.read(&tt.b)
			if err == nil || CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v (code %s), want code %s containing %q", err, CodeOf(err), tt.code, tt.msg)
			}
		})
	}
}

// TestDecompressBomb checks that a tiny zstd payload that expands beyond
// MaxDecodedPayload is refused, both with and without a declared content
// size.
func TestDecompressBomb(t *testing.T) {
	big := make([]byte, MaxDecodedPayload+1)
	withSize, err := Compress(CodecZstd, nil, big[:MaxDecodedPayload])
	if err != nil {
		t.Fatal(err)
	}
	if out, err := Decompress(CodecZstd, nil, withSize); err != nil || len(out) != MaxDecodedPayload {
		t.Fatalf("payload of exactly MaxDecodedPayload: %d bytes, %v", len(out), err)
	}
	if _, err := Compress(CodecZstd, nil, big); CodeOf(err) != ErrCodeTooLarge {
		t.Fatalf("Compress above the limit: %v, want code too_large", err)
	}
	// A streaming encoder writes frames without a content size, so only
	// the running output check can stop them.
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf, zstd.WithWindowSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(big); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > 1<<20 {
		t.Fatalf("bomb is %d bytes, expected it to compress well", buf.Len())
	}
	// Two frames, each under the limit, together over it.
	twice := append(append([]byte(nil), withSize...), withSize...)
	for name, p := range map[string][]byte{"streamed": buf.Bytes(), "two frames": twice} {
		out, err := Decompress(CodecZstd, nil, p)
		if CodeOf(err) != ErrCodeTooLarge {
			t.Fatalf("%s: %d bytes, %v; want code too_large", name, len(out), err)
		}
	}
	b := &Batch{Kind: KindSamples, Codec: CodecZstd, Seq: 1, Payload: buf.Bytes()}
	if _, err := b.Samples(); CodeOf(err) != ErrCodeTooLarge {
		t.Fatalf("Samples() of a bomb: %v, want code too_large", err)
	}
}

func FuzzBatchPayloads(f *testing.F) {
	add := func(kind BatchKind, codec Codec, v any) {
		b, err := NewBatch(kind, codec, v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(kind), uint8(codec), b.Payload)
	}
	add(KindSamples, CodecZstd, genVSphere(3, 3, 2))
	add(KindSamples, CodecNone, oneSeries([]int64{1, 2}, []float64{nan, 2.5}))
	add(KindInventory, CodecZstd, &Inventory{Source: "vc", At: 1, Objects: []InventoryObject{{Kind: "vm", ID: "vm-1"}}})
	add(KindEvents, CodecNone, &Events{Events: []Event{{Source: "vc", Key: 1, Type: "E", Time: 2}}})
	add(KindGap, CodecZstd, &Gap{FromSeq: 1, ToSeq: 2, First: 3, Last: 4, Reason: "spool full"})
	add(KindGap, CodecNone, &Gap{First: 3, Last: 4, Reason: "beyond vCenter retention", Detected: 5,
		Source: "vc", EntityKind: "vm", EntityIDs: []string{"vm-1", "vm-2"}, Counters: []string{"cpu.usage.average"}, Interval: 20})
	f.Fuzz(func(t *testing.T, kind, codec uint8, payload []byte) {
		b := &Batch{Kind: BatchKind(kind), Codec: Codec(codec), Seq: 1, Payload: payload}
		var (
			v   any
			err error
		)
		switch b.Kind {
		case KindSamples:
			v, err = b.Samples()
		case KindInventory:
			v, err = b.Inventory()
		case KindEvents:
			v, err = b.Events()
		case KindGap:
			v, err = b.Gap()
		default:
			return
		}
		if err != nil {
			if CodeOf(err) == ErrCodeInternal {
				t.Fatalf("error without a code: %v", err)
			}
			return
		}
		// What decodes must encode again into a batch of the same kind.
		if _, err := NewBatch(b.Kind, CodecZstd, v); err != nil {
			t.Fatalf("re-encoding decoded %s: %v", b.Kind, err)
		}
	})
}
