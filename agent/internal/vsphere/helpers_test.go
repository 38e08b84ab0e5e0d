package vsphere

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator" // registers the vAPI (tags) endpoints

	"github.com/vmpulse/vmpulse/protocol"
)

const (
	testUser = "vmpulse@vsphere.local"
	testPass = "s3cret-Pa55word"
)

// testLog sends slog output to t.Log.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// sim is a running vCenter simulator.
type sim struct {
	model *simulator.Model
	srv   *simulator.Server
	ep    Endpoint
}

// newSim starts a VPX simulator (with vAPI) that accepts only
// testUser/testPass.
func newSim(t testing.TB) *sim { return newSimModel(t, nil) }

// newSimModel is newSim with a chance to resize the model first.
func newSimModel(t testing.TB, tune func(*simulator.Model)) *sim {
	t.Helper()
	m := simulator.VPX()
	if tune != nil {
		tune(m)
	}
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	m.Service.TLS = new(tls.Config)
	m.Service.RegisterEndpoints = true
	m.Service.Listen = &url.URL{User: url.UserPassword(testUser, testPass)}
	s := m.Service.NewServer()
	t.Cleanup(func() {
		s.Close()
		m.Remove()
	})
	u := *s.URL
	u.User = nil
	return &sim{model: m, srv: s, ep: Endpoint{
		Name: "vc-test", URL: u.String(), Username: testUser, Password: Secret(testPass), Insecure: true,
	}}
}

// admin returns a separate govmomi client, standing in for an operator.
func (s *sim) admin(t testing.TB) *govmomi.Client {
	t.Helper()
	u := *s.srv.URL
	u.User = url.UserPassword(testUser, testPass)
	c, err := govmomi.NewClient(context.Background(), &u, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Logout(context.Background()) })
	return c
}

func newTestSession(t *testing.T, ep Endpoint) *Session {
	t.Helper()
	s, err := NewSession(ep, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	s.MinBackoff, s.MaxBackoff = 50*time.Millisecond, 200*time.Millisecond
	return s
}

// memSink records everything; failNext makes the next calls fail.
type memSink struct {
	mu        sync.Mutex
	samples   []*protocol.Samples
	inv       []*protocol.Inventory
	events    []protocol.Event
	gaps      []*protocol.Gap
	failNext  int
	invNotify chan struct{}
}

func newMemSink() *memSink { return &memSink{invNotify: make(chan struct{}, 100)} }

var errSinkDown = errors.New("sink down")

func (m *memSink) fail() bool {
	if m.failNext > 0 {
		m.failNext--
		return true
	}
	return false
}

func (m *memSink) Samples(_ context.Context, s *protocol.Samples) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail() {
		return errSinkDown
	}
	m.samples = append(m.samples, s)
	return nil
}

func (m *memSink) Inventory(_ context.Context, inv *protocol.Inventory) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail() {
		return errSinkDown
	}
	m.inv = append(m.inv, inv)
	select {
	case m.invNotify <- struct{}{}:
	default:
	}
	return nil
}

func (m *memSink) Events(_ context.Context, ev *protocol.Events) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail() {
		return errSinkDown
	}
	m.events = append(m.events, ev.Events...)
	return nil
}

func (m *memSink) Gap(_ context.Context, g *protocol.Gap) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail() {
		return errSinkDown
	}
	m.gaps = append(m.gaps, g)
	return nil
}

// waitInventory waits until pred holds for some received payload; pred
// runs with m.mu held and must not lock it.
func (m *memSink) waitInventory(t testing.TB, d time.Duration, pred func(*protocol.Inventory) bool) *protocol.Inventory {
	t.Helper()
	deadline := time.After(d)
	seen := 0
	for {
		m.mu.Lock()
		for ; seen < len(m.inv); seen++ {
			if pred(m.inv[seen]) {
				inv := m.inv[seen]
				m.mu.Unlock()
				return inv
			}
		}
		m.mu.Unlock()
		select {
		case <-m.invNotify:
		case <-deadline:
			t.Fatalf("no matching inventory payload within %s", d)
			return nil
		}
	}
}

// memMeta is a map-backed MetaStore.
type memMeta struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newMemMeta() *memMeta { return &memMeta{m: map[string][]byte{}} }

func (m *memMeta) GetMeta(key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[key], nil
}

func (m *memMeta) SetMeta(key string, val []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[key] = append([]byte(nil), val...)
	return nil
}

// runBG runs f in the background and stops it (and waits) at cleanup, so
// no goroutine logs after the test ends.
func runBG(t testing.TB, f func(ctx context.Context) error) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f(ctx)
	}()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return cancel
}
