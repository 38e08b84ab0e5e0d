// Package vsphere collects inventory, performance samples and events from
// one vCenter or ESXi endpoint and hands them, as protocol payloads, to a
// Sink (the agent's spool).
//
// Each endpoint has one Session. The Inventory watcher, the perf Collector
// and the EventReader each take a Session and run their own loop; on a
// NotAuthenticated fault or a broken connection they report the error to the
// Session, which drops the connection and logs in again with jittered
// exponential backoff. Checkpoints (perf high-water marks, the last event)
// are written to a MetaStore only after the Sink accepted the data they
// cover, so a crash between the two re-sends data instead of losing it.
//
// Session.Reachability reports whether the endpoint answers (for the
// heartbeat), and the setters in settings.go apply collection settings
// the aggregator pushes (intervals, counter sets, tag and events polling,
// the WaitForUpdatesEx bound) to running parts without restarting them.
package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/session/keepalive"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/protocol"
)

// Sink receives everything the package collects. Implementations must be
// safe for concurrent use: the perf Collector calls Samples from several
// goroutines. A nil error means the data is durably accepted; only then does
// the caller advance its checkpoint.
type Sink interface {
	Samples(ctx context.Context, s *protocol.Samples) error
	Inventory(ctx context.Context, inv *protocol.Inventory) error
	Events(ctx context.Context, ev *protocol.Events) error
	// Gap records samples the collector could not read (a collection gap,
	// see protocol.Gap), e.g. those older than vCenter keeps after an
	// outage.
	Gap(ctx context.Context, g *protocol.Gap) error
}

// MetaStore persists small checkpoints (high-water marks, event positions).
// GetMeta returns (nil, nil) for a key that was never set. Implementations
// must be safe for concurrent use.
type MetaStore interface {
	GetMeta(key string) ([]byte, error)
	SetMeta(key string, val []byte) error
}

// Secret is a credential that never prints: String, GoString, MarshalJSON and
// LogValue all yield "***".
type Secret string

const redacted = "***"

// String implements fmt.Stringer.
func (Secret) String() string { return redacted }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return redacted }

// MarshalJSON implements json.Marshaler.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// Endpoint is one configured vCenter or ESXi server.
type Endpoint struct {
	Name     string // operator-chosen name; also the Source fallback
	URL      string // e.g. "https://vc.example.com/sdk"; user info in it is ignored
	Username string
	Password Secret
	Insecure bool // skip TLS verification
}

// Backoff bounds for re-login attempts.
const (
	defaultMinBackoff = time.Second
	defaultMaxBackoff = 2 * time.Minute
	keepAliveIdle     = 5 * time.Minute
)

// Session owns the login to one endpoint and re-establishes it when it is
// lost. It is safe for concurrent use.
type Session struct {
	ep  Endpoint
	u   *url.URL
	log *slog.Logger

	// MinBackoff and MaxBackoff bound the delay between failed logins; set
	// them before the first call to Conn.
	MinBackoff, MaxBackoff time.Duration

	// WrapTransport, when set (before the first call to Conn), wraps the
	// HTTP transport of every SOAP and vAPI REST client the session
	// creates: the benchmarks count vCenter calls and bytes with it.
	WrapTransport func(http.RoundTripper) http.RoundTripper

	sem chan struct{} // serialises logins, ctx-aware

	mu       sync.Mutex
	conn     *Conn
	source   string
	failures int
	nextTry  time.Time
	reach    reachState // guarded by mu; see Reachability
}

// Conn is one logged-in connection. It is replaced, never repaired: after
// Session.Check drops it, callers get a new Conn from Session.Conn.
type Conn struct {
	Client *govmomi.Client
	Gen    uint64 // increases with every login of the Session

	ep     Endpoint
	u      *url.URL
	ka     *keepalive.HandlerSOAP
	wrap   func(http.RoundTripper) http.RoundTripper
	sess   *Session
	restMu sync.Mutex
	rest   *rest.Client
}

// NewSession prepares a session for ep; it does not connect.
func NewSession(ep Endpoint, log *slog.Logger) (*Session, error) {
	u, err := soap.ParseURL(ep.URL)
	if err != nil {
		return nil, fmt.Errorf("vsphere: endpoint %q: bad url: %w", ep.Name, err)
	}
	if u == nil {
		return nil, fmt.Errorf("vsphere: endpoint %q: empty url", ep.Name)
	}
	u.User = nil
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Session{
		ep:         ep,
		u:          u,
		log:        log.With("endpoint", ep.Name),
		MinBackoff: defaultMinBackoff,
		MaxBackoff: defaultMaxBackoff,
		sem:        make(chan struct{}, 1),
	}, nil
}

// Name returns the endpoint's configured name.
func (s *Session) Name() string { return s.ep.Name }

// Source returns the vCenter instance UUID once a login succeeded, else the
// endpoint name. It is the protocol Source of everything collected here.
func (s *Session) Source() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.source != "" {
		return s.source
	}
	return s.ep.Name
}

