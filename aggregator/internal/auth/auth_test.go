package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

func TestPasswordHashAndVerify(t *testing.T) {
	h, err := HashPassword(goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q does not carry the OWASP argon2id parameters", h)
	}
	if ok, err := VerifyPassword(h, goodPassword); !ok || err != nil {
		t.Errorf("VerifyPassword(right) = %v, %v; want true, nil", ok, err)
	}
	if ok, err := VerifyPassword(h, goodPassword+"x"); ok || err != nil {
		t.Errorf("VerifyPassword(wrong) = %v, %v; want false, nil", ok, err)
	}
	h2, _ := HashPassword(goodPassword)
	if h == h2 {
		t.Error("two hashes of one password are equal: salt is not random")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=99999999,t=1,p=1$AAAA$AAAA", "$argon2id$v=19$m=19456,t=2,p=1$!!$AA"} {
		if _, err := VerifyPassword(bad, "x"); err == nil {
			t.Errorf("VerifyPassword(%q) accepted a malformed hash", bad)
		}
	}
}

func TestCheckPassword(t *testing.T) {
	cases := []struct {
		pw   string
		want []string
	}{
		{goodPassword, nil},
		{"Short1!", []string{PolicyTooShort}},
		{"alllowercaseletters", []string{PolicyCharClasses}},
		{"Alice-Secret-2024", []string{PolicyContainsName}},
		{"Tab\tinside-Password1", []string{PolicyControlCharacter}},
		{strings.Repeat("Aa1-", 70), []string{PolicyTooLong}},
	}
	for _, c := range cases {
		err := CheckPassword(c.pw, "alice", "alice@example.com")
		var pe *PolicyError
		if c.want == nil {
			if err != nil {
				t.Errorf("CheckPassword(%q) = %v; want nil", c.pw, err)
			}
			continue
		}
		if !errors.As(err, &pe) || !slices.Equal(pe.Violations, c.want) {
			t.Errorf("CheckPassword(%q) = %v; want violations %v", c.pw, err, c.want)
		}
	}
	for range 20 {
		pw, err := GeneratePassword("alice", "alice@example.com")
		if err != nil || CheckPassword(pw, "alice", "alice@example.com") != nil {
			t.Fatalf("GeneratePassword gave %q, %v", pw, err)
		}
	}
}

