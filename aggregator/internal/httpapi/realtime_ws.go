package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/realtime"
)

// The WebSocket feed. A browser cannot set headers on a WebSocket, so the
// route authenticates on its own when the upgrade request has no
// Authorization header (Route.SelfAuth): from the Sec-WebSocket-Protocol
// header, where the client offers wsSubprotocol and wsBearerPrefix+token
// (the server selects wsSubprotocol; the token is never echoed), or from
// the first message. Never from the query string, which proxies log.
const (
	wsSubprotocol  = "vmpulse.v1"
	wsBearerPrefix = "vmpulse.bearer."
	// wsReadLimit bounds a client message.
	wsReadLimit = 64 << 10
)

// isWebSocketUpgrade reports whether r asks to open a WebSocket.
func isWebSocketUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// protocolBearer is the token offered in Sec-WebSocket-Protocol, if any.
func protocolBearer(r *http.Request) (string, bool) {
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, t := range strings.Split(v, ",") {
			if tok, ok := strings.CutPrefix(strings.TrimSpace(t), wsBearerPrefix); ok && tok != "" {
				return tok, true
			}
		}
	}
	return "", false
}

// wsOriginPatterns are the origins allowed to open the WebSocket besides
// the API's own: those allowed by CORS. (The feed authenticates by bearer
// token, never by cookie, so another origin gains nothing it could not do
// with the token anyway; the check keeps the browser's usual fence.)
func (a *API) wsOriginPatterns() (patterns []string, any bool) {
	for _, o := range a.cfg.CORSOrigins {
		if o == "*" {
			return nil, true
		}
		if u, err := url.Parse(o); err == nil && u.Host != "" {
			patterns = append(patterns, u.Host)
		}
	}
	return patterns, false
}

// wsClientMessage is a message from the client.
type wsClientMessage struct {
	Type     string      `json:"type"`
	ID       string      `json:"id,omitempty"`
	Token    string      `json:"token,omitempty"`
	Entities []entityRef `json:"entities,omitempty"`
	Metrics  []string    `json:"metrics,omitempty"`
}

// wsError is the error message of the WebSocket protocol.
type wsError struct {
	Type    string       `json:"type"` // "error"
	ID      string       `json:"id,omitempty"`
	Code    string       `json:"code"`
	Message string       `json:"message"`
	Fields  []FieldError `json:"fields,omitempty"`
	Entity  *entityRef   `json:"entity,omitempty"`
	Max     int          `json:"max,omitempty"`
}

func (h *realtimeResource) ws(w http.ResponseWriter, r *http.Request) error {
	if !isWebSocketUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		return newError(http.StatusUpgradeRequired, CodeUpgradeRequired)
	}
	// The connection outlives the request's handling: keep the request's
	// values (its state, the principal), not its cancellation.
	base := context.WithoutCancel(r.Context())
	c := &wsConn{h: h, lang: langOf(r), log: h.a.log.With("request_id", stateOf(r).requestID), base: base, lim: h.a.rtLimits}
	if p, ok := auth.PrincipalFrom(r.Context()); ok {
		// Authorization header: authorize() checked the permission.
		c.p = p
		c.bearer, _ = bearerToken(r)
	} else if tok, ok := protocolBearer(r); ok {
		p, err := h.a.auth.Authenticate(r.Context(), tok)
		if err != nil {
			return err
		}
		stateOf(r).principal = p
		if !p.Has(auth.PermMetricRead) {
			e := newError(http.StatusForbidden, CodeForbidden)
			e.Data = map[string]any{"permission": auth.PermMetricRead}
			return e
		}
		c.p, c.bearer = p, tok
	}
	patterns, anyOrigin := h.a.wsOriginPatterns()
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{wsSubprotocol}, OriginPatterns: patterns,
		InsecureSkipVerify: anyOrigin})
	if err != nil {
		c.log.Debug("websocket upgrade refused", "err", err)
		return nil // Accept answered
	}
	c.conn = conn
	c.serve()
	if p, _ := c.principal(); p != nil {
		stateOf(r).principal = p // for the access log
	}
	return nil
}

