package protocol

import (
	"encoding/json"
	"fmt"
	"math"
	"sync"
)

// NewBatch encodes v, compresses it with codec and returns the batch that
// carries it. v is *Samples (KindSamples, binary), or *Inventory, *Events or
// *Gap (JSON); kind must match it. First and Last are set from the data:
// the sample timestamps, Inventory.At, the event times, or Gap.First/Last
// (all 0 if there is none). Epoch and Seq are left 0 for the spool to
// assign before the batch is marshaled.
func NewBatch(kind BatchKind, codec Codec, v any) (*Batch, error) {
	if !codec.Valid() {
		return nil, errorf(ErrCodeUnsupported, "batch: unknown codec %d", uint8(codec))
	}
	b := &Batch{Kind: kind, Codec: codec}
	var (
		raw []byte
		err error
	)
	switch x := v.(type) {
	case *Samples:
		if err = wantKind(kind, KindSamples, v); err != nil {
			return nil, err
		}
		bp := rawPool.Get().(*[]byte)
		defer putRaw(bp)
		if raw, err = AppendSamples((*bp)[:0], x); err != nil {
			return nil, err
		}
		*bp = raw
		b.First, b.Last = samplesSpan(x)
	case *Inventory:
		if err = wantKind(kind, KindInventory, v); err != nil {
			return nil, err
		}
		if err = x.validate(); err != nil {
			return nil, err
		}
		b.First, b.Last = x.At, x.At
		raw, err = json.Marshal(x)
	case *Events:
		if err = wantKind(kind, KindEvents, v); err != nil {
			return nil, err
		}
		if err = x.validate(); err != nil {
			return nil, err
		}
		b.First, b.Last = eventsSpan(x)
		raw, err = json.Marshal(x)
	case *Gap:
		if err = wantKind(kind, KindGap, v); err != nil {
			return nil, err
		}
		if err = x.validate(); err != nil {
			return nil, err
		}
		b.First, b.Last = x.First, x.Last
		raw, err = json.Marshal(x)
	default:
		return nil, fmt.Errorf("protocol: batch: cannot encode %T", v)
	}
	if err != nil {
		return nil, fmt.Errorf("protocol: batch: %s: %w", kind, err)
	}
	if b.Payload, err = Compress(codec, nil, raw); err != nil {
		return nil, err
	}
	if len(b.Payload)+maxBatchHeaderLen > MaxFrameSize {
		return nil, errorf(ErrCodeTooLarge, "batch: %s payload of %d bytes exceeds the frame limit %d", kind, len(b.Payload), MaxFrameSize)
	}
	return b, nil
}

// rawPool recycles the uncompressed samples buffers of NewBatch.
var rawPool = sync.Pool{New: func() any { b := make([]byte, 0, 256<<10); return &b }}

func putRaw(bp *[]byte) {
	if cap(*bp) <= maxPooledScratch {
		rawPool.Put(bp)
	}
}

func wantKind(kind, want BatchKind, v any) error {
	if kind != want {
		return errorf(ErrCodeUnsupported, "batch: kind %s cannot carry %T", kind, v)
	}
	return nil
}

func samplesSpan(s *Samples) (first, last int64) {
	first, last = math.MaxInt64, math.MinInt64
	for i := range s.Series {
		ts := s.Series[i].Timestamps
		if len(ts) == 0 {
			continue
		}
		first, last = min(first, ts[0]), max(last, ts[len(ts)-1])
	}
	if first > last {
		return 0, 0
	}
	return first, last
}

func eventsSpan(e *Events) (first, last int64) {
	if len(e.Events) == 0 {
		return 0, 0
	}
	first, last = math.MaxInt64, math.MinInt64
	for i := range e.Events {
		first, last = min(first, e.Events[i].Time), max(last, e.Events[i].Time)
	}
	return first, last
}

// payload decompresses b's payload after checking that it holds want.
func (b *Batch) payload(want BatchKind) ([]byte, error) {
	if b.Kind != want {
		return nil, errorf(ErrCodeProtocol, "batch: kind %s payload read as %s", b.Kind, want)
	}
	return Decompress(b.Codec, nil, b.Payload)
}

// Samples decompresses and decodes the payload of a KindSamples batch.
func (b *Batch) Samples() (*Samples, error) {
	p, err := b.payload(KindSamples)
	if err != nil {
		return nil, err
	}
	return DecodeSamples(p)
}

