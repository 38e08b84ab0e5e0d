package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
	"github.com/vmpulse/vmpulse/plugins/sdk/plugintest"
)

var (
	buildDir  string
	buildOnce sync.Once
	testBin   plugintest.Binary
)

func TestMain(m *testing.M) {
	var err error
	buildDir, err = os.MkdirTemp("", "vmpulse-plugin-build-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(buildDir)
	os.Exit(code)
}

// testPlugin builds plugins/internal/testplugin once per test binary.
func testPlugin(t testing.TB) plugintest.Binary {
	t.Helper()
	buildOnce.Do(func() {
		testBin = plugintest.Build(t, buildDir, "github.com/vmpulse/vmpulse/plugins/internal/testplugin")["testplugin"]
	})
	if testBin.Path == "" {
		t.Fatal("testplugin was not built")
	}
	return testBin
}

// install links the test plugin into a fresh plugin folder under each name
// and returns the folder and a config pinning each to the right checksum.
func install(t testing.TB, names ...string) (string, map[string]host.PluginConfig) {
	t.Helper()
	bin := testPlugin(t)
	dir := t.TempDir()
	cfgs := map[string]host.PluginConfig{}
	for _, n := range names {
		if err := os.Symlink(bin.Path, filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
		cfgs[n] = host.PluginConfig{SHA256: bin.SHA256}
	}
	return dir, cfgs
}

func note(id string, cfg any) sdk.Notification {
	raw, _ := json.Marshal(cfg)
	return sdk.Notification{
		ID: id, Channel: "test", Config: raw, Locale: "en", Attempt: 1,
		Alerts: []sdk.Alert{{ID: "a1", Rule: "cpu", Severity: sdk.SeverityCritical, State: sdk.StateFiring,
			Entity: sdk.Entity{Kind: "vm", ID: "vm-1", Name: "web-1"}, StartsAt: time.Now()}},
	}
}

var ok = map[string]string{"mode": "ok"}

func notifier(t testing.TB, h *host.Host, name string) sdk.Notifier {
	t.Helper()
	n, err := h.Notifier(name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func status(t testing.TB, h *host.Host, name string) host.Status {
	t.Helper()
	for _, s := range h.Status() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no status for plugin %s", name)
	return host.Status{}
}

func mustDeliver(t testing.TB, n sdk.Notifier, id string) sdk.Result {
	t.Helper()
	res, err := n.Notify(context.Background(), note(id, ok))
	if err != nil {
		t.Fatalf("notify %s: %v", id, err)
	}
	if res.Outcome != sdk.Delivered {
		t.Fatalf("notify %s: outcome %v", id, res.Outcome)
	}
	return res
}

func TestHandshakeVersionMismatchRefused(t *testing.T) {
	dir, cfgs := install(t, "future", "current")
	fc := cfgs["future"]
	fc.Env = []string{"TESTPLUGIN_PROTOCOL_VERSION=2"}
	cfgs["future"] = fc
	h := plugintest.Host(t, host.Config{Dir: dir, Plugins: cfgs})

	st := status(t, h, "future")
	if st.State != host.StateRefused {
		t.Fatalf("state = %s, want refused", st.State)
	}
	want := fmt.Sprintf("plugin future speaks plugin protocol version 2, this host speaks %d", sdk.ProtocolVersion)
	if !strings.Contains(st.LastError, want) {
		t.Fatalf("last error = %q, want it to say %q", st.LastError, want)
	}
	n := notifier(t, h, "future")
	_, err := n.Notify(context.Background(), note("n1", ok))
	if !errors.Is(err, host.ErrHandshake) || !errors.Is(err, host.ErrRefused) {
		t.Fatalf("notify err = %v, want ErrHandshake and ErrRefused", err)
	}
	// The refusal is final: no restarts, and the other plugin is unaffected.
	if st := status(t, h, "future"); st.Restarts != 0 {
		t.Fatalf("refused plugin restarted %d times", st.Restarts)
	}
	mustDeliver(t, notifier(t, h, "current"), "n2")
}

func TestChecksumMismatchRefused(t *testing.T) {
	dir, cfgs := install(t, "tampered", "unpinned", "good")
	cfgs["tampered"] = host.PluginConfig{SHA256: strings.Repeat("ab", 32)}
	delete(cfgs, "unpinned")
	h := plugintest.Host(t, host.Config{Dir: dir, Plugins: cfgs})

	st := status(t, h, "tampered")
	if st.State != host.StateRefused || !strings.Contains(st.LastError, "has sha256 "+testPlugin(t).SHA256) ||
		!strings.Contains(st.LastError, "the config pins "+strings.Repeat("ab", 32)) {
		t.Fatalf("tampered: state %s, last error %q", st.State, st.LastError)
	}
	_, err := notifier(t, h, "tampered").Notify(context.Background(), note("n1", ok))
	if !errors.Is(err, host.ErrChecksum) {
		t.Fatalf("notify err = %v, want ErrChecksum", err)
	}
	if st := status(t, h, "unpinned"); st.State != host.StateRefused || !strings.Contains(st.LastError, "no sha256 is pinned") {
		t.Fatalf("unpinned: state %s, last error %q", st.State, st.LastError)
	}
	mustDeliver(t, notifier(t, h, "good"), "n2")
}

// TestKilledMidCallRestartedAndRetried kills the plugin's process while it
// serves a call: the host restarts it, the call is retried on the new
// process and delivered, and another plugin serving calls all along never
// notices.
func TestKilledMidCallRestartedAndRetried(t *testing.T) {
	dir, cfgs := install(t, "victim", "bystander")
	h := plugintest.Host(t, host.Config{Dir: dir, Plugins: cfgs})
	victim, bystander := notifier(t, h, "victim"), notifier(t, h, "bystander")
	pid0 := status(t, h, "victim").PID

	stop := make(chan struct{})
	var byCalls atomic.Int64
	var byErr atomic.Value
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := bystander.Notify(context.Background(), note(fmt.Sprint("b", i), ok)); err != nil {
				byErr.Store(err)
			}
			byCalls.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	defer close(stop)

	tmp := t.TempDir()
	cfg := map[string]string{"mode": "block_once", "marker": filepath.Join(tmp, "marker"), "pid_file": filepath.Join(tmp, "pid")}
	type answer struct {
		res sdk.Result
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := victim.Notify(context.Background(), note("v1", cfg))
		done <- answer{res, err}
	}()
	pid := waitPID(t, cfg["pid_file"])
	if pid != pid0 {
		t.Fatalf("call runs in pid %d, status says %d", pid, pid0)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var a answer
	select {
	case a = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the call did not return after its plugin was killed")
	}
	if a.err != nil || a.res.Outcome != sdk.Delivered {
		t.Fatalf("retried call: %+v, %v", a.res, a.err)
	}
	st := status(t, h, "victim")
	if st.State != host.StateRunning || st.Restarts != 1 || st.PID == pid0 || st.PID == 0 {
		t.Fatalf("victim after the kill: %+v", st)
	}
	if !strings.HasSuffix(a.res.ProviderID, "/"+strconv.Itoa(st.PID)) {
		t.Fatalf("delivered by %q, want the new process %d", a.res.ProviderID, st.PID)
	}
	if !strings.Contains(st.LastError, "notify call failed") && !strings.Contains(st.LastError, "exited") {
		t.Fatalf("victim last error = %q", st.LastError)
	}
	if err, _ := byErr.Load().(error); err != nil {
		t.Fatalf("bystander failed: %v", err)
	}
	if byCalls.Load() == 0 {
		t.Fatal("bystander made no calls")
	}
	if st := status(t, h, "bystander"); st.Restarts != 0 || st.State != host.StateRunning {
		t.Fatalf("bystander: %+v", st)
	}
}

func waitPID(t *testing.T, file string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(file); err == nil {
			pid, err := strconv.Atoi(string(b))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the plugin never started the call")
	return 0
}

// TestCrashMidCallRetried: the plugin exits by itself in the middle of a
// call; the call is retried on the restarted plugin.
func TestCrashMidCallRetried(t *testing.T) {
	dir, cfgs := install(t, "crasher")
	h := plugintest.Host(t, host.Config{Dir: dir, Plugins: cfgs})
	cfg := map[string]string{"mode": "crash_once", "marker": filepath.Join(t.TempDir(), "marker")}
	res, err := notifier(t, h, "crasher").Notify(context.Background(), note("c1", cfg))
	if err != nil || res.Outcome != sdk.Delivered {
		t.Fatalf("notify: %+v, %v", res, err)
	}
	if st := status(t, h, "crasher"); st.Restarts != 1 || st.Unavailable != 1 || st.State != host.StateRunning {
		t.Fatalf("status: %+v", st)
	}
}

// TestHangingPluginTimesOut: calls the plugin never answers end at the
// per-call timeout, the plugin is restarted after HangRestart of them in a
// row, and another plugin answers meanwhile.
func TestHangingPluginTimesOut(t *testing.T) {
	const timeout = time.Second
	dir, cfgs := install(t, "hanger", "bystander")
	hc := cfgs["hanger"]
	hc.CallTimeout = timeout
	cfgs["hanger"] = hc
	h := plugintest.Host(t, host.Config{Dir: dir, Plugins: cfgs, HangRestart: 2})
	hanger, bystander := notifier(t, h, "hanger"), notifier(t, h, "bystander")

	errc := make(chan error, 2)
	t0 := time.Now()
	for i := range 2 {
		go func() {
			_, err := hanger.Notify(context.Background(), note(fmt.Sprint("h", i), map[string]string{"mode": "hang"}))
			errc <- err
		}()
	}
	// The bystander is served while the hanger hangs.
	for i := range 3 {
		mustDeliver(t, bystander, fmt.Sprint("b", i))
	}
	if len(errc) > 0 {
		t.Fatalf("the bystander was served only after the hanging calls ended (%s)", time.Since(t0))
	}
	for i := range 2 {
		err := <-errc
		if !errors.Is(err, host.ErrTimeout) {
			t.Fatalf("hang %d: err = %v, want ErrTimeout", i, err)
		}
	}
	if took := time.Since(t0); took < timeout || took > 5*timeout {
		t.Fatalf("the hanging calls returned after %s, want about %s", took, timeout)
	}
	st := status(t, h, "hanger")
	if st.Timeouts != 2 || st.Restarts != 1 || !strings.Contains(st.LastError, "2 calls in a row timed out") {
		t.Fatalf("hanger: %+v", st)
	}
	// The restarted hanger serves again.
	mustDeliver(t, hanger, "h-after")
}

// TestCrashedIdlePluginRestarted: a plugin that dies between calls is
// back without any call noticing.
func TestCrashedIdlePluginRestarted(t *testing.T) {
	dir, cfgs := install(t, "idle")
	h := plugintest.Host(t, host.Config{Dir: dir, Plugins: cfgs})
	pid0 := status(t, h, "idle").PID
	if err := syscall.Kill(pid0, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := status(t, h, "idle")
		if st.State == host.StateRunning && st.PID != pid0 && st.Restarts == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not restarted: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	mustDeliver(t, notifier(t, h, "idle"), "i1")
	if st := status(t, h, "idle"); st.Unavailable != 0 {
		t.Fatalf("a call saw the crash: %+v", st)
	}
}

func TestConcurrencyBounded(t *testing.T) {
	dir, cfgs := install(t, "slow")
	sc := cfgs["slow"]
	sc.MaxConcurrent = 2
	cfgs["slow"] = sc
	h := plugintest.Host(t, host.Config{Dir: dir, Plugins: cfgs})
	n := notifier(t, h, "slow")
	var wg sync.WaitGroup
	var maxInFlight atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if f := int64(status(t, h, "slow").InFlight); f > maxInFlight.Load() {
				maxInFlight.Store(f)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	t0 := time.Now()
	for i := range 6 {
		wg.Go(func() {
			if _, err := n.Notify(context.Background(), note(fmt.Sprint(i), map[string]string{"mode": "sleep", "sleep": "100ms"})); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	close(stop)
	if took := time.Since(t0); took < 300*time.Millisecond {
		t.Fatalf("6 calls of 100ms with 2 at a time took %s", took)
	}
	if m := maxInFlight.Load(); m > 2 || m < 1 {
		t.Fatalf("max in flight = %d, want 2", m)
	}
}

// TestPluginLogsForwarded: what the plugin logs arrives in the host's slog
// with the plugin's name.
func TestPluginLogsForwarded(t *testing.T) {
	dir, cfgs := install(t, "chatty")
	rec := &recorder{}
	h := plugintest.Host(t, host.Config{Dir: dir, Plugins: cfgs, Logger: slog.New(rec)})
	mustNotify(t, notifier(t, h, "chatty"), map[string]string{"mode": "log", "message": "hello from the plugin"})
	deadline := time.Now().Add(5 * time.Second)
	for !rec.has("hello from the plugin", "chatty") {
		if time.Now().After(deadline) {
			t.Fatalf("plugin log line not forwarded; got %v", rec.dump())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustNotify(t *testing.T, n sdk.Notifier, cfg any) {
	t.Helper()
	if res, err := n.Notify(context.Background(), note("x", cfg)); err != nil || res.Outcome != sdk.Delivered {
		t.Fatalf("notify: %+v, %v", res, err)
	}
}

type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
	pre  []slog.Attr
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(r.pre...)
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
	return nil
}
func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{r: r, pre: as}
}
func (r *recorder) WithGroup(string) slog.Handler { return r }

type withAttrs struct {
	r   *recorder
	pre []slog.Attr
}

func (w *withAttrs) Enabled(context.Context, slog.Level) bool { return true }
func (w *withAttrs) Handle(ctx context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(w.pre...)
	return w.r.Handle(ctx, rec)
}
func (w *withAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{r: w.r, pre: append(append([]slog.Attr(nil), w.pre...), as...)}
}
func (w *withAttrs) WithGroup(string) slog.Handler { return w }

func (r *recorder) has(msg, plugin string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if rec.Message != msg || rec.Level != slog.LevelInfo {
			continue
		}
		found := false
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "plugin" && a.Value.String() == plugin {
				found = true
			}
			return true
		})
		if found {
			return true
		}
	}
	return false
}

func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		out = append(out, rec.Message)
	}
	return out
}

func TestValidateAndErrorsCrossTheBoundary(t *testing.T) {
	dir, cfgs := install(t, "strict")
	h := plugintest.Host(t, host.Config{Dir: dir, Plugins: cfgs})
	n := notifier(t, h, "strict")

	err := n.Validate(context.Background(), json.RawMessage(`{"mode":"warp","sleep":"soon"}`))
	var verr *sdk.ValidationError
	if !errors.As(err, &verr) || len(verr.Fields) != 2 || verr.Fields[0].Field != "mode" || verr.Fields[1].Field != "sleep" {
		t.Fatalf("validate: %v", err)
	}
	if err := n.Validate(context.Background(), json.RawMessage(`{"mode":"ok","colour":1}`)); !errors.As(err, &verr) || verr.Fields[0].Field != "colour" {
		t.Fatalf("unknown field: %v", err)
	}
	if err := n.Validate(context.Background(), json.RawMessage(`{"mode":"ok"}`)); err != nil {
		t.Fatalf("valid config: %v", err)
	}

	_, err = n.Notify(context.Background(), note("e", map[string]string{"mode": "error"}))
	var perr *sdk.PluginError
	if !errors.As(err, &perr) || !strings.Contains(perr.Message, "asked to fail") {
		t.Fatalf("plugin error: %v", err)
	}
	// A panic fails its call only; the process lives on.
	pid := status(t, h, "strict").PID
	_, err = n.Notify(context.Background(), note("p", map[string]string{"mode": "panic"}))
	if !errors.As(err, &perr) || !strings.Contains(perr.Message, "panicked") {
		t.Fatalf("panic: %v", err)
	}
	if st := status(t, h, "strict"); st.PID != pid || st.Restarts != 0 || st.Errors != 2 {
		t.Fatalf("after panic: %+v", st)
	}
}

func TestCollectorThroughHost(t *testing.T) {
	dir, cfgs := install(t, "sensors")
	h := plugintest.Host(t, host.Config{Dir: dir, Plugins: cfgs})
	if got := h.Names(sdk.KindCollector); len(got) != 1 || got[0] != "sensors" {
		t.Fatalf("collectors = %v", got)
	}
	c, err := h.Collector("sensors")
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Describe(context.Background())
	if err != nil || len(d.Series) != 1 || d.Series[0].Unit != "1" || d.Interval != 30*time.Second {
		t.Fatalf("describe: %+v, %v", d, err)
	}
	samples, err := c.Collect(context.Background(), time.Time{})
	if err != nil || len(samples) != 1 || samples[0].Value != 42 || samples[0].Entity.ID != "host-1" ||
		samples[0].Labels["sensor"] != "a" || samples[0].Time.IsZero() {
		t.Fatalf("collect: %+v, %v", samples, err)
	}
	if _, err := h.Collector("nope"); !errors.Is(err, host.ErrNotFound) {
		t.Fatalf("unknown collector: %v", err)
	}
}

func TestStatusAndMetrics(t *testing.T) {
	dir, cfgs := install(t, "counted")
	h := plugintest.Host(t, host.Config{Dir: dir, Plugins: cfgs})
	n := notifier(t, h, "counted")
	for i := range 20 {
		mustDeliver(t, n, fmt.Sprint(i))
	}
	st := status(t, h, "counted")
	if st.Calls != 20 || st.Errors != 0 || st.P99 <= 0 || st.P99MS <= 0 || st.Version != "0.0.1-test" ||
		st.ProtocolVersion != sdk.ProtocolVersion || len(st.Kinds) != 2 || st.SHA256 != testPlugin(t).SHA256 {
		t.Fatalf("status: %+v", st)
	}
	b, err := json.Marshal(st)
	if err != nil || !strings.Contains(string(b), `"p99_ms":`) || !strings.Contains(string(b), `"state":"running"`) {
		t.Fatalf("status JSON: %s, %v", b, err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h.Metrics())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" || l.GetName() == "outcome" || l.GetName() == "state" {
					key += "," + l.GetName() + "=" + l.GetValue()
				}
			}
			switch {
			case m.GetCounter() != nil:
				got[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				got[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for key, want := range map[string]float64{
		"vmpulse_plugin_up,state=running":                          1,
		"vmpulse_plugin_restarts_total":                            0,
		"vmpulse_plugin_calls_total,method=notify,outcome=ok":      20,
		"vmpulse_plugin_calls_total,method=notify,outcome=timeout": 0,
		"vmpulse_plugin_call_duration_seconds,method=notify":       20,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
}

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("webhook", 0o755)
	write("email.exe", 0o755)
	write("README.md", 0o644)
	write(".hidden", 0o755)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	found, err := host.Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 2 || found[0].Name != "email" || found[1].Name != "webhook" {
		t.Fatalf("found %+v", found)
	}
	if _, err := host.Discover(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("discover of a missing folder succeeded")
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := host.New(host.Config{}); err == nil {
		t.Fatal("empty dir accepted")
	}
	_, err := host.New(host.Config{Dir: "x", Plugins: map[string]host.PluginConfig{"w": {SHA256: "abc"}}})
	if err == nil || !strings.Contains(err.Error(), "plugins.w.sha256") {
		t.Fatalf("bad sha256: %v", err)
	}
}

func (r *recorder) dump() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		s := rec.Level.String() + " " + rec.Message
		rec.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
		out = append(out, s)
	}
	return out
}