// forge signs arbitrary claims with the service's current key, to build
// tokens the service itself would never issue.
func (e *env) forge(t *testing.T, claims accessClaims) string {
	t.Helper()
	k, err := e.svc.keys.signer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(k.alg), claims)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAccessTokenAttacks(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	u := e.user(t, "alice", RoleAdmin)
	tok := e.login(t, "alice")
	p, err := e.svc.Authenticate(ctx, tok.AccessToken)
	if err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	if p.UserID != u.ID || p.SessionID != tok.SessionID || !p.Has(PermUserWrite) {
		t.Fatalf("principal = %+v; want alice with admin permissions in session %s", p, tok.SessionID)
	}
	k, _ := e.svc.keys.signer(ctx)
	now := e.clock.Now()
	base := func() accessClaims {
		return accessClaims{RegisteredClaims: jwt.RegisteredClaims{
			Issuer: "vmpulse", Subject: u.ID.String(), Audience: jwt.ClaimStrings{"vmpulse-api"},
			ExpiresAt: jwt.NewNumericDate(now.Add(10 * time.Minute)), NotBefore: jwt.NewNumericDate(now), IssuedAt: jwt.NewNumericDate(now),
		}, SessionID: tok.SessionID.String()}
	}
	if _, err := e.svc.Authenticate(ctx, e.forge(t, base())); err != nil {
		t.Fatalf("control: a well-formed forged-by-us token must pass, got %v", err)
	}

	attacks := map[string]func() string{
		"alg none": func() string {
			tk := jwt.NewWithClaims(jwt.SigningMethodNone, base())
			tk.Header["kid"] = k.kid
			s, _ := tk.SignedString(jwt.UnsafeAllowNoneSignatureType)
			return s
		},
		"HS256 keyed with the public key": func() string {
			der, _ := x509.MarshalPKIXPublicKey(k.public())
			tk := jwt.NewWithClaims(jwt.SigningMethodHS256, base())
			tk.Header["kid"] = k.kid
			s, _ := tk.SignedString(der)
			return s
		},
		"wrong key, right kid": func() string {
			_, other, _ := ed25519.GenerateKey(rand.Reader)
			tk := jwt.NewWithClaims(jwt.SigningMethodEdDSA, base())
			tk.Header["kid"] = k.kid
			s, _ := tk.SignedString(other)
			return s
		},
		"unknown kid": func() string {
			_, other, _ := ed25519.GenerateKey(rand.Reader)
			tk := jwt.NewWithClaims(jwt.SigningMethodEdDSA, base())
			tk.Header["kid"] = "feedfacefeedface"
			s, _ := tk.SignedString(other)
			return s
		},
		"tampered payload": func() string {
			parts := strings.Split(tok.AccessToken, ".")
			raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
			var m map[string]any
			_ = json.Unmarshal(raw, &m)
			m["exp"] = float64(now.Add(24 * time.Hour).Unix())
			raw, _ = json.Marshal(m)
			parts[1] = base64.RawURLEncoding.EncodeToString(raw)
			return strings.Join(parts, ".")
		},
		"expired": func() string {
			c := base()
			c.IssuedAt = jwt.NewNumericDate(now.Add(-20 * time.Minute))
			c.NotBefore = c.IssuedAt
			c.ExpiresAt = jwt.NewNumericDate(now.Add(-5 * time.Minute))
			return e.forge(t, c)
		},
		"not yet valid": func() string {
			c := base()
			c.NotBefore = jwt.NewNumericDate(now.Add(5 * time.Minute))
			return e.forge(t, c)
		},
		"no expiry": func() string {
			c := base()
			c.ExpiresAt = nil
			return e.forge(t, c)
		},
		"wrong issuer": func() string {
			c := base()
			c.Issuer = "someone-else"
			return e.forge(t, c)
		},
		"wrong audience": func() string {
			c := base()
			c.Audience = jwt.ClaimStrings{"grafana"}
			return e.forge(t, c)
		},
		"session of another user": func() string {
			c := base()
			c.Subject = uuid.NewString()
			return e.forge(t, c)
		},
		"garbage": func() string { return "not.a.jwt" },
	}
	for name, mk := range attacks {
		t.Run(name, func(t *testing.T) {
			if _, err := e.svc.Authenticate(ctx, mk()); !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("Authenticate = %v; want ErrUnauthenticated", err)
			}
		})
	}

	t.Run("expired by the clock", func(t *testing.T) {
		e.clock.Advance(16 * time.Minute)
		defer e.clock.Advance(-16 * time.Minute)
		if _, err := e.svc.Authenticate(ctx, tok.AccessToken); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("token after 16 minutes: %v; want ErrUnauthenticated", err)
		}
	})
	t.Run("logged-out session", func(t *testing.T) {
		if err := e.svc.RevokeSession(ctx, tok.SessionID, "logout"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Authenticate(ctx, tok.AccessToken); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("token of a logged-out session: %v; want ErrUnauthenticated", err)
		}
		if err := e.svc.RevokeSession(ctx, tok.SessionID, "logout"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second logout = %v; want ErrNotFound", err)
		}
	})
}

func TestAlgorithmIsPinned(t *testing.T) {
	// A service configured for ES256 refuses EdDSA tokens even when signed by
	// a key in the shared table.
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user(t, "alice", RoleAdmin)
	tok := e.login(t, "alice")
	es, err := New(e.pool, func() Config { c := Defaults(); c.Algorithm = "ES256"; return c }(), Options{Now: e.clock.Now, KeyEncryptionKey: testKEK})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := es.Authenticate(ctx, tok.AccessToken); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("ES256 service accepted an EdDSA token: %v", err)
	}
	tok2, _, err := es.Login(ctx, "alice", goodPassword, Client{IP: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := es.Authenticate(ctx, tok2.AccessToken); err != nil {
		t.Errorf("ES256 token refused by the ES256 service: %v", err)
	}
	if _, err := e.svc.Authenticate(ctx, tok2.AccessToken); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("EdDSA service accepted an ES256 token: %v", err)
	}
}

