package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// signingKey is one JWT key. Private keys are stored in the database as
// PKCS #8, sealed with the key-encryption key (see keySealer), so every
// aggregator replica signs and verifies with the same set while a copy of
// the database alone cannot mint tokens.
type signingKey struct {
	kid     string
	alg     string
	priv    crypto.Signer
	created time.Time
	retire  time.Time
}

func (k *signingKey) public() crypto.PublicKey { return k.priv.Public() }

// keyRing caches the signing keys and rotates them. Verification of an
// unknown kid reloads from the database (at most once a second), so a key
// made by another replica is picked up at once.
type keyRing struct {
	pool     *pgxpool.Pool
	sealer   *keySealer
	log      *slog.Logger
	alg      string
	rotation time.Duration
	keep     time.Duration // how long after its signing period a key still verifies
	now      func() time.Time

	warned sync.Map // kid → true: keys that do not open, logged once

	mu       sync.RWMutex
	keys     map[string]*signingKey
	current  *signingKey
	lastLoad time.Time
}

func newKeyRing(pool *pgxpool.Pool, sealer *keySealer, cfg Config, now func() time.Time, log *slog.Logger) *keyRing {
	return &keyRing{
		pool:     pool,
		sealer:   sealer,
		log:      log,
		alg:      cfg.Algorithm,
		rotation: cfg.KeyRotation,
		keep:     cfg.AccessTTL + time.Minute,
		now:      now,
		keys:     make(map[string]*signingKey),
	}
}

// load replaces the cache with the database's unretired keys.
func (kr *keyRing) load(ctx context.Context) error {
	now := kr.now()
	rows, err := kr.pool.Query(ctx, `SELECT kid, alg, private_key, created_at, retire_at FROM jwt_keys WHERE retire_at > $1 ORDER BY created_at`, now)
	if err != nil {
		return fmt.Errorf("auth: load jwt keys: %w", err)
	}
	keys := make(map[string]*signingKey)
	var current *signingKey
	var legacy []*signingKey // stored unencrypted: sealed below
	legacyDER := map[string][]byte{}
	for rows.Next() {
		var k signingKey
		var stored []byte
		if err := rows.Scan(&k.kid, &k.alg, &stored, &k.created, &k.retire); err != nil {
			rows.Close()
			return fmt.Errorf("auth: load jwt keys: %w", err)
		}
		der, plain, err := kr.sealer.open(k.kid, k.alg, stored)
		if err != nil {
			// Sealed under another key-encryption key (another CA) or
			// altered: unusable here. Its tokens fail verification and a
			// key this aggregator can open is made (see rotate).
			kr.warnOnce(k.kid, err)
			continue
		}
		priv, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			rows.Close()
			return fmt.Errorf("auth: load jwt key %s: %w", k.kid, err)
		}
		signer, ok := priv.(crypto.Signer)
		if !ok {
			rows.Close()
			return fmt.Errorf("auth: load jwt key %s: not a signing key", k.kid)
		}
		k.priv = signer
		keys[k.kid] = &k
		if plain {
			legacy = append(legacy, &k)
			legacyDER[k.kid] = der
		}
		if k.alg == kr.alg && !k.created.After(now) && k.created.Add(kr.rotation).After(now) {
			current = &k
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("auth: load jwt keys: %w", err)
	}
	for _, k := range legacy {
		// Keys written before encryption at rest: seal them in place.
		sealed, err := kr.sealer.seal(k.kid, k.alg, legacyDER[k.kid])
		if err == nil {
			_, err = kr.pool.Exec(ctx, `UPDATE jwt_keys SET private_key = $2 WHERE kid = $1 AND private_key = $3`, k.kid, sealed, legacyDER[k.kid])
		}
		if err != nil {
			return fmt.Errorf("auth: encrypt stored jwt key %s: %w", k.kid, err)
		}
		kr.log.Info("auth: encrypted a JWT signing key stored in the clear", "kid", k.kid)
	}
	kr.mu.Lock()
	kr.keys, kr.current, kr.lastLoad = keys, current, time.Now()
	kr.mu.Unlock()
	return nil
}

