package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest"
	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/aggregator/internal/realtime"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// hub is the API's feed (the one newEnv's API made itself).
func (e *env) hub() *realtime.Hub { return e.api.realtime.(*realtime.Hub) }

// serve starts a real HTTP server on the API (WebSockets need one).
func (e *env) serve() *httptest.Server {
	srv := httptest.NewServer(e.api.Handler())
	e.t.Cleanup(srv.Close)
	return srv
}

// vmSamples is one point of cpu.usage.average (hundredths of a percent)
// and mem.usage.average of each VM of source.
func vmSamples(source string, at time.Time, cpu float64, vms ...string) *protocol.Samples {
	p := &protocol.Samples{}
	for _, vm := range vms {
		p.Series = append(p.Series, protocol.SeriesData{
			Key: protocol.SeriesKey{Source: source, EntityKind: "vm", EntityID: vm,
				Counters: []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}, {Name: "mem.consumed.average", Unit: "KB"}}},
			Timestamps: []int64{at.UnixMilli()}, Values: [][]float64{{cpu}, {2048}},
		})
	}
	return p
}

var rtSeq atomic.Uint64

// commit stores p as a batch of agent a through the store's write path
// and publishes it as ingest does after COMMIT; it returns when the
// commit was done.
func (e *env) commit(hub *realtime.Hub, a store.Agent, p *protocol.Samples) time.Time {
	e.t.Helper()
	_, err := e.store.WriteSamples(context.Background(), store.BatchMeta{AgentID: a.ID, Site: a.Site, Epoch: 9, Seq: rtSeq.Add(1),
		Kind: protocol.KindSamples}, p)
	if err != nil {
		e.t.Fatal(err)
	}
	committed := time.Now()
	hub.PublishSamples(a.Site, a.ID, p)
	return committed
}

// scopedToken creates a user with every permission whose data scope is
// the given sites, and returns its access token.
func (e *env) scopedToken(name string, sites ...string) (token, id string) {
	e.t.Helper()
	res := e.do("POST", "/api/v1/users", e.tokens["admin"], `{"username":"`+name+`","password":"`+goodPassword+`","roles":["admin"]}`)
	if res.status != 201 {
		e.t.Fatalf("create user: %d %s", res.status, res.raw)
	}
	var u struct {
		ID string `json:"id"`
	}
	res.data(&u)
	scope, _ := json.Marshal(map[string]any{"sites": sites, "vm_groups": []string{}})
	if res := e.do("PUT", "/api/v1/users/"+u.ID+"/scope", e.tokens["admin"], string(scope)); res.status != 200 {
		e.t.Fatalf("set scope: %d %s", res.status, res.raw)
	}
	return e.login(name).AccessToken, u.ID
}

// wsMsg is any message of the WebSocket protocol.
type wsMsg struct {
	Type          string           `json:"type"`
	ID            string           `json:"id"`
	Code          string           `json:"code"`
	Message       string           `json:"message"`
	Fields        []FieldError     `json:"fields"`
	Entity        *entityRef       `json:"entity"`
	Subscriptions int              `json:"subscriptions"`
	Replica       string           `json:"replica"`
	User          string           `json:"user"`
	Seq           uint64           `json:"seq"`
	CommittedAt   time.Time        `json:"committed_at"`
	Samples       []RealtimeSample `json:"samples"`
	Entities      []entityRef      `json:"entities"`
}

type wsClient struct {
	t    *testing.T
	c    *websocket.Conn
	resp *http.Response
	// The client reads in a goroutine started at the first wait (a
	// timed-out read would close the connection: coder/websocket closes
	// it when a read's context ends), so a client that never waits never
	// reads.
	once sync.Once
	msgs chan []byte
	err  error // set before msgs is closed
}

func (w *wsClient) pump() {
	w.once.Do(func() {
		go func() {
			defer close(w.msgs)
			for {
				_, b, err := w.c.Read(context.Background())
				if err != nil {
					w.err = err
					return
				}
				w.msgs <- b
			}
		}()
	})
}

// nextRaw returns the next message within d.
func (w *wsClient) nextRaw(d time.Duration) ([]byte, error) {
	w.pump()
	select {
	case b, ok := <-w.msgs:
		if !ok {
			return nil, w.err
		}
		return b, nil
	case <-time.After(d):
		return nil, context.DeadlineExceeded
	}
}

// auth modes of dialWS.
const (
	byHeader   = "header"
	byProtocol = "protocol"
	byMessage  = "message"
)

func wsURL(srv *httptest.Server) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/api/v1/realtime/ws"
}

// dialWS opens the feed and authenticates as mode says. It does not read
// the welcome.
func dialWS(t *testing.T, url, token, mode string, opts *websocket.DialOptions) (*wsClient, error) {
	t.Helper()
	if opts == nil {
		opts = &websocket.DialOptions{}
	}
	opts.HTTPHeader = http.Header{}
	switch mode {
	case byHeader:
		opts.HTTPHeader.Set("Authorization", "Bearer "+token)
	case byProtocol:
		opts.Subprotocols = []string{wsSubprotocol, wsBearerPrefix + token}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		return &wsClient{t: t, resp: resp}, err
	}
	c.SetReadLimit(16 << 20)
	t.Cleanup(func() { c.CloseNow() })
	w := &wsClient{t: t, c: c, resp: resp, msgs: make(chan []byte, 4096)}
	if mode == byMessage {
		w.send(map[string]any{"type": "auth", "token": token})
	}
	return w, nil
}

func (w *wsClient) send(v any) {
	w.t.Helper()
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, b); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

// next reads the next message within d.
func (w *wsClient) next(d time.Duration) (wsMsg, error) {
	b, err := w.nextRaw(d)
	if err != nil {
		return wsMsg{}, err
	}
	var m wsMsg
	if err := json.Unmarshal(b, &m); err != nil {
		w.t.Fatalf("message is not JSON: %v: %s", err, b)
	}
	return m, nil
}

