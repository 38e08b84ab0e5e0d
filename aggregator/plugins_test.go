package aggregator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
	"github.com/vmpulse/vmpulse/plugins/sdk/plugintest"
)

func TestReadSHA256SUMS(t *testing.T) {
	const (
		a = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
		b = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
	)
	file := filepath.Join(t.TempDir(), "SHA256SUMS")
	lines := []string{
		a + "  webhook",               // 1: text mode
		b + " *bin/plugins/email.exe", // 2: binary mode, a path, .exe
		"",                            // 3
		"# pinned by hand",            // 4
		"SHA256 (dingtalk) = " + strings.ToUpper(a), // 5: --tag, upper case
		strings.ToUpper(b) + "  wecom\r",            // 6: CRLF
		a + "webhook2",                              // 7: no separator
		a[:60] + "  feishu",                         // 8: short
		a + "  ",                                    // 9: no name
		"SHA256 (promexec = " + a,                   // 10: broken tag
		b + "  webhook",                             // 11: pinned twice
		"what is this",                              // 12
	}
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pins, err := readSHA256SUMS(file)
	want := map[string]string{"webhook": a, "email": b, "dingtalk": a, "wecom": b}
	if !reflect.DeepEqual(pins, want) {
		t.Errorf("pins %v, want %v", pins, want)
	}
	if err == nil {
		t.Fatal("no error for the malformed lines")
	}
	for _, w := range []string{
		file + `:7: want "<sha256 hex>  <file>"`,
		file + `:8: "` + a[:60] + `" is not a SHA-256`,
		file + ":9: no file name after the checksum",
		file + `:10: want "SHA256 (<file>) = <hex>"`,
		file + ":11: webhook is already pinned on line 1",
		file + `:12: "what" is not a SHA-256`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\nlacks %q", err, w)
		}
	}
	if n := len(joined(err)); n != 6 {
		t.Errorf("%d errors, want one per malformed line (6):\n%v", n, err)
	}

	if _, err := readSHA256SUMS(filepath.Join(t.TempDir(), "SHA256SUMS")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}

// logBuffer collects a logger's records for a test to search.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// wantLog fails the test unless some line of the log holds every part.
func wantLog(t *testing.T, log string, parts ...string) {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return
		}
	}
	t.Errorf("no log line with %q in:\n%s", parts, log)
}

func TestPluginHostConfig(t *testing.T) {
	const sum = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	dir := t.TempDir()
	sums := filepath.Join(dir, sumsFile)
	if err := os.WriteFile(sums, []byte(strings.Repeat("0", 64)+"  webhook\nnot a pin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Plugins.Timeout = Duration(3 * time.Second)
	cfg.Plugins.MaxConcurrency = 2
	cfg.Plugins.RestartMin, cfg.Plugins.RestartMax = Duration(time.Second), Duration(time.Hour)

	// The notifiers in the config win over the folder's SHA256SUMS.
	cfg.Plugins.Notifiers = []NotifierPluginConfig{
		{Name: "webhook", SHA256: strings.ToUpper(sum), Timeout: Duration(time.Second), MaxConcurrency: 8,
			Args: []string{"-x"}, Env: map[string]string{"B": "2", "A": "1"}},
		{Name: "email", Disabled: true},
	}
	var lb logBuffer
	hc := pluginHostConfig(cfg, dir, lb.logger())
	want := host.Config{Dir: dir, CallTimeout: 3 * time.Second, MaxConcurrent: 2, RestartMin: time.Second, RestartMax: time.Hour,
		HostName: "vmpulse-aggregator", Logger: hc.Logger,
		Plugins: map[string]host.PluginConfig{
			"webhook": {SHA256: sum, CallTimeout: time.Second, MaxConcurrent: 8, Args: []string{"-x"}, Env: []string{"A=1", "B=2"}},
			"email":   {Disabled: true},
		}}
	if !reflect.DeepEqual(hc, want) {
		t.Errorf("from the config:\n%+v\nwant\n%+v", hc, want)
	}
	wantLog(t, lb.String(), "level=INFO", "checksums from the config", "notifiers=[webhook]")
	wantLog(t, lb.String(), "level=WARN", sums+" is ignored")
	if strings.Contains(lb.String(), "not a pin") {
		t.Errorf("SHA256SUMS was read although the config pins the notifiers:\n%s", lb.String())
	}

	// Without notifiers in the config, the pins come from SHA256SUMS, and
	// its malformed lines are logged with file:line.
	cfg.Plugins.Notifiers = nil
	lb = logBuffer{}
	hc = pluginHostConfig(cfg, dir, lb.logger())
	if want := map[string]host.PluginConfig{"webhook": {SHA256: strings.Repeat("0", 64)}}; !reflect.DeepEqual(hc.Plugins, want) {
		t.Errorf("from SHA256SUMS: %+v, want %+v", hc.Plugins, want)
	}
	wantLog(t, lb.String(), "level=INFO", "checksums from "+sums, "plugins=[webhook]")
	wantLog(t, lb.String(), "level=ERROR", "malformed line", sums+`:2: \"not\" is not a SHA-256`)

	// Neither: every plugin would be refused, and the log says why.
	os.Remove(sums)
	lb = logBuffer{}
	if hc = pluginHostConfig(cfg, dir, lb.logger()); len(hc.Plugins) != 0 {
		t.Errorf("pins without a source: %+v", hc.Plugins)
	}
	wantLog(t, lb.String(), "level=WARN", "no plugins.notifiers in the config and no "+sums)
}

// The webhook notifier plugin (plugins/webhook), built once per test binary.
var (
	webhookOnce sync.Once
	webhookDir  string
	webhookBin  plugintest.Binary
)

func TestMain(m *testing.M) {
	code := m.Run()
	if webhookDir != "" {
		os.RemoveAll(webhookDir)
	}
	os.Exit(code)
}

// installWebhook copies the webhook plugin into dir as each of names and
// returns its SHA-256.
func installWebhook(t *testing.T, dir string, names ...string) string {
	t.Helper()
	webhookOnce.Do(func() {
		d, err := os.MkdirTemp("", "vmpulse-aggregator-plugins-")
		if err != nil {
			t.Fatal(err)
		}
		webhookDir = d
		webhookBin = plugintest.Build(t, d, "github.com/vmpulse/vmpulse/plugins/webhook")["webhook"]
	})
	if webhookBin.Path == "" {
		t.Fatal("the webhook plugin did not build")
	}
	b, err := os.ReadFile(webhookBin.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return webhookBin.SHA256
}

// runAggregator runs a whole aggregator with the config file yml (its
// database, data_dir and listeners filled in) until the test ends, and
// returns it with its log.
func runAggregator(t *testing.T, dataDir, yml string) (*Aggregator, *logBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "aggregator.yml")
	yml = fmt.Sprintf("database_url: %s\ndata_dir: %s\ningest:\n  listen: 127.0.0.1:0\nhttp:\n  listen: 127.0.0.1:0\n", pgtest.NewDatabase(t), dataDir) + yml
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	lb := &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg, lb.logger())
	if err != nil {
		cancel()
		t.Fatalf("%v\n%s", err, lb)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("aggregator: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("aggregator log:\n%s", lb)
		}
	})
	return a, lb
}

