package auth

import (
	"bytes"
	"context"
	"crypto/x509"
	"strings"
	"testing"
)

// The signing keys in the database are sealed: a copy of the database does
// not hold a usable private key, another key-encryption key cannot load
// them, a sealed key moved to another row does not open, and keys stored
// in the clear by an older aggregator are sealed in place and keep working.
func TestJWTKeysEncryptedAtRest(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user(t, "alice", RoleAdmin)
	tok := e.login(t, "alice") // makes the first key
	kid := kidOf(t, tok.AccessToken)

	var stored []byte
	if err := e.pool.QueryRow(ctx, `SELECT private_key FROM jwt_keys WHERE kid = $1`, kid).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(stored, sealedPrefix) {
		t.Fatalf("stored key does not carry the sealed prefix: %q…", stored[:min(len(stored), 16)])
	}
	if _, err := x509.ParsePKCS8PrivateKey(stored); err == nil {
		t.Fatal("the stored value parses as a private key")
	}
	e.svc.keys.mu.RLock()
	der, err := x509.MarshalPKCS8PrivateKey(e.svc.keys.keys[kid].priv)
	e.svc.keys.mu.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stored, der[len(der)-32:]) {
		t.Fatal("the stored value contains the private key's bytes")
	}

	// Another key-encryption key (an aggregator with another CA) cannot
	// use the keys: their tokens are refused, and it makes a key of its
	// own, so logging in works.
	other, err := New(e.pool, e.svc.Config(), Options{Now: e.clock.Now, KeyEncryptionKey: bytes.Repeat([]byte{7}, KeyEncryptionKeySize)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Authenticate(ctx, tok.AccessToken); err == nil {
		t.Fatal("a service with another key-encryption key accepted the token")
	}
	otherTok, _, err := other.Login(ctx, "alice", goodPassword, Client{IP: "192.0.2.9"})
	if err != nil {
		t.Fatalf("login with another key-encryption key: %v", err)
	}
	if kidOf(t, otherTok.AccessToken) == kid {
		t.Fatal("signed with a key it cannot have opened")
	}
	if _, err := other.Authenticate(ctx, otherTok.AccessToken); err != nil {
		t.Fatalf("its own token refused: %v", err)
	}
	if _, err := e.svc.Authenticate(ctx, otherTok.AccessToken); err == nil {
		t.Fatal("the first service accepted a token signed with a key sealed under another key-encryption key")
	}
	if _, err := e.pool.Exec(ctx, `DELETE FROM jwt_keys WHERE kid <> $1`, kid); err != nil {
		t.Fatal(err)
	}

	// A sealed key copied under another kid does not open.
	if _, err := e.pool.Exec(ctx, `INSERT INTO jwt_keys (kid, alg, private_key, created_at, retire_at) SELECT 'moved', alg, private_key, created_at, retire_at FROM jwt_keys WHERE kid = $1`, kid); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.keys.load(ctx); err != nil {
		t.Fatal(err)
	}
	e.svc.keys.mu.RLock()
	_, movedLoaded := e.svc.keys.keys["moved"]
	e.svc.keys.mu.RUnlock()
	if movedLoaded {
		t.Fatal("a sealed key moved to another kid was opened")
	}
	if _, err := e.pool.Exec(ctx, `DELETE FROM jwt_keys WHERE kid = 'moved'`); err != nil {
		t.Fatal(err)
	}

	// A key stored in the clear (as before this change) is sealed on load
	// and its tokens still verify.
	if _, err := e.pool.Exec(ctx, `UPDATE jwt_keys SET private_key = $2 WHERE kid = $1`, kid, der); err != nil {
		t.Fatal(err)
	}
	fresh, err := New(e.pool, e.svc.Config(), Options{Now: e.clock.Now, KeyEncryptionKey: testKEK})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Authenticate(ctx, tok.AccessToken); err != nil {
		t.Fatalf("token signed by a legacy key refused: %v", err)
	}
	if err := e.pool.QueryRow(ctx, `SELECT private_key FROM jwt_keys WHERE kid = $1`, kid).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(stored, sealedPrefix) {
		t.Fatal("the legacy key was not sealed in place")
	}
}

func TestKeyEncryptionKeyRequired(t *testing.T) {
	for _, kek := range [][]byte{nil, []byte("short")} {
		if _, err := New(nil, Defaults(), Options{KeyEncryptionKey: kek}); err == nil || !strings.Contains(err.Error(), "key-encryption key must be 32 bytes") {
			t.Errorf("KeyEncryptionKey %q: err %v", kek, err)
		}
	}
}
