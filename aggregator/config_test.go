package aggregator

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigFixtures(t *testing.T) {
	t.Setenv("VMPULSE_DATABASE_URL", "")
	cases := []struct {
		file string
		want string // substring of the error; "" means valid
	}{
		{"testdata/good.yml", ""},
		{"testdata/unknown-field.bad.yml", "testdata/unknown-field.bad.yml: line 4: field heartbeat_intervall not found"},
		{"testdata/bad-duration.bad.yml", `line 3: "ten seconds" is not a duration`},
		{"testdata/bad-http.bad.yml", "http.listen: address 8080: missing port"},
		{"testdata/bad-http.bad.yml", "http.tls_cert_file: tls_cert_file and tls_key_file must be set together"},
		{"testdata/bad-http.bad.yml", "http.auth.algorithm"},
		{"testdata/bad-level.bad.yml", `log.level: "loud" is not debug, info, warn or error`},
		{"testdata/bad-cert-lifetime.bad.yml", "ingest.agent_cert_lifetime: -1h0m0s is not positive"},
		{"testdata/wrong-type.bad.yml", "testdata/wrong-type.bad.yml: line 1: cannot unmarshal !!seq"},
		{"testdata/missing-db.bad.yml", "database_url: required"},
		{"testdata/plugins.yml", ""},
		{"testdata/bad-plugins.bad.yml", "plugins.timeout: 1m0s not in 100ms..30s"},
		{"testdata/bad-plugins.bad.yml", "plugins.max_concurrency: 0 not in 1..256"},
		{"testdata/bad-plugins.bad.yml", "plugins.restart_min: at least 10ms, and plugins.restart_max from restart_min to 1h (have 5s and 1s)"},
		{"testdata/bad-plugins.bad.yml", "plugins.notifiers[0].sha256: want the 64 hex digits"},
		{"testdata/bad-plugins.bad.yml", `plugins.notifiers[1].name: "webhook" configured twice`},
		{"testdata/bad-plugins.bad.yml", `plugins.notifiers[2].name: "../bin/sh": want 1-63 of a-z 0-9 _ -`},
		{"testdata/bad-plugins.bad.yml", "plugins.notifiers[2].timeout: 50ms not in 100ms..30s"},
		{"testdata/bad-plugins.bad.yml", "plugins.notifiers[2].max_concurrency: -1 not in 1..256"},
		{"testdata/bad-plugins.bad.yml", "plugins.notifiers[2].env.VMPULSE_PLUGIN: reserved for the plugin handshake"},
		{"testdata/bad-plugins.bad.yml", "plugins.notifiers[2].env.bad key: not an environment variable name"},
		{"testdata/bad-plugins.bad.yml", "plugins.notifiers[2].env.LD_PRELOAD: loader variables are refused"},
		{"testdata/bad-plugins.bad.yml", "plugins.notifiers[3].sha256: want the 64 hex digits"},
		{"testdata/bad-plugins.bad.yml", "plugins.notifiers[4].sha256: want the 64 hex digits"},
		{"testdata/bad-plugins-type.bad.yml", "testdata/bad-plugins-type.bad.yml: line 6: field checksum not found"},
		{"testdata/no-such-file.yml", "no such file"},
	}
	for _, c := range cases {
		cfg, err := LoadConfig(c.file)
		if err == nil {
			err = cfg.Validate()
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", c.file, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one containing %q", c.file, err, c.want)
		}
	}
	cfg, _ := LoadConfig("testdata/good.yml")
	if cfg.Ingest.HeartbeatInterval != Duration(15*time.Second) || cfg.Retention.Raw != Duration(336*time.Hour) || cfg.Ingest.MaxInFlight != 8 ||
		cfg.Ingest.AgentCertLifetime != Duration(2160*time.Hour) {
		t.Errorf("good.yml decoded as %+v", cfg)
	}
	cfg, _ = LoadConfig("testdata/plugins.yml")
	want := PluginsConfig{Dir: "/usr/lib/vmpulse/plugins", Timeout: Duration(5 * time.Second), MaxConcurrency: 4,
		RestartMin: Duration(250 * time.Millisecond), RestartMax: Duration(30 * time.Second),
		Notifiers: []NotifierPluginConfig{
			{Name: "webhook", SHA256: "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", Timeout: Duration(2 * time.Second),
				MaxConcurrency: 16, Args: []string{"-v"}, Env: map[string]string{"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "localhost"}},
			{Name: "email", SHA256: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"},
			{Name: "dingtalk", Disabled: true},
		}}
	if !reflect.DeepEqual(cfg.Plugins, want) {
		t.Errorf("plugins.yml decoded as\n%+v\nwant\n%+v", cfg.Plugins, want)
	}
	if d := DefaultConfig(); d.Ingest.AgentCertLifetime != Duration(365*24*time.Hour) {
		t.Errorf("default agent_cert_lifetime %s, want 8760h", time.Duration(d.Ingest.AgentCertLifetime))
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	cfg, _ := LoadConfig("testdata/good.yml")
	for _, s := range []string{cfg.DatabaseURL.String(), strings.TrimSpace(strings.ReplaceAll(fmtV(cfg), " ", ""))} {
		if strings.Contains(s, "postgres://") {
			t.Fatalf("database url printed: %s", s)
		}
	}
}

func fmtV(v any) string { return fmt.Sprintf("%v %+v %#v", v, v, v) }

// The example in deploy/ documents every option with its default: it must
// parse strictly, and the defaults it shows must be the real ones.
func TestDeployExampleShowsTheDefaults(t *testing.T) {
	t.Setenv("VMPULSE_DATABASE_URL", "")
	dir := t.TempDir()
	b, err := os.ReadFile("../deploy/aggregator.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	urlFile := filepath.Join(dir, "database-url")
	os.WriteFile(urlFile, []byte("postgres://x@db/vmpulse\n"), 0o600)
	path := filepath.Join(dir, "aggregator.yml")
	os.WriteFile(path, []byte(strings.ReplaceAll(string(b), "/etc/vmpulse/database-url", urlFile)), 0o600)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	d.HTTP = d.HTTP.WithDefaults()
	if cfg.DatabaseURL != "postgres://x@db/vmpulse" {
		t.Errorf("database_url_file not read")
	}
	if !reflect.DeepEqual(cfg.HTTP, d.HTTP) || cfg.Retention != d.Retention || cfg.Database != d.Database || cfg.Log != d.Log ||
		cfg.Ingest.Listen != d.Ingest.Listen || cfg.Ingest.HeartbeatInterval != d.Ingest.HeartbeatInterval || cfg.Ingest.MaxInFlight != d.Ingest.MaxInFlight ||
		cfg.Ingest.AgentCertLifetime != d.Ingest.AgentCertLifetime {
		t.Errorf("the example's values differ from the defaults:\nexample  %+v\ndefaults %+v", cfg, d)
	}
	if p, dp := cfg.Plugins, d.Plugins; p.Dir != dp.Dir || p.Timeout != dp.Timeout || p.MaxConcurrency != dp.MaxConcurrency ||
		p.RestartMin != dp.RestartMin || p.RestartMax != dp.RestartMax || len(p.Notifiers) != 0 {
		t.Errorf("the example's plugins section differs from the defaults:\nexample  %+v\ndefaults %+v", p, dp)
	}
}
