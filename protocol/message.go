package protocol

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// WriteMessage writes m as one frame. m is one of *Hello, *Welcome,
// *Heartbeat, *Command, *Batch, *Ack, *Error, *EnrollRequest,
// *EnrollResponse, *RenewRequest or *RenewResponse. Batch and Ack are binary; the rest, rare and small, are
// JSON. The message is validated as ReadMessage would validate it.
func WriteMessage(w io.Writer, m any) error {
	t, err := msgType(m)
	if err != nil {
		return err
	}
	bp := getFrameBuf()
	defer putFrameBuf(bp)
	b := appendFrameHeader((*bp)[:0], t, 0)
	switch x := m.(type) {
	case *Batch:
		b, err = x.AppendBinary(b)
	case *Ack:
		b, err = x.AppendBinary(b)
	default:
		if err = validateControl(m); err != nil {
			return err
		}
		var j []byte
		if j, err = json.Marshal(m); err != nil {
			return fmt.Errorf("protocol: %s: %w", t, err)
		}
		if len(j) > MaxControlSize {
			return errorf(ErrCodeTooLarge, "%s: %d bytes exceed %d", t, len(j), MaxControlSize)
		}
		b = append(b, j...)
	}
	*bp = b
	if err != nil {
		return err
	}
	n := len(b) - FrameHeaderLen
	if n > MaxFrameSize {
		return errorf(ErrCodeTooLarge, "frame: %s payload of %d bytes exceeds %d", t, n, MaxFrameSize)
	}
	b[1], b[2], b[3], b[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	_, err = w.Write(b)
	return err
}

// msgType maps a message value to its frame type.
func msgType(m any) (MsgType, error) {
	switch m.(type) {
	case *Hello:
		return MsgHello, nil
	case *Welcome:
		return MsgWelcome, nil
	case *Heartbeat:
		return MsgHeartbeat, nil
	case *Command:
		return MsgCommand, nil
	case *Batch:
		return MsgBatch, nil
	case *Ack:
		return MsgAck, nil
	case *Error:
		return MsgError, nil
	case *EnrollRequest:
		return MsgEnrollRequest, nil
	case *EnrollResponse:
		return MsgEnrollResponse, nil
	case *RenewRequest:
		return MsgRenewRequest, nil
	case *RenewResponse:
		return MsgRenewResponse, nil
	}
	return 0, fmt.Errorf("protocol: write: %T is not a message", m)
}

// ReadMessage reads one frame and decodes it into a new message: one of
// the pointer types WriteMessage accepts. A control (JSON) frame is bounded
// by MaxControlSize and any frame by MaxFrameSize, both before its payload
// is read. An unknown type is refused with ErrCodeUnsupported. A returned
// *Batch's Payload is owned by the caller.
//
// An *Error is returned as a message, not as the error result: the caller
// decides whether the peer's error ends the stream.
func ReadMessage(r io.Reader) (any, error) {
	var hdr [FrameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	t := MsgType(hdr[0])
	n := uint64(hdr[1])<<24 | uint64(hdr[2])<<16 | uint64(hdr[3])<<8 | uint64(hdr[4])
	var m any
	limit := MaxControlSize
	switch t {
	case MsgHello:
		m = new(Hello)
	case MsgWelcome:
		m = new(Welcome)
	case MsgHeartbeat:
		m = new(Heartbeat)
	case MsgCommand:
		m = new(Command)
	case MsgBatch:
		m, limit = new(Batch), MaxFrameSize
	case MsgAck:
		m, limit = new(Ack), maxAckLen
	case MsgError:
		m = new(Error)
	case MsgEnrollRequest:
		m = new(EnrollRequest)
	case MsgEnrollResponse:
		m = new(EnrollResponse)
	case MsgRenewRequest:
		m = new(RenewRequest)
	case MsgRenewResponse:
		m = new(RenewResponse)
	default:
		return nil, errorf(ErrCodeUnsupported, "frame: unknown message type %d", uint8(t))
	}
	if n > uint64(limit) {
		return nil, errorf(ErrCodeTooLarge, "frame: %s payload length %d exceeds %d", t, n, limit)
	}
	p, err := readPayload(r, int(n))
	if err != nil {
		return nil, err
	}
	if err := DecodeMessage(t, p, m); err != nil {
		return nil, err
	}
	return m, nil
}

// DecodeMessage decodes a frame payload of type t (as returned by
// ReadFrame) into m, which must be the matching pointer type. A *Batch's
// Payload aliases p.
func DecodeMessage(t MsgType, p []byte, m any) error {
	want, err := msgType(m)
	if err != nil {
		return err
	}
	if want != t {
		return errorf(ErrCodeProtocol, "frame: %s payload decoded as %s", t, want)
	}
	switch x := m.(type) {
	case *Batch:
		return x.unmarshal(p)
	case *Ack:
		return x.UnmarshalBinary(p)
	}
	if len(p) > MaxControlSize {
		return errorf(ErrCodeTooLarge, "%s: %d bytes exceed %d", t, len(p), MaxControlSize)
	}
	if err := json.Unmarshal(p, m); err != nil {
		return malformedf("%s: %v", t, err)
	}
	return validateControl(m)
}

// validateControl checks the fields of a control message that its receiver
// relies on.
func validateControl(m any) error {
	switch x := m.(type) {
	case *Hello:
		if err := checkField("hello", "agent_id", x.AgentID, true); err != nil {
			return err
		}
		if x.MinVersion == 0 || x.MinVersion > x.MaxVersion {
			return malformedf("hello: bad version range [%d, %d]", x.MinVersion, x.MaxVersion)
		}
		if len(x.Sources) > MaxSeriesPerBatch {
			return errorf(ErrCodeTooLarge, "hello: %d sources", len(x.Sources))
		}
	case *Welcome:
		if x.Version == 0 {
			return malformedf("welcome: version 0")
		}
		if x.HeartbeatInterval < 0 || x.MaxInFlight < 0 {
			return malformedf("welcome: negative heartbeat interval or max in flight")
		}
		if x.Collection != nil {
			return x.Collection.validate("welcome: collection")
		}
	case *Heartbeat:
		if len(x.Plugins) > MaxPlugins {
			return errorf(ErrCodeTooLarge, "heartbeat: %d plugins exceed %d", len(x.Plugins), MaxPlugins)
		}
		for i := range x.Plugins {
			p := &x.Plugins[i]
			what := fmt.Sprintf("heartbeat: plugins[%d]", i)
			if err := checkField(what, "name", p.Name, true); err != nil {
				return err
			}
			if err := checkField(what, "state", p.State, true); err != nil {
				return err
			}
			if err := checkField(what, "version", p.Version, false); err != nil {
				return err
			}
			if len(p.LastError) > MaxPluginErrorBytes {
				return errorf(ErrCodeTooLarge, "%s: last_error of %d bytes exceeds %d", what, len(p.LastError), MaxPluginErrorBytes)
			}
			if p.Restarts < 0 || p.LastErrorAt < 0 || p.LastCollect < 0 {
				return malformedf("%s: negative restarts, last_error_at or last_collect", what)
			}
		}
		if len(x.VCenters) > MaxVCenters {
			return errorf(ErrCodeTooLarge, "heartbeat: %d vcenters exceed %d", len(x.VCenters), MaxVCenters)
		}
		for i := range x.VCenters {
			v := &x.VCenters[i]
			what := fmt.Sprintf("heartbeat: vcenters[%d]", i)
			if err := checkField(what, "source", v.Source, true); err != nil {
				return err
			}
			if len(v.LastError) > MaxPluginErrorBytes {
				return errorf(ErrCodeTooLarge, "%s: last_error of %d bytes exceeds %d", what, len(v.LastError), MaxPluginErrorBytes)
			}
			if v.Since < 0 || v.LastOK < 0 {
				return malformedf("%s: negative since or last_ok", what)
			}
		}
	case *Command:
		if err := checkField("command", "name", x.Name, true); err != nil {
			return err
		}
		if x.Name == CommandApplyCollection && x.Collection == nil {
			return malformedf("command: %s without collection", x.Name)
		}
		if x.Collection != nil {
			return x.Collection.validate("command: collection")
		}
	case *Error:
		return checkField("error", "message", x.Message, false)
	case *EnrollRequest:
		if err := checkField("enroll request", "token", x.Token, true); err != nil {
			return err
		}
		if len(x.CSR) == 0 {
			return malformedf("enroll request: missing csr")
		}
	case *EnrollResponse:
		if err := checkField("enroll response", "agent_id", x.AgentID, true); err != nil {
			return err
		}
		if len(x.Cert) == 0 || len(x.CACert) == 0 {
			return malformedf("enroll response: missing cert or ca_cert")
		}
	case *RenewRequest:
		if len(x.CSR) == 0 {
			return malformedf("renew request: missing csr")
		}
	case *RenewResponse:
		if len(x.Cert) == 0 || len(x.CACert) == 0 {
			return malformedf("renew response: missing cert or ca_cert")
		}
	}
	return nil
}

// NegotiateVersion picks the protocol version for an agent's Hello: the
// highest version both sides speak. It fails with ErrCodeUnsupported when
// the ranges do not overlap.
func NegotiateVersion(h *Hello) (uint16, error) {
	if h.MinVersion == 0 || h.MinVersion > h.MaxVersion {
		return 0, malformedf("hello: bad version range [%d, %d]", h.MinVersion, h.MaxVersion)
	}
	v := min(h.MaxVersion, Version)
	if v < h.MinVersion || v < 1 {
		return 0, errorf(ErrCodeUnsupported, "hello: agent speaks versions %d..%d, aggregator %d..%d", h.MinVersion, h.MaxVersion, 1, Version)
	}
	return v, nil
}

// validate checks the bounds of pushed collection settings; what names the
// message and field for the error.
func (c *CollectionSettings) validate(what string) error {
	if c.Revision < 0 {
		return malformedf("%s: negative revision", what)
	}
	for name, d := range map[string]time.Duration{"realtime_interval": c.RealtimeInterval,
		"historical_interval": c.HistoricalInterval, "events_poll": c.EventsPoll, "tag_interval": c.TagInterval} {
		if d < 0 || d > MaxCollectionInterval {
			return malformedf("%s: %s %s outside [0, %s]", what, name, d, MaxCollectionInterval)
		}
	}
	if len(c.Counters) > MaxCollectionKinds {
		return errorf(ErrCodeTooLarge, "%s: %d entity kinds exceed %d", what, len(c.Counters), MaxCollectionKinds)
	}
	for kind, names := range c.Counters {
		if err := checkField(what, "counters kind", kind, true); err != nil {
			return err
		}
		if len(names) > MaxCountersPerKind {
			return errorf(ErrCodeTooLarge, "%s: counters[%q]: %d exceed %d", what, kind, len(names), MaxCountersPerKind)
		}
		for _, n := range names {
			if err := checkField(what, "counter", n, true); err != nil {
				return err
			}
		}
	}
	return nil
}
