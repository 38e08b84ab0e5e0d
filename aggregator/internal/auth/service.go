// Package auth is vmpulse's authentication and authorization: argon2id
// passwords, JWT access tokens signed with rotating keys kept in PostgreSQL,
// server-side sessions with rotating refresh tokens and reuse detection,
// account lockout, per-address login rate limits, users, roles with
// inheritance, permissions, data scopes and personal API tokens.
//
// Contract: a *Service is safe for concurrent use. Every check that decides
// whether a request may proceed (session alive, user not locked, effective
// permissions) reads the database on each request, so logout, forced logout,
// locks and role changes take effect at once on every replica.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Token prefixes make the kind of a secret recognizable (and greppable by
// secret scanners).
const (
	refreshPrefix  = "vmr_"
	apiTokenPrefix = "vmp_"
)

// lastSeenEvery bounds how often a session's last activity is written.
const lastSeenEvery = 30 * time.Second

// Service is the authentication service.
type Service struct {
	pool    *pgxpool.Pool
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	keys    *keyRing
	limiter *ipLimiter
	parser  *jwt.Parser
	policy  func(ctx context.Context) Policy // Options.Policy; nil: none
}

// Policy holds runtime overrides of the lockout policy and session
// lifetimes (the settings of PUT /system/settings); a zero field keeps
// the Config's value.
type Policy struct {
	LockoutThreshold int
	LockoutDuration  time.Duration
	RefreshTTL       time.Duration
	SessionMaxAge    time.Duration
}

// effective is the Config with the current Policy applied; it is read at
// each login and refresh, so a changed setting applies at once.
func (s *Service) effective(ctx context.Context) Config {
	cfg := s.cfg
	if s.policy == nil {
		return cfg
	}
	p := s.policy(ctx)
	if p.LockoutThreshold > 0 {
		cfg.LockoutThreshold = p.LockoutThreshold
	}
	if p.LockoutDuration > 0 {
		cfg.LockoutDuration = p.LockoutDuration
	}
	if p.RefreshTTL > 0 {
		cfg.RefreshTTL = p.RefreshTTL
	}
	if p.SessionMaxAge > 0 {
		cfg.SessionMaxAge = p.SessionMaxAge
	}
	return cfg
}

// Options are a Service's dependencies.
type Options struct {
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests inject one to move through
	// lockout windows and token lifetimes.
	Now func() time.Time
	// KeyEncryptionKey (KeyEncryptionKeySize bytes, required) seals the JWT
	// signing keys stored in the database. Every replica must use the
	// same one; the aggregator derives it from its CA key.
	KeyEncryptionKey []byte
	// Policy, if set, is asked at each login and refresh for overrides of
	// the lockout policy and session lifetimes; it must be cheap (cache).
	Policy func(ctx context.Context) Policy
}

// New returns a Service using cfg (defaults filled in), after validating it.
func New(pool *pgxpool.Pool, cfg Config, opts Options) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("auth: config: %w", err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sealer, err := newKeySealer(opts.KeyEncryptionKey)
	if err != nil {
		return nil, err
	}
	s := &Service{
		pool:    pool,
		cfg:     cfg,
		log:     log,
		now:     now,
		keys:    newKeyRing(pool, sealer, cfg, now, log),
		limiter: newIPLimiter(cfg.LoginRate, cfg.LoginBurst, now),
		policy:  opts.Policy,
	}
	s.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{cfg.Algorithm}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(now),
	)
	return s, nil
}

// Config returns the effective configuration.
func (s *Service) Config() Config { return s.cfg }

// Tokens is what a login or refresh returns. The refresh token is shown only
// here; the database keeps its hash.
type Tokens struct {
	AccessToken      string    `json:"access_token"`
	TokenType        string    `json:"token_type"`
	ExpiresAt        time.Time `json:"expires_at"`
	RefreshToken     string    `json:"refresh_token"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at"`
	SessionID        uuid.UUID `json:"session_id"`
}

// Client identifies where a request came from.
type Client struct {
	IP        string
	UserAgent string
}

// Attempt describes a login attempt for the login log. Reason is one of
// "ok", "unknown_user", "bad_password", "locked", "rate_limited", "error".
type Attempt struct {
	UserID   uuid.UUID // zero when no user matched
	Username string    // the matched user's name, else the identifier given
	Success  bool
	Reason   string
}

