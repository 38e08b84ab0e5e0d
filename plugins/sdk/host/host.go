// Package host runs vmpulse plugins for the aggregator and the agent: it
// discovers plugin binaries in a folder, checks each against the SHA-256
// checksum pinned in the config, starts it over go-plugin's gRPC transport
// with the versioned handshake of package sdk, and supervises it.
//
// A plugin never takes its host down: a crashed plugin is restarted with
// backoff and the call it was serving is retried once on the new process;
// a hanging call ends at the per-call timeout (and a plugin whose calls keep
// hanging is restarted); each plugin has its own concurrency limit, so one
// slow plugin cannot starve the others. Plugin logs are forwarded to the
// host's slog with the plugin's name. Status reports every plugin's state
// and call statistics for `GET /system/plugins`, and Collector exports
// them to Prometheus.
//
// The Notifier and Collector that a Host hands out are safe for concurrent
// use and stay valid across restarts of the plugin behind them.
package host

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// Errors of the host, wrapped by the errors it returns; test them with
// errors.Is.
var (
	// ErrRefused: the plugin was not started and will not be until the
	// host's config changes (checksum mismatch or missing, handshake
	// version mismatch, not a vmpulse plugin).
	ErrRefused = errors.New("plugin refused")
	// ErrHandshake (with ErrRefused): the plugin speaks another
	// sdk.ProtocolVersion than the host.
	ErrHandshake = errors.New("plugin protocol version mismatch")
	// ErrChecksum (with ErrRefused): the binary's SHA-256 is not the
	// pinned one, or none is pinned.
	ErrChecksum = errors.New("plugin checksum mismatch")
	// ErrTimeout: a call ran past the per-call timeout.
	ErrTimeout = errors.New("plugin call timed out")
	// ErrNotFound: no plugin of that name (and kind) is loaded.
	ErrNotFound = errors.New("plugin not found")
	// ErrClosed: the host was closed.
	ErrClosed = errors.New("plugin host closed")
)

// Config configures a Host. Zero values take the defaults noted.
type Config struct {
	// Dir is the folder plugins are discovered in: every executable
	// regular file (or symlink to one) whose name does not start with a
	// dot. A plugin's name is its file name without ".exe".
	Dir string
	// Plugins configures plugins by name. A plugin found in Dir with no
	// entry runs with the defaults, but only if AllowUnpinned: otherwise
	// it is refused for want of a checksum.
	Plugins map[string]PluginConfig
	// AllowUnpinned lets plugins without a pinned SHA256 run. For
	// development only: pinning is what stops a swapped binary from
	// running with the host's privileges.
	AllowUnpinned bool

	// CallTimeout bounds each call (default 10s); PluginConfig overrides it.
	CallTimeout time.Duration
	// MaxConcurrent bounds the calls in flight per plugin (default 4).
	MaxConcurrent int
	// StartTimeout bounds a start: process, handshake and Info (default 10s).
	StartTimeout time.Duration
	// HealthInterval is how often a running plugin is health-checked
	// (default 15s). A crash is noticed at once regardless.
	HealthInterval time.Duration
	// RestartMin and RestartMax bound the backoff between restarts: the
	// first restart after a crash is immediate, the next ones wait
	// RestartMin (default 250ms), doubling up to RestartMax (default 1m).
	// A successful call resets the sequence.
	RestartMin, RestartMax time.Duration
	// HangRestart restarts a plugin after this many consecutive calls
	// timed out (default 3; negative never does).
	HangRestart int

	// HostName is reported to plugins ("vmpulse-aggregator 1.4.0").
	HostName string
	// Logger receives the host's and the plugins' logs (default slog's).
	Logger *slog.Logger
}

