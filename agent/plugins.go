package agent

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vmpulse/vmpulse/agent/internal/collectors"
	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
)

// PluginsConfig is the `plugins` section: collector plugins, each an
// executable in Dir named as the entry, pinned by its SHA-256.
//
//	plugins:
//	  dir: /usr/lib/vmpulse/plugins
//	  collectors:
//	    - name: promexec
//	      sha256: 9f86d081…            # sha256sum of the binary
//	      interval: 30s                # default: what the plugin describes, else 1m
//	      timeout: 10s                 # per call
//	      config: {command: [/usr/local/bin/ups-metrics]}
type PluginsConfig struct {
	Dir        string                  `yaml:"dir"`
	Collectors []CollectorPluginConfig `yaml:"collectors"`
}

// CollectorPluginConfig is one collector plugin.
type CollectorPluginConfig struct {
	// Name is the binary's file name in plugins.dir, and the middle part
	// of its series' names ("plugin.<name>.<series>").
	Name string `yaml:"name"`
	// SHA256 pins the binary: a binary with another checksum is refused.
	SHA256   string   `yaml:"sha256"`
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
	// Args and Env are the plugin's command line and extra environment
	// (it does not inherit the agent's).
	Args []string          `yaml:"args"`
	Env  map[string]string `yaml:"env"`
	// Config is handed to the plugin as JSON in VMPULSE_PLUGIN_CONFIG
	// (sdk.CollectorConfig reads it).
	Config map[string]any `yaml:"config"`
}

// validatePlugins reports the invalid fields of the plugins section.
func (c *Config) validatePlugins() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	pc := &c.Plugins
	if len(pc.Collectors) == 0 {
		return nil
	}
	if pc.Dir == "" {
		bad("plugins.dir: required with plugins.collectors")
	} else if fi, err := os.Stat(pc.Dir); err != nil || !fi.IsDir() {
		bad("plugins.dir: %q is not a readable folder", pc.Dir)
	}
	seen := map[string]bool{}
	for i, p := range pc.Collectors {
		f := fmt.Sprintf("plugins.collectors[%d]", i)
		switch {
		case !collectors.ValidName(p.Name):
			bad("%s.name: %q: want 1-63 of a-z 0-9 . _ - (the binary's file name in plugins.dir)", f, p.Name)
		case seen[p.Name]:
			bad("%s.name: %q configured twice", f, p.Name)
		case pc.Dir != "":
			path := filepath.Join(pc.Dir, p.Name)
			if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
				bad("%s.name: no executable file %s", f, path)
			}
		}
		seen[p.Name] = true
		if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != 32 {
			bad("%s.sha256: want the 64 hex digits sha256sum prints for the binary (plugins must be pinned)", f)
		}
		if iv := time.Duration(p.Interval); iv != 0 && (iv < collectors.MinInterval || iv > 24*time.Hour) {
			bad("%s.interval: %s not in 1s..24h", f, iv)
		}
		if to := time.Duration(p.Timeout); to != 0 && (to < 100*time.Millisecond || to > 5*time.Minute) {
			bad("%s.timeout: %s not in 100ms..5m", f, to)
		}
		for k := range p.Env {
			if err := host.CheckEnvKey(k); err != nil {
				bad("%s.env.%s: %v", f, k, err)
			}
		}
		if p.Config != nil {
			if _, err := json.Marshal(p.Config); err != nil {
				bad("%s.config: %v", f, err)
			}
		}
	}
	return errs
}

// collectorPlugins turns the section into the runtime's configuration.
func (c *Config) collectorPlugins() []collectors.Plugin {
	out := make([]collectors.Plugin, 0, len(c.Plugins.Collectors))
	for _, p := range c.Plugins.Collectors {
		var env []string
		keys := make([]string, 0, len(p.Env))
		for k := range p.Env {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			env = append(env, k+"="+p.Env[k])
		}
		if p.Config != nil {
			b, _ := json.Marshal(p.Config) // validatePlugins checked it
			env = append(env, sdk.EnvConfig+"="+string(b))
		}
		out = append(out, collectors.Plugin{
			Name: p.Name, SHA256: strings.ToLower(p.SHA256), Interval: time.Duration(p.Interval), Timeout: time.Duration(p.Timeout),
			Args: p.Args, Env: env,
		})
	}
	return out
}
