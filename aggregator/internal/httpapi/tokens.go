package httpapi

import (
	"net/http"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
)

// tokensResource is /api-tokens: the caller's personal API tokens.
type tokensResource struct{ a *API }

// Routes lists the /api-tokens routes.
func (h *tokensResource) Routes() []Route {
	const tag = "api-tokens"
	return []Route{
		{Method: "GET", Pattern: "/api-tokens", Access: AccessAuthenticated, Handle: h.list, Doc: Doc{Tag: tag,
			Summary: "List the caller's API tokens", Response: listSchema(ref("APIToken")), Errors: []int{401, 403}}},
		{Method: "POST", Pattern: "/api-tokens", Access: AccessAuthenticated, Action: "api_token.create", Resource: "api_token", Handle: h.create, Doc: Doc{Tag: tag,
			Summary: "Create an API token (its secret is shown only in this response; its permissions must be ones you hold)", Body: ref("APITokenCreate"),
			Response: ref("APITokenCreated"), Status: http.StatusCreated, Errors: []int{401, 403, 422}, Codes: []string{CodeEscalation, CodeSessionRequired}}},
		{Method: "DELETE", Pattern: "/api-tokens/{id}", Access: AccessAuthenticated, Action: "api_token.revoke", Resource: "api_token", Handle: h.revoke, Doc: Doc{Tag: tag,
			Summary: "Revoke one of the caller's API tokens", Response: objectSchema(nil), Errors: []int{401, 403, 404}}},
	}
}

func (h *tokensResource) list(w http.ResponseWriter, r *http.Request) error {
	p, _ := auth.PrincipalFrom(r.Context())
	tokens, err := h.a.auth.ListAPITokens(r.Context(), p.UserID)
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, map[string]any{"items": tokens})
	return nil
}

type tokenCreate struct {
	Name        *string    `json:"name"`
	Permissions []string   `json:"permissions"`
	ExpiresAt   *time.Time `json:"expires_at"`
}

func (b *tokenCreate) validate(v *fieldErrors) {
	if v.required("name", b.Name != nil && *b.Name != "") {
		v.maxLen("name", *b.Name, 100)
	}
	validatePermissions(v, b.Permissions)
}

func (h *tokensResource) create(w http.ResponseWriter, r *http.Request) error {
	// A token cannot mint tokens: a leaked token must not outlive its
	// revocation through children.
	p, err := sessionPrincipal(r)
	if err != nil {
		return err
	}
	var body tokenCreate
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if body.ExpiresAt != nil && !body.ExpiresAt.After(time.Now()) {
		return validationError(FieldError{Field: "expires_at", Code: FieldOutOfRange, Params: map[string]any{"min": "now", "max": "∞"}})
	}
	secret, t, err := h.a.auth.CreateAPIToken(r.Context(), p, *body.Name, body.Permissions, body.ExpiresAt)
	if err != nil {
		return err
	}
	setAuditResource(r, t.ID.String())
	writeData(w, r, http.StatusCreated, map[string]any{"token": secret, "api_token": t})
	return nil
}

func (h *tokensResource) revoke(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, CodeTokenNotFound)
	if err != nil {
		return err
	}
	if err := h.a.auth.RevokeAPIToken(r.Context(), actor(r), id); err != nil {
		return notFound(err, CodeTokenNotFound)
	}
	writeData(w, r, http.StatusOK, struct{}{})
	return nil
}