// apiCall sends an API request and decodes the envelope's data into out;
// it returns the status and the raw body.
func apiCall(t *testing.T, a *Aggregator, method, path, token, body string, out any) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+a.HTTPAddr().String()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode < 300 {
		var env struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(raw, &env); err != nil || json.Unmarshal(env.Data, out) != nil {
			t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, raw)
		}
	}
	return res.StatusCode, string(raw)
}

// login creates an admin and returns an access token.
func login(t *testing.T, a *Aggregator) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := auth.CreateAdmin(ctx, a.Store.Pool(), "admin", "admin@example.com", "correct horse battery staple 1"); err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if code, raw := apiCall(t, a, "POST", "/api/v1/auth/login", "", `{"username":"admin","password":"correct horse battery staple 1"}`, &tok); code != 200 {
		t.Fatalf("login: %d %s", code, raw)
	}
	return tok.AccessToken
}

// receiver is a webhook endpoint counting what it receives.
func receiver(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Vmpulse-Schema") == "vmpulse.webhook.v1" {
			n.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// channelTest creates a channel of type typ to srv through the API and
// sends it a test notification; it returns the create's status and body,
// and the test's outcome when the channel was created.
func channelTest(t *testing.T, a *Aggregator, token, typ, url string) (int, string, string) {
	t.Helper()
	var ch struct {
		ID string `json:"id"`
	}
	body := fmt.Sprintf(`{"name":"ch-%s","type":%q,"config":{"url":%q},"enabled":true}`, typ, typ, url)
	code, raw := apiCall(t, a, "POST", "/api/v1/notification-channels", token, body, &ch)
	if code != http.StatusCreated {
		return code, raw, ""
	}
	var res struct {
		Outcome string `json:"outcome"`
		Error   string `json:"error"`
	}
	if code, raw := apiCall(t, a, "POST", "/api/v1/notification-channels/"+ch.ID+"/test", token, "", &res); code != 200 {
		t.Fatalf("channel test: %d %s", code, raw)
	}
	return code, raw, res.Outcome
}

// TestNotifierPluginsFromConfig starts a whole aggregator whose config pins
// three notifiers: webhook (right checksum), badhook (a copy of webhook
// pinned with a wrong checksum, though the folder's SHA256SUMS has the
// right one: the config wins) and missing (no binary). The aggregator runs;
// the log names badhook and missing with the reason; a channel of type
// webhook delivers its test message, while the other two types are refused
// as channels (no usable plugin), through the real API.
func TestNotifierPluginsFromConfig(t *testing.T) {
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, "plugins")
	sum := installWebhook(t, dir, "webhook", "badhook")
	if err := os.WriteFile(filepath.Join(dir, sumsFile), []byte(sum+"  webhook\n"+sum+"  badhook\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wrong := strings.Repeat("ab", 32)
	a, lb := runAggregator(t, dataDir, fmt.Sprintf(`plugins:
  notifiers:
    - name: webhook
      sha256: %s
      timeout: 5s
    - name: badhook
      sha256: %s
    - name: missing
      sha256: %s
    - name: dingtalk
      disabled: true
`, sum, wrong, wrong))

	log := lb.String()
	wantLog(t, log, "level=INFO", "checksums from the config", "notifiers=\"[webhook badhook missing]\"")
	wantLog(t, log, "level=WARN", filepath.Join(dir, sumsFile)+" is ignored")
	wantLog(t, log, "level=ERROR", "notifier plugin refused", "plugin=badhook", "has sha256 "+sum+", the config pins "+wrong)
	wantLog(t, log, "level=ERROR", "notifier plugin not found", "plugin=missing", "path="+filepath.Join(dir, "missing"))
	wantLog(t, log, "level=INFO", "notifier plugins ready", "notifiers=[webhook]")
	if strings.Contains(log, "plugin=dingtalk") {
		t.Errorf("the disabled plugin is reported:\n%s", log)
	}
	states := map[string]host.State{}
	for _, st := range a.plugins.Status() {
		states[st.Name] = st.State
	}
	if want := map[string]host.State{"webhook": host.StateRunning, "badhook": host.StateRefused}; !reflect.DeepEqual(states, want) {
		t.Errorf("plugin states %v, want %v", states, want)
	}
	if a.Dispatcher == nil {
		t.Error("no dispatcher although webhook runs")
	}

	// The aggregator keeps serving.
	if code, raw := apiCall(t, a, "GET", "/readyz", "", "", nil); code != 200 {
		t.Fatalf("readyz: %d %s", code, raw)
	}
	token := login(t, a)
	srv, got := receiver(t)
	if code, raw, outcome := channelTest(t, a, token, "webhook", srv.URL); code != http.StatusCreated || outcome != "delivered" || got.Load() != 1 {
		t.Errorf("webhook channel: create %d %s, test outcome %q, %d received; want 201, delivered, 1", code, raw, outcome, got.Load())
	}
	for _, typ := range []string{"badhook", "missing"} {
		if code, raw, _ := channelTest(t, a, token, typ, srv.URL); code != http.StatusUnprocessableEntity || !strings.Contains(raw, `"type"`) {
			t.Errorf("%s channel: %d %s, want 422 on the type", typ, code, raw)
		}
	}
}

// TestNotifierPluginsFromSHA256SUMS: with no notifiers in the config the
// pins come from data_dir/plugins/SHA256SUMS as before the section existed
// (the log says so, and names a malformed line by file:line), and the
// webhook plugin delivers.
func TestNotifierPluginsFromSHA256SUMS(t *testing.T) {
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, "plugins")
	sum := installWebhook(t, dir, "webhook")
	sums := filepath.Join(dir, sumsFile)
	if err := os.WriteFile(sums, []byte(sum+"  webhook\n"+sum+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, lb := runAggregator(t, dataDir, "")

	log := lb.String()
	wantLog(t, log, "level=INFO", "checksums from "+sums, "plugins=[webhook]")
	wantLog(t, log, "level=ERROR", "malformed line", sums+":2: ")
	wantLog(t, log, "level=INFO", "notifier plugins ready", "notifiers=[webhook]")
	token := login(t, a)
	srv, got := receiver(t)
	if code, raw, outcome := channelTest(t, a, token, "webhook", srv.URL); code != http.StatusCreated || outcome != "delivered" || got.Load() != 1 {
		t.Errorf("webhook channel: create %d %s, test outcome %q, %d received; want 201, delivered, 1", code, raw, outcome, got.Load())
	}
}

// TestPluginPermsChecked: a plugins folder, binary or SHA256SUMS that group
// or others may write is logged as an error; a private one is not.
func TestPluginPermsChecked(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"webhook", sumsFile} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	pins := map[string]host.PluginConfig{"webhook": {SHA256: strings.Repeat("0", 64)}}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var quiet logBuffer
	checkPluginPerms(quiet.logger(), dir, pins, true)
	if strings.Contains(quiet.String(), "writable") {
		t.Fatalf("private files reported:\n%s", quiet.String())
	}
	for _, p := range []string{dir, filepath.Join(dir, "webhook"), filepath.Join(dir, sumsFile)} {
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	var lb logBuffer
	checkPluginPerms(lb.logger(), dir, pins, true)
	for _, p := range []string{dir, filepath.Join(dir, "webhook"), filepath.Join(dir, sumsFile)} {
		wantLog(t, lb.String(), "level=ERROR", "writable by group or others", "path="+p, "mode=0777")
	}
}
