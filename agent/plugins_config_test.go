package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, dir, plugins string) string {
	t.Helper()
	body := `name: a
aggregator:
  address: agg:7443
endpoints:
  - name: vc
    url: https://vc/sdk
    username: u
    password_env: X
` + plugins
	p := filepath.Join(dir, "agent.yml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPluginsConfig(t *testing.T) {
	t.Setenv("VMPULSE_ENROLL_TOKEN", "")
	dir := t.TempDir()
	pdir := filepath.Join(dir, "plugins")
	if err := os.Mkdir(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pdir, "promexec"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pdir, "notexec"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := strings.Repeat("ab", 32)
	good := writeConfig(t, dir, `metrics_listen: 127.0.0.1:9273
plugins:
  dir: `+pdir+`
  collectors:
    - name: promexec
      sha256: `+strings.ToUpper(sum)+`
      interval: 30s
      timeout: 5s
      args: [-v]
      env: {B: "2", A: "1"}
      config:
        command: [/usr/local/bin/ups-metrics, --all]
        entity_kind: host
        entity_id: host-12
`)
	cfg, err := LoadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ps := cfg.collectorPlugins()
	if len(ps) != 1 {
		t.Fatalf("plugins %+v", ps)
	}
	p := ps[0]
	wantEnv := []string{"A=1", "B=2", `VMPULSE_PLUGIN_CONFIG={"command":["/usr/local/bin/ups-metrics","--all"],"entity_id":"host-12","entity_kind":"host"}`}
	if p.Name != "promexec" || p.SHA256 != sum || p.Interval != 30*time.Second || p.Timeout != 5*time.Second ||
		!slices.Equal(p.Args, []string{"-v"}) || !slices.Equal(p.Env, wantEnv) {
		t.Errorf("plugin %+v\nwant env %v", p, wantEnv)
	}

	bad := writeConfig(t, dir, `metrics_listen: 9273
plugins:
  dir: `+pdir+`
  collectors:
    - name: promexec
      sha256: nope
      interval: 10ms
    - name: promexec
      sha256: `+sum+`
    - name: Bad/Name
      sha256: `+sum+`
    - name: notexec
      sha256: `+sum+`
      interval: 10s
      timeout: 10m
      env: {"VMPULSE_PLUGIN": "x", "1X": "y", "LD_PRELOAD": "/tmp/x.so"}
`)
	cfg, err = LoadConfig(bad)
	if err == nil {
		err = cfg.Validate()
	}
	if err == nil {
		t.Fatal("bad plugins config accepted")
	}
	for _, w := range []string{
		"config " + bad + ":",
		`metrics_listen: "9273": want host:port`,
		"plugins.collectors[0].sha256: want the 64 hex digits",
		"plugins.collectors[0].interval: 10ms not in 1s..24h",
		`plugins.collectors[1].name: "promexec" configured twice`,
		`plugins.collectors[2].name: "Bad/Name": want 1-63 of a-z 0-9 . _ -`,
		"plugins.collectors[3].name: no executable file " + filepath.Join(pdir, "notexec"),
		"plugins.collectors[3].timeout: 10m0s not in 100ms..5m",
		"plugins.collectors[3].env.VMPULSE_PLUGIN: reserved",
		"plugins.collectors[3].env.1X: not an environment variable name",
		"plugins.collectors[3].env.LD_PRELOAD: loader variables are refused",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error\n%v\nwant it to contain %q", err, w)
		}
	}

	noDir := writeConfig(t, dir, "plugins:\n  collectors:\n    - name: x\n      sha256: "+sum+"\n")
	cfg, _ = LoadConfig(noDir)
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "plugins.dir: required with plugins.collectors") {
		t.Errorf("no dir: %v", err)
	}
	typo := writeConfig(t, dir, "plugins:\n  dir: "+pdir+"\n  collectors:\n    - name: x\n      sha: "+sum+"\n")
	if _, err := LoadConfig(typo); err == nil || !strings.Contains(err.Error(), "field sha not found") {
		t.Errorf("typo: %v", err)
	}
}