// expectUnpumped reads the next message, of type typ, without starting the
// reading goroutine: a client that then stops reading really stops.
func (w *wsClient) expectUnpumped(typ string) {
	w.t.Helper()
	_, b, err := w.c.Read(context.Background())
	if err != nil {
		w.t.Fatalf("waiting for %s: %v", typ, err)
	}
	var m wsMsg
	if err := json.Unmarshal(b, &m); err != nil || m.Type != typ {
		w.t.Fatalf("got %s, want a %s message", b, typ)
	}
}

// expect reads the next message, which must be of type typ.
func (w *wsClient) expect(typ string) wsMsg {
	w.t.Helper()
	m, err := w.next(5 * time.Second)
	if err != nil {
		w.t.Fatalf("waiting for %s: %v", typ, err)
	}
	if m.Type != typ {
		w.t.Fatalf("got %+v, want a %s message", m, typ)
	}
	return m
}

// quiet checks that nothing arrives for a while.
func (w *wsClient) quiet(d time.Duration) {
	w.t.Helper()
	if m, err := w.next(d); err == nil {
		w.t.Fatalf("unexpected message %+v", m)
	}
}

// closed reads until the server closes the connection and returns its
// close status and reason.
func (w *wsClient) closed(d time.Duration) (websocket.StatusCode, string) {
	w.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		_, err := w.nextRaw(time.Until(deadline))
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			continue
		}
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Reason
		}
		w.t.Fatalf("connection ended without a close frame: %v", err)
	}
	w.t.Fatal("the server did not close the connection")
	return 0, ""
}

func subscribe(id string, metrics []string, entities ...entityRef) map[string]any {
	return map[string]any{"type": "subscribe", "id": id, "entities": entities, "metrics": metrics}
}

// TestRealtimeWebSocket: every way of authenticating works; a subscriber
// receives its samples (percent scaled, nothing it did not ask for) within
// a second of COMMIT; ping/pong; unsubscribe stops the samples.
func TestRealtimeWebSocket(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	srv := e.serve()
	web01 := entityRef{Kind: "vm", ID: objectID(vcEast, "vm-1")}
	for _, mode := range []string{byHeader, byProtocol, byMessage} {
		t.Run(mode, func(t *testing.T) {
			c, err := dialWS(t, wsURL(srv), e.tokens["viewer"], mode, nil)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			if mode == byProtocol && c.c.Subprotocol() != wsSubprotocol {
				t.Fatalf("selected subprotocol %q, want %q (never the token)", c.c.Subprotocol(), wsSubprotocol)
			}
			if w := c.expect("welcome"); w.User != "viewer" || w.Replica != e.hub().ID() {
				t.Fatalf("welcome = %+v", w)
			}
			c.send(subscribe("s1", []string{"cpu.usage.average"}, web01))
			if m := c.expect("subscribed"); m.ID != "s1" || m.Subscriptions != 1 {
				t.Fatalf("subscribed = %+v", m)
			}
			now := time.Now().Truncate(time.Millisecond)
			committed := e.commit(e.hub(), f.east, vmSamples(vcEast, now, 382, "vm-1", "vm-2", "vm-3"))
			m, err := c.next(time.Second)
			if err != nil {
				t.Fatalf("nothing within a second of COMMIT: %v", err)
			}
			lag := time.Since(committed)
			want := RealtimeSample{Kind: "vm", ID: objectID(vcEast, "vm-1"), Site: "dc-east", Metric: "cpu.usage.average", Unit: "%",
				TS: now.UTC(), Value: 3.82}
			if m.Type != "samples" || len(m.Samples) != 1 || m.Samples[0] != want || m.Seq == 0 || m.CommittedAt.IsZero() {
				t.Fatalf("samples = %+v; want only %+v", m, want)
			}
			t.Logf("%s: received %s after COMMIT", mode, lag.Round(time.Microsecond))
			c.send(map[string]any{"type": "ping", "id": "p"})
			if m := c.expect("pong"); m.ID != "p" {
				t.Fatalf("pong = %+v", m)
			}
			// Every metric of web-01, then none.
			c.send(subscribe("s2", nil, web01))
			if m := c.expect("subscribed"); m.Subscriptions != 2 {
				t.Fatalf("subscribed = %+v", m)
			}
			e.commit(e.hub(), f.east, vmSamples(vcEast, now.Add(20*time.Second), 100, "vm-1"))
			if m := c.expect("samples"); len(m.Samples) != 2 {
				t.Fatalf("samples = %+v, want cpu and mem", m.Samples)
			}
			c.send(map[string]any{"type": "unsubscribe", "id": "u", "entities": []entityRef{web01}})
			if m := c.expect("unsubscribed"); m.Subscriptions != 0 {
				t.Fatalf("unsubscribed = %+v", m)
			}
			e.commit(e.hub(), f.east, vmSamples(vcEast, now.Add(40*time.Second), 100, "vm-1"))
			c.quiet(200 * time.Millisecond)
			c.c.Close(websocket.StatusNormalClosure, "")
		})
	}
}