// Conn returns the current connection, logging in if there is none. After a
// failed login the next attempt waits for a jittered exponential backoff, so
// callers can simply loop on Conn.
func (s *Session) Conn(ctx context.Context) (*Conn, error) {
	if c := s.current(); c != nil {
		return c, nil
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.sem }()
	if c := s.current(); c != nil {
		return c, nil
	}
	s.mu.Lock()
	wait := time.Until(s.nextTry)
	s.mu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	c, err := s.login(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			s.markDownLocked(err)
		}
		s.failures++
		s.nextTry = time.Now().Add(s.backoff(s.failures))
		return nil, err
	}
	s.failures = 0
	s.nextTry = time.Time{}
	var gen uint64
	if s.conn != nil {
		gen = s.conn.Gen
	}
	c.Gen = gen + 1
	s.conn = c
	s.markUpLocked()
	if id := c.Client.ServiceContent.About.InstanceUuid; id != "" {
		s.source = id
	}
	return c, nil
}

func (s *Session) current() *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && s.conn.Client != nil {
		return s.conn
	}
	return nil
}

// backoff returns the delay after n consecutive failures: exponential from
// MinBackoff, capped at MaxBackoff, with jitter in [d/2, d].
func (s *Session) backoff(n int) time.Duration {
	d := s.MinBackoff
	for i := 1; i < n && d < s.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

func (s *Session) login(ctx context.Context) (*Conn, error) {
	wrap := func(err error) error {
		return fmt.Errorf("vsphere: login to endpoint %q (%s) as %q: %w", s.ep.Name, s.u.Redacted(), s.ep.Username, err)
	}
	sc := soap.NewClient(s.u, s.ep.Insecure)
	if s.WrapTransport != nil {
		sc.Client.Transport = s.WrapTransport(sc.Client.Transport)
	}
	sc.Client.Transport = &observedTransport{next: sc.Client.Transport, s: s}
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, wrap(err)
	}
	c := &Conn{ep: s.ep, u: s.u, wrap: s.WrapTransport, sess: s}
	sm := session.NewManager(vc)
	// The keepalive handler pings an idle session and, when the ping shows
	// the session is gone, drops the connection so the next Conn re-logs in.
	c.ka = keepalive.NewHandlerSOAP(vc.RoundTripper, keepAliveIdle, func() error {
		kctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		us, err := sm.UserSession(kctx)
		if err == nil && us == nil {
			err = errors.New("session expired")
		}
		if err != nil {
			s.drop(c, err)
		}
		return err
	})
	vc.RoundTripper = c.ka
	c.Client = &govmomi.Client{Client: vc, SessionManager: sm}
	if err := sm.Login(ctx, url.UserPassword(s.ep.Username, string(s.ep.Password))); err != nil {
		return nil, wrap(err)
	}
	s.log.Info("vsphere session established", "url", s.u.Redacted(),
		"api", vc.ServiceContent.About.ApiType, "version", vc.ServiceContent.About.Version)
	return c, nil
}

// Check reports err from an operation on c. If err shows that the session
// is gone (NotAuthenticated fault, broken connection), c is dropped so the
// next Conn logs in again, and Check returns true.
func (s *Session) Check(c *Conn, err error) bool {
	if err == nil || !IsSessionError(err) {
		return false
	}
	s.drop(c, err)
	return true
}

func (s *Session) drop(c *Conn, cause error) {
	s.mu.Lock()
	if s.conn != c || c == nil || s.conn.Client == nil {
		s.mu.Unlock()
		return
	}
	s.conn = &Conn{Gen: c.Gen} // keep the generation counter
	s.markDownLocked(cause)
	s.mu.Unlock()
	s.log.Warn("vsphere session lost, will log in again", "err", cause)
	go c.ka.Stop() // Stop waits for the keepalive goroutine, which may be calling drop
}

// Close logs out. The Session can be used again afterwards.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	c := s.conn
	s.conn = nil
	s.mu.Unlock()
	if c == nil || c.Client == nil {
		return nil
	}
	c.restMu.Lock()
	if c.rest != nil {
		_ = c.rest.Logout(ctx)
	}
	c.restMu.Unlock()
	if err := c.Client.Logout(ctx); err != nil {
		return fmt.Errorf("vsphere: logout from endpoint %q: %w", s.ep.Name, err)
	}
	return nil
}

// REST returns a vAPI REST client logged in with the same credentials,
// creating it on first use.
func (c *Conn) REST(ctx context.Context) (*rest.Client, error) {
	c.restMu.Lock()
	defer c.restMu.Unlock()
	if c.rest != nil {
		return c.rest, nil
	}
	rc := rest.NewClient(c.Client.Client)
	if c.wrap != nil {
		rc.Client.Client.Transport = c.wrap(rc.Client.Client.Transport)
	}
	if c.sess != nil {
		rc.Client.Client.Transport = &observedTransport{next: rc.Client.Client.Transport, s: c.sess}
	}
	if err := rc.Login(ctx, url.UserPassword(c.ep.Username, string(c.ep.Password))); err != nil {
		return nil, fmt.Errorf("vsphere: vapi login to endpoint %q: %w", c.ep.Name, err)
	}
	c.rest = rc
	return rc, nil
}

// Vim returns the SOAP client.
func (c *Conn) Vim() *vim25.Client { return c.Client.Client }

// IsSessionError reports whether err means the session or the connection is
// gone: a NotAuthenticated fault (by type, not message) or a network error
// such as a vCenter restart produces.
func IsSessionError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if fault.Is(err, &types.NotAuthenticated{}) {
		return true
	}
	if soap.IsSoapFault(err) {
		if _, ok := soap.ToSoapFault(err).VimFault().(types.NotAuthenticated); ok {
			return true
		}
	}
	var ne net.Error
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &ue) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
