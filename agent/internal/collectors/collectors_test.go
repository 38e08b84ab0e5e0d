package collectors

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/plugintest"
	"github.com/vmpulse/vmpulse/protocol"
)

// fakeSpool is the agent's spool as the runtime sees it: a sink of
// payloads and a metadata store.
type fakeSpool struct {
	mu       sync.Mutex
	payloads []*protocol.Samples
	meta     map[string][]byte
	fail     error
}

func newFakeSpool() *fakeSpool { return &fakeSpool{meta: map[string][]byte{}} }

func (f *fakeSpool) Samples(_ context.Context, s *protocol.Samples) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.payloads = append(f.payloads, s)
	return nil
}

func (f *fakeSpool) GetMeta(k string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.meta[k], nil
}

func (f *fakeSpool) SetMeta(k string, v []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.meta[k] = v
	return nil
}

// series returns every spooled series of source prefix src.
func (f *fakeSpool) series(src string) []protocol.SeriesData {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []protocol.SeriesData
	for _, p := range f.payloads {
		for _, s := range p.Series {
			if strings.HasPrefix(s.Key.Source, src) {
				out = append(out, s)
			}
		}
	}
	return out
}

// buildPlugins builds the test collector once and installs it in a fresh
// folder under each of names; it returns the folder and the checksum.
func buildPlugins(t *testing.T, names ...string) (string, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a plugin; skipped with -short")
	}
	bins := plugintest.Build(t, t.TempDir(), "./internal/testcollector")
	b := bins["testcollector"]
	data, err := os.ReadFile(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, b.SHA256
}

func start(t *testing.T, cfg Config, sp *fakeSpool) *Runtime {
	t.Helper()
	cfg.Site, cfg.AgentID = "dc1", "agent-1"
	cfg.Logger = plugintest.Logger(t)
	r, err := New(cfg, sp, sp)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r
}

