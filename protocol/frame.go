package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// MsgType is the first byte of every frame and says what its payload holds.
type MsgType uint8

// Message types. Values are stable: never renumber.
const (
	MsgHello          MsgType = 1  // agent → aggregator, control stream, JSON Hello
	MsgWelcome        MsgType = 2  // aggregator → agent, control stream, JSON Welcome
	MsgHeartbeat      MsgType = 3  // agent → aggregator, control stream, JSON Heartbeat
	MsgCommand        MsgType = 4  // aggregator → agent, control stream, JSON Command
	MsgBatch          MsgType = 5  // agent → aggregator, data stream, binary Batch
	MsgAck            MsgType = 6  // aggregator → agent, data stream, binary Ack
	MsgError          MsgType = 7  // either way, any stream, JSON Error
	MsgEnrollRequest  MsgType = 8  // agent → aggregator, enrollment stream, JSON EnrollRequest
	MsgEnrollResponse MsgType = 9  // aggregator → agent, enrollment stream, JSON EnrollResponse
	MsgRenewRequest   MsgType = 10 // agent → aggregator, renewal stream, JSON RenewRequest
	MsgRenewResponse  MsgType = 11 // aggregator → agent, renewal stream, JSON RenewResponse
)

// String returns the message type's name, e.g. "batch".
func (t MsgType) String() string {
	switch t {
	case MsgHello:
		return "hello"
	case MsgWelcome:
		return "welcome"
	case MsgHeartbeat:
		return "heartbeat"
	case MsgCommand:
		return "command"
	case MsgBatch:
		return "batch"
	case MsgAck:
		return "ack"
	case MsgError:
		return "error"
	case MsgEnrollRequest:
		return "enroll_request"
	case MsgEnrollResponse:
		return "enroll_response"
	case MsgRenewRequest:
		return "renew_request"
	case MsgRenewResponse:
		return "renew_response"
	}
	return fmt.Sprintf("msg_%d", uint8(t))
}

// FrameHeaderLen is the size of a frame header: type u8 and length u32.
const FrameHeaderLen = 5

// MaxControlSize bounds the payload of every JSON message (all types but
// MsgBatch and MsgAck). Control messages are small; a larger one is refused
// before its payload is read.
const MaxControlSize = 1 << 20

// readChunk is how much ReadFrame allocates ahead of the bytes it has
// actually received, so that a peer announcing a large frame and then
// sending nothing cannot make us allocate the whole announced length.
const readChunk = 1 << 20

// framePool recycles the buffers WriteFrame and WriteMessage assemble a
// frame in, so that a frame goes out in a single Write (one QUIC STREAM
// frame burst rather than a 5-byte one followed by the payload).
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// maxPooledFrame is the largest buffer returned to framePool; bigger ones
// are left to the garbage collector so that one huge batch does not pin
// memory forever.
const maxPooledFrame = 4 << 20

func getFrameBuf() *[]byte { return framePool.Get().(*[]byte) }

func putFrameBuf(b *[]byte) {
	if cap(*b) > maxPooledFrame {
		return
	}
	*b = (*b)[:0]
	framePool.Put(b)
}

// WriteFrame writes one frame:
//
//	+------+----------------------+-----------------+
//	| type | length (u32, BE)     | payload[length] |
//	| u8   |                      |                 |
//	+------+----------------------+-----------------+
//
// in a single Write call. A payload larger than MaxFrameSize is refused with
// ErrCodeTooLarge.
func WriteFrame(w io.Writer, t MsgType, payload []byte) error {
	if len(payload) > MaxFrameSize {
		return errorf(ErrCodeTooLarge, "frame: %s payload of %d bytes exceeds %d", t, len(payload), MaxFrameSize)
	}
	bp := getFrameBuf()
	defer putFrameBuf(bp)
	b := appendFrameHeader((*bp)[:0], t, len(payload))
	b = append(b, payload...)
	*bp = b
	_, err := w.Write(b)
	return err
}

// appendFrameHeader appends a frame header for a payload of n bytes.
func appendFrameHeader(b []byte, t MsgType, n int) []byte {
	return binary.BigEndian.AppendUint32(append(b, byte(t)), uint32(n))
}

// ReadFrame reads one frame from r and returns its type and payload. The
// payload length is checked against max before anything is allocated; max
// ≤ 0 or above MaxFrameSize means MaxFrameSize. A longer frame is refused
// with ErrCodeTooLarge and nothing of its payload is read, so the stream
// must be closed.
//
// ReadFrame returns io.EOF if r ends cleanly before a frame starts and
// io.ErrUnexpectedEOF if it ends inside one. It does not judge the type:
// see ReadMessage.
func ReadFrame(r io.Reader, max int) (MsgType, []byte, error) {
	if max <= 0 || max > MaxFrameSize {
		max = MaxFrameSize
	}
	var hdr [FrameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	t := MsgType(hdr[0])
	n := binary.BigEndian.Uint32(hdr[1:])
	if uint64(n) > uint64(max) {
		return t, nil, errorf(ErrCodeTooLarge, "frame: %s payload length %d exceeds %d", t, n, max)
	}
	p, err := readPayload(r, int(n))
	if err != nil {
		return t, nil, err
	}
	return t, p, nil
}

// readPayload reads exactly n bytes, allocating at most readChunk bytes
// beyond what has arrived.
func readPayload(r io.Reader, n int) ([]byte, error) {
	if n <= readChunk {
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return nil, eofIsUnexpected(err)
		}
		return p, nil
	}
	p := make([]byte, 0, readChunk)
	for len(p) < n {
		chunk := min(n-len(p), readChunk)
		if cap(p)-len(p) < chunk {
			// Grow geometrically but never past n.
			np := make([]byte, len(p), min(n, max(2*cap(p), len(p)+chunk)))
			copy(np, p)
			p = np
		}
		m, err := io.ReadFull(r, p[len(p):len(p)+chunk])
		p = p[:len(p)+m]
		if err != nil {
			return nil, eofIsUnexpected(err)
		}
	}
	return p, nil
}

func eofIsUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
