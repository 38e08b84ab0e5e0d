package vsphere

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vmpulse/vmpulse/protocol"
)

// restartSim serves the simulator's model again on host after s.srv was
// closed. The simulator remembers its SDK registration, so the fresh mux
// needs the SOAP handler added by hand.
func restartSim(t *testing.T, s *sim, host string) {
	t.Helper()
	svc := s.model.Service
	mux := http.NewServeMux()
	mux.HandleFunc("/sdk", svc.ServeSDK)
	mux.HandleFunc("/sdk/vimService", svc.ServeSDK)
	svc.ServeMux = mux
	svc.Listen = &url.URL{Host: host, User: url.UserPassword(testUser, testPass)}
	srv := svc.NewServer()
	t.Cleanup(srv.Close)
}

// waitReach polls sess.Reachability until pred holds.
func waitReach(t *testing.T, sess *Session, d time.Duration, what string, pred func(protocol.VCenterStatus) bool) protocol.VCenterStatus {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := sess.Reachability()
		if pred(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last %+v", what, d, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With the inventory watcher running as the agent runs it, a stopped
// simulator makes the endpoint unreachable with an error (no secret in
// it), and a restarted one reachable again, each with Since moving.
func TestReachabilityStopAndRestart(t *testing.T) {
	s := newSim(t)
	sess := newTestSession(t, s.ep)
	if st := sess.Reachability(); st.Reachable || st.Since != 0 || st.Source != s.ep.Name {
		t.Fatalf("before any login: %+v", st)
	}
	sink := newMemSink()
	inv := NewInventory(sess, sink, InventoryConfig{MaxWait: time.Second}, testLog(t))
	runBG(t, inv.Run)
	sink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool { return i.Full })
	up := waitReach(t, sess, 5*time.Second, "reachable after login", func(st protocol.VCenterStatus) bool { return st.Reachable })
	if up.Source == s.ep.Name || up.LastOK == 0 || up.Since == 0 || up.LastError != "" {
		t.Fatalf("logged in: %+v (want the instance UUID as source, LastOK and Since set, no error)", up)
	}
	t.Logf("up: %+v", up)

	host := s.srv.URL.Host
	s.srv.Close()
	down := waitReach(t, sess, 10*time.Second, "unreachable after the simulator stopped", func(st protocol.VCenterStatus) bool { return !st.Reachable })
	if down.LastError == "" || down.Since < up.Since || down.LastOK < up.LastOK {
		t.Fatalf("down: %+v", down)
	}
	if strings.Contains(down.LastError, testPass) {
		t.Fatalf("the error carries the password: %q", down.LastError)
	}
	t.Logf("down: %+v", down)

	restartSim(t, s, host)
	again := waitReach(t, sess, 15*time.Second, "reachable after the restart", func(st protocol.VCenterStatus) bool { return st.Reachable })
	if again.Since <= down.Since || again.LastOK <= down.LastOK || again.LastError != down.LastError {
		t.Fatalf("again: %+v (down %+v); want Since and LastOK later, the last error kept", again, down)
	}
}

// A server that answers but refuses the credentials is unreachable for
// the agent, with the login error, and without the password.
func TestReachabilityBadCredentials(t *testing.T) {
	s := newSim(t)
	ep := s.ep
	ep.Password = "wrong-" + testPass
	sess := newTestSession(t, ep)
	if _, err := sess.Conn(context.Background()); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	st := sess.Reachability()
	if st.Reachable || st.Since == 0 || st.LastOK != 0 || !strings.Contains(st.LastError, "login") {
		t.Fatalf("after a refused login: %+v", st)
	}
	if strings.Contains(st.LastError, string(ep.Password)) {
		t.Fatalf("the error carries the password: %q", st.LastError)
	}
}

func TestReachabilitySanitize(t *testing.T) {
	sess, err := NewSession(Endpoint{Name: "vc", URL: "https://vc.example/sdk", Password: "hunter2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := sess.sanitize(`Post "https://admin:hunter2@vc.example/sdk": dial tcp: refused; pw hunter2`)
	if strings.Contains(got, "hunter2") || strings.Contains(got, "admin:") || !strings.Contains(got, "https://vc.example/sdk") {
		t.Errorf("sanitize: %q", got)
	}
	long := strings.Repeat("é", protocol.MaxPluginErrorBytes) // 2 bytes each
	got = sess.sanitize(long)
	if len(got) > protocol.MaxPluginErrorBytes || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Errorf("truncated to %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	if got := sess.sanitize("bad \xff byte"); !utf8.ValidString(got) {
		t.Errorf("invalid UTF-8 kept: %q", got)
	}
}
