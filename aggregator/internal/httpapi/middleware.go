package httpapi

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

// requestState is the per-request bookkeeping the middleware chain shares.
// It is created by the outermost middleware and mutated only by the
// request's own goroutine.
type requestState struct {
	requestID string
	ip        string
	lang      string
	// userAgent is the User-Agent header as the logs store it: escaped by
	// audit.SanitizeText and cut to audit.MaxUserAgent bytes.
	userAgent string
	start     time.Time
	errCode   string
	// audit details a handler adds to the automatic audit record
	resourceID string
	summary    map[string]any
	actorName  string // for calls without a principal (login): the name given
	actorID    string // … and the user it turned out to be, if any
	principal  *auth.Principal
}

type stateKey struct{}

func stateOf(r *http.Request) *requestState {
	if st, ok := r.Context().Value(stateKey{}).(*requestState); ok {
		return st
	}
	return &requestState{}
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("httpapi: hijack not supported")
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// begin creates the request state: request id (a sane incoming X-Request-ID
// is kept, else a new one), real client address, language, and the user
// agent made safe for the logs. It also sets the headers every response
// carries, whatever writes it (envelopes, the OpenAPI document, CSV
// exports, /metrics): X-Content-Type-Options: nosniff among them.
func (a *API) begin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &requestState{start: time.Now()}
		st.requestID = r.Header.Get("X-Request-ID")
		if !validRequestID(st.requestID) {
			st.requestID = newRequestID()
		}
		st.ip = a.clientIP(r)
		st.lang = negotiateLang(r.Header.Get("Accept-Language"))
		st.userAgent = logUserAgent(r)
		w.Header().Set("X-Request-ID", st.requestID)
		w.Header().Set("Content-Language", st.lang)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	})
}

// logUserAgent is r's User-Agent as the logs and the sessions table store
// it: any bytes a client sends are escaped, never a reason to refuse the
// request or lose its record.
func logUserAgent(r *http.Request) string {
	return audit.SanitizeText(r.UserAgent(), audit.MaxUserAgent)
}

// userAgentOf is the request's sanitized user agent.
func userAgentOf(r *http.Request) string {
	if st, ok := r.Context().Value(stateKey{}).(*requestState); ok {
		return st.userAgent
	}
	return logUserAgent(r)
}

// logPath is a request path (or path value) as logs record it: escaped, so
// bytes that are not UTF-8 survive as \xNN.
func logPath(s string) string { return audit.SanitizeText(s, 0) }

func validRequestID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// clientIP is the TCP peer, unless the peer is a trusted proxy: then the
// right-most X-Forwarded-For address that is not itself a trusted proxy.
func (a *API) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	if !a.trusted(peer) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		ip, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a malformed hop: stop believing the chain
		}
		ip = ip.Unmap()
		if !a.trusted(ip) {
			return ip.String()
		}
		peer = ip
	}
	return peer.String()
}

func (a *API) trusted(ip netip.Addr) bool {
	for _, p := range a.proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// accessLog writes one structured line per request and counts it in the
// HTTP metrics by route pattern (known once the router has matched).
func (a *API) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		st := stateOf(r)
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		route := chi.RouteContext(r.Context())
		pattern := ""
		if route != nil {
			pattern = route.RoutePattern()
		}
		elapsed := time.Since(st.start)
		a.httpMetrics.observe(pattern, r.Method, status, elapsed)
		attrs := []slog.Attr{
			slog.String("request_id", st.requestID),
			slog.String("method", r.Method),
			slog.String("path", logPath(r.URL.Path)),
			slog.String("route", pattern),
			slog.Int("status", status),
			slog.Int64("bytes", sw.bytes),
			slog.Duration("duration", elapsed),
			slog.String("ip", st.ip),
		}
		if st.errCode != "" {
			attrs = append(attrs, slog.String("code", st.errCode))
		}
		if st.principal != nil {
			attrs = append(attrs, slog.String("user", st.principal.Username))
		}
		a.log.LogAttrs(r.Context(), slog.LevelInfo, "http request", attrs...)
	})
}

// recoverer turns a panic into a logged 500 carrying the request id.
func (a *API) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				st := stateOf(r)
				a.log.Error("panic serving request", "request_id", st.requestID, "method", r.Method, "path", logPath(r.URL.Path),
					"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				writeError(w, r, a.log, &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Err: fmt.Errorf("panic: %v", v)})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// cors answers preflight requests and sets CORS headers for allowed
// origins. Credentials are not allowed: the API uses bearer tokens.
func (a *API) cors(next http.Handler) http.Handler {
	allowAll := slices.Contains(a.cfg.CORSOrigins, "*")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || len(a.cfg.CORSOrigins) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Origin")
		if !allowAll && !slices.Contains(a.cfg.CORSOrigins, origin) {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Expose-Headers", "X-Request-ID, Retry-After, Content-Disposition")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept-Language, X-Request-ID")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bodyLimit caps request bodies; decoding reports the overflow as 413. A
// declared Content-Length over the limit is refused by each route, inside
// its audit record (tooLarge), not here where it would go unrecorded.
func (a *API) bodyLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, a.cfg.BodyLimit)
		next.ServeHTTP(w, r)
	})
}

// tooLarge refuses a request whose declared body is over the limit before
// anything else of the route runs (authentication included).
func (a *API) tooLarge(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > a.cfg.BodyLimit {
			writeError(w, r, a.log, newError(http.StatusRequestEntityTooLarge, CodeTooLarge))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// withTimeout bounds the request's context; database calls observe it and
// the error maps to 503 REQUEST_TIMEOUT.
func withTimeout(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
