// Package plugintest helps plugin authors test their plugins: Notifier and
// Collector serve an implementation in-process over a real gRPC connection
// (go-plugin's test connection), so the test exercises the same encoding
// the host uses; Build compiles plugin binaries for tests that run them as
// the host does, and Host starts a host.Host on them.
package plugintest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	plugin "github.com/hashicorp/go-plugin"

	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
)

// Notifier serves impl over a real gRPC connection and returns the host's
// side of it. The connection is closed when the test ends.
func Notifier(t testing.TB, impl sdk.Notifier) sdk.Notifier {
	t.Helper()
	return dispense(t, sdk.Info{Name: "plugintest"}, impl, nil, string(sdk.KindNotifier)).(sdk.Notifier)
}

// Collector serves impl over a real gRPC connection and returns the host's
// side of it. The connection is closed when the test ends.
func Collector(t testing.TB, impl sdk.Collector) sdk.Collector {
	t.Helper()
	return dispense(t, sdk.Info{Name: "plugintest"}, nil, impl, string(sdk.KindCollector)).(sdk.Collector)
}

func dispense(t testing.TB, info sdk.Info, n sdk.Notifier, c sdk.Collector, name string) any {
	t.Helper()
	client, server := plugin.TestPluginGRPCConn(t, false, sdk.PluginSet(info, n, c))
	t.Cleanup(func() {
		// Close asks the server to stop (go-plugin's controller Shutdown);
		// stopping it here as well would race with that.
		if err := client.Close(); err != nil {
			server.Stop()
		}
	})
	raw, err := client.Dispense(name)
	if err != nil {
		t.Fatalf("plugintest: dispense %s: %v", name, err)
	}
	return raw
}

// Binary is a plugin built by Build.
type Binary struct {
	Path   string
	SHA256 string
}

// Build compiles the plugin packages (import paths or ./relative to the
// test's package) into dir with one `go build` and returns them by binary
// name (the last element of the package path). It fails the test when the
// build fails.
func Build(t testing.TB, dir string, pkgs ...string) map[string]Binary {
	t.Helper()
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			t.Fatalf("plugintest: no go command to build plugins with: %v", err)
		}
	}
	// Without symbol tables the link takes half the time; tests need none.
	args := append([]string{"build", "-ldflags=-s -w", "-o", dir + string(os.PathSeparator)}, pkgs...)
	cmd := exec.Command(gobin, args...)
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("plugintest: go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	bins := map[string]Binary{}
	for _, p := range pkgs {
		name := path.Base(filepath.ToSlash(p))
		if name == "." {
			wd, _ := os.Getwd()
			name = filepath.Base(wd)
		}
		file := filepath.Join(dir, name)
		if runtime.GOOS == "windows" {
			file += ".exe"
		}
		sum, err := SHA256(file)
		if err != nil {
			t.Fatalf("plugintest: %v", err)
		}
		bins[name] = Binary{Path: file, SHA256: sum}
	}
	return bins
}

// SHA256 returns the hex SHA-256 of a file, as host.PluginConfig wants it.
func SHA256(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Host starts a host.Host with cfg (its Logger defaulting to Logger(t)),
// fails the test if it cannot, and closes it when the test ends.
func Host(t testing.TB, cfg host.Config) *host.Host {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = Logger(t)
	}
	h, err := host.New(cfg)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	if err := h.Start(context.Background()); err != nil {
		t.Fatalf("plugintest: start plugins: %v", err)
	}
	return h
}

// Logger returns a slog.Logger writing to the test's log at debug level.
// Records that arrive after the test ended (from background goroutines)
// are dropped instead of panicking.
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// RunNotifier builds the notifier plugin package pkg (an import path, or
// "." for the package under test), starts it under a host.Host with cfg as
// in production (its own process, checksum pinned), and returns the host's
// Notifier for it and the host. cfg.Dir and cfg's entry for the plugin are
// filled in; the host is closed when the test ends.
func RunNotifier(t testing.TB, pkg string, cfg host.Config) (sdk.Notifier, *host.Host) {
	t.Helper()
	dir := t.TempDir()
	bins := Build(t, dir, pkg)
	if cfg.Plugins == nil {
		cfg.Plugins = map[string]host.PluginConfig{}
	}
	var name string
	for n, b := range bins {
		name = n
		pc := cfg.Plugins[n]
		pc.SHA256 = b.SHA256
		cfg.Plugins[n] = pc
	}
	cfg.Dir = dir
	h := Host(t, cfg)
	n, err := h.Notifier(name)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	for _, st := range h.Status() {
		if st.Name == name && st.State != host.StateRunning {
			t.Fatalf("plugintest: plugin %s is %s: %s", name, st.State, st.LastError)
		}
	}
	return n, h
}