// PluginConfig is one plugin's settings.
type PluginConfig struct {
	// SHA256 is the hex SHA-256 of the binary (sha256sum's output).
	SHA256 string
	// Disabled plugins are neither started nor reported.
	Disabled bool
	// Args and Env are passed to the process. The process does not inherit
	// the host's environment (it may hold the host's secrets): it gets
	// PATH, HOME, TMPDIR, TZ, LANG, SSL_CERT_FILE and SSL_CERT_DIR from
	// it, then Env.
	Args []string
	Env  []string
	// CallTimeout and MaxConcurrent override the host's.
	CallTimeout   time.Duration
	MaxConcurrent int
}

func (c *Config) setDefaults() {
	c.CallTimeout = cmp.Or(c.CallTimeout, 10*time.Second)
	c.MaxConcurrent = cmp.Or(c.MaxConcurrent, 4)
	c.StartTimeout = cmp.Or(c.StartTimeout, 10*time.Second)
	c.HealthInterval = cmp.Or(c.HealthInterval, 15*time.Second)
	c.RestartMin = cmp.Or(c.RestartMin, 250*time.Millisecond)
	c.RestartMax = cmp.Or(c.RestartMax, time.Minute)
	c.HangRestart = cmp.Or(c.HangRestart, 3)
	c.HostName = cmp.Or(c.HostName, "vmpulse")
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate checks the config without touching the disk.
func (c *Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("plugin host: dir is empty"))
	}
	for name, p := range c.Plugins {
		if p.SHA256 == "" {
			continue
		}
		if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != 32 {
			errs = append(errs, fmt.Errorf("plugin host: plugins.%s.sha256: want 64 hex digits", name))
		}
		if p.CallTimeout < 0 || p.MaxConcurrent < 0 {
			errs = append(errs, fmt.Errorf("plugin host: plugins.%s: negative call_timeout or max_concurrent", name))
		}
	}
	return errors.Join(errs...)
}

// Host runs the plugins of one folder. Create it with New, start it with
// Start, stop it with Close.
type Host struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	plugins map[string]*managed
	closed  bool
}

// New returns a Host for cfg; it starts nothing.
func New(cfg Config) (*Host, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &Host{cfg: cfg, log: cfg.Logger, plugins: map[string]*managed{}}, nil
}

// Found is a plugin binary found by Discover.
type Found struct {
	Name string
	Path string
}

// Discover lists the plugin binaries in dir: executable regular files (or
// symlinks to one) not starting with a dot, sorted by name.
func Discover(dir string) ([]Found, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("plugin host: discover: %w", err)
	}
	var out []Found
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		fi, err := os.Stat(path) // follows symlinks
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			continue
		}
		out = append(out, Found{Name: strings.TrimSuffix(e.Name(), ".exe"), Path: path})
	}
	return out, nil
}

