package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/backup"
	"github.com/vmpulse/vmpulse/aggregator/internal/jobs"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// Stable machine codes of the API's errors. Clients switch on these; the
// message is for people and is localized.
const (
	CodeBadRequest         = "BAD_REQUEST"
	CodeInvalidJSON        = "INVALID_JSON"
	CodeValidation         = "VALIDATION_FAILED"
	CodeUnsupportedMedia   = "UNSUPPORTED_MEDIA_TYPE"
	CodeTooLarge           = "REQUEST_TOO_LARGE"
	CodeNotFound           = "NOT_FOUND"
	CodeMethodNotAllowed   = "METHOD_NOT_ALLOWED"
	CodeConflict           = "CONFLICT"
	CodeInternal           = "INTERNAL_ERROR"
	CodeTimeout            = "REQUEST_TIMEOUT"
	CodeUnavailable        = "SERVICE_UNAVAILABLE"
	CodeInvalidCredentials = "AUTH_INVALID_CREDENTIALS"
	CodeRateLimited        = "AUTH_RATE_LIMITED"
	CodeUnauthenticated    = "AUTH_UNAUTHENTICATED"
	CodeRefreshInvalid     = "AUTH_REFRESH_INVALID"
	CodeRefreshReused      = "AUTH_REFRESH_REUSED"
	CodeForbidden          = "AUTH_FORBIDDEN"
	CodeSessionRequired    = "AUTH_SESSION_REQUIRED"
	CodeWrongPassword      = "AUTH_WRONG_PASSWORD"
	CodeUserNotFound       = "USER_NOT_FOUND"
	CodeRoleNotFound       = "ROLE_NOT_FOUND"
	CodeSessionNotFound    = "SESSION_NOT_FOUND"
	CodeTokenNotFound      = "API_TOKEN_NOT_FOUND"
	CodeAuditNotFound      = "AUDIT_RECORD_NOT_FOUND"
	CodeAgentNotFound      = "AGENT_NOT_FOUND"
	CodeVMNotFound         = "VM_NOT_FOUND"
	CodeHostNotFound       = "HOST_NOT_FOUND"
	CodeClusterNotFound    = "CLUSTER_NOT_FOUND"
	CodeDatastoreNotFound  = "DATASTORE_NOT_FOUND"
	CodeSiteNotFound       = "SITE_NOT_FOUND"
	CodeSiteNoAgent        = "SITE_NO_AGENT_CONNECTED"
	CodeRoleBuiltin        = "ROLE_BUILTIN"
	CodeRoleCycle          = "ROLE_CYCLE"
	CodeLastAdmin          = "LAST_ADMIN"
	CodeSelfOperation      = "SELF_OPERATION"
	// CodeEscalation refuses a change that would grant a permission, role
	// or data scope the caller does not hold, or that acts on a user or
	// role holding more than the caller.
	CodeEscalation = "AUTH_ESCALATION_DENIED"
	// CodeSelfModification refuses a change to the caller's own roles or
	// data scope.
	CodeSelfModification = "AUTH_SELF_MODIFICATION_DENIED"
	// CodeScopeRestricted refuses a fleet-wide resource (the Prometheus
	// exposition) to a caller whose data scope is limited to some sites.
	CodeScopeRestricted = "AUTH_SCOPE_RESTRICTED"
	// CodeVMLive refuses to forget a VM vCenter still has.
	CodeVMLive         = "VM_LIVE"
	CodeGroupNotFound  = "VM_GROUP_NOT_FOUND"
	CodeGroupNameTaken = "VM_GROUP_NAME_TAKEN"
	// CodeGroupInScope refuses to delete a VM group some user's data
	// scope names (emptying that scope would make it unrestricted).
	CodeGroupInScope = "VM_GROUP_IN_SCOPE"
	// The realtime feed's codes: a plain request to the WebSocket route;
	// a client dropped for falling behind; a subscription over the
	// per-connection limit; a client that stopped answering pings; the
	// server going away (streams end); a stream resumed from an event the
	// replica no longer holds (samples were missed).
	CodeUpgradeRequired      = "REALTIME_UPGRADE_REQUIRED"
	CodeSlowConsumer         = "REALTIME_SLOW_CONSUMER"
	CodeTooManySubscriptions = "REALTIME_TOO_MANY_SUBSCRIPTIONS"
	CodeHeartbeatTimeout     = "REALTIME_HEARTBEAT_TIMEOUT"
	CodeGoingAway            = "REALTIME_GOING_AWAY"
	CodeResumeGap            = "REALTIME_RESUME_GAP"
	// CodeMaintenance: a restore is running; every route but its status
	// answers 503 with it (the backups' own codes are backup.Code*).
	CodeMaintenance = backup.CodeMaintenance
)