func TestKeyRotation(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.KeyRotation = time.Hour })
	ctx := context.Background()
	e.user(t, "alice", RoleAdmin)
	first := e.login(t, "alice") // makes the first key
	e.clock.Advance(59 * time.Minute)
	old := e.login(t, "alice")
	if kidOf(t, old.AccessToken) != kidOf(t, first.AccessToken) {
		t.Fatal("key rotated before key_rotation")
	}
	oldKid := kidOf(t, old.AccessToken)
	e.clock.Advance(2 * time.Minute)
	fresh := e.login(t, "alice")
	if kidOf(t, fresh.AccessToken) == oldKid {
		t.Fatal("signing key was not rotated after key_rotation")
	}
	for name, tok := range map[string]string{"old key": old.AccessToken, "new key": fresh.AccessToken} {
		if _, err := e.svc.Authenticate(ctx, tok); err != nil {
			t.Errorf("%s token refused after rotation: %v", name, err)
		}
	}
	// A second replica sharing the database verifies both.
	other, _ := New(e.pool, e.svc.Config(), Options{Now: e.clock.Now, KeyEncryptionKey: testKEK})
	if _, err := other.Authenticate(ctx, old.AccessToken); err != nil {
		t.Errorf("other replica refused a token: %v", err)
	}
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	return parsed.Header["kid"].(string)
}

func TestRefreshRotationAndReuse(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user(t, "alice", RoleViewer)
	t1 := e.login(t, "alice")
	t2, err := e.svc.Refresh(ctx, t1.RefreshToken)
	if err != nil {
		t.Fatalf("first refresh: %v", err)
	}
	if t2.RefreshToken == t1.RefreshToken || t2.SessionID != t1.SessionID {
		t.Fatalf("refresh did not rotate within the session: %+v", t2)
	}
	if _, err := e.svc.Authenticate(ctx, t2.AccessToken); err != nil {
		t.Fatalf("refreshed access token refused: %v", err)
	}
	if _, err := e.svc.Refresh(ctx, t1.RefreshToken); !errors.Is(err, ErrRefreshReused) {
		t.Fatalf("reusing the first refresh token = %v; want ErrRefreshReused", err)
	}
	if _, err := e.svc.Refresh(ctx, t2.RefreshToken); !errors.Is(err, ErrRefreshInvalid) {
		t.Errorf("the family's newest refresh token after reuse = %v; want ErrRefreshInvalid", err)
	}
	if _, err := e.svc.Authenticate(ctx, t2.AccessToken); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("access token of a revoked family = %v; want ErrUnauthenticated", err)
	}
	var reason string
	if err := e.pool.QueryRow(ctx, `SELECT revoke_reason FROM sessions WHERE id = $1`, t1.SessionID).Scan(&reason); err != nil || reason != "refresh_reuse" {
		t.Errorf("session revoke reason = %q, %v; want refresh_reuse", reason, err)
	}
	// Another session of the same user is untouched.
	t3 := e.login(t, "alice")
	t4, err := e.svc.Refresh(ctx, t3.RefreshToken)
	if err != nil {
		t.Fatalf("independent session's refresh: %v", err)
	}
	if _, err := e.svc.Refresh(ctx, "vmr_bogus"); !errors.Is(err, ErrRefreshInvalid) {
		t.Errorf("bogus refresh token = %v; want ErrRefreshInvalid", err)
	}
	e.clock.Advance(13 * time.Hour)
	if _, err := e.svc.Refresh(ctx, t4.RefreshToken); !errors.Is(err, ErrRefreshInvalid) {
		t.Errorf("expired refresh token = %v; want ErrRefreshInvalid", err)
	}
}