// Start discovers the plugins in the configured folder and starts them all
// at once, waiting until each is running or has failed. A plugin that fails
// to start does not fail Start: it is refused or retried with backoff, as
// Status shows. Start fails only when the folder cannot be read.
func (h *Host) Start(ctx context.Context) error {
	found, err := Discover(h.cfg.Dir)
	if err != nil {
		return err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	var started []*managed
	for _, f := range found {
		pc := h.cfg.Plugins[f.Name]
		if pc.Disabled || h.plugins[f.Name] != nil {
			continue
		}
		m := newManaged(h, f, pc)
		h.plugins[f.Name] = m
		started = append(started, m)
	}
	h.mu.Unlock()
	for name := range h.cfg.Plugins {
		if !slices.ContainsFunc(found, func(f Found) bool { return f.Name == name }) && !h.cfg.Plugins[name].Disabled {
			h.log.Warn("configured plugin not found", "plugin", name, "dir", h.cfg.Dir)
		}
	}
	var wg sync.WaitGroup
	for _, m := range started {
		wg.Go(func() {
			if _, err := m.ready(ctx); err != nil {
				m.log.Error("plugin not started", "err", err)
			}
			go m.supervise()
		})
	}
	wg.Wait()
	return ctx.Err()
}

// Close stops every plugin and waits for their processes to end.
func (h *Host) Close() error {
	h.mu.Lock()
	h.closed = true
	ms := make([]*managed, 0, len(h.plugins))
	for _, m := range h.plugins {
		ms = append(ms, m)
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(m.close)
	}
	wg.Wait()
	return nil
}

func (h *Host) get(name string, kind sdk.Kind) (*managed, error) {
	h.mu.Lock()
	m := h.plugins[name]
	h.mu.Unlock()
	if m == nil {
		return nil, fmt.Errorf("plugin %q: %w", name, ErrNotFound)
	}
	if info := m.identity(); info.Name != "" && !info.Has(kind) {
		return nil, fmt.Errorf("plugin %q is not a %s: %w", name, kind, ErrNotFound)
	}
	return m, nil
}

// Notifier returns the notifier plugin called name. Its calls go through
// the host's timeout, concurrency limit and restart logic.
func (h *Host) Notifier(name string) (sdk.Notifier, error) {
	m, err := h.get(name, sdk.KindNotifier)
	if err != nil {
		return nil, err
	}
	return &notifier{m: m}, nil
}

// Collector returns the collector plugin called name.
func (h *Host) Collector(name string) (sdk.Collector, error) {
	m, err := h.get(name, sdk.KindCollector)
	if err != nil {
		return nil, err
	}
	return &collector{m: m}, nil
}

// Names returns the names of the loaded plugins of kind k, sorted.
func (h *Host) Names(k sdk.Kind) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for name, m := range h.plugins {
		if m.identity().Has(k) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Status returns a snapshot of every plugin, sorted by name.
func (h *Host) Status() []Status {
	h.mu.Lock()
	ms := make([]*managed, 0, len(h.plugins))
	for _, m := range h.plugins {
		ms = append(ms, m)
	}
	h.mu.Unlock()
	out := make([]Status, len(ms))
	for i, m := range ms {
		out[i] = m.status()
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// State is a plugin's lifecycle state.
type State string

// The states of a plugin.
const (
	// StateStarting: the process is being started.
	StateStarting State = "starting"
	// StateRunning: the plugin serves calls.
	StateRunning State = "running"
	// StateRestarting: the plugin crashed or failed to start and waits out
	// its backoff; calls wait for it (up to their timeout).
	StateRestarting State = "restarting"
	// StateRefused: the plugin will not be started (see LastError).
	StateRefused State = "refused"
	// StateStopped: the host was closed.
	StateStopped State = "stopped"
)

// Status is one plugin's snapshot, shaped for `GET /system/plugins`.
type Status struct {
	Name            string     `json:"name"`
	Path            string     `json:"path"`
	SHA256          string     `json:"sha256,omitempty"`
	Version         string     `json:"version,omitempty"`
	Description     string     `json:"description,omitempty"`
	Kinds           []sdk.Kind `json:"kinds"`
	ProtocolVersion int        `json:"protocol_version,omitempty"`
	State           State      `json:"state"`
	PID             int        `json:"pid,omitempty"`
	StartedAt       time.Time  `json:"started_at,omitzero"`
	Restarts        int        `json:"restarts"`
	LastError       string     `json:"last_error,omitempty"`
	LastErrorAt     time.Time  `json:"last_error_at,omitzero"`

	// Calls counts every call; Errors, Timeouts and Unavailable the ones
	// that failed that way (the plugin's own error, the per-call timeout,
	// a crash or a plugin that could not be started).
	Calls       uint64 `json:"calls"`
	Errors      uint64 `json:"errors"`
	Timeouts    uint64 `json:"timeouts"`
	Unavailable uint64 `json:"unavailable"`
	InFlight    int    `json:"in_flight"`
	// P50 and P99 are over the latest 1024 completed calls.
	P50 time.Duration `json:"-"`
	P99 time.Duration `json:"-"`
	// P50MS and P99MS are P50 and P99 in milliseconds, for JSON.
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
}
