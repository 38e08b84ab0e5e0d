package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

// Access levels of routes that need no permission. Every other route names
// exactly one permission of auth.Catalog.
const (
	// AccessPublic routes need no credentials (login, the OpenAPI document).
	AccessPublic = "public"
	// AccessRefresh routes authenticate with a refresh token in the body.
	AccessRefresh = "refresh_token"
	// AccessAuthenticated routes need any valid session or API token.
	AccessAuthenticated = "authenticated"
)

// handlerFunc is a handler that returns its error; wrap writes it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// Route is one entry of the route table. Everything about a route is
// declared here: its access rule, its audit action, its documentation.
type Route struct {
	Method  string
	Pattern string // relative to /api/v1, chi syntax
	// Access is a permission ("user:read") or one of the Access* levels.
	// It is required: the API refuses to start with a route lacking it.
	Access string
	// Action names the audit record a mutating route writes
	// ("user.create"); required for every method but GET, and for no
	// Query route.
	Action string
	// Query marks a POST that only reads: its question is too large for a
	// URL (many entities × metrics, a draft rule to preview). It changes
	// nothing, so like a GET it writes no audit record (a chart or a
	// scrolling list would otherwise fill the operation log); it is still
	// authenticated, authorized and scoped like any route.
	Query bool
	// Resource is the audit record's resource type ("user").
	Resource string
	// Export marks a streaming route that gets the export timeout.
	Export bool
	// Stream marks a long-lived response (the realtime WebSocket and
	// Server-Sent Events feeds): no request timeout; the handler ends it
	// when the client goes, the feed stops or the credential lapses.
	Stream bool
	// SelfAuth lets a WebSocket upgrade without an Authorization header
	// through to the handler, which authenticates the caller itself
	// (browsers cannot set headers on a WebSocket) and checks Access.
	// Every other request to the route is authorized as usual.
	SelfAuth bool
	// DuringMaintenance serves the route while a restore runs; every other
	// route answers 503 MAINTENANCE then (see API.maintenanceGate).
	DuringMaintenance bool
	Handle            handlerFunc
	Doc               Doc
}

func (rt Route) mutating() bool {
	return rt.Method != http.MethodGet && rt.Method != http.MethodHead && !rt.Query
}

// checkRoutes enforces the route table's rules.
func checkRoutes(routes []Route) error {
	var errs []error
	seen := map[string]bool{}
	for _, rt := range routes {
		id := rt.Method + " " + rt.Pattern
		switch {
		case rt.Access == "":
			errs = append(errs, fmt.Errorf("route %s declares no access rule", id))
		case rt.Access != AccessPublic && rt.Access != AccessRefresh && rt.Access != AccessAuthenticated && !auth.KnownPermission(rt.Access):
			errs = append(errs, fmt.Errorf("route %s: unknown permission %q", id, rt.Access))
		}
		if rt.mutating() && rt.Action == "" {
			errs = append(errs, fmt.Errorf("route %s mutates but declares no audit action", id))
		}
		if rt.Query && (rt.Method != http.MethodPost || rt.Action != "") {
			errs = append(errs, fmt.Errorf("route %s: a query route is a POST without an audit action", id))
		}
		if rt.Handle == nil {
			errs = append(errs, fmt.Errorf("route %s has no handler", id))
		}
		if rt.SelfAuth && !auth.KnownPermission(rt.Access) {
			errs = append(errs, fmt.Errorf("route %s authenticates itself but names no permission to check", id))
		}
		if rt.Doc.Summary == "" {
			errs = append(errs, fmt.Errorf("route %s is not documented", id))
		}
		if seen[id] {
			errs = append(errs, fmt.Errorf("route %s declared twice", id))
		}
		seen[id] = true
	}
	return errors.Join(errs...)
}

// routeHandler builds a route's handler chain: timeout, audit, authentication
// and authorization, then the route's own handler with error mapping.
func (a *API) routeHandler(rt Route) http.Handler {
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := rt.Handle(w, r); err != nil {
			writeError(w, r, a.log, err)
		}
	})
	h = a.authorize(rt, h)
	if !rt.DuringMaintenance {
		h = a.maintenanceGate(h)
	}
	h = a.tooLarge(h)
	if rt.Action != "" {
		h = a.audited(rt, h)
	}
	if rt.Stream {
		return h
	}
	timeout := a.cfg.RequestTimeout
	if rt.Export {
		timeout = a.cfg.ExportTimeout
	}
	return withTimeout(timeout, h)
}

// authorize authenticates the bearer credential and checks the route's
// permission.
func (a *API) authorize(rt Route, next http.Handler) http.Handler {
	if rt.Access == AccessPublic || rt.Access == AccessRefresh {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.SelfAuth && r.Header.Get("Authorization") == "" && isWebSocketUpgrade(r) {
			next.ServeHTTP(w, r)
			return
		}
		bearer, ok := bearerToken(r)
		if !ok {
			writeError(w, r, a.log, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Err: errors.New("no bearer token")})
			return
		}
		p, err := a.auth.Authenticate(r.Context(), bearer)
		if err != nil {
			writeError(w, r, a.log, err)
			return
		}
		stateOf(r).principal = p
		if rt.Access != AccessAuthenticated && !p.Has(rt.Access) {
			e := newError(http.StatusForbidden, CodeForbidden)
			e.Data = map[string]any{"permission": rt.Access}
			writeError(w, r, a.log, e)
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
}

func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// audited writes one audit record for the request once it is answered,
// whatever the outcome (success, failure, refusal) and whatever bytes the
// request carries: header and path values are escaped (audit.SanitizeText),
// never a reason to drop the record, and the writer escapes every field
// again as its last line of defence.
func (a *API) audited(rt Route, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		// Deferred, so that a handler's panic is recorded too (as the 500
		// the recoverer outside will answer) before it travels on.
		defer func() {
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler {
					a.writeAudit(rt, r, http.StatusInternalServerError)
				}
				panic(v)
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			a.writeAudit(rt, r, status)
		}()
		next.ServeHTTP(sw, r)
	})
}