func TestLockout(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user(t, "alice", RoleViewer)
	c := Client{IP: "192.0.2.7"}
	for i := range 5 {
		_, at, err := e.svc.Login(ctx, "alice", "wrong-Password-1", c)
		if !errors.Is(err, ErrInvalidCredentials) || at.Reason != "bad_password" {
			t.Fatalf("failure %d: %v, %q", i+1, err, at.Reason)
		}
	}
	_, at, err := e.svc.Login(ctx, "alice", goodPassword, c)
	if !errors.Is(err, ErrInvalidCredentials) || at.Reason != "locked" {
		t.Fatalf("right password while locked = %v, %q; want ErrInvalidCredentials, locked", err, at.Reason)
	}
	e.clock.Advance(29 * time.Minute)
	if _, at, err := e.svc.Login(ctx, "alice", goodPassword, c); err == nil || at.Reason != "locked" {
		t.Fatalf("after 29 minutes = %v, %q; want still locked", err, at.Reason)
	}
	e.clock.Advance(2 * time.Minute)
	if _, at, err := e.svc.Login(ctx, "alice", goodPassword, c); err != nil {
		t.Fatalf("after the window: %v (%s)", err, at.Reason)
	}
	// Counting starts over after a success: four failures do not lock.
	for range 4 {
		_, _, _ = e.svc.Login(ctx, "alice", "wrong-Password-1", c)
	}
	if _, at, err := e.svc.Login(ctx, "alice", goodPassword, c); err != nil {
		t.Fatalf("after 4 failures: %v (%s)", err, at.Reason)
	}
	// An unknown user gets the same error as a wrong password.
	_, at, err = e.svc.Login(ctx, "nobody", goodPassword, c)
	if !errors.Is(err, ErrInvalidCredentials) || at.Reason != "unknown_user" {
		t.Errorf("unknown user = %v, %q", err, at.Reason)
	}
	// Login by email works.
	if _, _, err := e.svc.Login(ctx, "ALICE@example.com", goodPassword, c); err != nil {
		t.Errorf("login by email: %v", err)
	}
}

func TestLoginRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LoginRate, c.LoginBurst = 0.01, 3 })
	ctx := context.Background()
	for i := range 3 {
		if _, _, err := e.svc.Login(ctx, "nobody", "x", Client{IP: "198.51.100.1"}); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("attempt %d = %v; want ErrInvalidCredentials", i+1, err)
		}
	}
	_, at, err := e.svc.Login(ctx, "nobody", "x", Client{IP: "198.51.100.1"})
	var rl *RateLimitError
	if !errors.As(err, &rl) || rl.RetryAfter <= 0 || at.Reason != "rate_limited" {
		t.Fatalf("4th attempt = %v (%q); want *RateLimitError", err, at.Reason)
	}
	if _, _, err := e.svc.Login(ctx, "nobody", "x", Client{IP: "198.51.100.2"}); errors.As(err, &rl) {
		t.Errorf("another address was rate limited")
	}
	e.clock.Advance(2 * time.Minute)
	if _, _, err := e.svc.Login(ctx, "nobody", "x", Client{IP: "198.51.100.1"}); errors.As(err, &rl) {
		t.Errorf("still limited after the bucket refilled")
	}
}