func (kr *keyRing) warnOnce(kid string, err error) {
	if _, seen := kr.warned.LoadOrStore(kid, true); !seen {
		kr.log.Warn("auth: a JWT signing key in the database cannot be used; its tokens are refused", "kid", kid, "err", err)
	}
}

// signer returns the key to sign with, creating one if the newest is due
// for rotation.
func (kr *keyRing) signer(ctx context.Context) (*signingKey, error) {
	now := kr.now()
	kr.mu.RLock()
	cur := kr.current
	kr.mu.RUnlock()
	if cur != nil && cur.created.Add(kr.rotation).After(now) {
		return cur, nil
	}
	if err := kr.load(ctx); err != nil {
		return nil, err
	}
	kr.mu.RLock()
	cur = kr.current
	kr.mu.RUnlock()
	if cur != nil {
		return cur, nil
	}
	return kr.rotate(ctx)
}

// rotate makes a new signing key unless another replica just did.
func (kr *keyRing) rotate(ctx context.Context) (*signingKey, error) {
	now := kr.now()
	err := pgx.BeginFunc(ctx, kr.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('vmpulse.auth.jwt_keys'))`); err != nil {
			return err
		}
		// Another replica may have just made a key; only one this
		// aggregator can open counts.
		rows, err := tx.Query(ctx, `SELECT kid, private_key FROM jwt_keys WHERE alg = $1 AND created_at <= $2 AND created_at > $3`,
			kr.alg, now, now.Add(-kr.rotation))
		if err != nil {
			return err
		}
		fresh := false
		for rows.Next() {
			var kid string
			var stored []byte
			if err := rows.Scan(&kid, &stored); err != nil {
				rows.Close()
				return err
			}
			if _, _, err := kr.sealer.open(kid, kr.alg, stored); err == nil {
				fresh = true
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if fresh {
			return nil
		}
		k, der, err := generateKey(kr.alg, now)
		if err != nil {
			return err
		}
		retire := now.Add(kr.rotation + kr.keep)
		sealed, err := kr.sealer.seal(k.kid, k.alg, der)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO jwt_keys (kid, alg, private_key, created_at, retire_at) VALUES ($1, $2, $3, $4, $5)`,
			k.kid, k.alg, sealed, now, retire)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("auth: rotate jwt key: %w", err)
	}
	if err := kr.load(ctx); err != nil {
		return nil, err
	}
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	if kr.current == nil {
		return nil, fmt.Errorf("auth: rotate jwt key: no usable key after rotation")
	}
	return kr.current, nil
}

// verifier returns the key with the given kid, reloading the cache once if
// it is unknown.
func (kr *keyRing) verifier(ctx context.Context, kid string) (*signingKey, error) {
	kr.mu.RLock()
	k := kr.keys[kid]
	stale := time.Since(kr.lastLoad) > time.Second
	kr.mu.RUnlock()
	if k == nil && stale {
		if err := kr.load(ctx); err != nil {
			return nil, err
		}
		kr.mu.RLock()
		k = kr.keys[kid]
		kr.mu.RUnlock()
	}
	if k == nil || !k.retire.After(kr.now()) {
		return nil, fmt.Errorf("auth: unknown or retired key id %q", kid)
	}
	return k, nil
}

func generateKey(alg string, now time.Time) (*signingKey, []byte, error) {
	var signer crypto.Signer
	switch alg {
	case "EdDSA":
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		signer = priv
	case "ES256":
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		signer = priv
	default:
		return nil, nil, fmt.Errorf("unsupported algorithm %q", alg)
	}
	der, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, nil, err
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, nil, err
	}
	return &signingKey{kid: hex.EncodeToString(id[:]), alg: alg, priv: signer, created: now}, der, nil
}