// wsConn is one WebSocket client.
type wsConn struct {
	h    *realtimeResource
	conn *websocket.Conn
	lang string
	log  *slog.Logger
	base context.Context // request values, no cancellation
	lim  realtimeLimits
	sub  *realtime.Subscription
	// vcpus are the subscribed VMs' vCPU counts (the feed's ready_percent).
	vcpus vcpuTable

	mu     sync.Mutex // guards p and bearer
	p      *auth.Principal
	bearer string
}

func (c *wsConn) principal() (*auth.Principal, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.p, c.bearer
}

// scoped is a context for reads under the client's data scope.
func (c *wsConn) scoped(timeout time.Duration) (context.Context, context.CancelFunc) {
	p, _ := c.principal()
	return context.WithTimeout(auth.WithPrincipal(c.base, p), timeout)
}

// closeWith closes the connection with status and the code's message as
// the reason (cut to the 123 bytes a close frame allows).
func (c *wsConn) closeWith(status websocket.StatusCode, code string) {
	reason := code + ": " + message(c.lang, code)
	for len(reason) > 123 {
		_, size := utf8.DecodeLastRuneInString(reason)
		reason = reason[:len(reason)-size]
	}
	if err := c.conn.Close(status, reason); err != nil {
		c.log.Debug("websocket close", "err", err)
	}
}

func (c *wsConn) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.write(b)
}

func (c *wsConn) write(b []byte) error {
	ctx, cancel := context.WithTimeout(c.base, c.lim.writeTimeout)
	defer cancel()
	return c.conn.Write(ctx, websocket.MessageText, b)
}

// sendError answers a client message with err.
func (c *wsConn) sendError(id string, err error) error {
	e := errorFor(err)
	if e.Status >= 500 {
		c.log.Error("websocket request failed", "code", e.Code, "err", e.Err)
	}
	m := wsError{Type: "error", ID: id, Code: e.Code, Message: message(c.lang, e.Code)}
	for _, f := range e.Fields {
		if f.Message == "" {
			f.Message = fieldMessage(c.lang, f.Code, f.Params)
		}
		m.Fields = append(m.Fields, f)
	}
	if ref, ok := e.Data["entity"].(entityRef); ok {
		m.Entity = &ref
	}
	if n, ok := e.Data["max"].(int); ok {
		m.Max = n
	}
	return c.send(m)
}

// serve runs the connection: authentication, then the reader (client
// messages), the heartbeat, and this loop writing deliveries until the
// client goes, is dropped, or the feed stops.
func (c *wsConn) serve() {
	defer c.conn.CloseNow()
	c.conn.SetReadLimit(wsReadLimit)
	if p, _ := c.principal(); p == nil {
		if code := c.authenticateFirst(); code != "" {
			c.closeWith(websocket.StatusPolicyViolation, code)
			return
		}
	}
	feed := c.h.a.realtime
	c.sub = feed.Subscribe(c.lim.buffer)
	defer c.sub.Close()
	p, _ := c.principal()
	if err := c.send(map[string]any{"type": "welcome", "user": p.Username, "replica": feed.ID(),
		"max_subscriptions": MaxRealtimeSubscriptions, "heartbeat_seconds": c.lim.heartbeat.Seconds()}); err != nil {
		return
	}
	c.log.Debug("websocket client connected", "user", p.Username)

	ctx, cancel := context.WithCancel(c.base)
	defer cancel()
	readErr := make(chan error, 1)
	go func() { readErr <- c.readLoop(ctx) }()
	pingFailed := make(chan error, 1)
	go func() { pingFailed <- c.heartbeat(ctx) }()
	revalidate := time.NewTicker(c.lim.revalidate)
	defer revalidate.Stop()
	var buf []byte
	for {
		// An ended subscription wins over the deliveries still buffered.
		select {
		case <-c.sub.Done():
			c.closeFor(c.sub.Err())
			return
		default:
		}
		select {
		case <-feed.Done():
			c.closeWith(websocket.StatusGoingAway, CodeGoingAway)
			return
		case <-c.sub.Done():
			c.closeFor(c.sub.Err())
			return
		case d := <-c.sub.C():
			buf = appendDelivery(buf[:0], "samples", &d, &c.vcpus)
			if err := c.write(buf); err != nil {
				return
			}
		case err := <-readErr:
			if s := websocket.CloseStatus(err); s == -1 && !errors.Is(err, context.Canceled) {
				c.log.Debug("websocket read failed", "err", err)
			}
			return
		case err := <-pingFailed:
			c.log.Debug("websocket heartbeat failed", "err", err)
			c.closeWith(websocket.StatusGoingAway, CodeHeartbeatTimeout)
			return
		case <-revalidate.C:
			if code := c.revalidate(); code != "" {
				c.closeWith(websocket.StatusPolicyViolation, code)
				return
			}
		}
	}
}

