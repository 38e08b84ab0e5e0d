package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"
	"time"
)

func TestSignAgent(t *testing.T) {
	ca, err := LoadOrCreate(t.TempDir(), []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "chosen-by-the-agent", OrganizationalUnit: []string{"elsewhere"}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		lifetime, want, maxBackdate time.Duration
	}{
		{0, AgentCertLifetime, maxBackdate},
		{90 * 24 * time.Hour, 90 * 24 * time.Hour, maxBackdate},
		{9 * time.Second, 9 * time.Second, 900 * time.Millisecond},
	} {
		now := time.Now()
		der, serial, notAfter, err := ca.SignAgent(csr, "agent-1", "dc1", tt.lifetime)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if c.Subject.CommonName != "agent-1" || len(c.Subject.OrganizationalUnit) != 1 || c.Subject.OrganizationalUnit[0] != "dc1" {
			t.Errorf("subject %v: the CSR's subject must be ignored", c.Subject)
		}
		if id, site, err := Identity(c); err != nil || id != "agent-1" || site != "dc1" {
			t.Errorf("Identity = %s, %s, %v", id, site, err)
		}
		if c.SerialNumber.Text(16) != serial || !c.NotAfter.Equal(notAfter) {
			t.Errorf("returned serial %s / not_after %s, certificate has %s / %s", serial, notAfter, c.SerialNumber.Text(16), c.NotAfter)
		}
		if d := notAfter.Sub(now); d < tt.want-time.Second || d > tt.want {
			t.Errorf("lifetime %s: not_after in %s, want %s", tt.lifetime, d, tt.want)
		}
		// x509 keeps whole seconds: allow one for the truncation.
		if d := now.Sub(c.NotBefore); d < tt.maxBackdate-time.Second || d > tt.maxBackdate+time.Second {
			t.Errorf("lifetime %s: not_before %s ago, want about %s", tt.lifetime, d, tt.maxBackdate)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("verify: %v", err)
		}
	}

	badSig := bytes.Clone(csr)
	badSig[len(badSig)-1] ^= 0xff
	for name, b := range map[string][]byte{"garbage": []byte("garbage"), "empty": nil, "bad signature": badSig} {
		_, _, _, err := ca.SignAgent(b, "agent-1", "dc1", 0)
		var ce *CSRError
		if !errors.As(err, &ce) {
			t.Errorf("%s: got %v, want a *CSRError", name, err)
		}
	}
}

// Derived keys are what lets replicas share secrets through the CA key
// alone: stable across loads of the same CA, distinct per purpose and
// per CA.
func TestDeriveKey(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreate(dir, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreate(dir, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := LoadOrCreate(t.TempDir(), []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if a.DeriveKey("x") != again.DeriveKey("x") {
		t.Error("the same CA derives different keys after a reload")
	}
	if a.DeriveKey("x") == a.DeriveKey("y") {
		t.Error("two purposes derive the same key")
	}
	if a.DeriveKey("x") == other.DeriveKey("x") {
		t.Error("two CAs derive the same key")
	}
	if a.StatelessResetKey() != a.DeriveKey("vmpulse quic stateless reset key v1") {
		t.Error("the stateless reset key changed: running agents' connections would not be reset by a restarted aggregator")
	}
}
