package protocol

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestBatchRoundTrip(t *testing.T) {
	tests := []Batch{
		{Kind: KindSamples, Codec: CodecZstd, Epoch: 1, Seq: 1, First: 0, Last: 0, Payload: []byte{1, 2, 3}},
		{Kind: KindGap, Codec: CodecNone, Epoch: math.MaxUint64, Seq: math.MaxUint64, First: math.MinInt64, Last: math.MaxInt64},
		{Kind: KindEvents, Codec: CodecZstd, Epoch: 0, Seq: 7, First: -20000, Last: -1, Payload: bytes.Repeat([]byte("x"), 1000)},
	}
	for _, b := range tests {
		p, err := b.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary(%+v): %v", b, err)
		}
		var got Batch
		if err := got.UnmarshalBinary(p); err != nil {
			t.Fatalf("UnmarshalBinary: %v", err)
		}
		if !reflect.DeepEqual(normalizeMsg(&got), normalizeMsg(&b)) {
			t.Fatalf("round trip: got %+v, want %+v", got, b)
		}
		// UnmarshalBinary copies: clobbering p leaves the payload intact.
		for i := range p {
			p[i] = 0xee
		}
		if len(b.Payload) > 0 && !bytes.Equal(got.Payload, b.Payload) {
			t.Fatal("Batch.Payload aliases the input of UnmarshalBinary")
		}
	}
}

func TestBatchLayout(t *testing.T) {
	b := Batch{Kind: KindSamples, Codec: CodecZstd, Epoch: 3, Seq: 300, First: -1, Last: 1, Payload: []byte{0xab}}
	p, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{1, 1, 3, 0xac, 0x02, 1, 2, 0xab}
	if !bytes.Equal(p, want) {
		t.Fatalf("encoding % x, want % x", p, want)
	}
}

func TestBatchRejects(t *testing.T) {
	good := Batch{Kind: KindSamples, Codec: CodecZstd, Seq: 1}
	tests := []struct {
		name string
		edit func(*Batch)
		code ErrorCode
		msg  string
	}{
		{"unknown kind", func(b *Batch) { b.Kind = 0 }, ErrCodeUnsupported, "batch: unknown kind 0"},
		{"unknown kind 5", func(b *Batch) { b.Kind = 5 }, ErrCodeUnsupported, "batch: unknown kind 5"},
		{"unknown codec", func(b *Batch) { b.Codec = 2 }, ErrCodeUnsupported, "batch: unknown codec 2"},
		{"seq 0", func(b *Batch) { b.Seq = 0 }, ErrCodeMalformed, "batch: seq 0"},
		{"first after last", func(b *Batch) { b.First, b.Last = 2, 1 }, ErrCodeMalformed, "batch: first 2 after last 1"},
		{"too large", func(b *Batch) { b.Payload = make([]byte, MaxFrameSize) }, ErrCodeTooLarge, "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := good
			tt.edit(&b)
			if _, err := b.MarshalBinary(); CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("MarshalBinary: %v, want code %s containing %q", err, tt.code, tt.msg)
			}
			// Build the same bad header by hand and check the decoder too.
			if len(b.Payload) > 0 {
				return
			}
			p := []byte{byte(b.Kind), byte(b.Codec)}
			p = appendUv(p, b.Epoch)
			p = appendUv(p, b.Seq)
			p = appendZv(p, b.First)
			p = appendZv(p, b.Last)
			var got Batch
			if err := got.UnmarshalBinary(p); CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("UnmarshalBinary: %v, want code %s containing %q", err, tt.code, tt.msg)
			}
		})
	}
	for _, p := range [][]byte{nil, {1}, {1, 1}, {1, 1, 0x80}, {1, 1, 0, 1, 0}} {
		var b Batch
		if err := b.UnmarshalBinary(p); CodeOf(err) != ErrCodeMalformed {
			t.Errorf("UnmarshalBinary(% x): %v, want a malformed error", p, err)
		}
	}
}

func TestAckRoundTrip(t *testing.T) {
	for _, a := range []Ack{
		{Epoch: 1, Seq: 1, Status: AckStored},
		{Epoch: math.MaxUint64, Seq: math.MaxUint64, Status: AckDuplicate},
		{Epoch: 4, Seq: 9, Status: AckRejected, Code: ErrCodeForbidden},
		{Epoch: 4, Seq: 9, Status: AckRejected, Code: math.MaxUint32},
	} {
		p, err := a.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(p) > maxAckLen {
			t.Fatalf("ack encoding of %d bytes exceeds maxAckLen %d", len(p), maxAckLen)
		}
		var got Ack
		if err := got.UnmarshalBinary(p); err != nil {
			t.Fatal(err)
		}
		if got != a {
			t.Fatalf("round trip: got %+v, want %+v", got, a)
		}
	}
}

func TestAckRejects(t *testing.T) {
	tests := []struct {
		name string
		p    []byte
		code ErrorCode
		msg  string
	}{
		{"empty", nil, ErrCodeMalformed, "ack: epoch: truncated"},
		{"truncated", []byte{1, 1}, ErrCodeMalformed, "ack: status: truncated"},
		{"seq 0", []byte{1, 0, 0, 0}, ErrCodeMalformed, "ack: seq 0"},
		{"unknown status", []byte{1, 1, 3, 0}, ErrCodeUnsupported, "ack: unknown status 3"},
		{"trailing", []byte{1, 1, 0, 0, 0}, ErrCodeMalformed, "ack: 1 trailing bytes"},
		{"code overflow", []byte{1, 1, 2, 0x80, 0x80, 0x80, 0x80, 0x10}, ErrCodeMalformed, "overflows 32 bits"},
		{"too long", make([]byte, 40), ErrCodeMalformed, "at most"},
	}
	for _, tt := range tests {
		var a Ack
		err := a.UnmarshalBinary(tt.p)
		if CodeOf(err) != tt.code || err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: %v, want code %s containing %q", tt.name, err, tt.code, tt.msg)
		}
	}
}

func FuzzBatchUnmarshal(f *testing.F) {
	for _, m := range allMessages() {
		if b, ok := m.(*Batch); ok {
			p, _ := b.MarshalBinary()
			f.Add(p)
		}
	}
	f.Add([]byte{4, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		var b Batch
		if err := b.UnmarshalBinary(p); err != nil {
			if CodeOf(err) == ErrCodeInternal {
				t.Fatalf("error without a code: %v", err)
			}
			return
		}
		q, err := b.MarshalBinary()
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		var b2 Batch
		if err := b2.UnmarshalBinary(q); err != nil {
			t.Fatalf("re-unmarshal: %v", err)
		}
		if !reflect.DeepEqual(normalizeMsg(&b), normalizeMsg(&b2)) {
			t.Fatalf("batch changed: %+v then %+v", b, b2)
		}
	})
}

func FuzzAckUnmarshal(f *testing.F) {
	f.Add([]byte{1, 1, 0, 0})
	f.Add([]byte{0xff, 0x01, 0x80, 0x01, 2, 6})
	f.Fuzz(func(t *testing.T, p []byte) {
		var a Ack
		if err := a.UnmarshalBinary(p); err != nil {
			return
		}
		q, err := a.MarshalBinary()
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		var a2 Ack
		if err := a2.UnmarshalBinary(q); err != nil || a2 != a {
			t.Fatalf("re-unmarshal: %+v, %v; want %+v", a2, err, a)
		}
	})
}
