package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

// authResource is /auth: login, refresh, logout, the caller's profile,
// password change and permission checks.
type authResource struct{ a *API }

// Routes lists the /auth routes.
func (h *authResource) Routes() []Route {
	return []Route{
		{Method: "POST", Pattern: "/auth/login", Access: AccessPublic, Action: "auth.login", Resource: "session", Handle: h.login, Doc: Doc{
			Tag: "auth", Summary: "Log in with username or email and password",
			Body: ref("LoginRequest"), Response: ref("Tokens"), Errors: []int{401, 422, 429}}},
		{Method: "POST", Pattern: "/auth/refresh", Access: AccessRefresh, Action: "auth.refresh", Resource: "session", Handle: h.refresh, Doc: Doc{
			Tag: "auth", Summary: "Exchange a refresh token for new tokens (the old one stops working; reusing it ends the session)",
			Body: ref("RefreshRequest"), Response: ref("Tokens"), Errors: []int{401, 422}}},
		{Method: "POST", Pattern: "/auth/logout", Access: AccessAuthenticated, Action: "auth.logout", Resource: "session", Handle: h.logout, Doc: Doc{
			Tag: "auth", Summary: "End the current session", Response: objectSchema(nil), Errors: []int{401, 403}}},
		{Method: "GET", Pattern: "/auth/me", Access: AccessAuthenticated, Handle: h.me, Doc: Doc{
			Tag: "auth", Summary: "The caller's profile, roles, effective permissions and data scope", Response: ref("Me"), Errors: []int{401}}},
		{Method: "PUT", Pattern: "/auth/password", Access: AccessAuthenticated, Action: "auth.password_change", Resource: "user", Handle: h.password, Doc: Doc{
			Tag: "auth", Summary: "Change the caller's password (ends the caller's other sessions)",
			Body: ref("PasswordChange"), Response: objectSchema(nil), Errors: []int{401, 403, 422}}},
		{Method: "GET", Pattern: "/auth/check", Access: AccessAuthenticated, Handle: h.check, Doc: Doc{
			Tag: "auth", Summary: "Whether the caller holds a permission",
			Params:   []Param{{Name: "permission", Required: true, Description: "a permission name, e.g. vm:write"}},
			Response: ref("PermissionCheck"), Errors: []int{401, 422}}},
	}
}

type loginRequest struct {
	Username *string `json:"username"`
	Password *string `json:"password"`
}

func (b *loginRequest) validate(v *fieldErrors) {
	if v.required("username", b.Username != nil && *b.Username != "") {
		v.maxLen("username", *b.Username, 254)
	}
	if v.required("password", b.Password != nil && *b.Password != "") {
		v.maxLen("password", *b.Password, auth.MaxPasswordLen)
	}
}

// loginTimeout bounds a login and its login-log write, which run to the
// end even when the client has gone.
const loginTimeout = 10 * time.Second

// Login-log reasons of the API's own (auth.Attempt has the others).
const loginInvalidRequest = "invalid_request"

func (h *authResource) login(w http.ResponseWriter, r *http.Request) error {
	st := stateOf(r)
	var body loginRequest
	raw, err := readJSON(r)
	if err == nil {
		err = decodeJSONBody(r, raw, &body)
	}
	if err != nil {
		// A refused request is still a login attempt: the login log (and
		// the audit record) name whoever it claimed to be, escaped.
		name, _ := jsonStringMember(raw, "username")
		st.actorName = audit.SanitizeText(name, audit.MaxUsername)
		h.appendLogin(r, audit.LoginRecord{Username: st.actorName, Result: "failure", Reason: loginInvalidRequest})
		return err
	}
	st.actorName = *body.Username
	// A login is carried through even when the client hangs up (a half
	// close cancels the request's context): the attempt must reach the
	// login log, and a lost answer is the client's own doing.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), loginTimeout)
	defer cancel()
	tokens, at, err := h.a.auth.Login(ctx, *body.Username, *body.Password, auth.Client{IP: st.ip, UserAgent: userAgentOf(r)})
	rec := audit.LoginRecord{Username: at.Username, Result: "failure", Reason: at.Reason}
	if at.UserID != [16]byte{} {
		rec.UserID = at.UserID.String()
		st.actorName = at.Username
	}
	if at.Success {
		rec.Result = "success"
		st.actorID = rec.UserID
		setAuditResource(r, tokens.SessionID.String())
	}
	h.appendLogin(r, rec)
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, tokens)
	return nil
}

// appendLogin writes rec, completed with the request's address, user agent
// and id, to the login log. The login log escapes what it stores; a write
// that fails anyway is logged and counted there, and does not change the
// answer.
func (h *authResource) appendLogin(r *http.Request, rec audit.LoginRecord) {
	st := stateOf(r)
	rec.IP, rec.UserAgent, rec.RequestID = st.ip, userAgentOf(r), st.requestID
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), loginTimeout)
	defer cancel()
	if err := h.a.logs.AppendLogin(ctx, rec); err != nil {
		h.a.log.Error("login log write failed", "request_id", st.requestID, "username", rec.Username, "result", rec.Result,
			"reason", rec.Reason, "ip", rec.IP, "err", err)
	}
}

