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
}
