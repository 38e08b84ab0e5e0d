package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest"
	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/aggregator/internal/pki"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// TestSettingsCollectionValidation: the collection group's fields are
// checked with errors naming the field (and a counter's index), never a
// 500, and nothing is stored.
func TestSettingsCollectionValidation(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.tokens["admin"]
	for body, field := range map[string]string{
		`{"collection":{}}`:                                                              "collection",
		`{"collection":{"realtime_interval":"10s"}}`:                                     "collection.realtime_interval",
		`{"collection":{"realtime_interval":"30s"}}`:                                     "collection.realtime_interval",
		`{"collection":{"realtime_interval":"320s"}}`:                                    "collection.realtime_interval",
		`{"collection":{"realtime_interval":"soon"}}`:                                    "collection.realtime_interval",
		`{"collection":{"realtime_interval":20}}`:                                        "collection.realtime_interval",
		`{"collection":{"historical_interval":"7m"}}`:                                    "collection.historical_interval",
		`{"collection":{"historical_interval":"1m"}}`:                                    "collection.historical_interval",
		`{"collection":{"events_poll":"4s"}}`:                                            "collection.events_poll",
		`{"collection":{"events_poll":"1500ms"}}`:                                        "collection.events_poll",
		`{"collection":{"events_poll":"5500ms"}}`:                                        "collection.events_poll",
		`{"collection":{"tag_interval":"59s"}}`:                                          "collection.tag_interval",
		`{"collection":{"tag_interval":"-1m"}}`:                                          "collection.tag_interval",
		`{"collection":{"counters":{"vm":["cpu.usage.average","cpu.usage"]}}}`:           "collection.counters.vm[1]",
		`{"collection":{"counters":{"host":["mem.usage.average","mem.usage.average"]}}}`: "collection.counters.host[1]",
		`{"collection":{"counters":{"vm":["cpu.usage.bogus"]}}}`:                         "collection.counters.vm[0]",
		`{"collection":{"counters":{"vm":["cpu.us age.average"]}}}`:                      "collection.counters.vm[0]",
		`{"collection":{"counters":{"network":["net.usage.average"]}}}`:                  "collection.counters",
		`{"collection":{"counters":{"vm":"cpu.usage.average"}}}`:                         "collection.counters",
		`{"collection":{"counters":["cpu.usage.average"]}}`:                              "collection.counters",
		`{"collection":{"interval":"20s"}}`:                                              "interval",
	} {
		res := e.do("PUT", "/api/v1/system/settings", admin, body)
		if res.status != 422 && res.status != 400 || !strings.Contains(string(res.raw), `"field":"`+field+`"`) {
			t.Errorf("%s: %d %s, want a field error on %s", body, res.status, res.raw, field)
		}
	}
	many := make([]string, protocol.MaxCountersPerKind+1)
	for i := range many {
		many[i] = fmt.Sprintf("g%d.c.average", i)
	}
	b, _ := json.Marshal(map[string]any{"collection": map[string]any{"counters": map[string]any{"vm": many}}})
	if res := e.do("PUT", "/api/v1/system/settings", admin, string(b)); res.status != 422 || !strings.Contains(string(res.raw), `"field":"collection.counters.vm"`) {
		t.Errorf("%d counters: %d %s", len(many), res.status, res.raw)
	}
	var s Settings
	e.do("GET", "/api/v1/system/settings", admin, "").data(&s)
	if s.Collection.Revision != 0 || s.Sources["collection"] != "agents" || s.Collection.RealtimeInterval != nil {
		t.Errorf("after refused changes: %+v", s)
	}
	if res := e.do("PUT", "/api/v1/system/settings", e.tokens["operator"], `{"collection":{"realtime_interval":"40s"}}`); res.status != 403 {
		t.Errorf("an operator changed the collection settings: %d", res.status)
	}
}