// maxAuditSummary caps the JSON summary of an audit record: a request body
// is summarised, and an anonymous caller must not be able to store
// megabytes per record (or fill the writer's queue with them).
const maxAuditSummary = 8 << 10

// capSummary cuts long strings of a summary to 256 characters and, if the
// result is still over maxAuditSummary, keeps only its keys.
func capSummary(v any) any {
	switch x := v.(type) {
	case string:
		if utf8.RuneCountInString(x) > 256 {
			return string([]rune(x)[:256]) + "…(cut)"
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = capSummary(e)
		}
		return out
	case []any:
		if len(x) > 50 {
			x = append(x[:50:50], "…(cut)")
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = capSummary(e)
		}
		return out
	}
	return v
}

// auditPathID is the {id} path parameter as the route's handler understands it:
// chi routes on the escaped path when the request's path has escapes that
// the default encoding would not produce (RawPath set), and then hands
// out "src%3Avm-1" for "src:vm-1"; the audit record keeps the decoded id,
// as vCenter events in the same log do.
func auditPathID(r *http.Request) string {
	id := chi.URLParam(r, "id")
	if r.URL.RawPath != "" {
		if dec, err := url.PathUnescape(id); err == nil {
			return dec
		}
	}
	return id
}

// writeAudit queues the audit record of a request answered with status.
func (a *API) writeAudit(rt Route, r *http.Request, status int) {
	st := stateOf(r)
	rec := audit.Record{
		Time:         st.start,
		Source:       "api",
		ActorType:    "anonymous",
		ActorName:    audit.SanitizeText(st.actorName, 0),
		Action:       rt.Action,
		ResourceType: rt.Resource,
		ResourceID:   logPath(auditPathID(r)),
		Status:       status,
		IP:           st.ip,
		UserAgent:    userAgentOf(r),
		RequestID:    st.requestID,
		LatencyUS:    time.Since(st.start).Microseconds(),
	}
	if st.actorID != "" {
		rec.ActorType, rec.ActorID = "user", st.actorID
	}
	if p := st.principal; p != nil {
		rec.ActorType, rec.ActorID, rec.ActorName = p.ActorType(), p.UserID.String(), p.Username
		if !p.IsSession() {
			rec.ActorID = p.TokenID.String()
			rec.ActorName = p.Username + " (token " + p.TokenName + ")"
		}
	}
	if st.resourceID != "" {
		rec.ResourceID = st.resourceID
	}
	switch {
	case status < 400:
		rec.Result = audit.ResultSuccess
	case status == http.StatusForbidden || (status == http.StatusUnauthorized && rt.Access != AccessPublic && rt.Access != AccessRefresh):
		// Refused for lack of credentials or permission; a failed
		// login or refresh is a failure of that operation instead.
		rec.Result = audit.ResultDenied
	default:
		rec.Result = audit.ResultFailure
	}
	summary := map[string]any{}
	for k, v := range st.summary {
		summary[k] = v
	}
	if st.errCode != "" {
		summary["error"] = st.errCode
	}
	b, err := json.Marshal(capSummary(audit.Redact(summary)))
	if err == nil && len(b) > maxAuditSummary {
		keys := make([]string, 0, len(summary))
		for k := range summary {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b, err = json.Marshal(map[string]any{"cut": true, "bytes": len(b), "keys": keys, "error": st.errCode})
	}
	if err == nil {
		rec.Summary = b
	}
	// The request's context may be cancelled already; the record must
	// still be queued.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	if err := a.audit.Append(ctx, rec); err != nil {
		a.log.Error("audit append failed", "request_id", st.requestID, "action", rt.Action, "err", err)
	}
}

// setAuditResource names the resource a handler created, for the audit
// record (routes with an {id} get it automatically).
func setAuditResource(r *http.Request, id string) { stateOf(r).resourceID = id }

// addAuditSummary adds a key to the audit record's summary.
func addAuditSummary(r *http.Request, key string, v any) {
	st := stateOf(r)
	if st.summary == nil {
		st.summary = map[string]any{}
	}
	st.summary[key] = v
}

// routeTable is the central list of every /api/v1 route.
func (a *API) routeTable() []Route {
	var out []Route
	for _, res := range []interface{ Routes() []Route }{
		&authResource{a},
		&usersResource{a},
		&rolesResource{a},
		&tokensResource{a},
		&auditResource{a},
		&sessionsResource{a},
		&agentsResource{a},
		&inventoryResource{a},
		&hygieneResource{a},
		&historyResource{a},
		&vmGroupsResource{a},
		&pluginsResource{a},
		&realtimeResource{a},
		&systemResource{a},
		&jobsResource{a},
		&backupsResource{a},
		&settingsResource{a},
		&alertsResource{a},
		&docsResource{a},
	} {
		out = append(out, res.Routes()...)
	}
	return out
}