// Field error codes.
const (
	FieldRequired          = "required"
	FieldInvalidType       = "invalid_type"
	FieldUnknown           = "unknown_field"
	FieldInvalidFormat     = "invalid_format"
	FieldTooLong           = "too_long"
	FieldOutOfRange        = "out_of_range"
	FieldInvalidValue      = "invalid_value"
	FieldUnknownRole       = "unknown_role"
	FieldUnknownPermission = "unknown_permission"
	FieldTaken             = "taken"
	FieldUnknownGroup      = "unknown_vm_group"
	FieldLabelRuleScope    = "label_rule_in_scope"
	FieldWrongPassword     = "wrong_password"
	FieldCycle             = "cycle"
	// FieldInvalidText refuses a string (body field or query parameter)
	// that is not storable text: a NUL, bytes that are not UTF-8, or an
	// escaped surrogate without its pair. Params: reason (nul,
	// invalid_utf8, lone_surrogate).
	FieldInvalidText = "invalid_text"
)

// Error is an error with its HTTP status and machine code. Handlers return
// it (or any error; errorFor maps the rest). Err is the cause, logged and
// never shown.
type Error struct {
	Status int
	Code   string
	Fields []FieldError
	Data   map[string]any // extra details merged into the error's data
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Code, e.Err)
	}
	return e.Code
}

func (e *Error) Unwrap() error { return e.Err }

// FieldError is one invalid field. Field is a JSON path ("roles[2]") or a
// query parameter name.
type FieldError struct {
	Field   string         `json:"field"`
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Params  map[string]any `json:"params,omitempty"`
}

func newError(status int, code string) *Error { return &Error{Status: status, Code: code} }

func validationError(fields ...FieldError) *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Fields: fields}
}

// errorFor maps any error to the API error to send.
func errorFor(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var be *backup.Error
	if errors.As(err, &be) {
		return backupAPIError(be)
	}
	if errors.Is(err, jobs.ErrNotFound) {
		return newError(http.StatusNotFound, CodeJobNotFound)
	}
	var (
		policy   *auth.PolicyError
		conflict *auth.ConflictError
		unknown  *auth.UnknownError
		limited  *auth.RateLimitError
	)
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials):
		return newError(http.StatusUnauthorized, CodeInvalidCredentials)
	case errors.As(err, &limited):
		e := newError(http.StatusTooManyRequests, CodeRateLimited)
		e.Data = map[string]any{"retry_after_seconds": retryAfterSeconds(limited)}
		return e
	case errors.Is(err, auth.ErrUnauthenticated):
		return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Err: err}
	case errors.Is(err, auth.ErrRefreshReused):
		return newError(http.StatusUnauthorized, CodeRefreshReused)
	case errors.Is(err, auth.ErrRefreshInvalid):
		return newError(http.StatusUnauthorized, CodeRefreshInvalid)
	case errors.Is(err, auth.ErrWrongPassword):
		e := newError(http.StatusUnprocessableEntity, CodeWrongPassword)
		e.Fields = []FieldError{{Field: "current_password", Code: FieldWrongPassword}}
		return e
	case errors.As(err, &policy):
		var fields []FieldError
		for _, v := range policy.Violations {
			fields = append(fields, FieldError{Field: "password", Code: v, Params: map[string]any{"min": auth.MinPasswordLen, "max": auth.MaxPasswordLen}})
		}
		return validationError(fields...)
	case errors.As(err, &conflict):
		e := newError(http.StatusConflict, CodeConflict)
		e.Fields = []FieldError{{Field: conflict.Field, Code: FieldTaken}}
		return e
	case errors.As(err, &unknown):
		code := FieldUnknownRole
		if unknown.Field == "permissions" {
			code = FieldUnknownPermission
		}
		return validationError(FieldError{Field: unknown.Field, Code: code, Params: map[string]any{"name": unknown.Name}})
	case errors.Is(err, auth.ErrBuiltinRole):
		return newError(http.StatusConflict, CodeRoleBuiltin)
	case errors.Is(err, auth.ErrRoleCycle):
		e := newError(http.StatusUnprocessableEntity, CodeRoleCycle)
		e.Fields = []FieldError{{Field: "parents", Code: FieldCycle}}
		return e
	case errors.Is(err, auth.ErrLastAdmin):
		return newError(http.StatusConflict, CodeLastAdmin)
	case errors.Is(err, auth.ErrSelf):
		return newError(http.StatusConflict, CodeSelfOperation)
	case errors.Is(err, auth.ErrSelfModification):
		return newError(http.StatusForbidden, CodeSelfModification)
	case errors.Is(err, auth.ErrEscalation):
		return escalationError(err)
	case errors.Is(err, auth.ErrSessionRequired):
		return newError(http.StatusForbidden, CodeSessionRequired)
	case errors.Is(err, audit.ErrNotFound):
		return newError(http.StatusNotFound, CodeAuditNotFound)
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeTimeout, Err: err}
	case store.IsTransient(err):
		// The database is unreachable or overloaded: the caller may retry.
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Err: err}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Err: err}
}