func TestRolesInheritanceAndGuards(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	root := rootActor()
	admin := e.user(t, "root", RoleAdmin)
	parent, err := e.svc.CreateRole(ctx, root, RoleInput{Name: "parent", Parents: []string{RoleViewer}}, []string{PermAuditRead})
	if err != nil {
		t.Fatal(err)
	}
	child, err := e.svc.CreateRole(ctx, root, RoleInput{Name: "child", Parents: []string{"parent"}}, []string{PermSessionAdmin})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{PermAlertRead, PermAuditRead, PermMetricRead, PermSessionAdmin, PermVMRead}
	if !slices.Equal(child.Effective, want) {
		t.Errorf("child effective = %v; want %v", child.Effective, want)
	}
	bob := e.user(t, "bob", "child")
	perms, _ := e.svc.UserPermissions(ctx, bob.ID)
	if !slices.Equal(perms, want) {
		t.Errorf("bob's permissions = %v; want %v", perms, want)
	}
	// A role change applies to the very next request.
	tok := e.login(t, "bob")
	if _, err := e.svc.SetRolePermissions(ctx, root, parent.ID, nil); err != nil {
		t.Fatal(err)
	}
	p, err := e.svc.Authenticate(ctx, tok.AccessToken)
	if err != nil || p.Has(PermAuditRead) || !p.Has(PermVMRead) {
		t.Errorf("after removing audit:read from parent: %v, %v", p, err)
	}
	if _, err := e.svc.UpdateRole(ctx, root, parent.ID, RoleInput{Name: "parent", Parents: []string{"child"}}); !errors.Is(err, ErrRoleCycle) {
		t.Errorf("cycle = %v; want ErrRoleCycle", err)
	}
	adminRole := roleByName(t, e, RoleAdmin)
	if _, err := e.svc.SetRolePermissions(ctx, root, adminRole, nil); !errors.Is(err, ErrBuiltinRole) {
		t.Errorf("editing admin = %v; want ErrBuiltinRole", err)
	}
	if err := e.svc.DeleteRole(ctx, root, adminRole); !errors.Is(err, ErrBuiltinRole) {
		t.Errorf("deleting admin = %v; want ErrBuiltinRole", err)
	}
	if _, err := e.svc.CreateRole(ctx, root, RoleInput{Name: "child"}, nil); !isConflict(err) {
		t.Errorf("duplicate role = %v; want ConflictError", err)
	}
	if _, err := e.svc.CreateRole(ctx, root, RoleInput{Name: "x"}, []string{"vm:fly"}); err == nil {
		t.Error("unknown permission accepted")
	}
	// The last administrator is protected.
	if _, err := e.svc.SetUserRoles(ctx, root, admin.ID, []string{RoleViewer}); !errors.Is(err, ErrLastAdmin) {
		t.Errorf("demoting the last admin = %v; want ErrLastAdmin", err)
	}
	if err := e.svc.LockUser(ctx, root, admin.ID); !errors.Is(err, ErrLastAdmin) {
		t.Errorf("locking the last admin = %v; want ErrLastAdmin", err)
	}
	if err := e.svc.DeleteUser(ctx, e.actor(t, admin), admin.ID); !errors.Is(err, ErrSelf) {
		t.Errorf("deleting yourself = %v; want ErrSelf", err)
	}
	e.user(t, "root2", RoleAdmin)
	if _, err := e.svc.SetUserRoles(ctx, root, admin.ID, []string{RoleViewer}); err != nil {
		t.Errorf("demoting one of two admins: %v", err)
	}
	if _, err := e.svc.CreateUser(ctx, root, UserInput{Username: "BOB"}, goodPassword, nil); !isConflict(err) {
		t.Errorf("case-insensitive duplicate username = %v; want ConflictError", err)
	}
}

func isConflict(err error) bool {
	var c *ConflictError
	return errors.As(err, &c)
}

