package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

// countingWriter records how many Write calls a frame took.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

func TestFrameRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 1000, readChunk + 17, 3*readChunk + 5} {
		payload := bytes.Repeat([]byte{0xa5}, n)
		var w countingWriter
		if err := WriteFrame(&w, MsgBatch, payload); err != nil {
			t.Fatal(err)
		}
		if w.writes != 1 {
			t.Errorf("len %d: WriteFrame made %d writes, want 1", n, w.writes)
		}
		if w.Len() != FrameHeaderLen+n {
			t.Fatalf("len %d: wrote %d bytes, want %d", n, w.Len(), FrameHeaderLen+n)
		}
		typ, got, err := ReadFrame(&w.Buffer, 0)
		if err != nil {
			t.Fatalf("len %d: ReadFrame: %v", n, err)
		}
		if typ != MsgBatch || !bytes.Equal(got, payload) {
			t.Fatalf("len %d: got type %s and %d bytes", n, typ, len(got))
		}
	}
}

func TestFrameHeaderLayout(t *testing.T) {
	var b bytes.Buffer
	if err := WriteFrame(&b, MsgAck, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	want := []byte{6, 0, 0, 0, 3, 1, 2, 3}
	if !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("frame bytes %v, want %v", b.Bytes(), want)
	}
}

func TestReadFrameErrors(t *testing.T) {
	hdr := func(n uint32) []byte { return binary.BigEndian.AppendUint32([]byte{byte(MsgBatch)}, n) }
	tests := []struct {
		name string
		in   []byte
		max  int
		err  error
		code ErrorCode
	}{
		{"clean EOF", nil, 0, io.EOF, 0},
		{"short header", []byte{5, 0, 0}, 0, io.ErrUnexpectedEOF, 0},
		{"short payload", append(hdr(10), 1, 2, 3), 0, io.ErrUnexpectedEOF, 0},
		{"short large payload", append(hdr(readChunk+10), make([]byte, readChunk)...), 0, io.ErrUnexpectedEOF, 0},
		{"above max", hdr(101), 100, nil, ErrCodeTooLarge},
		{"above MaxFrameSize", hdr(MaxFrameSize + 1), 1 << 30, nil, ErrCodeTooLarge},
		{"announced 4 GiB", hdr(0xffffffff), 0, nil, ErrCodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, p, err := ReadFrame(bytes.NewReader(tt.in), tt.max)
			if err == nil {
				t.Fatalf("ReadFrame succeeded with %d bytes", len(p))
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if tt.code != 0 && CodeOf(err) != tt.code {
				t.Fatalf("error %v has code %s, want %s", err, CodeOf(err), tt.code)
			}
		})
	}
}

func TestWriteFrameTooLarge(t *testing.T) {
	err := WriteFrame(io.Discard, MsgBatch, make([]byte, MaxFrameSize+1))
	if CodeOf(err) != ErrCodeTooLarge {
		t.Fatalf("error %v, want code too_large", err)
	}
}