// TestRealtimeHeartbeat: the server pings; a client that stops answering
// is disconnected with a close reason.
func TestRealtimeHeartbeat(t *testing.T) {
	e := newEnv(t, nil)
	e.api.rtLimits.heartbeat, e.api.rtLimits.pongTimeout = 100*time.Millisecond, 300*time.Millisecond
	srv := e.serve()
	var pings atomic.Int64
	answer := atomic.Bool{}
	answer.Store(true)
	c, err := dialWS(t, wsURL(srv), e.tokens["viewer"], byHeader, &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool { pings.Add(1); return answer.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	c.expect("welcome")
	c.quiet(600 * time.Millisecond) // reading answers the pings
	if n := pings.Load(); n < 3 {
		t.Fatalf("%d pings in 600ms at one per 100ms", n)
	}
	answer.Store(false)
	code, reason := c.closed(5 * time.Second)
	if code != websocket.StatusGoingAway || !strings.HasPrefix(reason, CodeHeartbeatTimeout) {
		t.Fatalf("closed with %d %q", code, reason)
	}
}

// TestRealtimeRefused: no credential, a bad one, one without metric:read,
// a token only in the query string, and bad or excessive subscriptions are
// refused; an entity outside the caller's scope is refused exactly like a
// missing one.
func TestRealtimeRefused(t *testing.T) {
	e := newEnv(t, nil)
	e.inventory()
	e.api.rtLimits.authTimeout = 300 * time.Millisecond
	srv := e.serve()
	url := wsURL(srv)

	// Upgrade refused over HTTP.
	for _, c := range []struct {
		token, mode string
		status      int
	}{
		{"not-a-token", byHeader, 401}, {"not-a-token", byProtocol, 401}, {e.tokens["auditor"], byHeader, 403}, {e.tokens["auditor"], byProtocol, 403},
	} {
		if _, err := dialWS(t, url, c.token, c.mode, nil); err == nil {
			t.Errorf("%s %s: dial succeeded", c.mode, c.token)
		}
	}
	if res := e.do("GET", "/api/v1/realtime/ws", e.tokens["viewer"], ""); res.status != 426 || res.code() != CodeUpgradeRequired {
		t.Errorf("plain GET = %d %s", res.status, res.raw)
	}
	// Closed after the upgrade: the first message must authenticate.
	for name, first := range map[string]any{
		"bad token":       map[string]any{"type": "auth", "token": "nope"},
		"not auth":        subscribe("x", nil, entityRef{Kind: "vm", ID: objectID(vcEast, "vm-1")}),
		"garbage":         "{{{",
		"auditor":         map[string]any{"type": "auth", "token": e.tokens["auditor"]},
		"query string":    nil, // the token in the URL only: ignored, then nothing
		"no message sent": nil,
	} {
		t.Run(name, func(t *testing.T) {
			u := url
			if name == "query string" {
				u += "?token=" + e.tokens["viewer"] + "&access_token=" + e.tokens["viewer"]
			}
			c, err := dialWS(t, u, "", "", nil)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			if first != nil {
				c.send(first)
			}
			code, reason := c.closed(5 * time.Second)
			want := CodeUnauthenticated
			if name == "auditor" {
				want = CodeForbidden
			}
			if code != websocket.StatusPolicyViolation || !strings.HasPrefix(reason, want) {
				t.Fatalf("closed with %d %q, want 1008 %s", code, reason, want)
			}
		})
	}

	// Subscriptions: the scope, the limits, bad input.
	east, _ := e.scopedToken("east-viewer", "dc-east")
	c, err := dialWS(t, url, east, byMessage, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.expect("welcome")
	errOf := func(msg map[string]any) wsMsg {
		t.Helper()
		c.send(msg)
		return c.expect("error")
	}
	outside := errOf(subscribe("w", nil, entityRef{Kind: "vm", ID: objectID(vcWest, "vm-1")}))
	missing := errOf(subscribe("m", nil, entityRef{Kind: "vm", ID: objectID(vcEast, "vm-404")}))
	if outside.Code != CodeVMNotFound || outside.Code != missing.Code || outside.Message != missing.Message || outside.ID != "w" {
		t.Fatalf("outside the scope: %+v; missing: %+v; want the same VM_NOT_FOUND", outside, missing)
	}
	host := errOf(subscribe("h", nil, entityRef{Kind: "vm", ID: objectID(vcEast, "vm-1")}, entityRef{Kind: "host", ID: objectID(vcWest, "host-9")}))
	if host.Code != CodeHostNotFound {
		t.Fatalf("a dc-west host among others: %+v", host)
	}
	// All or nothing: the dc-east VM of that message was not subscribed.
	c.send(map[string]any{"type": "unsubscribe"})
	if m := c.expect("unsubscribed"); m.Subscriptions != 0 {
		t.Fatalf("after a refused subscribe: %+v", m)
	}
	bad := errOf(map[string]any{"type": "subscribe", "entities": []entityRef{{Kind: "rack", ID: "x"}}, "metrics": []string{"nope"}})
	if bad.Code != CodeValidation || len(bad.Fields) != 3 || bad.Fields[0].Message == "" {
		t.Fatalf("bad subscribe: %+v", bad)
	}
	if m := errOf(map[string]any{"type": "dance"}); m.Code != CodeValidation {
		t.Fatalf("unknown type: %+v", m)
	}
	if m := errOf(map[string]any{"type": "ping", "extra": 1}); m.Code != CodeValidation {
		t.Fatalf("unknown field: %+v", m)
	}
	// Three VMs × 50 metrics a message: 150 subscriptions each; the
	// fourth would make 600, over the limit of 500.
	vms := []entityRef{{Kind: "vm", ID: objectID(vcEast, "vm-1")}, {Kind: "vm", ID: objectID(vcEast, "vm-2")}, {Kind: "vm", ID: objectID(vcEast, "vm-3")}}
	for round := 0; round < 4; round++ {
		var ms []string
		for i := range MaxHistoryMetrics {
			ms = append(ms, "cpu.m"+itoa(i)+"r"+itoa(round)+".average")
		}
		c.send(subscribe("lim", ms, vms...))
		m, err := c.next(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case round < 3 && (m.Type != "subscribed" || m.Subscriptions != 150*(round+1)):
			t.Fatalf("round %d: %+v", round, m)
		case round == 3 && (m.Type != "error" || m.Code != CodeTooManySubscriptions):
			t.Fatalf("over the limit: %+v", m)
		}
	}
}

// TestRealtimeScope: a scoped subscriber never receives an out-of-scope
// sample, over the WebSocket or the stream, even for an entity with the
// same moref on another site; and when its scope no longer grants an
// entity, the subscription to it is revoked.
func TestRealtimeScope(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	e.api.rtLimits.revalidate = 200 * time.Millisecond
	srv := e.serve()
	east, eastID := e.scopedToken("east-ops", "dc-east")
	c, err := dialWS(t, wsURL(srv), east, byProtocol, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.expect("welcome")
	c.send(subscribe("e", nil, entityRef{Kind: "vm", ID: objectID(vcEast, "vm-1")}, entityRef{Kind: "vm", ID: objectID(vcEast, "vm-3")}))
	c.expect("subscribed")
	stream := openStream(t, srv, east, "?vm="+url.QueryEscape(objectID(vcEast, "vm-1")), "")
	stream.expect("subscribed")
	// An admin watching dc-west's vm-1 sees it: the batch is delivered.
	admin, err := dialWS(t, wsURL(srv), e.tokens["admin"], byHeader, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin.expect("welcome")
	admin.send(subscribe("w", nil, entityRef{Kind: "vm", ID: objectID(vcWest, "vm-1")}))
	admin.expect("subscribed")

	at := time.Now()
	e.commit(e.hub(), f.west, vmSamples(vcWest, at, 9999, "vm-1"))
	if m := admin.expect("samples"); m.Samples[0].Site != "dc-west" {
		t.Fatalf("admin got %+v", m)
	}
	e.commit(e.hub(), f.east, vmSamples(vcEast, at, 100, "vm-1"))
	for _, m := range []wsMsg{c.expect("samples"), stream.expect("samples")} {
		for _, s := range m.Samples {
			if s.Site != "dc-east" || s.ID != objectID(vcEast, "vm-1") {
				t.Fatalf("the dc-east subscriber received %+v", s)
			}
		}
	}
	c.quiet(100 * time.Millisecond)

	// The user's scope moves to dc-west: within a revalidation the
	// subscriptions to dc-east's VMs are revoked.
	if res := e.do("PUT", "/api/v1/users/"+eastID+"/scope", e.tokens["admin"], `{"sites":["dc-west"],"vm_groups":[]}`); res.status != 200 {
		t.Fatalf("set scope: %d %s", res.status, res.raw)
	}
	m := c.expect("revoked")
	if len(m.Entities) != 2 || m.Subscriptions != 0 {
		t.Fatalf("revoked = %+v", m)
	}
	if m := stream.expect("revoked"); len(m.Entities) != 1 {
		t.Fatalf("stream revoked = %+v", m)
	}
	e.commit(e.hub(), f.east, vmSamples(vcEast, at.Add(time.Minute), 100, "vm-1"))
	c.quiet(300 * time.Millisecond)
	stream.close()
}

// TestRealtimeSlowConsumer: a client that does not read falls behind and is
// dropped with a close reason, while another keeps receiving everything,
// and publishing never waits for either.
func TestRealtimeSlowConsumer(t *testing.T) {
	e := newEnv(t, nil)
	e.inventory()
	e.api.rtLimits.buffer = 4
	srv := e.serve()
	vm := entityRef{Kind: "vm", ID: objectID(vcEast, "vm-1")}
	var clients []*wsClient
	for range 2 {
		c, err := dialWS(t, wsURL(srv), e.tokens["viewer"], byHeader, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.expectUnpumped("welcome")
		c.send(subscribe("s", nil, vm))
		c.expectUnpumped("subscribed")
		clients = append(clients, c)
	}
	slow, fast := clients[0], clients[1] // slow reads nothing until dropped
	// Big deliveries (2,000 samples, ~250 kB each) fill the slow client's
	// socket buffers, then its 4-delivery buffer.
	points := 1000
	p := &protocol.Samples{Series: []protocol.SeriesData{{Key: protocol.SeriesKey{Source: vcEast, EntityKind: "vm", EntityID: "vm-1",
		Counters: []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}, {Name: "mem.consumed.average", Unit: "KB"}}}}}}
	sd := &p.Series[0]
	start := time.Now().Add(-time.Hour).UnixMilli()
	sd.Values = [][]float64{make([]float64, points), make([]float64, points)}
	for i := range points {
		sd.Timestamps = append(sd.Timestamps, start+int64(i)*1000)
		sd.Values[0][i], sd.Values[1][i] = float64(i), float64(i)
	}
	var publishing time.Duration
	published, after := 0, 0
	deadline := time.Now().Add(60 * time.Second)
	for after < 20 { // until the slow one is dropped, and 20 more
		if time.Now().After(deadline) {
			t.Fatalf("the slow client was not dropped after %d batches: %+v", published, e.hub().Stats())
		}
		t0 := time.Now()
		e.hub().PublishSamples("dc-east", "agent", p)
		publishing += time.Since(t0)
		published++
		// The fast client keeps up: it has each batch before the next.
		if _, err := fast.nextRaw(10 * time.Second); err != nil {
			t.Fatalf("the fast client, batch %d: %v (hub %+v)", published, err, e.hub().Stats())
		}
		if e.hub().Stats().SlowConsumers > 0 {
			after++
		}
	}
	if st := e.hub().Stats(); st.SlowConsumers != 1 || st.QueueDrops != 0 {
		t.Fatalf("hub stats %+v; want exactly the slow client dropped", st)
	}
	code, reason := slow.closed(30 * time.Second)
	if code != websocket.StatusTryAgainLater || !strings.HasPrefix(reason, CodeSlowConsumer) {
		t.Fatalf("slow client closed with %d %q", code, reason)
	}
	t.Logf("dropped after ~%d batches; publishing %d batches took %s in all", published-after, published, publishing)
}

// sseClient reads a Server-Sent Events stream.
type sseClient struct {
	t      *testing.T
	resp   *http.Response
	cancel context.CancelFunc
	events chan wsMsg
}

// openStream opens GET /realtime/stream with query q.
func openStream(t *testing.T, srv *httptest.Server, token, q, lastID string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/realtime/stream"+q, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		cancel()
		t.Fatalf("stream%s: %d %s", q, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sseClient{t: t, resp: resp, cancel: cancel, events: make(chan wsMsg, 1024)}
	t.Cleanup(s.close)
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 16<<20)
		var ev wsMsg
		var id string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				ev.Replica = id // the event id
				s.events <- ev
				ev, id = wsMsg{}, ""
			case strings.HasPrefix(line, "event: "):
				ev.Type = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "id: "):
				id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				typ := ev.Type
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev); err != nil {
					t.Errorf("event data is not JSON: %v: %s", err, line)
				}
				ev.Type = typ
			}
		}
	}()
	return s
}