// Login authenticates a user by username or email and password and opens a
// session. It always returns an Attempt describing what happened; the error
// is ErrInvalidCredentials for every kind of refusal except rate limiting
// (*RateLimitError).
func (s *Service) Login(ctx context.Context, identifier, password string, c Client) (*Tokens, Attempt, error) {
	at := Attempt{Username: identifier, Reason: "error"}
	if ok, wait := s.limiter.allow(c.IP); !ok {
		at.Reason = "rate_limited"
		return nil, at, &RateLimitError{RetryAfter: wait}
	}
	now := s.now()
	var (
		id          uuid.UUID
		username    string
		hash        string
		locked      bool
		lockedUntil *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT id, username, password_hash, locked, locked_until FROM users
		WHERE lower(username) = lower($1) OR (email <> '' AND lower(email) = lower($1))
		ORDER BY lower(username) = lower($1) DESC LIMIT 1`, identifier).Scan(&id, &username, &hash, &locked, &lockedUntil)
	if errors.Is(err, pgx.ErrNoRows) {
		_, _ = VerifyPassword(dummyHash, password) // same cost as a real check
		at.Reason = "unknown_user"
		return nil, at, ErrInvalidCredentials
	}
	if err != nil {
		return nil, at, fmt.Errorf("auth: login: find user: %w", err)
	}
	at.UserID, at.Username = id, username
	ok, verr := VerifyPassword(hash, password)
	if locked || (lockedUntil != nil && lockedUntil.After(now)) {
		at.Reason = "locked"
		return nil, at, ErrInvalidCredentials
	}
	if verr != nil {
		return nil, at, fmt.Errorf("auth: login: user %s: %w", id, verr)
	}
	if !ok {
		at.Reason = "bad_password"
		if _, err := s.pool.Exec(ctx, `UPDATE users SET
			failed_logins = CASE WHEN locked_until IS NOT NULL AND locked_until <= $2 THEN 1 ELSE failed_logins + 1 END,
			locked_until = CASE
				WHEN (CASE WHEN locked_until IS NOT NULL AND locked_until <= $2 THEN 1 ELSE failed_logins + 1 END) >= $3 THEN $4
				WHEN locked_until IS NOT NULL AND locked_until <= $2 THEN NULL
				ELSE locked_until END
			WHERE id = $1`, id, now, s.effective(ctx).LockoutThreshold, now.Add(s.effective(ctx).LockoutDuration)); err != nil {
			return nil, at, fmt.Errorf("auth: login: count failure: %w", err)
		}
		return nil, at, ErrInvalidCredentials
	}
	if _, err := s.pool.Exec(ctx, `UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = $2 WHERE id = $1`, id, now); err != nil {
		return nil, at, fmt.Errorf("auth: login: reset failures: %w", err)
	}
	tokens, err := s.openSession(ctx, id, c)
	if err != nil {
		return nil, at, err
	}
	at.Success, at.Reason = true, "ok"
	return tokens, at, nil
}

func (s *Service) openSession(ctx context.Context, userID uuid.UUID, c Client) (*Tokens, error) {
	now := s.now()
	sid := uuid.New()
	refresh, refreshHash, err := newSecret(refreshPrefix)
	if err != nil {
		return nil, err
	}
	pol := s.effective(ctx)
	sessionEnd := now.Add(pol.SessionMaxAge)
	refreshEnd := minTime(now.Add(pol.RefreshTTL), sessionEnd)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, ip, user_agent) VALUES ($1, $2, $3, $3, $4, $5, $6)`,
			sid, userID, now, sessionEnd, c.IP, truncate(c.UserAgent, 512)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
			refreshHash, sid, now, refreshEnd)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("auth: open session: %w", err)
	}
	access, exp, err := s.signAccess(ctx, userID, sid)
	if err != nil {
		return nil, err
	}
	return &Tokens{AccessToken: access, TokenType: "Bearer", ExpiresAt: exp, RefreshToken: refresh, RefreshExpiresAt: refreshEnd, SessionID: sid}, nil
}

