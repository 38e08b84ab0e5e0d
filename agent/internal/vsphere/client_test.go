package vsphere

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

func TestSecretNeverPrints(t *testing.T) {
	ep := Endpoint{Name: "vc", Username: "u", Password: Secret(testPass)}
	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("cfg", "ep", ep, "pw", ep.Password)
	js, err := json.Marshal(ep)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{
		"%v": fmt.Sprintf("%v", ep), "%+v": fmt.Sprintf("%+v", ep), "%#v": fmt.Sprintf("%#v", ep),
		"%s": fmt.Sprintf("%s", ep.Password), "%q": fmt.Sprintf("%q", ep.Password),
		"json": string(js), "slog": logBuf.String(),
	} {
		if strings.Contains(s, testPass) {
			t.Errorf("%s leaks the password: %s", name, s)
		}
		if !strings.Contains(s, "***") {
			t.Errorf("%s does not show the redaction: %s", name, s)
		}
	}
}

func TestBadCredentials(t *testing.T) {
	s := newSim(t)
	ep := s.ep
	ep.Password = "wrong-password-123"
	sess := newTestSession(t, ep)
	_, err := sess.Conn(context.Background())
	if err == nil {
		t.Fatal("login with a bad password succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, `"vc-test"`) {
		t.Errorf("error does not name the endpoint: %s", msg)
	}
	if strings.Contains(msg, "wrong-password-123") || strings.Contains(msg, testPass) {
		t.Errorf("error leaks a password: %s", msg)
	}
	if IsSessionError(err) {
		t.Errorf("an invalid login must not look like a lost session: %v", err)
	}
}

func TestSessionSourceAndRelogin(t *testing.T) {
	s := newSim(t)
	sess := newTestSession(t, s.ep)
	ctx := context.Background()
	conn, err := sess.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := conn.Vim().ServiceContent.About.InstanceUuid; want == "" || sess.Source() != want {
		t.Fatalf("Source() = %q, want instance uuid %q", sess.Source(), want)
	}

	// An operator terminates our session from another client.
	admin := s.admin(t)
	us, err := conn.Client.SessionManager.UserSession(ctx)
	if err != nil || us == nil {
		t.Fatalf("user session: %v %v", us, err)
	}
	if _, err := methods.TerminateSession(ctx, admin.Client, &types.TerminateSession{
		This: *admin.Client.ServiceContent.SessionManager, SessionId: []string{us.Key},
	}); err != nil {
		t.Fatal(err)
	}
	_, err = methods.GetCurrentTime(ctx, conn.Vim())
	if err == nil {
		t.Fatal("call on a terminated session succeeded")
	}
	if !sess.Check(conn, err) {
		t.Fatalf("Check did not classify %v as a lost session", err)
	}
	conn2, err := sess.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if conn2 == conn || conn2.Gen <= conn.Gen {
		t.Fatalf("no new connection after re-login (gen %d → %d)", conn.Gen, conn2.Gen)
	}
	if _, err := methods.GetCurrentTime(ctx, conn2.Vim()); err != nil {
		t.Fatalf("new session unusable: %v", err)
	}
}

func TestSessionSurvivesServerRestart(t *testing.T) {
	s := newSim(t)
	sess := newTestSession(t, s.ep)
	ctx := context.Background()
	conn, err := sess.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// vCenter goes down: calls fail with a connection error.
	host := s.srv.URL.Host
	s.srv.Close()
	_, err = methods.GetCurrentTime(ctx, conn.Vim())
	if err == nil {
		t.Fatal("call to a stopped server succeeded")
	}
	if !sess.Check(conn, err) {
		t.Fatalf("connection failure %v not classified as a lost session", err)
	}
	if _, err := sess.Conn(ctx); err == nil {
		t.Fatal("login to a stopped server succeeded")
	}

	// It comes back on the same address; the session logs in again.
	// The simulator remembers its SDK registration, so the fresh mux
	// needs the SOAP handler added by hand.
	svc := s.model.Service
	mux := http.NewServeMux()
	mux.HandleFunc("/sdk", svc.ServeSDK)
	mux.HandleFunc("/sdk/vimService", svc.ServeSDK)
	svc.ServeMux = mux
	svc.Listen = &url.URL{Host: host, User: url.UserPassword(testUser, testPass)}
	srv := svc.NewServer()
	t.Cleanup(srv.Close)
	var conn2 *Conn
	for range 20 { // backoff is 50–200 ms in tests
		if conn2, err = sess.Conn(ctx); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no re-login after restart: %v", err)
	}
	if _, err := methods.GetCurrentTime(ctx, conn2.Vim()); err != nil || conn2.Gen <= conn.Gen {
		t.Fatalf("after restart: gen %d → %d, call err %v", conn.Gen, conn2.Gen, err)
	}
}