// Inventory decompresses, decodes and validates the payload of a
// KindInventory batch.
func (b *Batch) Inventory() (*Inventory, error) {
	var v Inventory
	if err := b.decodeJSON(KindInventory, &v); err != nil {
		return nil, err
	}
	if err := v.validate(); err != nil {
		return nil, err
	}
	return &v, nil
}

// Events decompresses, decodes and validates the payload of a KindEvents
// batch.
func (b *Batch) Events() (*Events, error) {
	var v Events
	if err := b.decodeJSON(KindEvents, &v); err != nil {
		return nil, err
	}
	if err := v.validate(); err != nil {
		return nil, err
	}
	return &v, nil
}

// Gap decompresses, decodes and validates the payload of a KindGap batch.
func (b *Batch) Gap() (*Gap, error) {
	var v Gap
	if err := b.decodeJSON(KindGap, &v); err != nil {
		return nil, err
	}
	if err := v.validate(); err != nil {
		return nil, err
	}
	return &v, nil
}

// decodeJSON decodes a JSON payload. Unknown fields are allowed so that a
// newer sender can add some; the size is already bounded by decompression.
func (b *Batch) decodeJSON(kind BatchKind, v any) error {
	p, err := b.payload(kind)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(p, v); err != nil {
		return malformedf("%s: %v", kind, err)
	}
	return nil
}

// checkField validates one JSON string field.
func checkField(what, field, s string, required bool) error {
	if required && s == "" {
		return malformedf("%s: missing %s", what, field)
	}
	if len(s) > MaxStringLen {
		return errorf(ErrCodeTooLarge, "%s: %s length %d exceeds %d", what, field, len(s), MaxStringLen)
	}
	return nil
}

func (inv *Inventory) validate() error {
	if err := checkField("inventory", "source", inv.Source, true); err != nil {
		return err
	}
	for i := range inv.Objects {
		o := &inv.Objects[i]
		what := fmt.Sprintf("inventory: object %d", i)
		if err := checkField(what, "kind", o.Kind, true); err != nil {
			return err
		}
		if err := checkField(what, "id", o.ID, true); err != nil {
			return err
		}
		if o.Source != "" && o.Source != inv.Source {
			return malformedf("%s: source %q differs from the inventory's %q", what, o.Source, inv.Source)
		}
	}
	return nil
}

func (ev *Events) validate() error {
	for i := range ev.Events {
		e := &ev.Events[i]
		what := fmt.Sprintf("events: event %d", i)
		if err := checkField(what, "source", e.Source, true); err != nil {
			return err
		}
		if err := checkField(what, "type", e.Type, true); err != nil {
			return err
		}
		if e.Key <= 0 {
			return malformedf("%s: key %d (vCenter event keys are positive)", what, e.Key)
		}
	}
	return nil
}

func (g *Gap) validate() error {
	if g.First > g.Last {
		return malformedf("gap: first %d after last %d", g.First, g.Last)
	}
	if g.FromSeq > g.ToSeq {
		return malformedf("gap: from_seq %d after to_seq %d", g.FromSeq, g.ToSeq)
	}
	if err := checkField("gap", "reason", g.Reason, false); err != nil {
		return err
	}
	if err := checkField("gap", "source", g.Source, false); err != nil {
		return err
	}
	if err := checkField("gap", "entity_kind", g.EntityKind, false); err != nil {
		return err
	}
	if g.Source == "" && (g.EntityKind != "" || len(g.EntityIDs) > 0) {
		return malformedf("gap: entity_kind or entity_ids without a source")
	}
	if g.EntityKind == "" && len(g.EntityIDs) > 0 {
		return malformedf("gap: entity_ids without an entity_kind")
	}
	if len(g.EntityIDs) > MaxGapEntities {
		return errorf(ErrCodeTooLarge, "gap: %d entity_ids exceed %d", len(g.EntityIDs), MaxGapEntities)
	}
	for i, id := range g.EntityIDs {
		if err := checkField("gap", fmt.Sprintf("entity_ids[%d]", i), id, true); err != nil {
			return err
		}
	}
	if len(g.Counters) > MaxCountersPerSeries {
		return errorf(ErrCodeTooLarge, "gap: %d counters exceed %d", len(g.Counters), MaxCountersPerSeries)
	}
	for i, c := range g.Counters {
		if err := checkField("gap", fmt.Sprintf("counters[%d]", i), c, true); err != nil {
			return err
		}
	}
	if g.Interval < 0 || g.Interval > maxGapInterval {
		return malformedf("gap: interval %d s outside 0..%d", g.Interval, maxGapInterval)
	}
	return nil
}
