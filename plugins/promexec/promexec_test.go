package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
	"github.com/vmpulse/vmpulse/plugins/sdk/plugintest"
)

const exposition = `# HELP ups_battery_charge_ratio Battery charge.
# TYPE ups_battery_charge_ratio gauge
ups_battery_charge_ratio{ups="a"} 0.97
ups_battery_charge_ratio{ups="b"} 0.5
# HELP ups_output_watts Output power.
# TYPE ups_output_watts gauge
ups_output_watts{ups="a"} 412
# TYPE ups_transfers_total counter
ups_transfers_total 3
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.5"} 0.01
rpc_duration_seconds{quantile="0.99"} 0.2
rpc_duration_seconds_sum 17
rpc_duration_seconds_count 900
# TYPE req_size_bytes histogram
req_size_bytes_bucket{le="100"} 4
req_size_bytes_bucket{le="+Inf"} 6
req_size_bytes_sum 800
req_size_bytes_count 6
fan_rpm 1200 1760000000000
`

func TestParseExposition(t *testing.T) {
	src, err := newSource(Config{Command: []string{"true"}, EntityKind: "host", EntityID: "host-7"})
	if err != nil {
		t.Fatal(err)
	}
	fams, err := src.parse([]byte(exposition))
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_770_000_000_000)
	got := map[string]sdk.Sample{}
	for _, s := range src.samples(fams, now) {
		var ls []string
		for k, v := range s.Labels {
			ls = append(ls, k+"="+v)
		}
		slices.Sort(ls)
		got[s.Series+"{"+strings.Join(ls, ",")+"}"] = s
		if s.Entity != (sdk.Entity{Kind: "host", ID: "host-7"}) {
			t.Errorf("%s: entity %+v", s.Series, s.Entity)
		}
	}
	want := map[string]float64{
		"ups_battery_charge_ratio{ups=a}": 0.97, "ups_battery_charge_ratio{ups=b}": 0.5, "ups_output_watts{ups=a}": 412,
		"ups_transfers_total{}": 3, "rpc_duration_seconds{quantile=0.5}": 0.01, "rpc_duration_seconds{quantile=0.99}": 0.2,
		"rpc_duration_seconds_sum{}": 17, "rpc_duration_seconds_count{}": 900,
		"req_size_bytes_bucket{le=100}": 4, "req_size_bytes_bucket{le=+Inf}": 6, "req_size_bytes_sum{}": 800, "req_size_bytes_count{}": 6,
		"fan_rpm{}": 1200,
	}
	if len(got) != len(want) {
		t.Errorf("%d samples, want %d: %v", len(got), len(want), got)
	}
	for k, v := range want {
		s, ok := got[k]
		if !ok || s.Value != v {
			t.Errorf("%s = %v (present %v), want %v", k, s.Value, ok, v)
		}
	}
	if ts := got["fan_rpm{}"].Time; !ts.Equal(time.UnixMilli(1_760_000_000_000)) {
		t.Errorf("fan_rpm at %s, want the exposition's own timestamp", ts)
	}
	if ts := got["ups_output_watts{ups=a}"].Time; !ts.Equal(now) {
		t.Errorf("ups_output_watts at %s, want the scrape time", ts)
	}
	units := map[string]string{}
	for _, f := range fams {
		for _, s := range series(f) {
			units[s.Name] = s.Unit + "/" + s.Type
		}
	}
	for name, u := range map[string]string{"ups_battery_charge_ratio": "1/gauge", "ups_output_watts": "W/gauge", "ups_transfers_total": "/counter",
		"rpc_duration_seconds": "s/gauge", "rpc_duration_seconds_count": "1/counter", "req_size_bytes_bucket": "1/counter", "req_size_bytes_sum": "By/counter",
		"fan_rpm": "rpm/gauge"} {
		if units[name] != u {
			t.Errorf("series %s: unit/type %q, want %q", name, units[name], u)
		}
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	src, _ := newSource(Config{Command: []string{"true"}})
	if _, err := src.parse([]byte("ups_output_watts{ups=\"a\" 412\n")); err == nil || !strings.Contains(err.Error(), "parse the exposition") {
		t.Errorf("err = %v, want a parse error", err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		c     Config
		field string
	}{
		{Config{}, "command"},
		{Config{Command: []string{"x"}, URL: "http://127.0.0.1/"}, "url"},
		{Config{URL: "http://example.com/metrics"}, "url"},
		{Config{URL: "ftp://127.0.0.1/"}, "url"},
		{Config{Command: []string{"x"}, Timeout: "soon"}, "timeout"},
		{Config{Command: []string{"x"}, Interval: "1ms"}, "interval"},
		{Config{Command: []string{"x"}, Include: "("}, "include"},
		{Config{Command: []string{"x"}, EntityKind: "host"}, "entity_id"},
		{Config{Command: []string{"x"}, MaxBytes: -1}, "max_bytes"},
	} {
		_, err := newSource(tc.c)
		ve, ok := err.(*sdk.ValidationError)
		if !ok || len(ve.Fields) != 1 || ve.Fields[0].Field != tc.field {
			t.Errorf("%+v: %v, want one error on %s", tc.c, err, tc.field)
		}
	}
	if _, err := newSource(Config{URL: "http://localhost:9100/metrics"}); err != nil {
		t.Errorf("localhost URL: %v", err)
	}
	if _, err := newSource(Config{URL: "http://[::1]:9100/metrics"}); err != nil {
		t.Errorf("::1 URL: %v", err)
	}
}

// TestCommandFailures: a failing command's stderr, a command that runs
// past the timeout, and an exposition beyond max_bytes are clear errors.
func TestCommandFailures(t *testing.T) {
	ctx := context.Background()
	src, _ := newSource(Config{Command: []string{"sh", "-c", "echo 'sensor offline' >&2; exit 3"}})
	if _, err := src.read(ctx); err == nil || !strings.Contains(err.Error(), "exit status 3: sensor offline") {
		t.Errorf("failing command: %v", err)
	}
	src, _ = newSource(Config{Command: []string{"sleep", "10"}, Timeout: "200ms"})
	t0 := time.Now()
	if _, err := src.read(ctx); err == nil || !strings.Contains(err.Error(), "no output within 200ms") {
		t.Errorf("hanging command: %v", err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("the hanging command was stopped after %s", d)
	}
	src, _ = newSource(Config{Command: []string{"sh", "-c", "yes 'a 1' | head -c 100000"}, MaxBytes: 1000})
	if _, err := src.read(ctx); err == nil || !strings.Contains(err.Error(), "exceeds max_bytes (1000)") {
		t.Errorf("big output: %v", err)
	}
}

// TestPluginUnderHost builds promexec and runs it as the agent does, its
// own process with its checksum pinned and its config in the environment,
// collecting from a real command (sh printing a file) and from a local
// exporter over HTTP.
func TestPluginUnderHost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin; skipped with -short")
	}
	dir := t.TempDir()
	bins := plugintest.Build(t, dir, ".")
	bin := bins["promexec"]
	expo := filepath.Join(t.TempDir(), "metrics.prom")
	if err := os.WriteFile(expo, []byte(exposition), 0o600); err != nil {
		t.Fatal(err)
	}
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte("# TYPE node_load1 gauge\nnode_load1 0.25\n"))
	}))
	defer exporter.Close()

	cfgEnv := func(c Config) []string {
		b, _ := json.Marshal(c)
		return []string{sdk.EnvConfig + "=" + string(b)}
	}
	for _, tc := range []struct {
		name   string
		cfg    Config
		series string
		value  float64
		n      int
	}{
		{"command", Config{Command: []string{"sh", "-c", "cat " + expo}, Interval: "15s"}, "ups_output_watts", 412, 13},
		{"url", Config{URL: exporter.URL + "/metrics", Include: "^node_"}, "node_load1", 0.25, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := plugintest.Host(t, host.Config{Dir: dir, Plugins: map[string]host.PluginConfig{
				"promexec": {SHA256: bin.SHA256, Env: cfgEnv(tc.cfg)}}})
			if err := h.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			c, err := h.Collector("promexec")
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			d, err := c.Describe(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(d.Series, func(s sdk.Series) bool { return s.Name == tc.series }) {
				t.Errorf("Describe: %+v lacks %s", d.Series, tc.series)
			}
			if tc.name == "command" && d.Interval != 15*time.Second {
				t.Errorf("Describe: interval %s, want 15s", d.Interval)
			}
			since := time.Now().Add(-time.Second)
			samples, err := c.Collect(ctx, since)
			if err != nil {
				t.Fatal(err)
			}
			var found bool
			for _, s := range samples {
				if s.Series == tc.series && s.Value == tc.value {
					found = true
				}
				if !s.Time.After(since) {
					t.Errorf("sample %s at %s, not after since %s", s.Series, s.Time, since)
				}
			}
			// fan_rpm carries its own (old) timestamp: not after since.
			if !found || len(samples) != tc.n-btoi(tc.name == "command") {
				t.Errorf("Collect: %d samples (want %d), %s=%v found %v", len(samples), tc.n-btoi(tc.name == "command"), tc.series, tc.value, found)
			}
			if st := h.Status(); st[0].Version == "" || st[0].State != host.StateRunning {
				t.Errorf("status %+v", st[0])
			}
		})
	}

	// A bad config: the plugin runs, and every call says what is wrong.
	h := plugintest.Host(t, host.Config{Dir: dir, Plugins: map[string]host.PluginConfig{
		"promexec": {SHA256: bin.SHA256, Env: cfgEnv(Config{URL: "http://example.com/metrics"})}}})
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, _ := h.Collector("promexec")
	if _, err := c.Describe(context.Background()); err == nil || !strings.Contains(err.Error(), "url: ") || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("bad config: Describe = %v", err)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestErrorsRedactTheURL: a URL's password and query (a token) never reach
// an error, which the agent sends in its heartbeat and the API shows.
func TestErrorsRedactTheURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "http://scraper:hunter2@", 1) + "/metrics?token=s3cret"
	src, err := newSource(Config{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.read(context.Background())
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("read: %v, want the 403", err)
	}
	srv.Close() // now refused: the client's error
	src2, _ := newSource(Config{URL: strings.Replace(srv.URL, "http://", "http://scraper:hunter2@", 1) + "/?token=s3cret"})
	_, err2 := src2.read(context.Background())
	_, err3 := newSource(Config{URL: "http://scraper:hunter2@example.com/?token=s3cret"})
	for _, e := range []error{err, err2, err3} {
		if e == nil {
			t.Fatal("want an error")
		}
		if strings.Contains(e.Error(), "hunter2") || strings.Contains(e.Error(), "s3cret") {
			t.Errorf("error carries a secret: %v", e)
		}
	}
}
