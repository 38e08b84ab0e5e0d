package auth

import (
	"context"
	"slices"

	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/access"
)

// Scope is a user's optional data scope (sites and VM groups; empty means
// everything). WithPrincipal puts it in the context, where the store
// applies it to every read of site data.
type Scope = access.Scope

// Principal is the authenticated caller of one request: a user through an
// interactive session, or a user's personal API token. Its permissions are
// computed when the request is authenticated, so role changes apply to the
// next request.
type Principal struct {
	UserID      uuid.UUID
	Username    string
	Email       string
	DisplayName string
	// SessionID is set for session (JWT) callers.
	SessionID uuid.UUID
	// TokenID and TokenName are set for API token callers.
	TokenID   uuid.UUID
	TokenName string
	Roles     []string
	// Permissions are the effective permissions, sorted.
	Permissions []string
	Scope       Scope
}

// Has reports whether the principal holds permission perm.
func (p *Principal) Has(perm string) bool {
	_, ok := slices.BinarySearch(p.Permissions, perm)
	return ok
}

// IsSession reports whether the caller authenticated with a session's
// access token rather than an API token.
func (p *Principal) IsSession() bool { return p.SessionID != uuid.Nil }

// ActorType is "user" for session callers and "api_token" for API tokens.
func (p *Principal) ActorType() string {
	if p.IsSession() {
		return "user"
	}
	return "api_token"
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p, and limited to p's data scope
// (access.WithScope), so every read of site data made with ctx is.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return access.WithScope(context.WithValue(ctx, principalKey{}, p), p.Scope)
}

// PrincipalFrom returns the authenticated caller, if any.
func PrincipalFrom(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}

// ScopeFrom returns the caller's data scope. A request without a principal
// gets an unrestricted scope: only routes that need no permission lack one.
func ScopeFrom(ctx context.Context) Scope {
	if p, ok := PrincipalFrom(ctx); ok {
		return p.Scope
	}
	return Scope{}
}