// closeFor closes the connection for the reason its subscription ended.
func (c *wsConn) closeFor(err error) {
	switch code := closeCodeOf(err); code {
	case CodeSlowConsumer:
		c.closeWith(websocket.StatusTryAgainLater, code)
	case CodeGoingAway:
		c.closeWith(websocket.StatusGoingAway, code)
	default:
		c.closeWith(websocket.StatusInternalError, code)
	}
}

// authenticateFirst reads the first message, which must authenticate. It
// returns the code to close with, or "".
func (c *wsConn) authenticateFirst() string {
	// Not Read with a deadline: the library closes the connection when a
	// read's context ends, and the client should get a close reason.
	type read struct {
		typ  websocket.MessageType
		data []byte
		err  error
	}
	first := make(chan read, 1)
	go func() {
		typ, data, err := c.conn.Read(c.base)
		first <- read{typ, data, err}
	}()
	var typ websocket.MessageType
	var data []byte
	select {
	case r := <-first:
		if r.err != nil {
			return CodeUnauthenticated
		}
		typ, data = r.typ, r.data
	case <-time.After(c.lim.authTimeout):
		return CodeUnauthenticated
	}
	ctx, cancel := context.WithTimeout(c.base, 10*time.Second)
	defer cancel()
	var m wsClientMessage
	if typ != websocket.MessageText || json.Unmarshal(data, &m) != nil || m.Type != "auth" || m.Token == "" {
		return CodeUnauthenticated
	}
	p, err := c.h.a.auth.Authenticate(ctx, m.Token)
	if err != nil {
		return CodeUnauthenticated
	}
	if !p.Has(auth.PermMetricRead) {
		return CodeForbidden
	}
	c.mu.Lock()
	c.p, c.bearer = p, m.Token
	c.mu.Unlock()
	return ""
}

// heartbeat pings the client every interval; it returns when a ping goes
// unanswered (or ctx ends).
func (c *wsConn) heartbeat(ctx context.Context) error {
	t := time.NewTicker(c.lim.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, c.lim.pongTimeout)
		err := c.conn.Ping(pctx)
		cancel()
		if err != nil {
			return err
		}
	}
}

// readLoop handles client messages until the connection fails.
func (c *wsConn) readLoop(ctx context.Context) error {
	for {
		typ, data, err := c.conn.Read(ctx)
		if err != nil {
			return err
		}
		var m wsClientMessage
		if typ != websocket.MessageText {
			err = validationError(FieldError{Field: "type", Code: FieldInvalidType, Params: map[string]any{"expected": "a JSON text message"}})
		} else {
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			if derr := dec.Decode(&m); derr != nil {
				err = jsonError(derr)
			}
		}
		if err == nil {
			err = c.handle(&m)
		}
		if err != nil {
			if werr := c.sendError(m.ID, err); werr != nil {
				return werr
			}
		}
	}
}