func (s *sseClient) close() {
	s.cancel()
	s.resp.Body.Close()
}

// expect returns the next event, which must be of type typ; its id is in
// Replica.
func (s *sseClient) expect(typ string) wsMsg {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			s.t.Fatalf("stream ended waiting for %s", typ)
		}
		if ev.Type != typ {
			s.t.Fatalf("got event %+v, want %s", ev, typ)
		}
		return ev
	case <-time.After(5 * time.Second):
		s.t.Fatalf("no %s event within 5s", typ)
	}
	return wsMsg{}
}

// TestRealtimeStream: Server-Sent Events: subscribe by query, samples
// within a second of COMMIT, heartbeats, resuming with Last-Event-ID from
// the ring, a gap when the id is not this replica's, and refusals.
func TestRealtimeStream(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	e.api.rtLimits.heartbeat = 150 * time.Millisecond
	srv := e.serve()
	viewer := e.tokens["viewer"]
	q := "?vm=" + url.QueryEscape(objectID(vcEast, "vm-1")) + "&metric=cpu.usage.average"
	s := openStream(t, srv, viewer, q, "")
	if ev := s.expect("subscribed"); ev.Subscriptions != 1 || ev.Replica != "" {
		t.Fatalf("subscribed = %+v", ev)
	}
	at := time.Now().Truncate(time.Millisecond)
	committed := e.commit(e.hub(), f.east, vmSamples(vcEast, at, 382, "vm-1", "vm-2"))
	var ev wsMsg
	select {
	case ev = <-s.events:
	case <-time.After(time.Second):
		t.Fatal("no event within a second of COMMIT")
	}
	t.Logf("received %s after COMMIT", time.Since(committed).Round(time.Microsecond))
	if ev.Type != "samples" || len(ev.Samples) != 1 || ev.Samples[0].Value != 3.82 || ev.Samples[0].TS != at.UTC() ||
		ev.Replica != e.hub().ID()+":"+itoa(int(ev.Seq)) {
		t.Fatalf("samples event = %+v", ev)
	}
	lastID := ev.Replica
	s.expect("heartbeat")
	s.close()

	// Missed while disconnected, replayed on reconnecting.
	e.commit(e.hub(), f.east, vmSamples(vcEast, at.Add(20*time.Second), 500, "vm-1"))
	e.commit(e.hub(), f.east, vmSamples(vcEast, at.Add(40*time.Second), 600, "vm-2")) // not subscribed
	e.commit(e.hub(), f.east, vmSamples(vcEast, at.Add(60*time.Second), 700, "vm-1"))
	deadline := time.Now().Add(5 * time.Second)
	for e.hub().Stats().Dispatched < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	s = openStream(t, srv, viewer, q, lastID)
	s.expect("subscribed")
	for _, want := range []float64{5, 7} {
		if ev := s.expect("samples"); len(ev.Samples) != 1 || ev.Samples[0].Value != want {
			t.Fatalf("replayed %+v, want %v", ev.Samples, want)
		}
	}
	e.commit(e.hub(), f.east, vmSamples(vcEast, at.Add(80*time.Second), 800, "vm-1"))
	for {
		ev := s.expect2()
		if ev.Type == "heartbeat" {
			continue
		}
		if ev.Type != "samples" || ev.Samples[0].Value != 8 {
			t.Fatalf("after the replay: %+v", ev)
		}
		break
	}
	s.close()
	// An id of another replica (or of before a restart) cannot resume.
	s = openStream(t, srv, viewer, q, "another-replica:12")
	s.expect("subscribed")
	if ev := s.expect("gap"); ev.Code != CodeResumeGap {
		t.Fatalf("gap = %+v", ev)
	}
	s.close()

	// Refusals, before any stream starts.
	for _, c := range []struct {
		token, q string
		status   int
		code     string
	}{
		{"", q, 401, CodeUnauthenticated},
		{e.tokens["auditor"], q, 403, CodeForbidden},
		{viewer, "", 422, CodeValidation},
		{viewer, "?vm=nonsense", 422, CodeValidation},
		{viewer, q + "&metric=x", 422, CodeValidation},
		{viewer, "?vm=" + url.QueryEscape(objectID(vcEast, "vm-404")), 404, CodeVMNotFound},
		{viewer, "?datastore=" + url.QueryEscape(objectID(vcEast, "nope")), 404, CodeDatastoreNotFound},
	} {
		if res := e.do("GET", "/api/v1/realtime/stream"+c.q, c.token, ""); res.status != c.status || res.code() != c.code {
			t.Errorf("stream%s = %d %s, want %d %s", c.q, res.status, res.raw, c.status, c.code)
		}
	}
}