type refreshRequest struct {
	RefreshToken *string `json:"refresh_token"`
}

func (b *refreshRequest) validate(v *fieldErrors) {
	if v.required("refresh_token", b.RefreshToken != nil && *b.RefreshToken != "") {
		v.maxLen("refresh_token", *b.RefreshToken, 256)
	}
}

func (h *authResource) refresh(w http.ResponseWriter, r *http.Request) error {
	var body refreshRequest
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	tokens, err := h.a.auth.Refresh(r.Context(), *body.RefreshToken)
	if err != nil {
		return err
	}
	setAuditResource(r, tokens.SessionID.String())
	writeData(w, r, http.StatusOK, tokens)
	return nil
}

// sessionPrincipal returns the caller if it authenticated with a session.
func sessionPrincipal(r *http.Request) (*auth.Principal, error) {
	p, ok := auth.PrincipalFrom(r.Context())
	if !ok || !p.IsSession() {
		return nil, newError(http.StatusForbidden, CodeSessionRequired)
	}
	return p, nil
}

func (h *authResource) logout(w http.ResponseWriter, r *http.Request) error {
	p, err := sessionPrincipal(r)
	if err != nil {
		return err
	}
	setAuditResource(r, p.SessionID.String())
	if err := h.a.auth.RevokeSession(r.Context(), p.SessionID, "logout"); err != nil {
		return notFound(err, CodeSessionNotFound)
	}
	writeData(w, r, http.StatusOK, struct{}{})
	return nil
}

type meResponse struct {
	ID          string   `json:"id"`
	Username    string   `json:"username"`
	Email       string   `json:"email"`
	DisplayName string   `json:"display_name"`
	Roles       []string `json:"roles"`
	Permissions []string `json:"permissions"`
	Scope       struct {
		Sites        []string `json:"sites"`
		VMGroups     []string `json:"vm_groups"`
		Unrestricted bool     `json:"unrestricted"`
	} `json:"scope"`
	SessionID string `json:"session_id,omitempty"`
	TokenID   string `json:"api_token_id,omitempty"`
}

func (h *authResource) me(w http.ResponseWriter, r *http.Request) error {
	p, _ := auth.PrincipalFrom(r.Context())
	out := meResponse{ID: p.UserID.String(), Username: p.Username, Email: p.Email, DisplayName: p.DisplayName,
		Roles: nonNil(p.Roles), Permissions: nonNil(p.Permissions)}
	sc := auth.ScopeFrom(r.Context())
	out.Scope.Sites, out.Scope.VMGroups, out.Scope.Unrestricted = nonNil(sc.Sites), nonNil(sc.VMGroups), sc.Unrestricted()
	if p.IsSession() {
		out.SessionID = p.SessionID.String()
	} else {
		out.TokenID = p.TokenID.String()
	}
	writeData(w, r, http.StatusOK, out)
	return nil
}

type passwordChange struct {
	CurrentPassword *string `json:"current_password"`
	NewPassword     *string `json:"new_password"`
}

func (b *passwordChange) validate(v *fieldErrors) {
	v.required("current_password", b.CurrentPassword != nil && *b.CurrentPassword != "")
	v.required("new_password", b.NewPassword != nil && *b.NewPassword != "")
}

func (h *authResource) password(w http.ResponseWriter, r *http.Request) error {
	p, err := sessionPrincipal(r)
	if err != nil {
		return err
	}
	setAuditResource(r, p.UserID.String())
	var body passwordChange
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if err := h.a.auth.ChangePassword(r.Context(), p.UserID, p.SessionID, *body.CurrentPassword, *body.NewPassword); err != nil {
		return renameField(notFound(err, CodeUserNotFound), "password", "new_password")
	}
	writeData(w, r, http.StatusOK, struct{}{})
	return nil
}

func (h *authResource) check(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	perm := q.str("permission", 64)
	if perm == "" {
		q.fe.add("permission", FieldRequired, nil)
	} else if !auth.KnownPermission(perm) {
		q.fe.add("permission", FieldUnknownPermission, map[string]any{"name": perm})
	}
	if err := q.err(); err != nil {
		return err
	}
	p, _ := auth.PrincipalFrom(r.Context())
	writeData(w, r, http.StatusOK, map[string]any{"permission": perm, "allowed": p.Has(perm)})
	return nil
}

// renameField rewrites the field name of a validation error (the password
// policy reports "password"; a route may call it differently).
func renameField(err error, from, to string) error {
	e := errorFor(err)
	if e.Status >= 500 {
		return err
	}
	for i := range e.Fields {
		if e.Fields[i].Field == from {
			e.Fields[i].Field = to
		}
	}
	return e
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
