// Package e2e tests the whole spine with real parts: govmomi's simulator in
// this process, the aggregator and the agent as real subprocesses (so they
// can be killed with SIGKILL), and a real PostgreSQL from scripts/pg.sh.
package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmpulse-e2e-bin.")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, pkg := range []string{"../../aggregator/cmd/vmpulse-aggregator", "../../agent/cmd/vmpulse-agent"} {
		cmd := exec.Command("go", "build", "-o", dir+"/", pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: build", pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newDatabase creates a database on the test cluster for this test.
func newDatabase(t testing.TB) string {
	t.Helper()
	base := os.Getenv("VMPULSE_TEST_DATABASE_URL")
	if base == "" {
		t.Fatal("VMPULSE_TEST_DATABASE_URL is not set: run with `make test` or `scripts/pg.sh with go test ./scripts/e2e/`")
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "e2e_" + hex.EncodeToString(rnd[:])
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(base)
	u.Path = "/" + name
	return u.String()
}

func freePort(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a subprocess whose output goes to the test log.
type proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	out  []string
}

func start(t testing.TB, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, bin), args...)
	cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{t: t, name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		s := bufio.NewScanner(pr)
		s.Buffer(make([]byte, 64<<10), 1<<20)
		for s.Scan() {
			p.mu.Lock()
			p.out = append(p.out, s.Text())
			p.mu.Unlock()
		}
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(syscall.SIGTERM) })
	return p
}

// stop signals the process and waits for it (SIGKILL after 10 s).
func (p *proc) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// logs returns the process output so far (for failure messages).
func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	lines := p.out
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return p.name + ":\n  " + strings.Join(lines, "\n  ")
}

func (p *proc) grep(s string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.out {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// eventually retries check until it returns nil or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, check func() error, procs ...*proc) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	var logs []string
	for _, p := range procs {
		logs = append(logs, p.logs())
	}
	t.Fatalf("%s: not within %s: %v\n%s", what, timeout, err, strings.Join(logs, "\n"))
}

func httpOK(u string) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	return nil
}

type db struct {
	t   testing.TB
	url string
}

func (d db) one(sql string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n *int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("%s: %w", sql, err)
	}
	if n == nil {
		return 0, nil
	}
	return *n, nil
}

func (d db) must(sql string, args ...any) int64 {
	d.t.Helper()
	n, err := d.one(sql, args...)
	if err != nil {
		d.t.Fatal(err)
	}
	return n
}