// handle answers one client message; an error is sent back as an error
// message.
func (c *wsConn) handle(m *wsClientMessage) error {
	if len(m.ID) > 64 {
		return validationError(FieldError{Field: "id", Code: FieldTooLong, Params: map[string]any{"max": 64}})
	}
	switch m.Type {
	case "ping":
		return c.send(map[string]any{"type": "pong", "id": m.ID, "time": time.Now().UTC()})
	case "auth":
		return c.reauthenticate(m)
	case "subscribe", "unsubscribe":
		var v fieldErrors
		if m.Type == "subscribe" && len(m.Entities) == 0 {
			v.add("entities", FieldRequired, nil)
		}
		validateEntities(&v, m.Entities, m.Metrics, func(i int) string { return "entities[" + itoa(i) + "]" }, "metrics")
		if err := v.err(); err != nil {
			return err
		}
		if m.Type == "unsubscribe" {
			n := c.sub.Remove(c.matching(m.Entities), m.Metrics)
			return c.send(map[string]any{"type": "unsubscribed", "id": m.ID, "subscriptions": n})
		}
		ctx, cancel := c.scoped(30 * time.Second)
		defer cancel()
		entities, err := c.h.resolve(ctx, m.Entities, &c.vcpus, func(i int) map[string]any { return map[string]any{"entity": m.Entities[i]} })
		if err != nil {
			return err
		}
		n, err := c.sub.Add(entities, m.Metrics, MaxRealtimeSubscriptions)
		if err != nil {
			return tooManySubscriptions(err)
		}
		return c.send(map[string]any{"type": "subscribed", "id": m.ID, "subscriptions": n})
	}
	return validationError(FieldError{Field: "type", Code: FieldInvalidValue, Params: map[string]any{"allowed": "auth, subscribe, unsubscribe, ping"}})
}

// matching maps entity references to the subscription's entities (nil
// for none given: every entity).
func (c *wsConn) matching(refs []entityRef) []realtime.Entity {
	if len(refs) == 0 {
		return nil
	}
	out := []realtime.Entity{}
	for _, e := range c.sub.Entities() {
		if slices.Contains(refs, entityRef{Kind: e.Kind, ID: objectID(e.Source, e.ID)}) {
			out = append(out, e)
		}
	}
	return out
}

// reauthenticate replaces the connection's credential (a fresh access
// token before the current one expires). It must be the same user's.
func (c *wsConn) reauthenticate(m *wsClientMessage) error {
	ctx, cancel := context.WithTimeout(c.base, 10*time.Second)
	defer cancel()
	np, err := c.h.a.auth.Authenticate(ctx, m.Token)
	if err != nil {
		return err
	}
	p, _ := c.principal()
	if np.UserID != p.UserID || !np.Has(auth.PermMetricRead) {
		return newError(http.StatusForbidden, CodeForbidden)
	}
	c.mu.Lock()
	c.p, c.bearer = np, m.Token
	c.mu.Unlock()
	c.recheckScope(np)
	return c.send(map[string]any{"type": "authenticated", "id": m.ID})
}

// revalidate checks the credential again and drops the subscriptions the
// caller's scope no longer grants. It returns the code to close with, or
// "".
func (c *wsConn) revalidate() string {
	ctx, cancel := context.WithTimeout(c.base, 10*time.Second)
	defer cancel()
	p, bearer := c.principal()
	np, err := c.h.a.auth.Authenticate(ctx, bearer)
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return CodeUnauthenticated
	case err != nil:
		c.log.Warn("websocket: cannot re-check the credential; keeping the connection", "err", err)
		return ""
	case !np.Has(auth.PermMetricRead) || np.UserID != p.UserID:
		return CodeForbidden
	}
	c.mu.Lock()
	c.p = np
	c.mu.Unlock()
	c.recheckScope(np)
	return ""
}

func (c *wsConn) recheckScope(p *auth.Principal) {
	ctx, cancel := context.WithTimeout(c.base, 30*time.Second)
	defer cancel()
	if gone := c.h.outOfScope(ctx, p, c.sub.Entities()); len(gone) > 0 {
		n := c.sub.Remove(gone, nil)
		_ = c.send(map[string]any{"type": "revoked", "entities": refsOf(gone), "subscriptions": n})
	}
}
