package ingest_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

func leafOf(t *testing.T, id *ingesttest.Identity) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(id.Cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func serialOf(t *testing.T, id *ingesttest.Identity) string {
	return leafOf(t, id).SerialNumber.Text(16)
}

// wantRefusedAtHandshake dials with id and expects the TLS handshake to be
// refused (the reason is in the aggregator's log, not in the alert).
func wantRefusedAtHandshake(t *testing.T, h *harness, id *ingesttest.Identity) {
	t.Helper()
	c, err := ingesttest.Dial(dialCtx(t), h.addr, id, 1)
	if err == nil {
		c.Close()
		t.Fatal("the handshake succeeded, want it refused")
	}
	if !strings.Contains(err.Error(), "bad certificate") {
		t.Fatalf("got %v, want the handshake refused with a bad-certificate alert", err)
	}
}

func sendOne(t *testing.T, c *ingesttest.Conn, epoch, seq uint64) {
	t.Helper()
	d := mustOpen(t, c)
	b := ingesttest.MustBatch(protocol.KindSamples, ingesttest.Samples("vc-a", 2, 1, t0+int64(seq)*20_000, seq), epoch, seq)
	if a := sendAndAck(t, d, b); a.Status != protocol.AckStored {
		t.Fatalf("batch %d: status %d code %s", seq, a.Status, a.Code)
	}
	d.Close()
}

func TestRenewalOverLiveConnection(t *testing.T) {
	h := newHarness(t, "", nil)
	old := h.enroll("dc1")
	oldSerial := serialOf(t, old)
	c := h.dial(old, 1)

	// The CSR's subject is ignored: the certificate is for the agent and
	// site of the connection.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "00000000-0000-0000-0000-000000000001", OrganizationalUnit: []string{"dc2"}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ingesttest.RenewCSR(dialCtx(t), c.QUIC, csr)
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	renewed := &ingesttest.Identity{AgentID: old.AgentID, Site: old.Site, CAs: old.CAs,
		Cert: tls.Certificate{Certificate: [][]byte{r.Cert}, PrivateKey: key}}
	leaf := leafOf(t, renewed)
	newSerial := leaf.SerialNumber.Text(16)
	if leaf.Subject.CommonName != old.AgentID || len(leaf.Subject.OrganizationalUnit) != 1 || leaf.Subject.OrganizationalUnit[0] != "dc1" {
		t.Fatalf("renewed certificate is for %q of %q, want %s of dc1", leaf.Subject.CommonName, leaf.Subject.OrganizationalUnit, old.AgentID)
	}
	if newSerial == oldSerial {
		t.Fatal("renewed certificate has the old serial")
	}
	if !bytes.Equal(r.CACert, h.ca.Cert.Raw) {
		t.Fatal("renew response names another CA")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: h.ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("renewed certificate: %v", err)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		t.Fatal("renewed certificate is not for the CSR's key")
	}
	if n := h.count(`SELECT count(*) FROM agents WHERE id = $1 AND cert_serial = $2 AND prev_cert_serial = $3`, old.AgentID, newSerial, oldSerial); n != 1 {
		t.Fatal("registry does not hold the new certificate as current and the old one as previous")
	}

	// The connection the renewal happened on keeps carrying data.
	sendOne(t, c, 1, 1)

	// Until the agent says hello with the new certificate, the old one is
	// still accepted (an agent that crashed before saving the new one).
	c2 := h.dial(old, 1)
	sendOne(t, c2, 1, 2)
	if n := h.count(`SELECT count(*) FROM agents WHERE id = $1 AND prev_cert_serial = $2`, old.AgentID, oldSerial); n != 1 {
		t.Fatal("a hello with the previous certificate retired it")
	}

	// The hello with the new certificate retires the old one.
	c3 := h.dial(renewed, 1)
	sendOne(t, c3, 1, 3)
	if n := h.count(`SELECT count(*) FROM agents WHERE id = $1 AND cert_serial = $2 AND prev_cert_serial IS NULL`, old.AgentID, newSerial); n != 1 {
		t.Fatal("previous certificate not retired after a hello with the new one")
	}
	wantRefusedAtHandshake(t, h, old)
	// The new certificate still works.
	c4 := h.dial(renewed, 1)
	sendOne(t, c4, 1, 4)
	if n := h.count(`SELECT count(*) FROM ingest_ledger WHERE agent_id = $1`, old.AgentID); n != 4 {
		t.Fatalf("ledger has %d batches, want 4", n)
	}
}

func TestRenewalWithSupersededCertificateIsRefused(t *testing.T) {
	h := newHarness(t, "", nil)
	a := h.enroll("dc1")
	c := h.dial(a, 1)
	b, err := ingesttest.Renew(dialCtx(t), c.QUIC, a)
	if err != nil {
		t.Fatalf("first renewal: %v", err)
	}
	// The agent stopped before saving b: it still holds a, and renews again
	// with it. That is allowed, and supersedes b.
	cc, err := ingesttest.Renew(dialCtx(t), c.QUIC, a)
	if err != nil {
		t.Fatalf("renewal with the previous certificate: %v", err)
	}
	if n := h.count(`SELECT count(*) FROM agents WHERE cert_serial = $1 AND prev_cert_serial = $2`, serialOf(t, cc), serialOf(t, a)); n != 1 {
		t.Fatal("registry: want the latest certificate current and the presented one previous")
	}
	wantRefusedAtHandshake(t, h, b)

	// The registry moves on under this connection: another aggregator
	// replica saw a hello with the current certificate. a is now neither
	// current nor previous, and may not renew.
	if err := h.st.AgentConnected(context.Background(), a.AgentID, "test", "127.0.0.1:1", 1, serialOf(t, cc)); err != nil {
		t.Fatal(err)
	}
	_, err = ingesttest.Renew(dialCtx(t), c.QUIC, a)
	wantCode(t, err, protocol.ErrCodeUnauthenticated, "superseded")
	if n := h.count(`SELECT count(*) FROM agents WHERE cert_serial = $1 AND prev_cert_serial IS NULL`, serialOf(t, cc)); n != 1 {
		t.Fatal("a refused renewal changed the registry")
	}
}

func TestRevokedAgentCannotRenew(t *testing.T) {
	h := newHarness(t, "", nil)
	id := h.enroll("dc1")
	c := h.dial(id, 1)
	// Revoked in the registry; the live connection was not (yet) closed.
	if err := h.st.RevokeAgent(store.AllSites(context.Background()), id.AgentID); err != nil {
		t.Fatal(err)
	}
	_, err := ingesttest.Renew(dialCtx(t), c.QUIC, id)
	wantCode(t, err, protocol.ErrCodeUnauthenticated, "revoked")
	if n := h.count(`SELECT count(*) FROM agents WHERE cert_serial = $1 AND prev_cert_serial IS NULL`, serialOf(t, id)); n != 1 {
		t.Fatal("a revoked agent's renewal changed the registry")
	}
}

func TestRenewRequestWithBadCSR(t *testing.T) {
	h := newHarness(t, "", nil)
	id := h.enroll("dc1")
	c := h.dial(id, 1)

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	badSig := bytes.Clone(csr)
	badSig[len(badSig)-1] ^= 0xff
	for name, csr := range map[string][]byte{"garbage": []byte("garbage"), "bad signature": badSig} {
		_, err := ingesttest.RenewCSR(dialCtx(t), c.QUIC, csr)
		if err == nil {
			t.Fatalf("%s: renewed", name)
		}
		wantCode(t, err, protocol.ErrCodeMalformed, "bad certificate request")
	}

	// A request without a CSR fails to decode.
	st, err := c.QUIC.OpenStreamSync(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.WriteFrame(st, protocol.MsgRenewRequest, []byte(`{"csr":null}`)); err != nil {
		t.Fatal(err)
	}
	m, err := protocol.ReadMessage(st)
	if err != nil {
		t.Fatalf("want an error message, got %v", err)
	}
	if pe, ok := m.(*protocol.Error); !ok || pe.Code != protocol.ErrCodeMalformed || !strings.Contains(pe.Message, "missing csr") {
		t.Fatalf("got %#v, want ErrCodeMalformed for the missing csr", m)
	}
	st.CancelRead(0)
	st.Close()

	// Nothing changed, and the connection still works.
	if n := h.count(`SELECT count(*) FROM agents WHERE cert_serial = $1 AND prev_cert_serial IS NULL`, serialOf(t, id)); n != 1 {
		t.Fatal("a refused renewal changed the registry")
	}
	sendOne(t, c, 1, 1)
}

func TestAgentCertLifetimeIsConfigurable(t *testing.T) {
	h := newHarness(t, "", nil)
	h.stop()
	const lifetime = time.Minute
	h.cfg.AgentCertLifetime = lifetime
	h.start(nil)
	check := func(what string, leaf *x509.Certificate) {
		t.Helper()
		now := time.Now()
		if d := leaf.NotAfter.Sub(now); d < lifetime-2*time.Second || d > lifetime+time.Second {
			t.Errorf("%s: not_after in %s, want %s", what, d, lifetime)
		}
		// Backdated by at most a tenth of the lifetime (plus the second the
		// encoding truncates), so that renewal at two thirds of the
		// validity lies ahead.
		if d := now.Sub(leaf.NotBefore); d < 0 || d > lifetime/10+2*time.Second {
			t.Errorf("%s: not_before %s ago, want at most %s", what, d, lifetime/10)
		}
		if renewAt := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3); !renewAt.After(now) {
			t.Errorf("%s: renewal time %s already past", what, renewAt)
		}
	}
	id := h.enroll("dc1")
	check("enrolled", leafOf(t, id))
	c := h.dial(id, 1)
	renewed, err := ingesttest.Renew(dialCtx(t), c.QUIC, id)
	if err != nil {
		t.Fatal(err)
	}
	check("renewed", leafOf(t, renewed))
}