func roleByName(t *testing.T, e *env, name string) uuid.UUID {
	t.Helper()
	var id uuid.UUID
	if err := e.pool.QueryRow(context.Background(), `SELECT id FROM roles WHERE name = $1`, name).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestLockRevokesSessionsAndTokens(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	admin := e.user(t, "root", RoleAdmin)
	op := e.user(t, "olga", RoleOperator)
	tok := e.login(t, "olga")
	secret, _, err := e.svc.CreateAPIToken(ctx, e.actor(t, op), "ci", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.LockUser(ctx, e.actor(t, admin), op.ID); err != nil {
		t.Fatal(err)
	}
	for name, bearer := range map[string]string{"session": tok.AccessToken, "api token": secret} {
		if _, err := e.svc.Authenticate(ctx, bearer); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("%s of a locked user = %v; want ErrUnauthenticated", name, err)
		}
	}
	if _, at, err := e.svc.Login(ctx, "olga", goodPassword, Client{}); err == nil || at.Reason != "locked" {
		t.Errorf("login of a locked user = %v, %q", err, at.Reason)
	}
	if err := e.svc.UnlockUser(ctx, e.actor(t, admin), op.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authenticate(ctx, secret); err != nil {
		t.Errorf("api token after unlock: %v", err)
	}
	e.login(t, "olga")
}

func TestAPITokenScope(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	op := e.user(t, "olga", RoleOperator)
	e.user(t, "root", RoleAdmin) // role changes must leave an administrator
	if _, _, err := e.svc.CreateAPIToken(ctx, e.actor(t, op), "ci", []string{PermVMRead, PermUserRead}, nil); !errors.Is(err, ErrEscalation) {
		t.Errorf("token with a permission the owner lacks = %v; want ErrEscalation", err)
	}
	secret, info, err := e.svc.CreateAPIToken(ctx, e.actor(t, op), "ci", []string{PermVMRead, PermVMWrite}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, info.Prefix) || len(secret) < 40 {
		t.Errorf("secret %q does not start with prefix %q", secret, info.Prefix)
	}
	// The owner loses vm:write: so does the token, at its next use.
	if _, err := e.svc.SetUserRoles(ctx, rootActor(), op.ID, []string{RoleViewer}); err != nil {
		t.Fatal(err)
	}
	p, err := e.svc.Authenticate(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Permissions, []string{PermVMRead}) || p.IsSession() || p.TokenID != info.ID {
		t.Errorf("token principal = %+v; want exactly vm:read (the owner lost vm:write)", p)
	}
	var stored []byte
	if err := e.pool.QueryRow(ctx, `SELECT token_hash FROM api_tokens WHERE id = $1`, info.ID).Scan(&stored); err != nil || strings.Contains(string(stored), secret) {
		t.Errorf("token stored in clear or missing: %v", err)
	}
	other := e.user(t, "eve", RoleViewer)
	if err := e.svc.RevokeAPIToken(ctx, e.actor(t, other), info.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking someone else's token = %v; want ErrNotFound", err)
	}
	if err := e.svc.RevokeAPIToken(ctx, e.actor(t, op), info.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authenticate(ctx, secret); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("revoked token = %v; want ErrUnauthenticated", err)
	}
	exp := e.clock.Now().Add(time.Hour)
	secret2, _, _ := e.svc.CreateAPIToken(ctx, e.actor(t, op), "short", nil, &exp)
	e.clock.Advance(2 * time.Hour)
	if _, err := e.svc.Authenticate(ctx, secret2); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("expired token = %v; want ErrUnauthenticated", err)
	}
}

func TestCreateAdmin(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	pw, err := CreateAdminGenerated(ctx, e.pool, "admin", "admin@example.com")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := e.svc.Login(ctx, "admin", pw, Client{})
	if err != nil {
		t.Fatalf("login with the generated password: %v", err)
	}
	p, _ := e.svc.Authenticate(ctx, tok.AccessToken)
	if !slices.Equal(p.Permissions, AllPermissions()) && len(p.Permissions) != len(AllPermissions()) {
		t.Errorf("admin permissions = %v; want all", p.Permissions)
	}
	if err := CreateAdmin(ctx, e.pool, "admin", "", goodPassword); !isConflict(err) {
		t.Errorf("second admin with the same name = %v; want ConflictError", err)
	}
	if err := CreateAdmin(ctx, e.pool, "admin2", "", "weak"); err == nil {
		t.Error("weak admin password accepted")
	}
}

func TestPasswordChangeEndsOtherSessions(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	u := e.user(t, "alice", RoleViewer)
	keep := e.login(t, "alice")
	other := e.login(t, "alice")
	if err := e.svc.ChangePassword(ctx, u.ID, keep.SessionID, "wrong", "New-Passw0rd-Long"); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("wrong current password = %v", err)
	}
	if err := e.svc.ChangePassword(ctx, u.ID, keep.SessionID, goodPassword, "weak"); err == nil {
		t.Error("weak new password accepted")
	}
	if err := e.svc.ChangePassword(ctx, u.ID, keep.SessionID, goodPassword, "New-Passw0rd-Long"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authenticate(ctx, keep.AccessToken); err != nil {
		t.Errorf("current session ended: %v", err)
	}
	if _, err := e.svc.Authenticate(ctx, other.AccessToken); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("other session survived a password change: %v", err)
	}
	if _, _, err := e.svc.Login(ctx, "alice", "New-Passw0rd-Long", Client{}); err != nil {
		t.Errorf("login with the new password: %v", err)
	}
}
