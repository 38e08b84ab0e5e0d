package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// managed is one plugin: its binary, its current process (instance) and the
// state that outlives processes (restarts, backoff, statistics).
type managed struct {
	h       *Host
	name    string
	path    string
	pc      PluginConfig
	timeout time.Duration
	sem     chan struct{}
	log     *slog.Logger
	stats   *stats
	done    chan struct{} // closed by close
	wake    chan struct{} // pokes the supervisor after a crash

	mu        sync.Mutex
	state     State
	inst      *instance
	starting  chan struct{} // closed when the start in progress ends
	info      sdk.Info
	restarts  int
	failures  int // consecutive crashes and failed starts
	nextStart time.Time
	lastErr   string
	lastErrAt time.Time
	refused   error
	closed    bool
}

// instance is one process of a plugin.
type instance struct {
	client    *plugin.Client
	conn      *grpc.ClientConn
	exited    <-chan struct{}
	notifier  sdk.Notifier
	collector sdk.Collector
	pid       int
	started   time.Time
}

func (i *instance) hasExited() bool {
	select {
	case <-i.exited:
		return true
	default:
		return i.client.Exited()
	}
}

// kill ends the process: at once when force (it hangs or is already
// lost), else gracefully (go-plugin asks it to stop and waits up to 2s).
func (i *instance) kill(force bool) {
	if force && i.pid > 0 {
		if p, err := os.FindProcess(i.pid); err == nil {
			_ = p.Kill()
		}
	}
	i.client.Kill()
}

func newManaged(h *Host, f Found, pc PluginConfig) *managed {
	return &managed{
		h:       h,
		name:    f.Name,
		path:    f.Path,
		pc:      pc,
		timeout: cmpOr(pc.CallTimeout, h.cfg.CallTimeout),
		sem:     make(chan struct{}, cmpOr(pc.MaxConcurrent, h.cfg.MaxConcurrent)),
		log:     h.log.With("plugin", f.Name),
		stats:   newStats(),
		done:    make(chan struct{}),
		wake:    make(chan struct{}, 1),
		state:   StateStarting,
	}
}

func cmpOr[T comparable](a, b T) T {
	var zero T
	if a != zero {
		return a
	}
	return b
}

// refusal is the error of a plugin that will not be started.
type refusal struct {
	kind error // ErrChecksum, ErrHandshake or nil
	msg  string
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() []error {
	if r.kind == nil {
		return []error{ErrRefused}
	}
	return []error{ErrRefused, r.kind}
}

// backoff is the wait before the next start after n consecutive failures.
func (m *managed) backoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := m.h.cfg.RestartMin << min(n-2, 20)
	return min(d, m.h.cfg.RestartMax)
}

func (m *managed) setErr(err error) {
	m.lastErr = err.Error()
	m.lastErrAt = time.Now()
}

func (m *managed) identity() sdk.Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.info
}

// ready returns the running instance, starting one if there is none: it
// waits for a start already in progress, or for the backoff after a crash,
// for as long as ctx allows.
func (m *managed) ready(ctx context.Context) (*instance, error) {
	for {
		m.mu.Lock()
		switch {
		case m.closed:
			m.mu.Unlock()
			return nil, ErrClosed
		case m.refused != nil:
			err := m.refused
			m.mu.Unlock()
			return nil, err
		case m.inst != nil:
			inst := m.inst
			m.mu.Unlock()
			if inst.hasExited() {
				m.lost(inst, errors.New("plugin process exited"))
				continue
			}
			return inst, nil
		case m.starting != nil:
			ch := m.starting
			m.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for the plugin to start: %w: %w", sdk.ErrUnavailable, ctx.Err())
			}
		}
		if wait := time.Until(m.nextStart); wait > 0 {
			last := m.lastErr
			m.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("waiting %s to restart the plugin (last error: %s): %w: %w", wait.Round(time.Millisecond), last, sdk.ErrUnavailable, ctx.Err())
			case <-m.done:
				t.Stop()
				continue
			}
		}
		ch := make(chan struct{})
		m.starting = ch
		m.state = StateStarting
		m.mu.Unlock()

		inst, info, err := m.start()

		m.mu.Lock()
		m.starting = nil
		close(ch)
		var refused *refusal
		switch {
		case m.closed:
			m.mu.Unlock()
			if inst != nil {
				inst.kill(false)
			}
			return nil, ErrClosed
		case errors.As(err, &refused):
			m.refused = err
			m.state = StateRefused
			m.setErr(err)
			m.mu.Unlock()
			m.log.Error("plugin refused", "err", err)
			return nil, err
		case err != nil:
			m.failures++
			d := m.backoff(m.failures)
			m.nextStart = time.Now().Add(d)
			m.state = StateRestarting
			m.setErr(err)
			m.mu.Unlock()
			m.log.Warn("plugin failed to start", "err", err, "retry_in", d)
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w: %w", sdk.ErrUnavailable, err)
			}
			continue
		}
		m.inst = inst
		m.info = info
		m.state = StateRunning
		m.mu.Unlock()
		m.log.Info("plugin running", "version", info.Version, "kinds", info.Kinds, "pid", inst.pid)
		return inst, nil
	}
}

