package ingest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

func dialCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, err error, code protocol.ErrorCode, contains string) {
	t.Helper()
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		t.Fatalf("got %v (%T), want a protocol error with code %d", err, err, code)
	}
	if pe.Code != code || !strings.Contains(pe.Message, contains) {
		t.Fatalf("got code %d %q, want code %d containing %q", pe.Code, pe.Message, code, contains)
	}
}

func TestNoClientCertificateOnlyEnrolls(t *testing.T) {
	h := newHarness(t, "", nil)
	conn, err := ingesttest.DialRaw(dialCtx(t), h.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	b := ingesttest.MustBatch(protocol.KindSamples, ingesttest.Samples("vc-a", 1, 1, t0, 1), 1, 1)
	if err := protocol.WriteMessage(st, b); err != nil {
		t.Fatal(err)
	}
	m, err := protocol.ReadMessage(st)
	if err != nil {
		t.Fatalf("want an error message, got %v", err)
	}
	pe, ok := m.(*protocol.Error)
	if !ok || pe.Code != protocol.ErrCodeUnauthenticated {
		t.Fatalf("got %#v, want ErrCodeUnauthenticated", m)
	}
	if n := h.count(`SELECT count(*) FROM ingest_ledger`); n != 0 {
		t.Fatalf("ledger has %d rows", n)
	}
}

func TestCertificateFromAnotherCAIsRefused(t *testing.T) {
	h := newHarness(t, "", nil)
	real := h.enroll("dc1")
	// Same agent ID and site, but signed by a CA of the attacker's.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: real.AgentID, OrganizationalUnit: []string{"dc1"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	forged := &ingesttest.Identity{AgentID: real.AgentID, Site: "dc1", CAs: real.CAs,
		Cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
	_, err := ingesttest.Dial(dialCtx(t), h.addr, forged, 1)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("forged certificate: got %v, want a TLS certificate error", err)
	}
}

func TestRevokedAgentIsRefusedAndDisconnected(t *testing.T) {
	h := newHarness(t, "", nil)
	id := h.enroll("dc1")
	c := h.dial(id, 1)
	if err := h.st.RevokeAgent(store.AllSites(context.Background()), id.AgentID); err != nil {
		t.Fatal(err)
	}
	h.srv.Disconnect(id.AgentID)
	select {
	case <-c.QUIC.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("revoked agent's connection still open")
	}
	_, err := ingesttest.Dial(dialCtx(t), h.addr, id, 1)
	// TLS carries only the alert; the reason ("revoked at ...") is in the
	// aggregator's log.
	if err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Fatalf("revoked agent: got %v, want the handshake refused with a bad-certificate alert", err)
	}
}

func TestEnrollmentTokens(t *testing.T) {
	h := newHarness(t, "", nil)
	expired := h.token("dc1", -time.Minute)
	_, err := ingesttest.Enroll(dialCtx(t), h.addr, expired, "a")
	wantCode(t, err, protocol.ErrCodeBadToken, "expired")

	tok := h.token("dc1", time.Hour)
	if _, err := ingesttest.Enroll(dialCtx(t), h.addr, tok, "a"); err != nil {
		t.Fatalf("first use: %v", err)
	}
	_, err = ingesttest.Enroll(dialCtx(t), h.addr, tok, "b")
	wantCode(t, err, protocol.ErrCodeBadToken, "already used")

	// A well-formed token the aggregator never issued.
	unknown := protocol.FormatEnrollToken("nosuchsecret", h.ca.Cert.Raw)
	_, err = ingesttest.Enroll(dialCtx(t), h.addr, unknown, "c")
	wantCode(t, err, protocol.ErrCodeBadToken, "unknown")

	// A token pinning another CA: the agent refuses to talk to this server.
	other := protocol.FormatEnrollToken("x", []byte("another CA"))
	if _, err := ingesttest.Enroll(dialCtx(t), h.addr, other, "d"); err == nil || !strings.Contains(err.Error(), "pinned") {
		t.Fatalf("wrong CA pin: got %v", err)
	}
	if n := h.count(`SELECT count(*) FROM agents`); n != 1 {
		t.Fatalf("agents = %d, want 1", n)
	}
}

func TestAgentCannotWriteAnotherSitesSource(t *testing.T) {
	h := newHarness(t, "", nil)
	a := h.dial(h.enroll("dc1"), 1)
	b := h.dial(h.enroll("dc2"), 1)
	da, db := mustOpen(t, a), mustOpen(t, b)
	p := ingesttest.Samples("vc-shanghai", 2, 1, t0, 1)
	if ack := sendAndAck(t, da, ingesttest.MustBatch(protocol.KindSamples, p, 1, 1)); ack.Status != protocol.AckStored {
		t.Fatalf("owner's batch: %+v", ack)
	}
	ack := sendAndAck(t, db, ingesttest.MustBatch(protocol.KindSamples, p, 1, 1))
	if ack.Status != protocol.AckRejected || ack.Code != protocol.ErrCodeForbidden {
		t.Fatalf("other site's batch: %+v, want rejected/forbidden", ack)
	}
	inv := &protocol.Inventory{Source: "vc-shanghai", At: time.Now().UnixMilli(), Objects: []protocol.InventoryObject{{Kind: "vm", ID: "vm-1", Name: "x"}}}
	if ack := sendAndAck(t, db, ingesttest.MustBatch(protocol.KindInventory, inv, 1, 2)); ack.Status != protocol.AckRejected || ack.Code != protocol.ErrCodeForbidden {
		t.Fatalf("other site's inventory: %+v", ack)
	}
	if n := h.count(`SELECT count(*) FROM samples`); n != 2 {
		t.Fatalf("rows = %d, want 2 (only the owner's)", n)
	}
}

func TestHelloForAnotherAgentIsRefused(t *testing.T) {
	h := newHarness(t, "", nil)
	id := h.enroll("dc1")
	other := *id
	other.AgentID = "00000000-0000-0000-0000-000000000001"
	// The certificate is id's; the hello claims another agent.
	_, err := ingesttest.Dial(dialCtx(t), h.addr, &other, 1)
	wantCode(t, err, protocol.ErrCodeForbidden, "certificate is for")
}

// A revocation made elsewhere (the CLI, another replica: nothing calls
// Disconnect on this server) ends the connection at the agent's next
// heartbeat.
func TestRevokedElsewhereIsDisconnectedAtHeartbeat(t *testing.T) {
	h := newHarness(t, "", nil)
	id := h.enroll("dc1")
	c := h.dial(id, 1)
	if err := protocol.WriteMessage(c.Control, &protocol.Heartbeat{SpoolDepth: 1}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if c.QUIC.Context().Err() != nil {
		t.Fatal("connection closed before any revocation")
	}
	if err := h.st.RevokeAgent(store.AllSites(context.Background()), id.AgentID); err != nil {
		t.Fatal(err)
	}
	if err := protocol.WriteMessage(c.Control, &protocol.Heartbeat{SpoolDepth: 2}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.QUIC.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("revoked agent's connection still open after a heartbeat")
	}
	var appErr *quic.ApplicationError
	if err := context.Cause(c.QUIC.Context()); !errors.As(err, &appErr) || appErr.ErrorCode != quic.ApplicationErrorCode(protocol.ErrCodeUnauthenticated) {
		t.Fatalf("closed with %v, want the unauthenticated application error", err)
	}
	a, err := h.st.AgentByID(store.AllSites(context.Background()), id.AgentID)
	if err != nil || a.Connected {
		t.Fatalf("registry after revocation: connected=%v err=%v", a.Connected, err)
	}
}