// TestSettingsCollectionReachesAgentsOnEveryReplica: a change of the
// collection settings through the API reaches, at once, an agent
// connected to another ingest replica than any the API talks to (two
// replicas on one real database, agents over QUIC on loopback), as an
// apply_collection command with a new revision (the change's time in
// Unix ms); a new connection's
// Welcome carries the settings; the change is audited with its
// before/after difference; returning fields to the agents' own
// configuration is a change too.
func TestSettingsCollectionReachesAgentsOnEveryReplica(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.tokens["admin"]
	ctx := context.Background()
	a, b, id := collectionReplicas(t, e)
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	onB, err := ingesttest.Dial(dctx, b.Addr().String(), id, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer onB.Close()
	if onB.Welcome.Collection != nil {
		t.Fatalf("welcome before any setting carries %+v; want none (the agent keeps its own configuration)", onB.Welcome.Collection)
	}

	res := e.do("PUT", "/api/v1/system/settings", admin,
		`{"collection":{"realtime_interval":"40s","events_poll":"15s","counters":{"vm":["cpu.usage.average","cpu.ready.summation"]}}}`)
	var s Settings
	res.data(&s)
	rev1 := s.Collection.Revision
	if now := time.Now().UnixMilli(); rev1 < now-60_000 || rev1 > now+60_000 {
		t.Errorf("revision %d: want the change's time in Unix ms (now %d)", rev1, now)
	}
	if res.status != 200 || s.Sources["collection"] != "settings" || *s.Collection.RealtimeInterval != "40s" ||
		*s.Collection.EventsPoll != "15s" || s.Collection.HistoricalInterval != nil || len(s.Collection.Counters["vm"]) != 2 {
		t.Fatalf("PUT: %d %s", res.status, res.raw)
	}
	changed := time.Now()
	cmd := readCollection(t, onB)
	want := protocol.CollectionSettings{Revision: rev1, RealtimeInterval: 40 * time.Second, EventsPoll: 15 * time.Second,
		Counters: map[string][]string{"vm": {"cpu.usage.average", "cpu.ready.summation"}}}
	if got, _ := json.Marshal(cmd); string(got) != collectionJSON(want) {
		t.Fatalf("agent on B got %s, want %s", got, collectionJSON(want))
	}
	t.Logf("the agent on replica B had the change %s after the API answered", time.Since(changed).Round(time.Millisecond))

	// A new connection (to A this time) is welcomed with the settings.
	onB.Close()
	onA, err := ingesttest.Dial(dctx, a.Addr().String(), id, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer onA.Close()
	if got, _ := json.Marshal(onA.Welcome.Collection); string(got) != collectionJSON(want) {
		t.Fatalf("welcome on A: %s, want %s", got, collectionJSON(want))
	}

	// Back to the agents' own VM counters and events poll: revision 2,
	// sent to the agent (now on A) without those fields.
	res = e.do("PUT", "/api/v1/system/settings", admin, `{"collection":{"events_poll":"0s","counters":{"vm":null},"tag_interval":"10m"}}`)
	s = Settings{}
	res.data(&s)
	rev2 := s.Collection.Revision
	if res.status != 200 || rev2 <= rev1 || s.Collection.EventsPoll != nil || len(s.Collection.Counters) != 0 || *s.Collection.TagInterval != "10m" {
		t.Fatalf("second PUT: %d %s", res.status, res.raw)
	}
	// A replica's periodic check may have queued revision 1 to the new
	// connection before its Welcome recorded it (the agent ignores a
	// revision it has): skip those, never a newer one.
	cmd = readCollection(t, onA)
	for cmd.Revision == rev1 {
		cmd = readCollection(t, onA)
	}
	want = protocol.CollectionSettings{Revision: rev2, RealtimeInterval: 40 * time.Second, TagInterval: 10 * time.Minute}
	if got, _ := json.Marshal(cmd); string(got) != collectionJSON(want) {
		t.Fatalf("second change: agent got %s, want %s", got, collectionJSON(want))
	}

	e.flushAudit()
	var summary string
	if err := e.pool.QueryRow(ctx, `SELECT summary FROM audit_log WHERE action = 'settings.update' AND status = 200 ORDER BY seq DESC LIMIT 1`).
		Scan(&summary); err != nil {
		t.Fatal(err)
	}
	var diff struct {
		Changes map[string]struct {
			Before, After CollectionSettings
		} `json:"changes"`
	}
	if err := json.Unmarshal([]byte(summary), &diff); err != nil {
		t.Fatal(err)
	}
	c, ok := diff.Changes["collection"]
	if !ok || c.Before.Revision != rev1 || c.After.Revision != rev2 || *c.Before.EventsPoll != "15s" || c.After.EventsPoll != nil ||
		len(c.Before.Counters["vm"]) != 2 || len(c.After.Counters) != 0 || len(diff.Changes) != 1 {
		t.Errorf("audited diff: %s", summary)
	}
}

// collectionReplicas runs two ingest replicas (A on e's store, B on a
// store of its own) on e's database, with the same CA, and enrolls an
// agent of site dc1. Their heartbeat is an hour long: a change must
// arrive by its notification, not by the replicas' periodic check.
func collectionReplicas(t testing.TB, e *env) (a, b *ingest.Server, id *ingesttest.Identity) {
	t.Helper()
	ctx := context.Background()
	ca, err := pki.LoadOrCreate(t.TempDir(), []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	stB, err := store.Open(ctx, e.pool.Config().ConnString(), store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stB.Close)
	replica := func(name string, st *store.Store) *ingest.Server {
		srv := ingest.New(ingest.Config{Addr: "127.0.0.1:0", HeartbeatInterval: time.Hour, Logger: slog.New(slog.DiscardHandler),
			Cluster: &ingest.Cluster{Pool: st.Pool(), Registry: st, ReplicaID: name, Version: "test"}}, st, ca)
		if err := srv.Listen(); err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := srv.Serve(sctx); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
		t.Cleanup(func() { cancel(); <-done })
		return srv
	}
	a, b = replica("replica-a", e.store), replica("replica-b", stB)
	eventually(t, "both replicas listening", func() bool { return a.RelayListening() && b.RelayListening() })
	if err := e.store.EnsureSite(ctx, "dc1", ""); err != nil {
		t.Fatal(err)
	}
	secret, _, err := e.store.CreateEnrollmentToken(ctx, "dc1", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	id, err = ingesttest.Enroll(dctx, a.Addr().String(), protocol.FormatEnrollToken(secret, ca.Cert.Raw), "settings-agent")
	if err != nil {
		t.Fatal(err)
	}
	return a, b, id
}

// BenchmarkSettingsCollectionPush: from the API's answer to a change of
// the collection settings to the apply_collection command read by an
// agent connected to another replica (the notification at COMMIT, the
// replica's read of the settings, the QUIC control stream).
func BenchmarkSettingsCollectionPush(bm *testing.B) {
	e := newEnv(bm, nil)
	admin := e.tokens["admin"]
	_, b, id := collectionReplicas(bm, e)
	dctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	onB, err := ingesttest.Dial(dctx, b.Addr().String(), id, 1)
	if err != nil {
		bm.Fatal(err)
	}
	defer onB.Close()
	var lat []time.Duration
	bm.ResetTimer()
	for i := range bm.N {
		iv := []string{"40s", "60s"}[i%2]
		res := e.do("PUT", "/api/v1/system/settings", admin, `{"collection":{"realtime_interval":"`+iv+`"}}`)
		answered := time.Now()
		if res.status != 200 {
			bm.Fatalf("PUT: %d %s", res.status, res.raw)
		}
		_ = onB.Control.SetReadDeadline(time.Now().Add(5 * time.Second))
		m, err := protocol.ReadMessage(onB.Control)
		if err != nil {
			bm.Fatal(err)
		}
		lat = append(lat, time.Since(answered))
		if cmd, ok := m.(*protocol.Command); !ok || cmd.Collection == nil || cmd.Collection.RealtimeInterval.String() != map[string]string{"40s": "40s", "60s": "1m0s"}[iv] {
			bm.Fatalf("got %#v", m)
		}
	}
	bm.StopTimer()
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	fmt.Printf("figure: settings_change_to_agent_on_other_replica_ms %.1f ms\n", float64(sum)/float64(len(lat))/1e6)
	fmt.Printf("figure: settings_change_to_agent_on_other_replica_max_ms %.1f ms\n", float64(lat[len(lat)-1])/1e6)
}

// readCollection reads the next message of the control stream, which must
// be an apply_collection command, within 5 s.
func readCollection(t *testing.T, c *ingesttest.Conn) *protocol.CollectionSettings {
	t.Helper()
	_ = c.Control.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := protocol.ReadMessage(c.Control)
	if err != nil {
		t.Fatalf("no command within 5 s: %v", err)
	}
	cmd, ok := m.(*protocol.Command)
	if !ok || cmd.Name != protocol.CommandApplyCollection || cmd.Collection == nil {
		t.Fatalf("got %#v, want apply_collection", m)
	}
	return cmd.Collection
}

func collectionJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
