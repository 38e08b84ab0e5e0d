package protocol

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// Enrollment tokens have the form
//
//	vmp1.<secret>.<ca-sha256-hex>
//
// The secret is the single-use credential the aggregator stores hashed. The
// CA hash pins the aggregator's CA certificate for the one connection an
// agent makes before it has a certificate of its own (as kubeadm's
// discovery-token-ca-cert-hash does), so enrollment needs no other out-of-band
// trust.
const enrollTokenPrefix = "vmp1."

// FormatEnrollToken builds an enrollment token from its secret and the DER
// bytes of the aggregator's CA certificate.
func FormatEnrollToken(secret string, caDER []byte) string {
	h := sha256.Sum256(caDER)
	return enrollTokenPrefix + secret + "." + hex.EncodeToString(h[:])
}

// ParseEnrollToken splits a token into its secret and pinned CA hash.
func ParseEnrollToken(tok string) (secret string, caHash [32]byte, err error) {
	tok = strings.TrimSpace(tok)
	if !strings.HasPrefix(tok, enrollTokenPrefix) {
		return "", caHash, fmt.Errorf("enroll token: missing %q prefix", enrollTokenPrefix)
	}
	rest := tok[len(enrollTokenPrefix):]
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 || len(rest)-i-1 != 64 {
		return "", caHash, fmt.Errorf("enroll token: want vmp1.<secret>.<64 hex digits>")
	}
	h, err := hex.DecodeString(rest[i+1:])
	if err != nil {
		return "", caHash, fmt.Errorf("enroll token: ca hash: %w", err)
	}
	copy(caHash[:], h)
	return rest[:i], caHash, nil
}

// VerifyPinnedCA checks, during enrollment, that the server's chain ends in
// (or contains) a certificate whose SHA-256 matches the token's pin, and that
// the leaf is signed by it. Use it as tls.Config.VerifyPeerCertificate with
// InsecureSkipVerify set, for the enrollment connection only.
func VerifyPinnedCA(caHash [32]byte) func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	return func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		if len(rawCerts) == 0 {
			return fmt.Errorf("enroll: server sent no certificate")
		}
		leaf, err := x509.ParseCertificate(rawCerts[0])
		if err != nil {
			return fmt.Errorf("enroll: server certificate: %w", err)
		}
		for _, raw := range rawCerts[1:] {
			h := sha256.Sum256(raw)
			if subtle.ConstantTimeCompare(h[:], caHash[:]) != 1 {
				continue
			}
			ca, err := x509.ParseCertificate(raw)
			if err != nil {
				return fmt.Errorf("enroll: ca certificate: %w", err)
			}
			if err := leaf.CheckSignatureFrom(ca); err != nil {
				return fmt.Errorf("enroll: server certificate not signed by the pinned CA: %w", err)
			}
			return nil
		}
		return fmt.Errorf("enroll: server did not present the CA pinned by the token (wrong aggregator?)")
	}
}