// pluginEnv is what a plugin gets from the host's environment.
var pluginEnv = []string{"PATH", "HOME", "TMPDIR", "TZ", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR"}

func (m *managed) env() []string {
	var env []string
	for _, k := range pluginEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	level := "error"
	for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
		if m.log.Enabled(context.Background(), l) {
			level = strings.ToLower(l.String())
			break
		}
	}
	env = append(env, sdk.EnvLogLevel+"="+level)
	return append(env, m.pc.Env...)
}

// start starts one process, checks it and asks who it is.
func (m *managed) start() (*instance, sdk.Info, error) {
	cfg := &m.h.cfg
	var secure *plugin.SecureConfig
	switch {
	case m.pc.SHA256 != "":
		sum, _ := hex.DecodeString(m.pc.SHA256) // Config.Validate checked it
		secure = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	case !cfg.AllowUnpinned:
		return nil, sdk.Info{}, &refusal{kind: ErrChecksum, msg: fmt.Sprintf(
			"plugin %s: no sha256 is pinned for %s in the config (sha256sum prints it); refusing to run an unpinned binary", m.name, m.path)}
	}
	cmd := exec.Command(m.path, m.pc.Args...)
	cmd.Env = m.env()
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          sdk.PluginSet(sdk.Info{}, nil, nil),
		Cmd:              cmd,
		SecureConfig:     secure,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           newHCLog(m.log),
		StartTimeout:     cfg.StartTimeout,
		AutoMTLS:         true,
		SkipHostEnv:      true,
		SyncStdout:       &lineLogger{log: m.log, msg: "plugin stdout"},
		SyncStderr:       &lineLogger{log: m.log, msg: "plugin stderr"},
	})
	t0 := time.Now()
	proto, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, sdk.Info{}, m.startError(err)
	}
	raw, err := proto.Dispense("info")
	if err != nil {
		client.Kill()
		return nil, sdk.Info{}, fmt.Errorf("plugin %s: dispense info: %w", m.name, err)
	}
	ic := raw.(*sdk.InfoClient)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.StartTimeout)
	info, err := ic.Info(ctx, cfg.HostName)
	cancel()
	if err != nil {
		client.Kill()
		return nil, sdk.Info{}, fmt.Errorf("plugin %s: %w", m.name, err)
	}
	if len(info.Kinds) == 0 {
		client.Kill()
		return nil, sdk.Info{}, &refusal{msg: fmt.Sprintf("plugin %s implements neither notifier nor collector", m.name)}
	}
	if info.Name != m.name {
		m.log.Warn("plugin reports another name than its file's", "reported", info.Name)
	}
	inst := &instance{client: client, exited: ic.Exited(), started: time.Now()}
	if gc, ok := proto.(*plugin.GRPCClient); ok {
		inst.conn = gc.Conn
	}
	if rc := client.ReattachConfig(); rc != nil {
		inst.pid = rc.Pid
	}
	if info.Has(sdk.KindNotifier) {
		raw, err := proto.Dispense(string(sdk.KindNotifier))
		if err != nil {
			client.Kill()
			return nil, sdk.Info{}, fmt.Errorf("plugin %s: dispense notifier: %w", m.name, err)
		}
		inst.notifier = raw.(sdk.Notifier)
	}
	if info.Has(sdk.KindCollector) {
		raw, err := proto.Dispense(string(sdk.KindCollector))
		if err != nil {
			client.Kill()
			return nil, sdk.Info{}, fmt.Errorf("plugin %s: dispense collector: %w", m.name, err)
		}
		inst.collector = raw.(sdk.Collector)
	}
	m.log.Debug("plugin started", "took", time.Since(t0))
	return inst, info, nil
}

