package uplink

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// testCA is a CA that signs agent certificates as the aggregator does.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) sign(t *testing.T, pub *ecdsa.PublicKey, agentID, site string, serial int64) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: agentID, OrganizationalUnit: []string{site}},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func wantSerial(t *testing.T, dir string, serial int64) *Identity {
	t.Helper()
	id, err := LoadIdentity(dir)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if id.Cert.Leaf.SerialNumber.Int64() != serial {
		t.Fatalf("loaded certificate %d, want %d", id.Cert.Leaf.SerialNumber.Int64(), serial)
	}
	if id.AgentID != "agent-1" || id.Site != "dc1" {
		t.Fatalf("loaded %s of %s", id.AgentID, id.Site)
	}
	return id
}

// A directory enrolled before renewal existed (agent.key, agent.crt and an
// agent.json with the JSON of the old struct) loads, renews into agent.pem,
// and every state a crash can leave behind on the way loads either the old
// identity or the new one, whole.
func TestIdentityLayoutsAndCrashSafeRenewal(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	key1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key1DER, _ := x509.MarshalECPrivateKey(key1)
	writeFile(t, filepath.Join(dir, "agent.key"), pemOf("EC PRIVATE KEY", key1DER), 0o600)
	writeFile(t, filepath.Join(dir, "agent.crt"), pemOf("CERTIFICATE", ca.sign(t, &key1.PublicKey, "agent-1", "dc1", 1)), 0o644)
	writeFile(t, filepath.Join(dir, "ca.crt"), pemOf("CERTIFICATE", ca.cert.Raw), 0o644)
	oldMeta, _ := json.Marshal(struct {
		AgentID string `json:"agent_id"`
		Site    string `json:"site"`
		Cert    tls.Certificate
		CAs     *x509.CertPool
	}{AgentID: "agent-1", Site: "dc1"})
	writeFile(t, filepath.Join(dir, "agent.json"), oldMeta, 0o644)
	old := wantSerial(t, dir, 1)

	// Renewal refuses certificates that are not ours, and changes nothing.
	key2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other := newTestCA(t)
	for name, der := range map[string][]byte{
		"another CA":    other.sign(t, &key2.PublicKey, "agent-1", "dc1", 2),
		"another agent": ca.sign(t, &key2.PublicKey, "agent-2", "dc1", 2),
		"another site":  ca.sign(t, &key2.PublicKey, "agent-1", "dc2", 2),
		"another key":   ca.sign(t, &key1.PublicKey, "agent-1", "dc1", 2),
	} {
		if _, err := old.renewed(key2, der); err == nil {
			t.Errorf("%s: accepted", name)
		}
		wantSerial(t, dir, 1)
	}

	// A crash while agent.pem.tmp was being written: the tmp file is
	// partial (and has the wrong mode); the old identity loads.
	cert2 := ca.sign(t, &key2.PublicKey, "agent-1", "dc1", 2)
	pair2, err := encodePair(key2, cert2)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "agent.pem.tmp"), pair2[:len(pair2)/2], 0o644)
	wantSerial(t, dir, 1)

	// The renewal that follows succeeds despite the leftover.
	nid, err := old.renewed(key2, cert2)
	if err != nil {
		t.Fatal(err)
	}
	if nid.Cert.Leaf.SerialNumber.Int64() != 2 || nid.dir != dir {
		t.Fatalf("renewed identity: serial %d, dir %q", nid.Cert.Leaf.SerialNumber.Int64(), nid.dir)
	}
	wantSerial(t, dir, 2)
	for _, name := range []string{"agent.key", "agent.crt", "agent.pem.tmp"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", name, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "agent.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("agent.pem: %v, mode %v", err, fi.Mode())
	}

	// A crash after agent.pem was renamed into place but before the old
	// layout's files were removed: agent.pem wins.
	writeFile(t, filepath.Join(dir, "agent.key"), pemOf("EC PRIVATE KEY", key1DER), 0o600)
	writeFile(t, filepath.Join(dir, "agent.crt"), pemOf("CERTIFICATE", ca.sign(t, &key1.PublicKey, "agent-1", "dc1", 1)), 0o644)
	cur := wantSerial(t, dir, 2)

	// A renewal of the new layout, interrupted, then completed.
	key3, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert3 := ca.sign(t, &key3.PublicKey, "agent-1", "dc1", 3)
	pair3, _ := encodePair(key3, cert3)
	writeFile(t, filepath.Join(dir, "agent.pem.tmp"), pair3[:len(pair3)-10], 0o600)
	wantSerial(t, dir, 2)
	if _, err := cur.renewed(key3, cert3); err != nil {
		t.Fatal(err)
	}
	id := wantSerial(t, dir, 3)
	if !id.Cert.PrivateKey.(*ecdsa.PrivateKey).Equal(key3) {
		t.Fatal("loaded key is not the renewed one")
	}

	// A torn agent.pem cannot happen (it is only ever renamed into place),
	// but if it did, loading says so rather than using half of it.
	writeFile(t, filepath.Join(dir, "agent.pem"), pair3[:len(pair3)-10], 0o600)
	if _, err := LoadIdentity(dir); err == nil || !strings.Contains(err.Error(), "agent.pem") {
		t.Fatalf("torn agent.pem: %v", err)
	}
}

func TestRenewAtTwoThirds(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	id := &Identity{Cert: tls.Certificate{Leaf: &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(9 * time.Second)}}}
	if got, want := id.RenewAt(), nb.Add(6*time.Second); !got.Equal(want) {
		t.Fatalf("RenewAt = %s, want %s", got, want)
	}
	id.Cert.Leaf.NotAfter = nb.Add(365 * 24 * time.Hour)
	if got, want := id.RenewAt(), nb.Add(243*24*time.Hour+8*time.Hour); !got.Equal(want) {
		t.Fatalf("RenewAt = %s, want %s", got, want)
	}
}

func TestExpiredError(t *testing.T) {
	nb := time.Now().Add(-time.Hour)
	id := &Identity{dir: "/var/lib/vmpulse-agent/identity",
		Cert: tls.Certificate{Leaf: &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(30 * time.Minute)}}}
	alert := &quic.TransportError{Remote: true, ErrorCode: alertCertificateExpired}
	err := expiredError(id, fmt.Errorf("hello: %w", alert))
	want := "the agent certificate expired at " + id.Cert.Leaf.NotAfter.Format(time.RFC3339)
	if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "re-enrolled with a new enrollment token") ||
		!strings.Contains(err.Error(), id.dir) || !errors.Is(err, alert) {
		t.Fatalf("aggregator's alert: %v", err)
	}
	// Our clock alone only adds a hint to the error.
	err = expiredError(id, os.ErrDeadlineExceeded)
	if !strings.HasPrefix(err.Error(), os.ErrDeadlineExceeded.Error()) || !strings.Contains(err.Error(), want[len("the "):]) {
		t.Fatalf("expired by our clock: %v", err)
	}
	// A valid certificate: the error is left alone.
	id.Cert.Leaf.NotAfter = time.Now().Add(time.Hour)
	if err := expiredError(id, os.ErrDeadlineExceeded); err != os.ErrDeadlineExceeded {
		t.Fatalf("valid certificate: %v", err)
	}
}