// allMessages is one valid value of every message type.
func allMessages() []any {
	return []any{
		&Hello{AgentID: "agent-1", AgentVersion: "1.2.3", MinVersion: 1, MaxVersion: 1, Epoch: 7, Sources: []string{"vc1", "vc2"}},
		&Welcome{Version: 1, AgentID: "agent-1", Site: "fra1", HeartbeatInterval: 10 * time.Second, MaxInFlight: 8, ServerTime: 1_760_000_000_000},
		&Heartbeat{SpoolDepth: 3, SpoolBytes: 4096, OldestUnsentAge: 1500, CollectionLag: 20000, Dropped: 1, SentAt: 1_760_000_000_123},
		&Heartbeat{SpoolDepth: 1, SentAt: 1_760_000_000_456, Plugins: []PluginStatus{
			{Name: "promexec", Version: "1.0.0", State: "running", Restarts: 2, LastError: "plugin process exited", LastErrorAt: 1_760_000_000_000,
				LastCollect: 1_760_000_000_400, Collects: 12, Failures: 1, Samples: 340},
			{Name: "ipmi", State: "refused", LastError: "checksum mismatch"},
		}},
		&Command{Name: "resync_inventory", Args: map[string]string{"source": "vc1"}},
		&Welcome{Version: 1, AgentID: "agent-1", Site: "fra1", HeartbeatInterval: 10 * time.Second, MaxInFlight: 8, ServerTime: 1_760_000_000_000,
			Collection: &CollectionSettings{Revision: 3, RealtimeInterval: 20 * time.Second, EventsPoll: 10 * time.Second,
				Counters: map[string][]string{"vm": {"cpu.usage.average", "cpu.ready.summation"}}}},
		&Command{Name: CommandApplyCollection, Collection: &CollectionSettings{Revision: 4, TagInterval: 5 * time.Minute}},
		&Heartbeat{SpoolDepth: 2, SentAt: 1_760_000_000_789, SpoolMaxBytes: 16 << 30, VCenters: []VCenterStatus{
			{Source: "vc1", Reachable: true, Since: 1_760_000_000_000, LastOK: 1_760_000_000_700},
			{Source: "esx2", Reachable: false, Since: 1_760_000_000_100, LastError: "dial tcp: connection refused"},
		}},
		&Batch{Kind: KindSamples, Epoch: 2, Seq: 99, First: 1000, Last: 2000, Codec: CodecZstd, Payload: []byte("payload")},
		&Ack{Epoch: 2, Seq: 99, Status: AckRejected, Code: ErrCodeForbidden},
		&Error{Code: ErrCodeUnsupported, Message: "no common version"},
		&EnrollRequest{Token: "tok", CSR: []byte{0x30, 0x82}, Name: "fra1-agent", Version: "1.2.3"},
		&EnrollResponse{AgentID: "agent-1", Site: "fra1", Cert: []byte{1}, CACert: []byte{2}},
		&RenewRequest{CSR: []byte{0x30, 0x82, 0x01}},
		&RenewResponse{Cert: []byte{3, 4}, CACert: []byte{5}},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range allMessages() {
		var w countingWriter
		if err := WriteMessage(&w, m); err != nil {
			t.Fatalf("WriteMessage(%T): %v", m, err)
		}
		if w.writes != 1 {
			t.Errorf("%T: %d writes, want 1", m, w.writes)
		}
		got, err := ReadMessage(&w.Buffer)
		if err != nil {
			t.Fatalf("ReadMessage(%T): %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip of %T: got %+v, want %+v", m, got, m)
		}
		if w.Len() != 0 {
			t.Fatalf("%T: %d bytes left unread", m, w.Len())
		}
	}
}

func TestMessageSequenceOnOneStream(t *testing.T) {
	var b bytes.Buffer
	msgs := allMessages()
	for _, m := range msgs {
		if err := WriteMessage(&b, m); err != nil {
			t.Fatal(err)
		}
	}
	for i := range msgs {
		got, err := ReadMessage(&b)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if reflect.TypeOf(got) != reflect.TypeOf(msgs[i]) {
			t.Fatalf("message %d is %T, want %T", i, got, msgs[i])
		}
	}
	if _, err := ReadMessage(&b); err != io.EOF {
		t.Fatalf("after the last message: %v, want io.EOF", err)
	}
}

func TestWriteMessageRejects(t *testing.T) {
	tests := []struct {
		m    any
		code ErrorCode
		msg  string
	}{
		{struct{}{}, ErrCodeInternal, "is not a message"},
		{&Hello{MinVersion: 1, MaxVersion: 1}, ErrCodeMalformed, "hello: missing agent_id"},
		{&Hello{AgentID: "a", MinVersion: 2, MaxVersion: 1}, ErrCodeMalformed, "bad version range [2, 1]"},
		{&Welcome{}, ErrCodeMalformed, "welcome: version 0"},
		{&Command{}, ErrCodeMalformed, "command: missing name"},
		{&EnrollRequest{Token: "t"}, ErrCodeMalformed, "missing csr"},
		{&EnrollResponse{AgentID: "a"}, ErrCodeMalformed, "missing cert"},
		{&RenewRequest{}, ErrCodeMalformed, "renew request: missing csr"},
		{&RenewResponse{Cert: []byte{1}}, ErrCodeMalformed, "renew response: missing cert or ca_cert"},
		{&Batch{Kind: KindSamples}, ErrCodeMalformed, "seq 0"},
		{&Ack{Seq: 1, Status: 3}, ErrCodeUnsupported, "unknown status 3"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		err := WriteMessage(&b, tt.m)
		if err == nil || CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("WriteMessage(%T): %v (code %s), want code %s containing %q", tt.m, err, CodeOf(err), tt.code, tt.msg)
		}
		if b.Len() != 0 {
			t.Errorf("WriteMessage(%T) wrote %d bytes despite failing", tt.m, b.Len())
		}
	}
}

func TestReadMessageRejects(t *testing.T) {
	frame := func(t MsgType, p []byte) []byte {
		return append(binary.BigEndian.AppendUint32([]byte{byte(t)}, uint32(len(p))), p...)
	}
	tests := []struct {
		name string
		in   []byte
		code ErrorCode
		msg  string
	}{
		{"unknown type", frame(42, nil), ErrCodeUnsupported, "unknown message type 42"},
		{"type zero", frame(0, nil), ErrCodeUnsupported, "unknown message type 0"},
		{"control too large", binary.BigEndian.AppendUint32([]byte{byte(MsgHello)}, MaxControlSize+1), ErrCodeTooLarge, "hello payload length 1048577 exceeds 1048576"},
		{"ack too large", frame(MsgAck, make([]byte, 64)), ErrCodeTooLarge, "ack payload length 64"},
		{"bad JSON", frame(MsgHeartbeat, []byte("{")), ErrCodeMalformed, "heartbeat: unexpected end of JSON"},
		{"JSON wrong type", frame(MsgHello, []byte(`{"agent_id":5}`)), ErrCodeMalformed, "hello: json"},
		{"invalid hello", frame(MsgHello, []byte(`{"agent_id":"a"}`)), ErrCodeMalformed, "bad version range [0, 0]"},
		{"bad batch", frame(MsgBatch, []byte{9, 0, 0, 1, 0, 0}), ErrCodeUnsupported, "batch: unknown kind 9"},
		{"renew request without csr", frame(MsgRenewRequest, []byte(`{"csr":null}`)), ErrCodeMalformed, "renew request: missing csr"},
		{"renew request csr not base64", frame(MsgRenewRequest, []byte(`{"csr":"%%"}`)), ErrCodeMalformed, "renew_request: illegal base64"},
		{"renew response without ca", frame(MsgRenewResponse, []byte(`{"cert":"AQ=="}`)), ErrCodeMalformed, "missing cert or ca_cert"},
		{"renew request too large", binary.BigEndian.AppendUint32([]byte{byte(MsgRenewRequest)}, MaxControlSize+1), ErrCodeTooLarge, "renew_request payload length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ReadMessage(bytes.NewReader(tt.in))
			if err == nil {
				t.Fatalf("ReadMessage succeeded: %+v", m)
			}
			if CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q (code %s), want code %s containing %q", err, CodeOf(err), tt.code, tt.msg)
			}
		})
	}
}