// escalationError is the 403 of the no-escalation rule. For a grant the
// caller spelled out, it names the permissions the caller lacks and whether
// the scope was too wide; for a user or role beyond the caller, nothing
// about what that user or role holds.
func escalationError(err error) *Error {
	e := &Error{Status: http.StatusForbidden, Code: CodeEscalation, Err: err}
	var esc *auth.EscalationError
	if errors.As(err, &esc) && esc.Subject == "grant" {
		e.Data = map[string]any{"missing_permissions": nonNil(esc.Missing), "scope_exceeded": esc.Scope}
	}
	return e
}

// notFound maps auth.ErrNotFound and store.ErrNotFound to the resource's
// own code.
func notFound(err error, code string) error {
	if errors.Is(err, auth.ErrNotFound) || errors.Is(err, store.ErrNotFound) {
		return newError(http.StatusNotFound, code)
	}
	return err
}

func retryAfterSeconds(e *auth.RateLimitError) int {
	s := int(e.RetryAfter.Seconds() + 0.999)
	if s < 1 {
		s = 1
	}
	return s
}

// envelope is every response's shape. Code is 0 on success and the machine
// code string on error.
type envelope struct {
	Code    any    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data"`
}

// writeData sends a successful response.
func writeData(w http.ResponseWriter, r *http.Request, status int, data any) {
	writeJSON(w, status, envelope{Code: 0, Message: message(langOf(r), "OK"), Data: data})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"code":"INTERNAL_ERROR","message":"internal error","data":null}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	_, _ = w.Write([]byte("\n"))
}

// writeError is the one place errors become responses: it picks status and
// code, localizes the messages, and logs causes of server-side failures.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	e := errorFor(err)
	lang := langOf(r)
	st := stateOf(r)
	data := map[string]any{"request_id": st.requestID}
	for k, v := range e.Data {
		data[k] = v
	}
	if len(e.Fields) > 0 {
		fields := make([]FieldError, len(e.Fields))
		for i, f := range e.Fields {
			if f.Message == "" {
				f.Message = fieldMessage(lang, f.Code, f.Params)
			}
			fields[i] = f
		}
		data["fields"] = fields
	}
	if e.Status >= 500 {
		log.Error("request failed", "request_id", st.requestID, "method", r.Method, "path", logPath(r.URL.Path), "code", e.Code, "err", e.Err)
	} else if e.Err != nil {
		log.Debug("request refused", "request_id", st.requestID, "code", e.Code, "err", e.Err)
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vmpulse"`)
	}
	if ra, ok := e.Data["retry_after_seconds"].(int); ok {
		w.Header().Set("Retry-After", strconv.Itoa(ra))
	}
	st.errCode = e.Code
	writeJSON(w, e.Status, envelope{Code: e.Code, Message: message(lang, e.Code), Data: data})
}
