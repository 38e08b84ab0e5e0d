package httpapi

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzRealtimeClientMessage: the WebSocket's client messages and the SSE
// stream's Last-Event-ID come from the network. Decoding and validating
// them must not panic, and a refusal must be a client error with fields.
func FuzzRealtimeClientMessage(f *testing.F) {
	f.Add([]byte(`{"type":"subscribe","id":"1","entities":[{"kind":"vm","id":"vc:vm-1"}],"metrics":["cpu.usage.average"]}`), "feed-1:42")
	f.Add([]byte(`{"type":"auth","token":"x"}`), ":")
	f.Add([]byte(`{"type":"subscribe","entities":[{"kind":"pod","id":"\u0000"}],"metrics":["bad metric"]}`), "a:b:18446744073709551616")
	f.Add([]byte("{\"type\":\"unsubscribe\",\"entities\":[{\"kind\":\"vm\",\"id\":\"\xff\"}]}"), "")
	f.Fuzz(func(t *testing.T, data []byte, eventID string) {
		_, _, _ = parseStreamEventID(eventID)
		var m wsClientMessage
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			checkClientError(t, "message", jsonError(err))
			return
		}
		var v fieldErrors
		validateEntities(&v, m.Entities, m.Metrics, func(i int) string { return "entities[" + itoa(i) + "]" }, "metrics")
		checkClientError(t, "message", v.err())
	})
}