// startError explains why go-plugin could not start the plugin.
func (m *managed) startError(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, plugin.ErrChecksumsDoNotMatch):
		got := "unreadable"
		if sum, herr := fileSHA256(m.path); herr == nil {
			got = sum
		}
		return &refusal{kind: ErrChecksum, msg: fmt.Sprintf(
			"plugin %s: %s has sha256 %s, the config pins %s: refusing to run it", m.name, m.path, got, m.pc.SHA256)}
	case strings.Contains(msg, "incompatible API version"):
		var theirs int
		if i := strings.Index(msg, "Plugin version: "); i >= 0 {
			_, _ = fmt.Sscanf(msg[i:], "Plugin version: %d", &theirs)
		}
		return &refusal{kind: ErrHandshake, msg: fmt.Sprintf(
			"plugin %s speaks plugin protocol version %d, this host speaks %d: rebuild the plugin against a plugins/sdk whose ProtocolVersion is %d",
			m.name, theirs, sdk.ProtocolVersion, sdk.ProtocolVersion)}
	case strings.Contains(msg, "incompatible core API version"):
		return &refusal{kind: ErrHandshake, msg: fmt.Sprintf("plugin %s: %s", m.name, msg)}
	}
	return fmt.Errorf("plugin %s: start: %w", m.name, err)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
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

// lost retires inst after a crash, a failed health check or repeated
// hangs, and schedules the restart. It reports whether inst was current.
func (m *managed) lost(inst *instance, cause error) bool {
	m.mu.Lock()
	if inst == nil || m.inst != inst {
		m.mu.Unlock()
		return false
	}
	m.inst = nil
	m.restarts++
	m.failures++
	d := m.backoff(m.failures)
	m.nextStart = time.Now().Add(d)
	m.state = StateRestarting
	m.setErr(cause)
	restarts := m.restarts
	m.mu.Unlock()
	m.log.Warn("plugin lost; restarting", "err", cause, "restarts", restarts, "backoff", d)
	go inst.kill(true) // a lost process is not worth a graceful stop
	select {
	case m.wake <- struct{}{}:
	default:
	}
	return true
}

// succeeded resets the backoff after a good call.
func (m *managed) succeeded() {
	m.mu.Lock()
	m.failures = 0
	m.mu.Unlock()
}

// supervise restarts the plugin when its process exits or its health check
// fails, without waiting for a call to notice. It runs until close.
func (m *managed) supervise() {
	tick := time.NewTicker(m.h.cfg.HealthInterval)
	defer tick.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-m.done
		cancel()
	}()
	for {
		m.mu.Lock()
		inst, refused := m.inst, m.refused
		m.mu.Unlock()
		if refused != nil {
			return
		}
		var exited <-chan struct{}
		if inst != nil {
			exited = inst.exited
		}
		select {
		case <-m.done:
			return
		case <-exited:
			m.lost(inst, errors.New("plugin process exited"))
		case <-m.wake:
		case <-tick.C:
			if inst != nil {
				if err := m.healthCheck(ctx, inst); err != nil && ctx.Err() == nil {
					m.lost(inst, fmt.Errorf("health check: %w", err))
				}
			}
		}
		if _, err := m.ready(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, ErrRefused) {
			m.log.Debug("plugin still down", "err", err)
		}
	}
}

func (m *managed) healthCheck(ctx context.Context, inst *instance) error {
	if inst.hasExited() {
		return errors.New("plugin process exited")
	}
	if inst.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, min(5*time.Second, m.timeout))
	defer cancel()
	_, err := grpc_health_v1.NewHealthClient(inst.conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
	return err
}

func (m *managed) close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	close(m.done)
	inst := m.inst
	m.inst = nil
	m.state = StateStopped
	m.mu.Unlock()
	if inst != nil {
		inst.kill(false)
	}
}

