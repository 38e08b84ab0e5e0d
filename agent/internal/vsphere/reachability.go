package vsphere

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vmpulse/vmpulse/protocol"
)

// reachState is what Reachability reports (Session.mu held).
type reachState struct {
	reachable bool
	since     time.Time // last change of reachable
	lastOK    time.Time // last call answered on a logged-in session
	lastErr   string    // sanitised, truncated
}

// Reachability reports whether the endpoint can be reached and used: it
// is reachable from a successful login until a call fails on the network,
// the session is found gone (NotAuthenticated), or a login fails (also
// with a server that answers but refuses the credentials). Since is the
// last change of Reachable (0 before the first login attempt), LastOK the
// last call the server answered on a logged-in session, LastError the
// last failure, kept after recovery; it is truncated to
// protocol.MaxPluginErrorBytes and carries neither the password nor user
// information of URLs. Safe for concurrent use; it makes no call.
func (s *Session) Reachability() protocol.VCenterStatus {
	src := s.Source()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := protocol.VCenterStatus{Source: src, Reachable: s.reach.reachable, LastError: s.reach.lastErr}
	if !s.reach.since.IsZero() {
		st.Since = s.reach.since.UnixMilli()
	}
	if !s.reach.lastOK.IsZero() {
		st.LastOK = s.reach.lastOK.UnixMilli()
	}
	return st
}

// markUpLocked records a successful login or call (s.mu held).
func (s *Session) markUpLocked() {
	now := time.Now()
	s.reach.lastOK = now
	if !s.reach.reachable || s.reach.since.IsZero() {
		s.reach.reachable, s.reach.since = true, now
	}
}

// markDownLocked records a failure that makes the endpoint unusable
// (s.mu held).
func (s *Session) markDownLocked(err error) {
	now := time.Now()
	s.reach.lastErr = s.sanitize(err.Error())
	if s.reach.reachable || s.reach.since.IsZero() {
		s.reach.reachable, s.reach.since = false, now
	}
}

// answered records a response of the server: on a logged-in session it
// counts as a successful call. Without a session (a login in progress)
// it proves nothing: the login's outcome decides.
func (s *Session) answered() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && s.conn.Client != nil {
		s.markUpLocked()
	}
}

// unanswered records a request that got no response (network error).
func (s *Session) unanswered(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.markDownLocked(err)
}

// userInfoInURL matches the user information of a URL ("scheme://user:pw@").
var userInfoInURL = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#@\s]*@`)

// sanitize removes secrets from an error message and truncates it to
// protocol.MaxPluginErrorBytes on a rune boundary.
func (s *Session) sanitize(msg string) string {
	msg = userInfoInURL.ReplaceAllString(msg, "${1}")
	if pw := string(s.ep.Password); pw != "" {
		msg = strings.ReplaceAll(msg, pw, redacted)
	}
	return truncateUTF8(msg, protocol.MaxPluginErrorBytes)
}

// truncateUTF8 cuts s to at most n bytes, never inside a rune, and
// replaces invalid UTF-8.
func truncateUTF8(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	cut := n - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// observedTransport feeds every HTTP exchange of a session's clients into
// its reachability: a response (whatever its status) means the server
// answered, an error other than the caller's cancellation (a network
// error, the call's timeout) that it did not.
type observedTransport struct {
	next http.RoundTripper
	s    *Session
}

// RoundTrip implements http.RoundTripper.
func (t *observedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.next.RoundTrip(req)
	switch {
	case err == nil:
		t.s.answered()
	case errors.Is(req.Context().Err(), context.Canceled) || errors.Is(err, context.Canceled):
		// Cancelled by the caller (shutdown, a dropped wait): no verdict
		// on the server. A call's timeout passing is one: no answer.
	default:
		t.s.unanswered(err)
	}
	return res, err
}
