package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
	"github.com/vmpulse/vmpulse/protocol"
)

// serials is a Signer that issues "s1", "s2", ... and records what it was
// asked for.
type serials struct {
	n         int
	id, site  string
	notAfter  time.Time
	failNext  bool
	callCount int
}

func (s *serials) sign(id, site string) (string, time.Time, error) {
	s.callCount++
	if s.failNext {
		s.failNext = false
		return "", time.Time{}, errors.New("ca on fire")
	}
	s.n++
	s.id, s.site = id, site
	s.notAfter = time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	return fmt.Sprintf("s%d", s.n), s.notAfter, nil
}

func wantReject(t *testing.T, err error, code protocol.ErrorCode, contains string) {
	t.Helper()
	var rej *store.RejectError
	if !errors.As(err, &rej) || rej.Code != code || !strings.Contains(rej.Msg, contains) {
		t.Fatalf("got %v, want a *RejectError with code %s containing %q", err, code, contains)
	}
}

func TestRenewAgentCert(t *testing.T) {
	ctx := store.AllSites(context.Background())
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.EnsureSite(ctx, "dc1", ""); err != nil {
		t.Fatal(err)
	}
	secret, _, err := st.CreateEnrollmentToken(ctx, "dc1", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	sg := &serials{}
	a, err := st.Enroll(ctx, secret, "agent", "1", sg.sign)
	if err != nil {
		t.Fatal(err)
	}
	check := func(cur, prev string) {
		t.Helper()
		got, err := st.AgentByID(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.CertSerial != cur || got.PrevCertSerial != prev {
			t.Fatalf("cert_serial %q, prev_cert_serial %q; want %q, %q", got.CertSerial, got.PrevCertSerial, cur, prev)
		}
	}
	check("s1", "")

	// Renewed with the current certificate: it becomes the previous one.
	r, err := st.RenewAgentCert(ctx, a.ID, "s1", sg.sign)
	if err != nil {
		t.Fatal(err)
	}
	if r.CertSerial != "s2" || r.PrevCertSerial != "s1" || !r.CertNotAfter.Equal(sg.notAfter) || sg.id != a.ID || sg.site != "dc1" {
		t.Fatalf("renewal returned %+v, signed for %s/%s", r, sg.id, sg.site)
	}
	check("s2", "s1")

	// The agent stopped before saving s2 and renews again with s1: s1 stays
	// the previous certificate, s2 is superseded.
	if _, err := st.RenewAgentCert(ctx, a.ID, "s1", sg.sign); err != nil {
		t.Fatal(err)
	}
	check("s3", "s1")
	wantReject(t, nonNil(st.RenewAgentCert(ctx, a.ID, "s2", sg.sign)), protocol.ErrCodeUnauthenticated, "superseded")
	wantReject(t, nonNil(st.RenewAgentCert(ctx, a.ID, "", sg.sign)), protocol.ErrCodeUnauthenticated, "superseded")

	// A hello with the previous certificate keeps it; one with the current
	// certificate retires it.
	if err := st.AgentConnected(ctx, a.ID, "1", "127.0.0.1:1", 1, "s1"); err != nil {
		t.Fatal(err)
	}
	check("s3", "s1")
	if err := st.AgentConnected(ctx, a.ID, "1", "127.0.0.1:1", 1, "s3"); err != nil {
		t.Fatal(err)
	}
	check("s3", "")
	wantReject(t, nonNil(st.RenewAgentCert(ctx, a.ID, "s1", sg.sign)), protocol.ErrCodeUnauthenticated, "superseded")

	// A signing failure changes nothing.
	sg.failNext = true
	if _, err := st.RenewAgentCert(ctx, a.ID, "s3", sg.sign); err == nil || !strings.Contains(err.Error(), "ca on fire") {
		t.Fatalf("sign failure: %v", err)
	}
	check("s3", "")

	// Unknown and revoked agents are refused before anything is signed.
	calls := sg.callCount
	wantReject(t, nonNil(st.RenewAgentCert(ctx, "00000000-0000-0000-0000-000000000001", "s3", sg.sign)), protocol.ErrCodeUnauthenticated, "not registered")
	wantReject(t, nonNil(st.RenewAgentCert(ctx, "not-a-uuid", "s3", sg.sign)), protocol.ErrCodeUnauthenticated, "not registered")
	if err := st.RevokeAgent(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	wantReject(t, nonNil(st.RenewAgentCert(ctx, a.ID, "s3", sg.sign)), protocol.ErrCodeUnauthenticated, "revoked")
	if sg.callCount != calls {
		t.Fatalf("signer called %d times for refused renewals", sg.callCount-calls)
	}
	check("s3", "")
}

func nonNil(_ store.Agent, err error) error {
	if err == nil {
		return errors.New("no error")
	}
	return err
}