func statusOf(r *Runtime, name string) Status {
	for _, st := range r.Status() {
		if st.Name == name {
			return st
		}
	}
	return Status{}
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: not %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSamplesSpooled: a plugin's samples become series named after it,
// with the units Describe declared, bound to the entity they name (the
// kind Describe declared when they name only an id) or to the site, and
// their labels as the instance; the newest sample time is persisted.
func TestSamplesSpooled(t *testing.T) {
	dir, sum := buildPlugins(t, "sensors")
	sp := newFakeSpool()
	r := start(t, Config{Dir: dir, Plugins: []Plugin{{Name: "sensors", SHA256: sum, Interval: 200 * time.Millisecond,
		Env: []string{"TESTCOLLECTOR_MODE=ok"}}}}, sp)
	waitFor(t, "three collects", 20*time.Second, func() bool { return statusOf(r, "sensors").Collects >= 3 })

	got := map[string]protocol.SeriesKey{}
	points := map[string]int{}
	for _, s := range sp.series("plugin:sensors:agent-1") {
		k := s.Key.EntityKind + "/" + s.Key.EntityID + "/" + s.Key.Instance
		got[k] = s.Key
		points[k] += len(s.Timestamps)
		for _, col := range s.Values {
			for _, v := range col {
				if math.IsNaN(v) {
					t.Errorf("%s: NaN in a single-counter series", k)
				}
			}
		}
	}
	want := map[string]protocol.Counter{
		"host/host-1/sensor=cpu":   {Name: "plugin.sensors.temp", Unit: "Cel"},
		"host/host-1/sensor=inlet": {Name: "plugin.sensors.temp", Unit: "Cel"},
		"site/dc1/":                {Name: "plugin.sensors.up", Unit: "1"},
	}
	if len(got) != len(want) {
		t.Errorf("series %v, want %v", got, want)
	}
	for k, c := range want {
		if key, ok := got[k]; !ok || !slices.Equal(key.Counters, []protocol.Counter{c}) {
			t.Errorf("series %s: %+v, want counter %+v", k, key, c)
		}
		if points[k] < 3 {
			t.Errorf("series %s: %d points after 3 collects", k, points[k])
		}
	}
	st := statusOf(r, "sensors")
	if st.State != "running" || st.Version != "0.0.1-test" || st.Series != 2 || st.Samples < 9 || st.Failures != 0 || st.LastError != "" {
		t.Errorf("status %+v", st)
	}
	if b, _ := sp.GetMeta("plugins/sensors/since"); b == nil {
		t.Error("the newest spooled sample time is not persisted")
	}
	hb := r.Heartbeat()
	if len(hb) != 1 || hb[0].Name != "sensors" || hb[0].State != "running" || hb[0].LastCollect == 0 || hb[0].Samples != st.Samples && hb[0].Samples < st.Samples {
		t.Errorf("heartbeat %+v", hb)
	}
}

// TestCrashRestartAndIsolation: one plugin crashes mid-collect, one hangs,
// one is pinned to the wrong checksum, one is not installed. The crashed
// one is restarted and its collect retried; the hung one times out; the
// others are refused or missing; none of it delays the healthy plugin.
func TestCrashRestartAndIsolation(t *testing.T) {
	dir, sum := buildPlugins(t, "healthy", "crashy", "hangs", "tampered")
	marker := filepath.Join(t.TempDir(), "crashed")
	sp := newFakeSpool()
	r := start(t, Config{Dir: dir, Plugins: []Plugin{
		{Name: "healthy", SHA256: sum, Interval: 200 * time.Millisecond},
		{Name: "crashy", SHA256: sum, Interval: 200 * time.Millisecond, Env: []string{"TESTCOLLECTOR_CRASH=" + marker}},
		{Name: "hangs", SHA256: sum, Interval: 200 * time.Millisecond, Timeout: 300 * time.Millisecond, Env: []string{"TESTCOLLECTOR_MODE=hang"}},
		{Name: "tampered", SHA256: strings.Repeat("ab", 32), Interval: 200 * time.Millisecond},
		{Name: "absent", SHA256: sum, Interval: 200 * time.Millisecond},
	}}, sp)
	waitFor(t, "crashy restarted and collecting", 30*time.Second, func() bool {
		st := statusOf(r, "crashy")
		return st.Restarts >= 1 && st.Collects >= 2 && st.State == "running"
	})
	waitFor(t, "hangs timing out", 30*time.Second, func() bool { return statusOf(r, "hangs").Failures >= 2 })
	healthyBefore := statusOf(r, "healthy").Collects
	time.Sleep(time.Second)
	if n := statusOf(r, "healthy").Collects - healthyBefore; n < 2 {
		t.Errorf("healthy collected %d times in 1s at a 200ms interval beside a hanging plugin", n)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("crashy never crashed: %v", err)
	}
	// The host notices the exit itself, or through the call that failed.
	if st := statusOf(r, "crashy"); st.Failures != 0 || !strings.Contains(st.LastError, "plugin unavailable") && !strings.Contains(st.LastError, "exited") {
		t.Errorf("crashy: the crashed collect was not retried on the new process, or the crash is not shown: %+v", st)
	}
	for _, hs := range r.Host().Status() {
		if hs.Name == "hangs" && hs.Timeouts < 2 {
			t.Errorf("hangs: %d calls timed out, want ≥ 2: %+v", hs.Timeouts, hs)
		}
	}
	if st := statusOf(r, "tampered"); st.State != "refused" || !strings.Contains(st.LastError, "sha256") {
		t.Errorf("tampered: %+v", st)
	}
	if st := statusOf(r, "absent"); st.State != StateMissing || !strings.Contains(st.LastError, "no executable file absent") {
		t.Errorf("absent: %+v", st)
	}
	if n := len(sp.series("plugin:crashy:")); n == 0 {
		t.Error("no samples from the restarted plugin")
	}
	for _, hb := range r.Heartbeat() {
		var b strings.Builder
		if err := protocol.WriteMessage(&b, &protocol.Heartbeat{Plugins: []protocol.PluginStatus{hb}}); err != nil {
			t.Errorf("heartbeat of %s does not encode: %v", hb.Name, err)
		}
	}
}

// TestUndeclaredAndOldSamplesDropped: series Describe did not declare are
// dropped and reported; samples not newer than the persisted mark are
// not spooled again.
func TestUndeclaredAndOldSamplesDropped(t *testing.T) {
	p := &proc{r: &Runtime{cfg: Config{Site: "dc1", AgentID: "a1"}}, cfg: Plugin{Name: "x"},
		desc: map[string]sdk.Series{"temp": {Name: "temp", Unit: "Cel", EntityKind: "host"}, "up": {Name: "up", Unit: "1"}}}
	since := time.UnixMilli(1_000_000)
	now := time.UnixMilli(2_000_000)
	samples := []sdk.Sample{
		{Series: "temp", Entity: sdk.Entity{ID: "host-1"}, Time: since, Value: 1},                      // old
		{Series: "temp", Entity: sdk.Entity{ID: "host-1"}, Time: since.Add(time.Second), Value: 2},     // kept
		{Series: "temp", Entity: sdk.Entity{ID: "host-1"}, Time: since.Add(2 * time.Second), Value: 3}, // kept
		{Series: "up", Value: 1}, // kept, at now
		{Series: "up", Time: now.Add(time.Second), Value: math.NaN()}, // no value
		{Series: "surprise", Value: 9},                                // undeclared
		{Series: "temp", Time: now, Value: 4},                         // host without an id
		{Series: "temp", Entity: sdk.Entity{ID: "host-2"}, Labels: map[string]string{"a\n": "b"}, Time: now, Value: 5}, // bad label
	}
	out, newest, rep := p.build(samples, since, now)
	if rep.kept != 3 || rep.old != 1 || rep.nonFinite != 1 || rep.undeclared != 1 || rep.badEntity != 2 {
		t.Errorf("report %+v", rep)
	}
	if !newest.Equal(now) {
		t.Errorf("newest %s, want %s", newest, now)
	}
	if err := rep.err(); err == nil || !strings.Contains(err.Error(), `not declared by Describe (e.g. "surprise")`) || !strings.Contains(err.Error(), "2 samples with a bad entity") {
		t.Errorf("report error %v", err)
	}
	if len(out.Series) != 2 || out.Series[0].Key.EntityID != "host-1" || len(out.Series[0].Timestamps) != 2 ||
		out.Series[1].Key.EntityKind != "site" || out.Series[1].Key.EntityID != "dc1" {
		t.Errorf("payload %+v", out.Series)
	}
	// The payload is one the aggregator accepts.
	if _, err := protocol.NewBatch(protocol.KindSamples, protocol.CodecZstd, out); err != nil {
		t.Errorf("payload does not encode: %v", err)
	}
}

func TestInstanceAndTruncate(t *testing.T) {
	if s, err := instance(map[string]string{"b": "2", "a": "1"}); err != nil || s != "a=1,b=2" {
		t.Errorf("instance = %q, %v", s, err)
	}
	if _, err := instance(map[string]string{"k": strings.Repeat("v", 2000)}); err == nil {
		t.Error("2 KB of labels accepted")
	}
	if got := truncate("héllo", 2); got != "h" {
		t.Errorf("truncate cut a rune: %q", got)
	}
}

func TestNewRefusesBadNames(t *testing.T) {
	dir := t.TempDir()
	for _, ps := range [][]Plugin{{{Name: "Bad Name"}}, {{Name: "a"}, {Name: "a"}}} {
		if _, err := New(Config{Dir: dir, Site: "s", AgentID: "a", Plugins: ps}, newFakeSpool(), newFakeSpool()); err == nil {
			t.Errorf("%+v accepted", ps)
		}
	}
}

// TestSinceSurvivesRestart: the newest spooled sample time is read back
// from the spool's metadata when the runtime starts again, so samples
// already sent before an agent restart are not spooled twice, and it is
// what the plugin's Collect receives as since.
func TestSinceSurvivesRestart(t *testing.T) {
	dir, sum := buildPlugins(t, "sensors")
	sp := newFakeSpool()
	future := time.Now().Add(time.Hour)
	if err := sp.SetMeta("plugins/sensors/since", []byte(strconv.FormatInt(future.UnixNano(), 10))); err != nil {
		t.Fatal(err)
	}
	r := start(t, Config{Dir: dir, Plugins: []Plugin{{Name: "sensors", SHA256: sum, Interval: 200 * time.Millisecond}}}, sp)
	waitFor(t, "two collects", 20*time.Second, func() bool { return statusOf(r, "sensors").Collects >= 2 })
	st := statusOf(r, "sensors")
	if st.Samples != 0 || len(sp.series("plugin:")) != 0 {
		t.Errorf("samples older than the persisted mark were spooled: %+v", st)
	}
	if b, _ := sp.GetMeta("plugins/sensors/since"); string(b) != strconv.FormatInt(future.UnixNano(), 10) {
		t.Errorf("the mark moved back: %s", b)
	}
}