func (m *managed) status() Status {
	m.mu.Lock()
	st := Status{
		Name:            m.name,
		Path:            m.path,
		SHA256:          m.pc.SHA256,
		Version:         m.info.Version,
		Description:     m.info.Description,
		Kinds:           m.info.Kinds,
		ProtocolVersion: m.info.ProtocolVersion,
		State:           m.state,
		Restarts:        m.restarts,
		LastError:       m.lastErr,
		LastErrorAt:     m.lastErrAt,
	}
	if m.inst != nil {
		st.PID = m.inst.pid
		st.StartedAt = m.inst.started
	}
	m.mu.Unlock()
	if st.Kinds == nil {
		st.Kinds = []sdk.Kind{}
	}
	m.stats.snapshot(&st)
	st.P50MS = float64(st.P50.Microseconds()) / 1000
	st.P99MS = float64(st.P99.Microseconds()) / 1000
	return st
}

// call runs fn on the plugin with the per-call timeout and the concurrency
// limit, and retries it once on a new process when the plugin crashed
// under it.
func (m *managed) call(ctx context.Context, method string, fn func(context.Context, *instance) error) error {
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("plugin %s: %s: waiting for a free call slot: %w", m.name, method, ctx.Err())
	}
	defer func() { <-m.sem }()
	err, retry := m.attempt(ctx, method, fn)
	if retry {
		m.log.Warn("retrying the call on the restarted plugin", "method", method, "err", err)
		err, _ = m.attempt(ctx, method, fn)
	}
	return err
}

func (m *managed) attempt(ctx context.Context, method string, fn func(context.Context, *instance) error) (err error, retry bool) {
	cctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	m.stats.begin()
	inst, err := m.ready(cctx)
	if err != nil {
		outcome := outcomeUnavailable
		if ctx.Err() != nil {
			outcome = outcomeCanceled
		}
		m.stats.end(method, outcome, 0)
		return fmt.Errorf("plugin %s: %s: %w", m.name, method, err), false
	}
	t0 := time.Now()
	err = fn(cctx, inst)
	d := time.Since(t0)
	var verr *sdk.ValidationError
	switch {
	case err == nil:
		m.stats.end(method, outcomeOK, d)
		m.succeeded()
		return nil, false
	case errors.As(err, &verr):
		m.stats.end(method, outcomeOK, d)
		return verr, false
	case ctx.Err() != nil:
		m.stats.end(method, outcomeCanceled, d)
		return fmt.Errorf("plugin %s: %s: %w", m.name, method, ctx.Err()), false
	case cctx.Err() != nil || pastDeadline(cctx):
		// The plugin's side may reset the stream at the deadline a moment
		// before the host's own timer fires: the clock decides.
		n := m.stats.end(method, outcomeTimeout, d)
		if hr := m.h.cfg.HangRestart; hr > 0 && n >= hr && !inst.hasExited() {
			m.lost(inst, fmt.Errorf("%d calls in a row timed out", n))
		}
		return fmt.Errorf("plugin %s: %s: no answer within %s: %w", m.name, method, m.timeout, ErrTimeout), false
	case errors.Is(err, sdk.ErrUnavailable) || errors.Is(err, context.Canceled) || inst.hasExited():
		m.stats.end(method, outcomeUnavailable, d)
		m.lost(inst, fmt.Errorf("%s call failed: %w", method, err))
		return fmt.Errorf("plugin %s: %w", m.name, err), true
	}
	m.stats.end(method, outcomeError, d)
	return fmt.Errorf("plugin %s: %w", m.name, err), false
}

// lineLogger logs what a plugin writes to its stdout and stderr after
// go-plugin took them over (fmt.Print in a plugin), one record a line.
type lineLogger struct {
	log *slog.Logger
	msg string
	mu  sync.Mutex
	buf []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(l.buf[:i])); line != "" {
			l.log.Info(l.msg, "line", line)
		}
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 64<<10 {
		l.log.Info(l.msg, "line", string(l.buf))
		l.buf = l.buf[:0]
	}
	return len(p), nil
}

// pastDeadline reports whether ctx's deadline has (all but) passed.
func pastDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < time.Millisecond
}
