package uplink_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The uplink is tested against the real aggregator, run as a subprocess
// (the agent may not import aggregator code), and a real PostgreSQL.

var aggregatorBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmpulse-uplink-test.")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "../../../aggregator/cmd/vmpulse-aggregator")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build aggregator:", err)
		os.Exit(1)
	}
	aggregatorBin = filepath.Join(dir, "vmpulse-aggregator")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type aggregator struct {
	t      testing.TB
	cfg    string
	addr   string // QUIC
	http   string
	dbURL  string
	cmd    *exec.Cmd
	exited chan struct{}
}

// newAggregator starts an aggregator; ingest are extra lines for its
// ingest section, e.g. "agent_cert_lifetime: 9s".
func newAggregator(t testing.TB, ingest ...string) *aggregator {
	t.Helper()
	base := os.Getenv("VMPULSE_TEST_DATABASE_URL")
	if base == "" {
		t.Fatal("VMPULSE_TEST_DATABASE_URL is not set: run with `make test` or `scripts/pg.sh with go test ./agent/...`")
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "uplink_" + hex.EncodeToString(rnd[:])
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	u, _ := url.Parse(base)
	u.Path = "/" + name
	dir := t.TempDir()
	a := &aggregator{t: t, cfg: filepath.Join(dir, "aggregator.yml"), dbURL: u.String()}
	udp, _ := net.ListenPacket("udp", "127.0.0.1:0")
	tcp, _ := net.Listen("tcp", "127.0.0.1:0")
	a.addr, a.http = udp.LocalAddr().String(), "http://"+tcp.Addr().String()
	udp.Close()
	tcp.Close()
	var extra strings.Builder
	for _, l := range ingest {
		extra.WriteString("  " + l + "\n")
	}
	cfg := fmt.Sprintf("database_url: %s\ndata_dir: %s\ningest:\n  listen: %s\n  heartbeat_interval: 1s\n%shttp:\n  listen: %s\n",
		a.dbURL, filepath.Join(dir, "data"), a.addr, extra.String(), strings.TrimPrefix(a.http, "http://"))
	if err := os.WriteFile(a.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	a.start()
	t.Cleanup(func() { a.stop(syscall.SIGTERM) })
	return a
}

func (a *aggregator) start() {
	a.t.Helper()
	a.cmd = exec.Command(aggregatorBin, "serve", "-config", a.cfg)
	a.cmd.Stderr = testWriter{a.t}
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.exited = make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(a.exited) }()
	for i := 0; ; i++ {
		resp, err := http.Get(a.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if i > 100 {
			a.t.Fatalf("aggregator not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (a *aggregator) stop(sig syscall.Signal) {
	select {
	case <-a.exited:
		return
	default:
	}
	_ = a.cmd.Process.Signal(sig)
	<-a.exited
}

func (a *aggregator) token(site string) string {
	a.t.Helper()
	out, err := exec.Command(aggregatorBin, "enroll-token", "-config", a.cfg, "-site", site).Output()
	if err != nil {
		a.t.Fatalf("enroll-token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func (a *aggregator) count(sql string, args ...any) int64 {
	a.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, a.dbURL)
	if err != nil {
		a.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n *int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		a.t.Fatalf("%s: %v", sql, err)
	}
	if n == nil {
		return 0
	}
	return *n
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
