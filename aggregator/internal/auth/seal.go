package auth

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// sealedPrefix marks a private key encrypted by keySealer; a value without
// it is a PKCS #8 key stored before encryption at rest existed.
var sealedPrefix = []byte("vmpk1:")

// KeyEncryptionKeySize is the size of Options.KeyEncryptionKey.
const KeyEncryptionKeySize = 32

// keySealer encrypts JWT private keys for the database with AES-256-GCM
// under a key-encryption key the database does not hold, so that reading
// the database is not enough to mint tokens. The key ID and algorithm are
// the additional data: a sealed key moved to another row does not open.
type keySealer struct {
	aead cipher.AEAD
}

func newKeySealer(kek []byte) (*keySealer, error) {
	if len(kek) != KeyEncryptionKeySize {
		return nil, fmt.Errorf("auth: key-encryption key must be %d bytes, got %d", KeyEncryptionKeySize, len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("auth: key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("auth: key-encryption key: %w", err)
	}
	return &keySealer{aead: aead}, nil
}

func sealAD(kid, alg string) []byte { return []byte("vmpulse jwt key\x00" + kid + "\x00" + alg) }

// seal encrypts a PKCS #8 private key.
func (s *keySealer) seal(kid, alg string, der []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(sealedPrefix)+len(nonce)+len(der)+s.aead.Overhead())
	out = append(append(out, sealedPrefix...), nonce...)
	return s.aead.Seal(out, nonce, der, sealAD(kid, alg)), nil
}

// errWrongKEK means a sealed key does not open: another key-encryption
// key (another aggregator CA), or a tampered or moved value.
var errWrongKEK = errors.New("it does not decrypt with this aggregator's key-encryption key (derived from its CA key: do all replicas share data_dir/ca.key?) or was altered")

// open returns the PKCS #8 key in a stored value; legacy is true for a
// value stored unencrypted.
func (s *keySealer) open(kid, alg string, stored []byte) (der []byte, legacy bool, err error) {
	if !bytes.HasPrefix(stored, sealedPrefix) {
		return stored, true, nil
	}
	rest := stored[len(sealedPrefix):]
	n := s.aead.NonceSize()
	if len(rest) < n+s.aead.Overhead() {
		return nil, false, errWrongKEK
	}
	der, err = s.aead.Open(nil, rest[:n], rest[n:], sealAD(kid, alg))
	if err != nil {
		return nil, false, errWrongKEK
	}
	return der, false, nil
}
