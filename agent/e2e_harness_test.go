package agent

// Shared by the agent's end-to-end tests: a simulated vCenter, a real
// aggregator process on a database of its own, the agent itself, and the
// REST API calls the tests check through.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// e2eDatabase skips an end-to-end test under -short or without the test
// database, and returns the database server's URL.
func e2eDatabase(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the aggregator; skipped with -short")
	}
	base := os.Getenv("VMPULSE_TEST_DATABASE_URL")
	if base == "" {
		t.Skip("VMPULSE_TEST_DATABASE_URL is not set: run with `make test` or `scripts/pg.sh with go test ./agent/`")
	}
	return base
}

// testLogger logs to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// simUser and simPassword are the simulated vCenter's credentials.
const simUser, simPassword = "vmpulse", "vmpulse-pass"

// testVCenter is govmomi's simulated vCenter, served over TLS until the
// test ends.
type testVCenter struct {
	model *simulator.Model
	srv   *simulator.Server
	vc    *govmomi.Client // a client of the test's own, for setup and checks
}

// startVCenter starts a simulated vCenter (simulator.VPX's inventory).
func startVCenter(t *testing.T) *testVCenter {
	t.Helper()
	m := simulator.VPX()
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Remove)
	m.Service.TLS = new(tls.Config)
	m.Service.Listen = &url.URL{User: url.UserPassword(simUser, simPassword)}
	srv := m.Service.NewServer()
	t.Cleanup(func() {
		// A WaitForUpdatesEx long poll may still be held open on the
		// simulator's side after the agent stopped (the simulator's
		// handler does not watch the connection): give it 5 s.
		closed := make(chan struct{})
		go func() {
			srv.CloseClientConnections()
			srv.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Log("the simulator still holds a request after the agent stopped; not waiting for it")
		}
	})
	vc, err := govmomi.NewClient(context.Background(), srv.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	return &testVCenter{model: m, srv: srv, vc: vc}
}

// agentConfig is an agent's configuration for the simulated vCenter and
// the test aggregator, enrolled in site dc1, its spool in a new directory.
// The vCenter password is passed as the agent reads it in production:
// from the environment variable the configuration names.
func agentConfig(t *testing.T, name string, vc *testVCenter, agg *testAggregator) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Name, cfg.DataDir = name, t.TempDir()
	cfg.Aggregator.Address, cfg.Aggregator.ServerName = agg.addr, "localhost"
	cfg.Spool.SyncInterval = Duration(100 * time.Millisecond)
	u := *vc.srv.URL
	u.User = nil
	env := "E2E_VC_PASSWORD_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
	cfg.Endpoints = []EndpointConfig{{Name: "sim", URL: u.String(), Username: simUser, PasswordEnv: env, Insecure: true}}
	t.Setenv(env, simPassword)
	cfg.EnrollToken = agg.token("dc1")
	return cfg
}

// runAgent starts the agent and stops it, checking its exit, when the
// test ends.
func runAgent(t *testing.T, cfg Config, log *slog.Logger) *Agent {
	t.Helper()
	a, err := New(context.Background(), cfg, "test", log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	return a
}

// poweredOnVMs lists the simulator's powered-on VMs, sorted.
func poweredOnVMs(t *testing.T, c *govmomi.Client) []string {
	t.Helper()
	var vms []mo.VirtualMachine
	retrieve(t, c, "VirtualMachine", []string{"runtime.powerState"}, &vms)
	var out []string
	for _, vm := range vms {
		if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
			out = append(out, vm.Self.Value)
		}
	}
	slices.Sort(out)
	return out
}

// hosts lists the simulator's hosts.
func hosts(t *testing.T, c *govmomi.Client) []string {
	t.Helper()
	var hs []mo.HostSystem
	retrieve(t, c, "HostSystem", []string{"name"}, &hs)
	var out []string
	for _, h := range hs {
		out = append(out, h.Self.Value)
	}
	return out
}

func retrieve(t *testing.T, c *govmomi.Client, kind string, props []string, dst any) {
	t.Helper()
	ctx := context.Background()
	v, err := view.NewManager(c.Client).CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{kind}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Destroy(ctx)
	if err := v.Retrieve(ctx, []string{kind}, props, dst); err != nil {
		t.Fatal(err)
	}
}

// testAggregator is a real aggregator process on a database of its own.
type testAggregator struct {
	addr, dbURL, cfg, bin string
	http                  string // the REST API's host:port
	t                     *testing.T
}

// startAggregator builds the aggregator (or takes the binary named by
// VMPULSE_TEST_AGGREGATOR) and runs it on a fresh database of the server
// at base until the test ends.
func startAggregator(t *testing.T, base string) *testAggregator {
	t.Helper()
	dir := t.TempDir()
	bin := os.Getenv("VMPULSE_TEST_AGGREGATOR") // a binary built already
	if bin == "" {
		build := exec.Command("go", "build", "-o", dir+"/", "../aggregator/cmd/vmpulse-aggregator")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			t.Fatalf("build aggregator: %v", err)
		}
		bin = filepath.Join(dir, "vmpulse-aggregator")
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "agent_" + hex.EncodeToString(rnd[:])
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
	a := &testAggregator{t: t, dbURL: u.String(), cfg: filepath.Join(dir, "aggregator.yml"), bin: bin}
	udp, _ := net.ListenPacket("udp", "127.0.0.1:0")
	tcp, _ := net.Listen("tcp", "127.0.0.1:0")
	httpAddr := tcp.Addr().String()
	a.addr = udp.LocalAddr().String()
	a.http = httpAddr
	udp.Close()
	tcp.Close()
	cfg := fmt.Sprintf("database_url: %s\ndata_dir: %s\ningest:\n  listen: %s\n  heartbeat_interval: 1s\nhttp:\n  listen: %s\n",
		a.dbURL, filepath.Join(dir, "data"), a.addr, httpAddr)
	if err := os.WriteFile(a.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(a.bin, "serve", "-config", a.cfg)
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if i > 300 {
			t.Fatalf("aggregator not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return a
}

// token issues an enrollment token for site.
func (a *testAggregator) token(site string) string {
	a.t.Helper()
	out, err := exec.Command(a.bin, "enroll-token", "-config", a.cfg, "-site", site).Output()
	if err != nil {
		a.t.Fatalf("enroll-token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
func waitUntil(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: not %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func freeTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// adminToken creates the first admin with the aggregator's CLI and logs
// in as it.
func adminToken(t *testing.T, agg *testAggregator) string {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("plugin-e2e-Passw0rd!"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(agg.bin, "user", "create-admin", "-config", agg.cfg, "-username", "admin",
		"-email", "admin@example.com", "-password-file", pw).CombinedOutput(); err != nil {
		t.Fatalf("create-admin: %v\n%s", err, out)
	}
	body := `{"username":"admin","password":"plugin-e2e-Passw0rd!"}`
	resp, err := http.Post("http://"+agg.http+"/api/v1/auth/login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			AccessToken string `json:"access_token"`
		} `json:"data"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil || out.Data.AccessToken == "" {
		t.Fatalf("login: %d %s", resp.StatusCode, b)
	}
	return out.Data.AccessToken
}

func apiGet(t *testing.T, agg *testAggregator, token, path string, dst any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+agg.http+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, dst); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, b)
	}
}
