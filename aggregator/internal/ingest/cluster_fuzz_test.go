package ingest

import (
	"context"
	"testing"
)

// FuzzRelayNotification: whatever arrives on the command channel (any
// database user can NOTIFY it), handling it never panics, and an ack
// releases only the waiter it names.
func FuzzRelayNotification(f *testing.F) {
	for _, seed := range []string{
		`{"id":"a1","from":"other","op":"command","agent":"4838ab58-b1b6-475f-b891-beda490bf9f5","cmd":{"name":"resync_inventory"}}`,
		`{"id":"a1","from":"other","op":"command","agent":"x"}`,
		`{"id":"a2","from":"other","op":"command","agent":"4838ab58-b1b6-475f-b891-beda490bf9f5","cmd":{"name":""}}`,
		`{"id":"a1","from":"other","op":"disconnect","agent":"x"}`,
		`{"id":"w1","from":"other","op":"ack","agent":"x","to":"self"}`,
		`{"id":"w1","from":"self","op":"ack","to":"self"}`,
		`{"op":"ack"}`, `{}`, `null`, `[]`, `{"op":1}`, "", "\x00\xff", `{"cmd":{"args":{"a":"b"}}}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		s := New(Config{Cluster: &Cluster{ReplicaID: "self"}}, nil, nil)
		// A Cluster without a pool is no cluster: make the state by hand.
		s.cl = &cluster{cfg: &Cluster{ReplicaID: "self"}, waiting: map[string]chan struct{}{}}
		w1, other := make(chan struct{}), make(chan struct{})
		s.cl.waiting["w1"], s.cl.waiting["w2"] = w1, other
		s.handleRelay(context.Background(), payload)
		select {
		case <-other:
			t.Fatalf("%q released a waiter it does not name", payload)
		default:
		}
	})
}
