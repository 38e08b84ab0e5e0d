package protocol

import (
	"encoding/binary"
	"fmt"
)

// String returns the kind's name, e.g. "samples".
func (k BatchKind) String() string {
	switch k {
	case KindSamples:
		return "samples"
	case KindInventory:
		return "inventory"
	case KindEvents:
		return "events"
	case KindGap:
		return "gap"
	}
	return fmt.Sprintf("kind_%d", uint8(k))
}

// Valid reports whether k is a kind this version of the protocol knows.
func (k BatchKind) Valid() bool { return k >= KindSamples && k <= KindGap }

// String returns the codec's name, e.g. "zstd".
func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec_%d", uint8(c))
}

// Valid reports whether c is a codec this version of the protocol knows.
func (c Codec) Valid() bool { return c == CodecNone || c == CodecZstd }

// batchFixedLen is the size of the fixed part of a batch header.
const batchFixedLen = 2

// maxBatchHeaderLen bounds the encoded batch header: two bytes and four
// varints of at most binary.MaxVarintLen64 bytes each.
const maxBatchHeaderLen = batchFixedLen + 4*binary.MaxVarintLen64

// validate checks the header fields of a batch, the same way on both sides.
func (b *Batch) validate() error {
	if !b.Kind.Valid() {
		return errorf(ErrCodeUnsupported, "batch: unknown kind %d", uint8(b.Kind))
	}
	if !b.Codec.Valid() {
		return errorf(ErrCodeUnsupported, "batch: unknown codec %d", uint8(b.Codec))
	}
	if b.Seq == 0 {
		return malformedf("batch: seq 0 (sequence numbers start at 1)")
	}
	if b.First > b.Last {
		return malformedf("batch: first %d after last %d", b.First, b.Last)
	}
	return nil
}

// MarshalBinary encodes b as the payload of a MsgBatch frame. It refuses a
// batch the receiver would refuse: unknown kind or codec, Seq 0, First after
// Last, or an encoding longer than MaxFrameSize.
func (b *Batch) MarshalBinary() ([]byte, error) {
	return b.AppendBinary(make([]byte, 0, maxBatchHeaderLen+len(b.Payload)))
}

// AppendBinary appends the encoding of b (see MarshalBinary) to dst.
//
// Layout (varints are encoding/binary's; "zvarint" is its signed,
// zig-zag form):
//
//	kind    u8       BatchKind
//	codec   u8       Codec
//	epoch   uvarint
//	seq     uvarint  ≥ 1
//	first   zvarint  Unix ms
//	last    zvarint  Unix ms, ≥ first
//	payload          the rest of the frame
func (b *Batch) AppendBinary(dst []byte) ([]byte, error) {
	if err := b.validate(); err != nil {
		return dst, err
	}
	start := len(dst)
	dst = append(dst, byte(b.Kind), byte(b.Codec))
	dst = binary.AppendUvarint(dst, b.Epoch)
	dst = binary.AppendUvarint(dst, b.Seq)
	dst = binary.AppendVarint(dst, b.First)
	dst = binary.AppendVarint(dst, b.Last)
	if len(dst)-start+len(b.Payload) > MaxFrameSize {
		return dst[:start], errorf(ErrCodeTooLarge, "batch: encoded size %d exceeds %d", len(dst)-start+len(b.Payload), MaxFrameSize)
	}
	return append(dst, b.Payload...), nil
}

// UnmarshalBinary decodes a MsgBatch frame payload into b. b.Payload is a
// copy; p may be reused afterwards. The payload itself is not decoded: see
// Samples, Inventory, Events and Gap.
func (b *Batch) UnmarshalBinary(p []byte) error {
	if err := b.unmarshal(p); err != nil {
		return err
	}
	b.Payload = append([]byte(nil), b.Payload...)
	return nil
}

// unmarshal is UnmarshalBinary with b.Payload aliasing p.
func (b *Batch) unmarshal(p []byte) error {
	if len(p) > MaxFrameSize {
		return errorf(ErrCodeTooLarge, "batch: size %d exceeds %d", len(p), MaxFrameSize)
	}
	if len(p) < batchFixedLen {
		return malformedf("batch: header truncated (%d bytes)", len(p))
	}
	var nb Batch
	nb.Kind, nb.Codec = BatchKind(p[0]), Codec(p[1])
	r := reader{p: p, off: batchFixedLen, what: "batch"}
	nb.Epoch = r.uvarint("epoch")
	nb.Seq = r.uvarint("seq")
	nb.First = r.varint("first")
	nb.Last = r.varint("last")
	if r.err != nil {
		return r.err
	}
	if err := nb.validate(); err != nil {
		return err
	}
	nb.Payload = p[r.off:len(p):len(p)]
	*b = nb
	return nil
}

// String returns the status's name, e.g. "stored".
func (s AckStatus) String() string {
	switch s {
	case AckStored:
		return "stored"
	case AckDuplicate:
		return "duplicate"
	case AckRejected:
		return "rejected"
	}
	return fmt.Sprintf("status_%d", uint8(s))
}

// maxAckLen bounds the encoding of an Ack.
const maxAckLen = 2*binary.MaxVarintLen64 + 1 + binary.MaxVarintLen32

func (a *Ack) validate() error {
	if a.Seq == 0 {
		return malformedf("ack: seq 0 (sequence numbers start at 1)")
	}
	if a.Status > AckRejected {
		return errorf(ErrCodeUnsupported, "ack: unknown status %d", uint8(a.Status))
	}
	return nil
}

// MarshalBinary encodes a as the payload of a MsgAck frame.
func (a *Ack) MarshalBinary() ([]byte, error) {
	return a.AppendBinary(make([]byte, 0, maxAckLen))
}

// AppendBinary appends the encoding of a to dst.
//
// Layout:
//
//	epoch   uvarint
//	seq     uvarint  ≥ 1
//	status  u8       AckStatus
//	code    uvarint  ErrorCode, meaningful for AckRejected
func (a *Ack) AppendBinary(dst []byte) ([]byte, error) {
	if err := a.validate(); err != nil {
		return dst, err
	}
	dst = binary.AppendUvarint(dst, a.Epoch)
	dst = binary.AppendUvarint(dst, a.Seq)
	dst = append(dst, byte(a.Status))
	return binary.AppendUvarint(dst, uint64(a.Code)), nil
}

// UnmarshalBinary decodes a MsgAck frame payload into a. Trailing bytes are
// an error.
func (a *Ack) UnmarshalBinary(p []byte) error {
	if len(p) > maxAckLen {
		return malformedf("ack: %d bytes, at most %d expected", len(p), maxAckLen)
	}
	r := reader{p: p, what: "ack"}
	var na Ack
	na.Epoch = r.uvarint("epoch")
	na.Seq = r.uvarint("seq")
	na.Status = AckStatus(r.byte("status"))
	code := r.uvarint("code")
	if r.err != nil {
		return r.err
	}
	if code > 1<<32-1 {
		return malformedf("ack: code %d overflows 32 bits", code)
	}
	na.Code = ErrorCode(code)
	if r.off != len(p) {
		return malformedf("ack: %d trailing bytes", len(p)-r.off)
	}
	if err := na.validate(); err != nil {
		return err
	}
	*a = na
	return nil
}
