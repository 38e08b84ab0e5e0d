package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// APIToken is a personal API token's metadata. The secret itself is returned
// only by CreateAPIToken.
type APIToken struct {
	ID          uuid.UUID  `json:"id"`
	Name        string     `json:"name"`
	Prefix      string     `json:"prefix"`
	Permissions []string   `json:"permissions"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	LastUsedAt  *time.Time `json:"last_used_at,omitempty"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
}

// ListAPITokens returns the user's tokens, newest first.
func (s *Service) ListAPITokens(ctx context.Context, userID uuid.UUID) ([]APIToken, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, name, prefix, permissions, created_at, expires_at, last_used_at, revoked_at
		FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC, id`, userID)
	if err != nil {
		return nil, fmt.Errorf("auth: list api tokens: %w", err)
	}
	defer rows.Close()
	out := []APIToken{}
	for rows.Next() {
		var t APIToken
		if err := rows.Scan(&t.ID, &t.Name, &t.Prefix, &t.Permissions, &t.CreatedAt, &t.ExpiresAt, &t.LastUsedAt, &t.RevokedAt); err != nil {
			return nil, fmt.Errorf("auth: list api tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("auth: list api tokens: %w", err)
	}
	return out, nil
}

// CreateAPIToken makes a token owned by actor and returns its secret, which
// is not stored. Only a session can mint tokens (ErrSessionRequired): a
// leaked token must not outlive its revocation through children. perms
// restricts the token to a subset of the owner's permissions (empty: all of
// them); naming one the owner lacks is an *EscalationError. The owner's
// permissions are applied again on every use (see authenticateAPIToken),
// so the token never exceeds what its owner holds now.
func (s *Service) CreateAPIToken(ctx context.Context, actor *Principal, name string, perms []string, expiresAt *time.Time) (string, *APIToken, error) {
	if actor == nil {
		return "", nil, errNoActor
	}
	if !actor.IsSession() {
		return "", nil, ErrSessionRequired
	}
	userID := actor.UserID
	perms = nonNil(sortedUnique(perms))
	for _, p := range perms {
		if !KnownPermission(p) {
			return "", nil, &UnknownError{Field: "permissions", Name: p}
		}
	}
	if err := CheckGrant(actor, perms, nil); err != nil {
		return "", nil, err
	}
	secret, hash, err := newSecret(apiTokenPrefix)
	if err != nil {
		return "", nil, err
	}
	t := &APIToken{ID: uuid.New(), Name: name, Prefix: secret[:len(apiTokenPrefix)+6], Permissions: perms, CreatedAt: s.now().UTC().Truncate(time.Microsecond), ExpiresAt: expiresAt}
	if _, err := s.pool.Exec(ctx, `INSERT INTO api_tokens (id, user_id, name, token_hash, prefix, permissions, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		t.ID, userID, name, hash, t.Prefix, perms, t.CreatedAt, expiresAt); err != nil {
		return "", nil, fmt.Errorf("auth: create api token: %w", err)
	}
	return secret, t, nil
}

// RevokeAPIToken revokes one of actor's own tokens; ErrNotFound if it is
// not theirs or already revoked.
func (s *Service) RevokeAPIToken(ctx context.Context, actor *Principal, id uuid.UUID) error {
	if actor == nil {
		return errNoActor
	}
	tag, err := s.pool.Exec(ctx, `UPDATE api_tokens SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL`, id, actor.UserID, s.now())
	if err != nil {
		return fmt.Errorf("auth: revoke api token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *Service) authenticateAPIToken(ctx context.Context, secret string) (*Principal, error) {
	if strings.ContainsFunc(secret, func(r rune) bool { return r <= ' ' }) {
		return nil, fmt.Errorf("%w: malformed api token", ErrUnauthenticated)
	}
	now := s.now()
	p := &Principal{}
	var (
		tokenPerms []string
		lastUsed   *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT t.id, t.name, t.permissions, t.last_used_at, u.id, u.username, u.email, u.display_name, u.scope_sites, u.scope_vm_groups,
			ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = u.id ORDER BY r.name),
			ARRAY(`+effectivePermissionsSQL("t.user_id")+`)
		FROM api_tokens t JOIN users u ON u.id = t.user_id
		WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2) AND NOT u.locked`, hashSecret(secret), now).
		Scan(&p.TokenID, &p.TokenName, &tokenPerms, &lastUsed, &p.UserID, &p.Username, &p.Email, &p.DisplayName, &p.Scope.Sites, &p.Scope.VMGroups, &p.Roles, &p.Permissions)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: unknown, revoked or expired api token", ErrUnauthenticated)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: authenticate api token: %w", err)
	}
	// A token holds at most what its owner holds now: its own list cut down
	// to the owner's current effective permissions.
	if len(tokenPerms) > 0 {
		p.Permissions = slices.DeleteFunc(p.Permissions, func(perm string) bool { return !slices.Contains(tokenPerms, perm) })
	}
	if lastUsed == nil || now.Sub(*lastUsed) > lastSeenEvery {
		if _, err := s.pool.Exec(ctx, `UPDATE api_tokens SET last_used_at = $2 WHERE id = $1`, p.TokenID, now); err != nil {
			s.log.Warn("update api token last use", "token", p.TokenID, "err", err)
		}
	}
	return p, nil
}