// expect2 returns the next event whatever its type.
func (s *sseClient) expect2() wsMsg {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			s.t.Fatal("stream ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		s.t.Fatal("no event within 5s")
	}
	return wsMsg{}
}

// TestRealtimeStreamSlowConsumer: a stream that is not read is ended with
// an error event, not waited for.
func TestRealtimeStreamSlowConsumer(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	_ = f
	e.api.rtLimits.buffer = 2
	srv := e.serve()
	q := "?vm=" + url.QueryEscape(objectID(vcEast, "vm-1"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/realtime/stream"+q, nil)
	req.Header.Set("Authorization", "Bearer "+e.tokens["viewer"])
	resp, err := srv.Client().Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	points := 3000
	sd := protocol.SeriesData{Key: protocol.SeriesKey{Source: vcEast, EntityKind: "vm", EntityID: "vm-1",
		Counters: []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}}}, Values: [][]float64{make([]float64, points)}}
	for i := range points {
		sd.Timestamps = append(sd.Timestamps, int64(i)*1000+1)
	}
	p := &protocol.Samples{Series: []protocol.SeriesData{sd}}
	deadline := time.Now().Add(30 * time.Second)
	for e.hub().Stats().SlowConsumers == 0 && time.Now().Before(deadline) {
		e.hub().PublishSamples("dc-east", "agent", p)
		time.Sleep(time.Millisecond)
	}
	if e.hub().Stats().SlowConsumers != 1 {
		t.Fatalf("the unread stream was not dropped: %+v", e.hub().Stats())
	}
	// Reading now, the stream ends with the reason.
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 16<<20)
	var last []string
	for sc.Scan() {
		last = append(last, sc.Text())
		if len(last) > 4 {
			last = last[1:]
		}
	}
	if !strings.Contains(strings.Join(last, "\n"), "event: error\ndata: {\"code\":\""+CodeSlowConsumer) {
		t.Fatalf("the stream ended with %q", last)
	}
}