func TestReadMessageIgnoresUnknownJSONFields(t *testing.T) {
	p := []byte(`{"spool_depth":4,"added_in_v2":{"x":1}}`)
	in := append(binary.BigEndian.AppendUint32([]byte{byte(MsgHeartbeat)}, uint32(len(p))), p...)
	m, err := ReadMessage(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if hb, ok := m.(*Heartbeat); !ok || hb.SpoolDepth != 4 {
		t.Fatalf("got %#v, want a Heartbeat with spool depth 4", m)
	}
}

func TestDecodeMessageTypeMismatch(t *testing.T) {
	err := DecodeMessage(MsgHello, []byte(`{}`), new(Welcome))
	if CodeOf(err) != ErrCodeProtocol {
		t.Fatalf("error %v, want code protocol", err)
	}
}

func TestNegotiateVersion(t *testing.T) {
	tests := []struct {
		min, max uint16
		want     uint16
		code     ErrorCode
	}{
		{1, 1, 1, 0},
		{1, 5, Version, 0},
		{2, 5, 0, ErrCodeUnsupported},
		{0, 1, 0, ErrCodeMalformed},
		{3, 2, 0, ErrCodeMalformed},
	}
	for _, tt := range tests {
		got, err := NegotiateVersion(&Hello{AgentID: "a", MinVersion: tt.min, MaxVersion: tt.max})
		if got != tt.want || CodeOf(err) != tt.code {
			t.Errorf("NegotiateVersion(%d..%d) = %d, %v; want %d, code %s", tt.min, tt.max, got, err, tt.want, tt.code)
		}
	}
}

func TestCodeOf(t *testing.T) {
	de := &DecodeError{Code: ErrCodeTooLarge, Msg: "x"}
	tests := []struct {
		err  error
		want ErrorCode
	}{
		{nil, ErrCodeNone},
		{errors.New("disk on fire"), ErrCodeInternal},
		{de, ErrCodeTooLarge},
		{errors.Join(errors.New("ctx"), de), ErrCodeTooLarge},
		{&DecodeError{Msg: "no code"}, ErrCodeMalformed},
		{&Error{Code: ErrCodeBadToken, Message: "used"}, ErrCodeBadToken},
		{io.ErrUnexpectedEOF, ErrCodeInternal},
	}
	for _, tt := range tests {
		if got := CodeOf(tt.err); got != tt.want {
			t.Errorf("CodeOf(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
	if got := de.Error(); got != "protocol: x" {
		t.Errorf("DecodeError.Error() = %q", got)
	}
}

func FuzzReadMessage(f *testing.F) {
	for _, m := range allMessages() {
		var b bytes.Buffer
		if err := WriteMessage(&b, m); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	f.Add([]byte{byte(MsgBatch), 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{byte(MsgHello), 0, 0, 0, 2, '{', '}'})
	f.Add([]byte{byte(MsgRenewRequest), 0, 0, 0, 2, '{', '}'})
	f.Add([]byte{byte(MsgRenewResponse), 0, 0, 0, 12, '{', '"', 'c', 'e', 'r', 't', '"', ':', '"', '"', '}', ' '})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		for {
			m, err := ReadMessage(r)
			if err != nil {
				return
			}
			// Whatever was read must write back and read back the same.
			var b bytes.Buffer
			if err := WriteMessage(&b, m); err != nil {
				t.Fatalf("WriteMessage(%T) of a message ReadMessage accepted: %v", m, err)
			}
			m2, err := ReadMessage(&b)
			if err != nil {
				t.Fatalf("re-reading %T: %v", m, err)
			}
			if !reflect.DeepEqual(normalizeMsg(m), normalizeMsg(m2)) {
				t.Fatalf("%T changed on a round trip: %+v then %+v", m, m, m2)
			}
		}
	})
}

// normalizeMsg maps nil and empty byte slices together, which JSON does not
// distinguish.
func normalizeMsg(m any) any {
	switch x := m.(type) {
	case *Batch:
		c := *x
		if len(c.Payload) == 0 {
			c.Payload = nil
		}
		return &c
	}
	return m
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0}, 10)
	f.Add([]byte{5, 0, 0, 0, 3, 1, 2, 3}, 2)
	f.Add([]byte{5, 0xff, 0, 0, 0}, 0)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		typ, p, err := ReadFrame(bytes.NewReader(in), max)
		if err != nil {
			return
		}
		lim := max
		if lim <= 0 || lim > MaxFrameSize {
			lim = MaxFrameSize
		}
		if len(p) > lim {
			t.Fatalf("payload of %d bytes exceeds the limit %d", len(p), lim)
		}
		if len(in) < FrameHeaderLen+len(p) || !bytes.Equal(in[FrameHeaderLen:FrameHeaderLen+len(p)], p) || MsgType(in[0]) != typ {
			t.Fatal("ReadFrame returned something other than the input's first frame")
		}
	})
}

func TestMsgTypeNames(t *testing.T) {
	want := map[MsgType]string{
		MsgEnrollRequest: "enroll_request", MsgEnrollResponse: "enroll_response",
		MsgRenewRequest: "renew_request", MsgRenewResponse: "renew_response", 12: "msg_12",
	}
	for typ, name := range want {
		if got := typ.String(); got != name {
			t.Errorf("MsgType(%d).String() = %q, want %q", uint8(typ), got, name)
		}
	}
	// Wire values are stable.
	if MsgRenewRequest != 10 || MsgRenewResponse != 11 {
		t.Fatalf("renew message types are %d and %d, want 10 and 11", MsgRenewRequest, MsgRenewResponse)
	}
}