// Refresh exchanges a refresh token for new access and refresh tokens. A
// refresh token works once: presenting it again revokes the session it
// belongs to (the "family") and returns ErrRefreshReused.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (*Tokens, error) {
	if !strings.HasPrefix(refreshToken, refreshPrefix) {
		return nil, ErrRefreshInvalid
	}
	hash := hashSecret(refreshToken)
	now := s.now()
	var (
		sid, userID uuid.UUID
		next        string
		nextEnd     time.Time
		outcome     error
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var (
			usedAt, revokedAt    *time.Time
			tokenEnd, sessionEnd time.Time
			locked               bool
		)
		err := tx.QueryRow(ctx, `SELECT rt.session_id, rt.used_at, rt.expires_at, s.user_id, s.revoked_at, s.expires_at, u.locked
			FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id JOIN users u ON u.id = s.user_id
			WHERE rt.token_hash = $1 FOR UPDATE OF rt, s`, hash).Scan(&sid, &usedAt, &tokenEnd, &userID, &revokedAt, &sessionEnd, &locked)
		if errors.Is(err, pgx.ErrNoRows) {
			outcome = ErrRefreshInvalid
			return nil
		}
		if err != nil {
			return err
		}
		if usedAt != nil {
			if revokedAt == nil {
				if _, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $2, revoke_reason = 'refresh_reuse' WHERE id = $1`, sid, now); err != nil {
					return err
				}
				s.log.Warn("refresh token reused; session revoked", "session", sid, "user", userID)
			}
			outcome = ErrRefreshReused
			return nil
		}
		if revokedAt != nil || !tokenEnd.After(now) || !sessionEnd.After(now) || locked {
			outcome = ErrRefreshInvalid
			return nil
		}
		var h []byte
		next, h, err = newSecret(refreshPrefix)
		if err != nil {
			return err
		}
		nextEnd = minTime(now.Add(s.effective(ctx).RefreshTTL), sessionEnd)
		if _, err := tx.Exec(ctx, `UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1`, hash, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`, h, sid, now, nextEnd); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE sessions SET last_seen_at = $2 WHERE id = $1`, sid, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("auth: refresh: %w", err)
	}
	if outcome != nil {
		return nil, outcome
	}
	access, exp, err := s.signAccess(ctx, userID, sid)
	if err != nil {
		return nil, err
	}
	return &Tokens{AccessToken: access, TokenType: "Bearer", ExpiresAt: exp, RefreshToken: next, RefreshExpiresAt: nextEnd, SessionID: sid}, nil
}

// RevokeSession ends a session at once (logout, forced logout). It returns
// ErrNotFound if the session does not exist or has already ended.
func (s *Service) RevokeSession(ctx context.Context, id uuid.UUID, reason string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE sessions SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 AND revoked_at IS NULL`, id, s.now(), reason)
	if err != nil {
		return fmt.Errorf("auth: revoke session: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// accessClaims are the claims of an access token.
type accessClaims struct {
	jwt.RegisteredClaims
	SessionID string `json:"sid"`
}

func (s *Service) signAccess(ctx context.Context, userID, sid uuid.UUID) (string, time.Time, error) {
	key, err := s.keys.signer(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	now := s.now()
	exp := now.Add(s.cfg.AccessTTL)
	claims := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.cfg.Issuer,
			Subject:   userID.String(),
			Audience:  jwt.ClaimStrings{s.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        uuid.NewString(),
		},
		SessionID: sid.String(),
	}
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(key.alg), claims)
	tok.Header["kid"] = key.kid
	signed, err := tok.SignedString(key.priv)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign access token: %w", err)
	}
	return signed, exp, nil
}

// Authenticate resolves a bearer credential (an access token or an API
// token) to its principal, checking the session or token in the database.
// Every refusal is ErrUnauthenticated (wrapped with the reason).
func (s *Service) Authenticate(ctx context.Context, bearer string) (*Principal, error) {
	if strings.HasPrefix(bearer, apiTokenPrefix) {
		return s.authenticateAPIToken(ctx, bearer)
	}
	var claims accessClaims
	_, err := s.parser.ParseWithClaims(bearer, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, err := s.keys.verifier(ctx, kid)
		if err != nil {
			return nil, err
		}
		if k.alg != t.Method.Alg() {
			return nil, fmt.Errorf("key %s is for %s", kid, k.alg)
		}
		return k.public(), nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	userID, err1 := uuid.Parse(claims.Subject)
	sid, err2 := uuid.Parse(claims.SessionID)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%w: malformed subject or session", ErrUnauthenticated)
	}
	now := s.now()
	p := &Principal{SessionID: sid}
	var lastSeen time.Time
	err = s.pool.QueryRow(ctx, `SELECT u.id, u.username, u.email, u.display_name, u.scope_sites, u.scope_vm_groups, s.last_seen_at,
			ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = $2 ORDER BY r.name),
			ARRAY(`+effectivePermissionsSQL("$2")+`)
		FROM sessions s JOIN users u ON u.id = s.user_id
		WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND s.expires_at > $3
		  AND NOT u.locked`, sid, userID, now).
		Scan(&p.UserID, &p.Username, &p.Email, &p.DisplayName, &p.Scope.Sites, &p.Scope.VMGroups, &lastSeen, &p.Roles, &p.Permissions)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: session ended", ErrUnauthenticated)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: authenticate: %w", err)
	}
	if now.Sub(lastSeen) > lastSeenEvery {
		if _, err := s.pool.Exec(ctx, `UPDATE sessions SET last_seen_at = $2 WHERE id = $1`, sid, now); err != nil {
			s.log.Warn("update session activity", "session", sid, "err", err)
		}
	}
	return p, nil
}

// effectivePermissionsSQL selects the sorted effective permissions of the
// user whose id is the SQL expression user, following role inheritance.
func effectivePermissionsSQL(user string) string {
	return `WITH RECURSIVE rr(id) AS (
		SELECT role_id FROM user_roles WHERE user_id = ` + user + `
		UNION SELECT rp.parent_id FROM role_parents rp JOIN rr ON rp.role_id = rr.id)
	SELECT DISTINCT permission FROM role_permissions WHERE role_id IN (SELECT id FROM rr) ORDER BY permission`
}

func newSecret(prefix string) (string, []byte, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, fmt.Errorf("auth: random secret: %w", err)
	}
	secret := prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return secret, hashSecret(secret), nil
}

// hashSecret hashes a high-entropy random secret. A fast hash suffices: the
// secret cannot be guessed, only stolen.
func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func sortedUnique(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}