// TestRealtimeTwoInstances: two aggregator instances (each its API and its
// hub, relaying through PostgreSQL) on one database. A client connected to
// B receives what A ingested, within a second of COMMIT; A's own client
// receives it exactly once.
func TestRealtimeTwoInstances(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	hubs := make([]*realtime.Hub, 2)
	for i := range hubs {
		hubs[i] = realtime.New(realtime.Options{Pool: e.pool, Relay: true})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = hubs[i].Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	e.api.realtime = hubs[0] // instance A
	b, err := New(Defaults(), Deps{Pool: e.pool, Ready: e.store.Ready, KeyEncryptionKey: testKEK, Agents: e.agents, Inventory: e.store,
		History: e.store, Commander: e.cmds, System: e.store, Ingest: e.ingest, Realtime: hubs[1]}) // instance B
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	srvA, srvB := e.serve(), httptest.NewServer(b.Handler())
	t.Cleanup(srvB.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, h := range hubs {
		if err := h.WaitRelay(ctx); err != nil {
			t.Fatal(err)
		}
	}
	vm := entityRef{Kind: "vm", ID: objectID(vcEast, "vm-3")}
	var clients []*wsClient
	for _, srv := range []*httptest.Server{srvA, srvB} {
		// A's access token works on B: the instances share the database.
		c, err := dialWS(t, wsURL(srv), e.tokens["operator"], byProtocol, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.expect("welcome")
		c.send(subscribe("s", []string{"cpu.usage.average"}, vm))
		c.expect("subscribed")
		clients = append(clients, c)
	}
	stream := openStream(t, srvB, e.tokens["operator"], "?vm="+url.QueryEscape(vm.ID), "")
	stream.expect("subscribed")

	at := time.Now().Truncate(time.Millisecond)
	committed := e.commit(hubs[0], f.east, vmSamples(vcEast, at, 1250, "vm-1", "vm-2", "vm-3"))
	for i, c := range clients {
		m, err := c.next(time.Second)
		if err != nil {
			t.Fatalf("instance %c: nothing within a second of COMMIT: %v", 'A'+i, err)
		}
		if m.Type != "samples" || len(m.Samples) != 1 || m.Samples[0].Value != 12.5 || m.Samples[0].ID != vm.ID {
			t.Fatalf("instance %c: %+v", 'A'+i, m)
		}
		t.Logf("instance %c: received %s after COMMIT", 'A'+i, time.Since(committed).Round(time.Microsecond))
	}
	if ev := stream.expect("samples"); len(ev.Samples) != 2 {
		t.Fatalf("B's stream: %+v", ev)
	}
	// A hears its own notifications and ignores them: no second copy.
	for hubs[0].Stats().RelayOwnSkipped < hubs[0].Stats().RelaySent {
		if ctx.Err() != nil {
			t.Fatalf("A never heard its notifications back: %+v", hubs[0].Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range clients {
		c.quiet(200 * time.Millisecond)
	}
	stream.close()
}

// TestRealtimeVMAndOverview: the latest values of a VM, and the overview's
// totals, top lists and per-site backlog, drain rate and ETA.
func TestRealtimeVMAndOverview(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	viewer := e.tokens["viewer"]
	res := e.do("GET", "/api/v1/realtime/vms/"+url.PathEscape(objectID(vcEast, "vm-1")), viewer, "")
	if res.status != 200 {
		t.Fatalf("realtime vm: %d %s", res.status, res.raw)
	}
	var vm RealtimeVM
	res.data(&vm)
	if vm.VM.Name != "web-01" || vm.PowerState != "poweredOn" || len(vm.Values) != 1 || vm.Values[0].Value != 0.425 ||
		vm.Values[0].Metric != "cpu.usage.average" || vm.Values[0].AgeSeconds < 30 {
		t.Fatalf("realtime vm = %s", res.raw)
	}
	if res := e.do("GET", "/api/v1/realtime/vms/"+url.PathEscape(objectID(vcEast, "vm-9")), viewer, ""); res.status != 404 || res.code() != CodeVMNotFound {
		t.Fatalf("missing vm: %d %s", res.status, res.raw)
	}

	// dc-east: connected with a backlog of 40 batches, 10 minutes old;
	// 30 late batches acknowledged in the last minutes. dc-west: never
	// connected.
	e.connectAgent(f.east, &protocol.Heartbeat{SpoolDepth: 40, SpoolBytes: 4 << 20, OldestUnsentAge: 600_000, CollectionLag: 1500, Dropped: 3})
	now := time.Now()
	for i := range 30 {
		old := now.Add(-time.Hour + time.Duration(i)*time.Minute)
		p := vmSamples(vcEast, old, 100, "vm-3")
		if _, err := e.store.WriteSamples(context.Background(), store.BatchMeta{AgentID: f.east.ID, Site: "dc-east", Epoch: 5, Seq: uint64(i + 1),
			Kind: protocol.KindSamples}, p); err != nil {
			t.Fatal(err)
		}
	}
	// Fresh values for the top lists.
	top := &protocol.Samples{}
	for i, vm := range []string{"vm-1", "vm-2", "vm-3"} {
		top.Series = append(top.Series, protocol.SeriesData{
			Key: protocol.SeriesKey{Source: vcEast, EntityKind: "vm", EntityID: vm, Counters: []protocol.Counter{
				{Name: "cpu.usage.average", Unit: "%"}, {Name: "cpu.ready.summation", Unit: "ms"}, {Name: "disk.maxTotalLatency.latest", Unit: "ms"}}},
			Timestamps: []int64{now.Add(-time.Minute).UnixMilli()}, Values: [][]float64{{float64(1000 * (i + 1))}, {float64(200 * (i + 1))}, {float64(i + 1)}},
		})
	}
	e.commit(e.hub(), f.east, top)
	if _, err := e.store.WriteSamples(context.Background(), store.BatchMeta{AgentID: f.west.ID, Site: "dc-west", Epoch: 5, Seq: 1, Kind: protocol.KindSamples},
		vmSamples(vcWest, now.Add(-time.Minute), 9999, "vm-1")); err != nil {
		t.Fatal(err)
	}

	// Open alerts: two critical (one acknowledged), one warning, one
	// suppressed, one resolved on dc-east; one critical on dc-west.
	for _, al := range []struct{ sev, site, source, state, acked string }{
		{"critical", "dc-east", vcEast, "firing", ""}, {"critical", "dc-east", vcEast, "unknown", "yes"},
		{"warning", "dc-east", vcEast, "firing", ""}, {"info", "dc-east", vcEast, "suppressed", ""},
		{"critical", "dc-east", vcEast, "resolved", ""}, {"critical", "dc-west", vcWest, "firing", ""},
	} {
		if _, err := e.store.Pool().Exec(context.Background(), `INSERT INTO alerts (rule_name, severity, site, source, entity_kind, entity_id, state, starts_at, acked_at)
			VALUES ('test', $1, $2, $3, 'vm', 'vm-1', $4, now(), CASE WHEN $5 = '' THEN NULL ELSE now() END)`, al.sev, al.site, al.source, al.state, al.acked); err != nil {
			t.Fatal(err)
		}
	}

	get := func(token string) Overview {
		t.Helper()
		res := e.do("GET", "/api/v1/realtime/overview?limit=2", token, "")
		if res.status != 200 {
			t.Fatalf("overview: %d %s", res.status, res.raw)
		}
		var o Overview
		res.data(&o)
		return o
	}
	o := get(viewer)
	if o.VMs.Total != 4 || o.VMs.ByPowerState["poweredOn"] != 2 || o.VMs.ByToolsStatus["guestToolsRunning"] != 2 ||
		o.Hosts.Total != 3 || o.Hosts.ByConnectionState["connected"] != 2 || o.Hosts.ByConnectionState["unknown"] != 1 {
		t.Fatalf("totals: %+v %+v", o.VMs, o.Hosts)
	}
	if a := o.Alerts; a.Active != 4 || a.BySeverity["critical"] != 3 || a.BySeverity["warning"] != 1 || a.BySeverity["info"] != 0 ||
		a.Unacknowledged != 3 || a.Suppressed != 1 {
		t.Fatalf("alerts: %+v", a)
	}
	if len(o.Top.CPUUsage) != 2 || o.Top.CPUUsage[0].Name != "edge-01" || o.Top.CPUUsage[0].Value != 99.99 ||
		o.Top.CPUUsage[1].Name != "db-01" || o.Top.CPUUsage[1].Value != 30 {
		t.Fatalf("top cpu: %+v", o.Top.CPUUsage)
	}
	// Ranked by ready % per vCPU: web-02 (2 vCPUs) 400 ms of 20 s is
	// 1 %, db-01 (8 vCPUs) 600 ms 0.375 %, web-01 (4 vCPUs) 200 ms 0.25 %.
	if r := o.Top.CPUReady; len(r) != 2 || r[0].Name != "web-02" || r[0].Value != 400 || r[0].Unit != "ms" || r[0].ReadyPercent == nil ||
		*r[0].ReadyPercent != 1 || r[1].Name != "db-01" || r[1].Value != 600 || r[1].ReadyPercent == nil || *r[1].ReadyPercent != 0.375 {
		t.Fatalf("top ready: %+v", r)
	}
	if len(o.Top.DiskLatency) != 2 || len(o.Top.MemoryBalloon) != 0 || o.Top.WindowSeconds != 300 {
		t.Fatalf("top: %+v", o.Top)
	}
	if len(o.Sites) != 2 {
		t.Fatalf("sites: %+v", o.Sites)
	}
	es, ws := o.Sites[0], o.Sites[1]
	if es.Site != "dc-east" || !es.Connected || es.Agents != 1 || es.LastSeen == nil || es.Backlog.Batches != 40 || es.Backlog.Bytes != 4<<20 ||
		es.Backlog.OldestUnsentSeconds != 600 || es.DroppedBatches != 3 || es.CollectionLagSeconds != 1.5 {
		t.Fatalf("dc-east: %+v", es)
	}
	// 30 late batches in 5 minutes: 0.1/s; 40 batches left: 400 s.
	if d := es.Drain; d.State != "draining" || d.BacklogPerSecond != 0.1 || d.ETASeconds == nil || math.Abs(*d.ETASeconds-400) > 1e-6 ||
		d.AckedPerSecond < 0.1 {
		t.Fatalf("dc-east drain: %+v", d)
	}
	if ws.Site != "dc-west" || ws.Connected || ws.Drain.State != "offline" || ws.Drain.ETASeconds != nil {
		t.Fatalf("dc-west: %+v", ws)
	}
	// The same overview for a user scoped to dc-east names nothing else.
	east, _ := e.scopedToken("east-viewer", "dc-east")
	o = get(east)
	if o.VMs.Total != 3 || len(o.Sites) != 1 || o.Sites[0].Site != "dc-east" || o.Top.CPUUsage[0].Name != "db-01" || o.Hosts.Total != 2 {
		t.Fatalf("scoped overview: %+v", o)
	}
	if a := o.Alerts; a.Active != 3 || a.BySeverity["critical"] != 2 || a.BySeverity["warning"] != 1 || a.Unacknowledged != 2 || a.Suppressed != 1 {
		t.Fatalf("scoped alerts: %+v", a)
	}
	if res := e.do("GET", "/api/v1/realtime/overview?limit=99", viewer, ""); res.status != 422 {
		t.Fatalf("limit 99: %d", res.status)
	}
}

// TestRealtimeThroughIngest: the real ingest path — an enrolled agent over
// QUIC sends its inventory and a samples batch; the ingest server commits
// the batch and publishes it to the API's feed; a WebSocket subscriber
// has it within a second of the ack (which follows the COMMIT).
func TestRealtimeThroughIngest(t *testing.T) {
	e := newEnv(t, nil)
	srv := e.serve()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in := ingest.New(ingest.Config{Addr: "127.0.0.1:0", Publisher: e.hub()}, e.store, e.agents.ca)
	if err := in.Listen(); err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = in.Serve(sctx) }()
	t.Cleanup(func() { stop(); <-done })
	if err := e.store.EnsureSite(ctx, "dc-live", ""); err != nil {
		t.Fatal(err)
	}
	secret, _, err := e.store.CreateEnrollmentToken(ctx, "dc-live", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	id, err := ingesttest.Enroll(ctx, in.Addr().String(), protocol.FormatEnrollToken(secret, e.agents.ca.Cert.Raw), "live-agent")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ingesttest.Dial(ctx, in.Addr().String(), id, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d, err := conn.OpenData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(b *protocol.Batch) time.Time {
		t.Helper()
		if err := d.Send(b); err != nil {
			t.Fatal(err)
		}
		a, err := d.Recv()
		if err != nil || a.Status != protocol.AckStored {
			t.Fatalf("ack %+v, %v", a, err)
		}
		return time.Now()
	}
	send(ingesttest.MustBatch(protocol.KindInventory, &protocol.Inventory{Source: "vc-live", Full: true, At: time.Now().UnixMilli(),
		Objects: []protocol.InventoryObject{{Source: "vc-live", Kind: "vm", ID: "vm-1001", Name: "live-01", Props: map[string]any{"power_state": "poweredOn"}}}}, 1, 1))

	c, err := dialWS(t, wsURL(srv), e.tokens["viewer"], byMessage, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.expect("welcome")
	c.send(subscribe("s", []string{"cpu.usage.average", "disk.maxTotalLatency.latest"}, entityRef{Kind: "vm", ID: objectID("vc-live", "vm-1001")}))
	c.expect("subscribed")
	p := ingesttest.Samples("vc-live", 3, 2, time.Now().Add(-time.Minute).Truncate(time.Second).UnixMilli(), 4)
	acked := send(ingesttest.MustBatch(protocol.KindSamples, p, 1, 2))
	m, err := c.next(time.Second)
	if err != nil {
		t.Fatalf("nothing within a second of the ack: %v", err)
	}
	t.Logf("received %s after the ack", time.Since(acked).Round(time.Microsecond))
	if m.Type != "samples" || len(m.Samples) != 4 || m.Samples[0].Site != "dc-live" {
		t.Fatalf("samples = %+v; want 2 metrics × 2 points of vm-1001", m)
	}
	sd := p.Series[1] // vm-1001
	if m.Samples[0].Metric != "cpu.usage.average" || m.Samples[0].Value != sd.Values[0][0]/100 ||
		m.Samples[0].TS != time.UnixMilli(sd.Timestamps[0]).UTC() {
		t.Fatalf("first sample %+v; want cpu.usage.average %v (hundredths %v) at %d", m.Samples[0], sd.Values[0][0]/100, sd.Values[0][0], sd.Timestamps[0])
	}
	// A redelivery is acknowledged as a duplicate and not published again.
	if err := d.Send(ingesttest.MustBatch(protocol.KindSamples, p, 1, 2)); err != nil {
		t.Fatal(err)
	}
	if a, err := d.Recv(); err != nil || a.Status != protocol.AckDuplicate {
		t.Fatalf("redelivery ack %+v, %v", a, err)
	}
	c.quiet(200 * time.Millisecond)
}
