// Package aggregator wires the aggregator's parts together: store, PKI,
// QUIC ingest and the HTTP listener.
package aggregator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vmpulse/vmpulse/aggregator/internal/httpapi"
	"github.com/vmpulse/vmpulse/aggregator/internal/jobs"
	"github.com/vmpulse/vmpulse/aggregator/internal/pki"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
)

// Duration is a time.Duration that reads "5m", "1h30m" from YAML.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use e.g. 30s, 5m, 1h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Secret is a string that never prints itself.
type Secret string

func (Secret) String() string       { return "***" }
func (Secret) GoString() string     { return "***" }
func (Secret) LogValue() slog.Value { return slog.StringValue("***") }

// Config is the aggregator's configuration. Defaults come from
// DefaultConfig, then the YAML file, then environment variables, then flags.
type Config struct {
	// DatabaseURL is the PostgreSQL URL (env VMPULSE_DATABASE_URL). Use
	// DatabaseURLFile to keep it out of the config file.
	DatabaseURL     Secret `yaml:"database_url"`
	DatabaseURLFile string `yaml:"database_url_file"`
	// DataDir holds the CA and server keys (0600).
	DataDir string `yaml:"data_dir"`
	Ingest  struct {
		Listen            string   `yaml:"listen"`
		ServerNames       []string `yaml:"server_names"`
		HeartbeatInterval Duration `yaml:"heartbeat_interval"`
		MaxInFlight       int      `yaml:"max_in_flight"`
		// AgentCertLifetime is the validity of agent client certificates.
		// Agents renew theirs at two thirds of it; one that stays offline
		// until it expires must be enrolled again.
		AgentCertLifetime Duration `yaml:"agent_cert_lifetime"`
	} `yaml:"ingest"`
	// HTTP is the REST API listener, its TLS, CORS, trusted proxies and the
	// authentication policy.
	HTTP httpapi.Config `yaml:"http"`
	Log  struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`
	Database struct {
		MaxConns        int32 `yaml:"max_conns"`
		PartitionsAhead int   `yaml:"partitions_ahead"`
	} `yaml:"database"`
	// Retention is how long each storage tier is kept; 0 keeps a tier
	// forever. Raw data goes by whole daily partitions.
	Retention struct {
		Raw Duration `yaml:"raw"`
		R5m Duration `yaml:"5m"`
		R1h Duration `yaml:"1h"`
		R1d Duration `yaml:"1d"`
	} `yaml:"retention"`
	// Jobs are the schedules of the maintenance jobs (cron expressions,
	// robfig/cron/v3 syntax: five fields or @every 1h, @daily; UTC unless
	// prefixed with CRON_TZ=) and the backoff of a failed job's retries.
	// Every replica must have the same. The backup job's schedule is set
	// through the API (PUT /backups/schedule).
	Jobs struct {
		Partitions string   `yaml:"partitions"`
		Rollups    string   `yaml:"rollups"`
		Retention  string   `yaml:"retention"`
		Reorder    string   `yaml:"reorder"`
		Cleanup    string   `yaml:"cleanup"`
		RetryBase  Duration `yaml:"retry_base"`
		RetryMax   Duration `yaml:"retry_max"`
	} `yaml:"jobs"`
	// Backup is where backups are written and the PostgreSQL client that
	// writes and restores them.
	Backup struct {
		// Dir holds the dump files (0700); "" is data_dir/backups.
		Dir string `yaml:"dir"`
		// PgBinDir holds pg_dump and pg_restore; "" takes the newest
		// /usr/lib/postgresql/*/bin, then PATH. Use the client of the
		// server's major version or newer.
		PgBinDir string `yaml:"pg_bin_dir"`
		// Compression is pg_dump's level, 0-9 (default 1); -1 is pg_dump's
		// own default (6), which measured five times slower.
		Compression int `yaml:"compression"`
	} `yaml:"backup"`
	// Plugins is the plugin host the alert notifications go out through:
	// its folder, its limits and the notifier plugins, each pinned by its
	// SHA-256 (see PluginsConfig).
	Plugins PluginsConfig `yaml:"plugins"`
}

// PluginsConfig is the `plugins` section.
//
//	plugins:
//	  dir: /usr/lib/vmpulse/plugins   # default: data_dir/plugins
//	  notifiers:
//	    - name: webhook               # the binary's file name, and the channel type
//	      sha256: 9f86d081…           # sha256sum of the binary
//	      timeout: 5s                 # per call (default: plugins.timeout)
//
// With no notifiers listed, the pins come from dir/SHA256SUMS (sha256sum's
// output), as before this section existed; with some, that file is ignored.
type PluginsConfig struct {
	// Dir holds the plugin binaries; "" is data_dir/plugins.
	Dir string `yaml:"dir"`
	// Timeout bounds each call to a plugin and MaxConcurrency the calls in
	// flight per plugin; a notifier's own settings override them.
	Timeout        Duration `yaml:"timeout"`
	MaxConcurrency int      `yaml:"max_concurrency"`
	// RestartMin and RestartMax bound the backoff between restarts of a
	// plugin that crashed or failed to start: the first restart is
	// immediate, the next ones wait RestartMin, doubling up to RestartMax.
	RestartMin Duration `yaml:"restart_min"`
	RestartMax Duration `yaml:"restart_max"`
	// Notifiers are the notifier plugins, by name.
	Notifiers []NotifierPluginConfig `yaml:"notifiers"`
}

// NotifierPluginConfig is one notifier plugin.
type NotifierPluginConfig struct {
	// Name is the binary's file name in plugins.dir (without ".exe") and
	// the type of the notification channels it delivers for.
	Name string `yaml:"name"`
	// SHA256 pins the binary: one with another checksum is refused.
	SHA256 string `yaml:"sha256"`
	// Timeout and MaxConcurrency override plugins.timeout and
	// plugins.max_concurrency; 0 keeps those.
	Timeout        Duration `yaml:"timeout"`
	MaxConcurrency int      `yaml:"max_concurrency"`
	// Args and Env are the plugin's command line and extra environment
	// (it does not inherit the aggregator's).
	Args []string          `yaml:"args"`
	Env  map[string]string `yaml:"env"`
	// Disabled keeps the binary from being started (its sha256 may then
	// be left out).
	Disabled bool `yaml:"disabled"`
}

// Bounds of the plugins section. A notification's delivery is bounded by
// the dispatcher's own 30s, so a longer per-call timeout would never fire.
const (
	pluginTimeoutMin  = 100 * time.Millisecond
	pluginTimeoutMax  = 30 * time.Second
	pluginMaxParallel = 256
)

var (
	// pluginNameRE is alert's channel type syntax: a notifier's name is
	// the type of the channels it serves, and a plain file name.
	pluginNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
)

// validatePlugins reports the invalid fields of the plugins section. It
// does not look at the disk: a plugin missing from the folder, or whose
// checksum differs, is reported when the aggregator starts the plugins.
func (c *Config) validatePlugins() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	pc := &c.Plugins
	timeout := func(f string, d Duration) {
		if to := time.Duration(d); to < pluginTimeoutMin || to > pluginTimeoutMax {
			bad("%s: %s not in %s..%s", f, to, pluginTimeoutMin, pluginTimeoutMax)
		}
	}
	timeout("plugins.timeout", pc.Timeout)
	if pc.MaxConcurrency < 1 || pc.MaxConcurrency > pluginMaxParallel {
		bad("plugins.max_concurrency: %d not in 1..%d", pc.MaxConcurrency, pluginMaxParallel)
	}
	if pc.RestartMin < Duration(10*time.Millisecond) || pc.RestartMax < pc.RestartMin || pc.RestartMax > Duration(time.Hour) {
		bad("plugins.restart_min: at least 10ms, and plugins.restart_max from restart_min to 1h (have %s and %s)",
			time.Duration(pc.RestartMin), time.Duration(pc.RestartMax))
	}
	seen := map[string]bool{}
	for i, p := range pc.Notifiers {
		f := fmt.Sprintf("plugins.notifiers[%d]", i)
		switch {
		case !pluginNameRE.MatchString(p.Name):
			bad("%s.name: %q: want 1-63 of a-z 0-9 _ -, starting with a letter or digit (the binary's file name in plugins.dir, and the channel type)", f, p.Name)
		case seen[p.Name]:
			bad("%s.name: %q configured twice", f, p.Name)
		}
		seen[p.Name] = true
		if b, err := hex.DecodeString(p.SHA256); (err != nil || len(b) != sha256.Size) && !(p.Disabled && p.SHA256 == "") {
			bad("%s.sha256: want the 64 hex digits sha256sum prints for the binary (plugins must be pinned)", f)
		}
		if p.Timeout != 0 {
			timeout(f+".timeout", p.Timeout)
		}
		if p.MaxConcurrency < 0 || p.MaxConcurrency > pluginMaxParallel {
			bad("%s.max_concurrency: %d not in 1..%d (or 0 for plugins.max_concurrency)", f, p.MaxConcurrency, pluginMaxParallel)
		}
		for k := range p.Env {
			if err := host.CheckEnvKey(k); err != nil {
				bad("%s.env.%s: %v", f, k, err)
			}
		}
	}
	return errs
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	var c Config
	c.DataDir = "/var/lib/vmpulse-aggregator"
	c.Ingest.Listen = ":7443"
	c.Ingest.ServerNames = []string{"localhost", "127.0.0.1"}
	c.Ingest.HeartbeatInterval = Duration(10 * time.Second)
	c.Ingest.MaxInFlight = 8
	c.Ingest.AgentCertLifetime = Duration(pki.AgentCertLifetime)
	c.HTTP = httpapi.Defaults()
	c.Log.Level = "info"
	c.Log.Format = "text"
	c.Database.PartitionsAhead = 3
	c.Retention.Raw = Duration(store.DefaultRetention.Raw)
	c.Retention.R5m = Duration(store.DefaultRetention.R5m)
	c.Retention.R1h = Duration(store.DefaultRetention.R1h)
	c.Retention.R1d = Duration(store.DefaultRetention.R1d)
	c.Jobs.Partitions = jobs.DefaultSchedules[jobs.JobPartitions]
	c.Jobs.Rollups = jobs.DefaultSchedules[jobs.JobRollups]
	c.Jobs.Retention = jobs.DefaultSchedules[jobs.JobRetention]
	c.Jobs.Reorder = jobs.DefaultSchedules[jobs.JobReorder]
	c.Jobs.Cleanup = jobs.DefaultSchedules[jobs.JobCleanup]
	c.Jobs.RetryBase = Duration(30 * time.Second)
	c.Jobs.RetryMax = Duration(30 * time.Minute)
	c.Backup.Compression = 1 // measured 5x faster than pg_dump's default (6) for 17% more bytes
	// The plugin host's own defaults (plugins/sdk/host.Config).
	c.Plugins.Timeout = Duration(10 * time.Second)
	c.Plugins.MaxConcurrency = 4
	c.Plugins.RestartMin = Duration(250 * time.Millisecond)
	c.Plugins.RestartMax = Duration(time.Minute)
	return c
}

// LoadConfig reads path (if not empty) over the defaults, strictly: an
// unknown field is an error naming the file and line. Then the environment.
func LoadConfig(path string) (Config, error) {
	c := DefaultConfig()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) { // an empty file means all defaults
			return c, fmt.Errorf("config %s: %s", path, yamlError(err))
		}
	}
	c.HTTP = c.HTTP.WithDefaults() // fields set to zero in the file
	if v := os.Getenv("VMPULSE_DATABASE_URL"); v != "" {
		c.DatabaseURL = Secret(v)
	}
	if v := os.Getenv("VMPULSE_DATA_DIR"); v != "" {
		c.DataDir = v
	}
	if c.DatabaseURLFile != "" {
		b, err := os.ReadFile(c.DatabaseURLFile)
		if err != nil {
			return c, fmt.Errorf("config %s: database_url_file: %w", path, err)
		}
		c.DatabaseURL = Secret(strings.TrimSpace(string(b)))
	}
	return c, nil
}

// yamlError flattens yaml.v3's errors to "line N: what" and drops the Go
// type names an operator cannot act on.
func yamlError(err error) string {
	var te *yaml.TypeError
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for i, m := range msgs {
		if j := strings.Index(m, " in type "); j > 0 {
			m = m[:j]
		}
		if j := strings.Index(m, " into "); j > 0 {
			m = m[:j] + " (wrong type)"
		}
		msgs[i] = strings.TrimSpace(m)
	}
	return strings.Join(msgs, "; ")
}

// Validate reports every invalid field, by its YAML name.
func (c *Config) Validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("database_url: required (or VMPULSE_DATABASE_URL, or database_url_file)"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: required"))
	}
	if _, _, err := net.SplitHostPort(c.Ingest.Listen); err != nil {
		errs = append(errs, fmt.Errorf("ingest.listen: %q: %v", c.Ingest.Listen, err))
	}
	if len(c.Ingest.ServerNames) == 0 {
		errs = append(errs, errors.New("ingest.server_names: at least one host name or IP the agents dial"))
	}
	if c.Ingest.HeartbeatInterval < Duration(time.Second) {
		errs = append(errs, errors.New("ingest.heartbeat_interval: at least 1s"))
	}
	if c.Ingest.MaxInFlight < 1 || c.Ingest.MaxInFlight > 1024 {
		errs = append(errs, fmt.Errorf("ingest.max_in_flight: %d not in 1..1024", c.Ingest.MaxInFlight))
	}
	if c.Ingest.AgentCertLifetime <= 0 {
		errs = append(errs, fmt.Errorf("ingest.agent_cert_lifetime: %s is not positive", time.Duration(c.Ingest.AgentCertLifetime)))
	}
	errs = append(errs, prefixed("http.", c.HTTP.Validate())...)
	if _, err := ParseLevel(c.Log.Level); err != nil {
		errs = append(errs, fmt.Errorf("log.level: %v", err))
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		errs = append(errs, fmt.Errorf("log.format: %q is not text or json", c.Log.Format))
	}
	if c.Database.PartitionsAhead < 1 || c.Database.PartitionsAhead > 60 {
		errs = append(errs, fmt.Errorf("database.partitions_ahead: %d not in 1..60", c.Database.PartitionsAhead))
	}
	if c.Retention.Raw != 0 && c.Retention.Raw < Duration(48*time.Hour) {
		errs = append(errs, errors.New("retention.raw: at least 48h (or 0 to keep forever)"))
	}
	for name, d := range map[string]Duration{"5m": c.Retention.R5m, "1h": c.Retention.R1h, "1d": c.Retention.R1d} {
		if d != 0 && d < c.Retention.Raw {
			errs = append(errs, fmt.Errorf("retention.%s: %s is shorter than retention.raw", name, time.Duration(d)))
		}
	}
	for name, spec := range map[string]string{"partitions": c.Jobs.Partitions, "rollups": c.Jobs.Rollups, "retention": c.Jobs.Retention,
		"reorder": c.Jobs.Reorder, "cleanup": c.Jobs.Cleanup} {
		if _, err := jobs.Parse(spec); err != nil {
			errs = append(errs, fmt.Errorf("jobs.%s: %q is not a cron expression (five fields, or @every 1h, @daily)", name, spec))
		}
	}
	if c.Jobs.RetryBase < Duration(time.Second) || c.Jobs.RetryMax < c.Jobs.RetryBase {
		errs = append(errs, errors.New("jobs.retry_base: at least 1s, and jobs.retry_max at least retry_base"))
	}
	if c.Backup.Compression < -1 || c.Backup.Compression > 9 {
		errs = append(errs, fmt.Errorf("backup.compression: %d not in -1..9", c.Backup.Compression))
	}
	errs = append(errs, c.validatePlugins()...)
	return errors.Join(errs...)
}

// prefixed qualifies each part of a (possibly joined) error with the YAML
// section it belongs to.
func prefixed(prefix string, err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, p := range j.Unwrap() {
			out = append(out, prefixed(prefix, p)...)
		}
		return out
	}
	return []error{fmt.Errorf("%s%w", prefix, err)}
}

// ParseLevel parses a slog level name.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
	}
	return l, nil
}
