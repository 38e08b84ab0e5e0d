package protocol

import (
	"encoding/binary"
	"fmt"
)

// reader is a bounds-checked cursor over a byte slice with a sticky error:
// after the first failure every read returns zero values, so decoders check
// r.err once per record instead of after every field. Error messages name
// the decoder (what), the series being decoded (when series ≥ 0) and the
// field.
type reader struct {
	p      []byte
	off    int
	err    error
	what   string
	series int
}

// fail records the first error.
func (r *reader) fail(code ErrorCode, format string, args ...any) {
	if r.err != nil {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if r.series >= 0 && r.what == "samples" {
		msg = fmt.Sprintf("series %d: %s", r.series, msg)
	}
	r.err = &DecodeError{Code: code, Msg: r.what + ": " + msg}
	r.off = len(r.p)
}

func (r *reader) remaining() int { return len(r.p) - r.off }

func (r *reader) byte(field string) byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.p) {
		r.fail(ErrCodeMalformed, "%s: truncated", field)
		return 0
	}
	b := r.p[r.off]
	r.off++
	return b
}

func (r *reader) uvarint(field string) uint64 {
	if r.err != nil {
		return 0
	}
	// Fast path for the common one-byte varint.
	if r.off < len(r.p) && r.p[r.off] < 0x80 {
		v := uint64(r.p[r.off])
		r.off++
		return v
	}
	v, n := binary.Uvarint(r.p[r.off:])
	if n <= 0 {
		if n == 0 {
			r.fail(ErrCodeMalformed, "%s: truncated varint", field)
		} else {
			r.fail(ErrCodeMalformed, "%s: varint overflows 64 bits", field)
		}
		return 0
	}
	r.off += n
	return v
}

func (r *reader) varint(field string) int64 {
	u := r.uvarint(field)
	return int64(u>>1) ^ -int64(u&1)
}

// count reads a uvarint element count and checks it against max and against
// the bytes left, given that each element takes at least minBytes bytes on
// the wire. Checking before allocating keeps a short hostile input from
// making us allocate much more than its own size.
func (r *reader) count(field string, max, minBytes int) int {
	v := r.uvarint(field)
	if r.err != nil {
		return 0
	}
	if v > uint64(max) {
		r.fail(ErrCodeTooLarge, "%s %d exceeds %d", field, v, max)
		return 0
	}
	if minBytes > 0 && v > uint64(r.remaining()/minBytes) {
		r.fail(ErrCodeMalformed, "%s %d exceeds what the remaining %d bytes can hold", field, v, r.remaining())
		return 0
	}
	return int(v)
}

// bytes returns the next n bytes, aliasing r.p.
func (r *reader) bytes(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.remaining() {
		r.fail(ErrCodeMalformed, "%s: %d bytes needed, %d left", field, n, r.remaining())
		return nil
	}
	b := r.p[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

// zigzag maps a signed integer to an unsigned one so that small magnitudes
// get short varints.
func zigzag(v int64) uint64 { return uint64(v<<1) ^ uint64(v>>63) }

// unzigzag inverts zigzag.
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }
