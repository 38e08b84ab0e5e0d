// Package pki is the aggregator's small certificate authority: it creates
// (once) and loads the CA and the server certificate kept in the data
// directory, and signs the client certificates of enrolling agents. An agent
// certificate carries the agent ID as its Common Name and the site as its
// Organizational Unit.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// AgentCertLifetime is how long an agent certificate is valid by default
// (ingest.Config.AgentCertLifetime, the agent_cert_lifetime option). Agents
// renew theirs at two thirds of it.
const AgentCertLifetime = 365 * 24 * time.Hour

// maxBackdate is how far before its issuance an agent certificate's
// validity starts, for aggregators sharing the CA whose clocks differ. It is
// at most a tenth of the lifetime: agents renew at two thirds of the
// validity period, counted from NotBefore, so a backdate comparable to a
// short lifetime would have them renew at once, again and again.
const maxBackdate = 5 * time.Minute

// CSRError reports a certificate request that does not parse or is not
// signed by the key it carries: the requester's fault, not the CA's.
type CSRError struct{ Err error }

// Error implements error.
func (e *CSRError) Error() string { return "pki: bad certificate request: " + e.Err.Error() }

// Unwrap returns the parse or signature error.
func (e *CSRError) Unwrap() error { return e.Err }

// CA is a loaded certificate authority plus the aggregator's server
// certificate.
type CA struct {
	Cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	Server tls.Certificate
}

// LoadOrCreate loads ca.crt/ca.key/server.crt/server.key from dir, creating
// whichever are missing (keys 0600). hosts are the server certificate's
// DNS names or IP addresses; a new server certificate is issued when the
// stored one does not cover them.
func LoadOrCreate(dir string, hosts []string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: data dir %s: %w", dir, err)
	}
	caCrt, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	ca := &CA{}
	if _, err := os.Stat(caCrt); errors.Is(err, os.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("pki: ca key: %w", err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          randSerial(),
			Subject:               pkix.Name{CommonName: "vmpulse aggregator CA"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().AddDate(10, 0, 0),
			IsCA:                  true,
			BasicConstraintsValid: true,
			MaxPathLenZero:        true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return nil, fmt.Errorf("pki: ca certificate: %w", err)
		}
		if err := writeKey(caKey, key); err != nil {
			return nil, err
		}
		if err := writePEM(caCrt, "CERTIFICATE", der, 0o644); err != nil {
			return nil, err
		}
	}
	var err error
	if ca.Cert, err = readCert(caCrt); err != nil {
		return nil, err
	}
	if ca.key, err = readKey(caKey); err != nil {
		return nil, err
	}
	srvCrt, srvKey := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if cert, err := tls.LoadX509KeyPair(srvCrt, srvKey); err == nil && covers(cert, hosts) {
		ca.Server = cert
		ca.Server.Certificate = append(ca.Server.Certificate, ca.Cert.Raw)
		return ca, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: "vmpulse aggregator"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: server certificate: %w", err)
	}
	if err := writeKey(srvKey, key); err != nil {
		return nil, err
	}
	if err := writePEM(srvCrt, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	ca.Server = tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key}
	return ca, nil
}

func covers(cert tls.Certificate, hosts []string) bool {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil || time.Now().Add(30*24*time.Hour).After(leaf.NotAfter) {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// StatelessResetKey derives a QUIC stateless-reset key from the CA key. It
// is the same across restarts and across replicas that share the CA, so a
// restarted aggregator resets its predecessor's connections at once instead
// of leaving agents to wait for an idle timeout.
func (ca *CA) StatelessResetKey() [32]byte {
	return ca.DeriveKey("vmpulse quic stateless reset key v1")
}

// DeriveKey returns a 32-byte secret for purpose, derived from the CA's
// private key (HMAC-SHA256 keyed with it). Every aggregator sharing the CA
// derives the same one; the database does not hold it.
func (ca *CA) DeriveKey(purpose string) [32]byte {
	mac := hmac.New(sha256.New, ca.key.D.Bytes())
	mac.Write([]byte(purpose))
	var k [32]byte
	copy(k[:], mac.Sum(nil))
	return k
}

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// SignAgent signs a PKCS#10 CSR (DER) into a client certificate for agentID
// of site, valid for lifetime (AgentCertLifetime if lifetime ≤ 0). The
// CSR's own subject is ignored: identity comes from enrollment, or from the
// certificate of the connection a renewal arrives on. A CSR that does not
// parse or whose signature is wrong yields a *CSRError.
func (ca *CA) SignAgent(csrDER []byte, agentID, site string, lifetime time.Duration) (der []byte, serial string, notAfter time.Time, err error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, "", time.Time{}, &CSRError{Err: err}
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, "", time.Time{}, &CSRError{Err: fmt.Errorf("signature: %w", err)}
	}
	if lifetime <= 0 {
		lifetime = AgentCertLifetime
	}
	now := time.Now()
	sn := randSerial()
	notAfter = now.Add(lifetime).UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: agentID, OrganizationalUnit: []string{site}},
		NotBefore:    now.Add(-min(maxBackdate, lifetime/10)),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, "", time.Time{}, fmt.Errorf("pki: sign agent certificate: %w", err)
	}
	return der, sn.Text(16), notAfter, nil
}

// Identity extracts the agent ID and site from a verified client certificate.
func Identity(cert *x509.Certificate) (agentID, site string, err error) {
	if cert.Subject.CommonName == "" || len(cert.Subject.OrganizationalUnit) != 1 {
		return "", "", errors.New("pki: certificate has no vmpulse agent identity")
	}
	return cert.Subject.CommonName, cert.Subject.OrganizationalUnit[0], nil
}

func randSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("pki: marshal key: %w", err)
	}
	return writePEM(path, "EC PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	return nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("pki: %s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	return c, nil
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("pki: %s: no PEM key", path)
	}
	k, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	return k, nil
}
