// Package agent wires the vmpulse agent together: vSphere collectors write
// batches into the disk spool, and the uplink carries them to the
// aggregator.
package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration that reads "20s", "5m" from YAML.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use e.g. 20s, 5m, 1h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// EndpointConfig is one vCenter or standalone ESXi host to collect from.
// The password comes from an environment variable or a file, never from
// this file.
type EndpointConfig struct {
	Name         string `yaml:"name"`
	URL          string `yaml:"url"`
	Username     string `yaml:"username"`
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
	Insecure     bool   `yaml:"insecure"`
}

// Config is the agent's configuration: defaults, then the YAML file, then
// environment variables, then flags.
type Config struct {
	Name       string `yaml:"name"`
	DataDir    string `yaml:"data_dir"`
	Aggregator struct {
		Address           string `yaml:"address"`
		ServerName        string `yaml:"server_name"`
		EnrollTokenFile   string `yaml:"enroll_token_file"`
		BackfillBytesPerS int    `yaml:"backfill_bytes_per_s"`
	} `yaml:"aggregator"`
	Spool struct {
		// MaxBytes bounds the batches the spool keeps while the aggregator
		// is unreachable; beyond it the oldest are dropped and reported as
		// a gap. A day offline takes about 0.4 MB per VM with the default
		// counters (BenchmarkAgentSpoolPerDay: 1.9 GB at 5,000 VMs), so the
		// default, DefaultSpoolMaxBytes, holds 7 days at 5,000 VMs; size it
		// as VMs × days × 0.4 MB, plus headroom. Disk use is bounded also
		// by MinFreeBytes.
		MaxBytes     int64    `yaml:"max_bytes"`
		MinFreeBytes int64    `yaml:"min_free_bytes"`
		SyncInterval Duration `yaml:"sync_interval"`
	} `yaml:"spool"`
	Collection struct {
		RealtimeInterval   Duration            `yaml:"realtime_interval"`
		HistoricalInterval Duration            `yaml:"historical_interval"`
		Concurrency        int                 `yaml:"concurrency"`
		MaxQueryMetrics    int                 `yaml:"max_query_metrics"`
		Counters           map[string][]string `yaml:"counters"`
		EventsPoll         Duration            `yaml:"events_poll"`
		TagInterval        Duration            `yaml:"tag_interval"`
		// MaxWait bounds each WaitForUpdatesEx call of the inventory
		// watcher (its MaxWaitSeconds): how often an idle vCenter sees a
		// call. 0 waits as long as vCenter allows. Default 1m.
		MaxWait Duration `yaml:"max_wait"`
	} `yaml:"collection"`
	// The aggregator's settings (PUT /system/settings, group collection)
	// may push realtime_interval, historical_interval, events_poll,
	// tag_interval and counters: pushed values win over this file's
	// until the aggregator returns them to the agent's own.
	Endpoints []EndpointConfig `yaml:"endpoints"`
	// Plugins are the collector plugins (see PluginsConfig).
	Plugins PluginsConfig `yaml:"plugins"`
	// MetricsListen, when set, serves the agent's Prometheus /metrics on
	// this host:port (e.g. 127.0.0.1:9273).
	MetricsListen string `yaml:"metrics_listen"`
	Log           struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`

	// EnrollToken comes from VMPULSE_ENROLL_TOKEN, the token file or a flag;
	// it is never read from the YAML file itself.
	EnrollToken string `yaml:"-"`
	path        string
}

// DefaultSpoolMaxBytes is the default spool quota: 16 GiB, 7 days of a
// 5,000-VM site offline with headroom (see Config.Spool.MaxBytes).
const DefaultSpoolMaxBytes int64 = 16 << 30

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	var c Config
	host, _ := os.Hostname()
	c.Name = host
	c.DataDir = "/var/lib/vmpulse-agent"
	c.Aggregator.BackfillBytesPerS = 32 << 20
	c.Spool.MaxBytes = DefaultSpoolMaxBytes
	c.Spool.MinFreeBytes = 512 << 20
	c.Spool.SyncInterval = Duration(time.Second)
	c.Collection.RealtimeInterval = Duration(20 * time.Second)
	c.Collection.HistoricalInterval = Duration(5 * time.Minute)
	c.Collection.Concurrency = 4
	c.Collection.EventsPoll = Duration(10 * time.Second)
	c.Collection.TagInterval = Duration(5 * time.Minute)
	c.Collection.MaxWait = Duration(time.Minute)
	c.Log.Level = "info"
	c.Log.Format = "text"
	return c
}

// LoadConfig reads path over the defaults, strictly (an unknown field is an
// error naming the file and line), then the environment.
func LoadConfig(path string) (Config, error) {
	c := DefaultConfig()
	c.path = path
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("config %s: %s", path, yamlError(err))
		}
	}
	if v := os.Getenv("VMPULSE_ENROLL_TOKEN"); v != "" {
		c.EnrollToken = strings.TrimSpace(v)
	} else if c.Aggregator.EnrollTokenFile != "" {
		b, err := os.ReadFile(c.Aggregator.EnrollTokenFile)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return c, fmt.Errorf("config %s: aggregator.enroll_token_file: %w", path, err)
		}
		c.EnrollToken = strings.TrimSpace(string(b))
	}
	return c, nil
}

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

// Validate reports every invalid field, by its YAML name, prefixed with the
// file it came from.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Name == "" {
		bad("name: required")
	}
	if c.DataDir == "" {
		bad("data_dir: required")
	}
	if _, _, err := net.SplitHostPort(c.Aggregator.Address); err != nil {
		bad("aggregator.address: %q: want host:port", c.Aggregator.Address)
	}
	if c.Aggregator.BackfillBytesPerS < 64<<10 {
		bad("aggregator.backfill_bytes_per_s: %d is below 65536", c.Aggregator.BackfillBytesPerS)
	}
	if c.Spool.MaxBytes < 16<<20 {
		bad("spool.max_bytes: %d is below 16 MiB", c.Spool.MaxBytes)
	}
	if c.Spool.MinFreeBytes < 0 {
		bad("spool.min_free_bytes: negative")
	}
	if c.Spool.SyncInterval < Duration(10*time.Millisecond) || c.Spool.SyncInterval > Duration(time.Minute) {
		bad("spool.sync_interval: %s not in 10ms..1m", time.Duration(c.Spool.SyncInterval))
	}
	if c.Collection.RealtimeInterval < Duration(20*time.Second) {
		bad("collection.realtime_interval: %s is below vCenter's 20s realtime interval", time.Duration(c.Collection.RealtimeInterval))
	}
	if c.Collection.HistoricalInterval < Duration(5*time.Minute) {
		bad("collection.historical_interval: %s is below vCenter's 5m historical interval", time.Duration(c.Collection.HistoricalInterval))
	}
	if c.Collection.Concurrency < 1 || c.Collection.Concurrency > 64 {
		bad("collection.concurrency: %d not in 1..64", c.Collection.Concurrency)
	}
	if mw := time.Duration(c.Collection.MaxWait); mw != 0 && (mw < time.Second || mw > time.Hour || mw%time.Second != 0) {
		bad("collection.max_wait: %s: want 0 (as long as vCenter allows) or whole seconds in 1s..1h", mw)
	}
	for _, kind := range slices.Sorted(maps.Keys(c.Collection.Counters)) {
		switch kind {
		case "vm", "host", "cluster", "datastore":
		default:
			bad("collection.counters.%s: unknown entity kind (vm, host, cluster, datastore)", kind)
			continue
		}
		for i, n := range c.Collection.Counters[kind] {
			if !counterName.MatchString(n) {
				bad("collection.counters.%s[%d]: %q is not a vCenter counter name group.counter.rollup (e.g. cpu.usage.average)", kind, i, n)
			}
		}
	}
	if len(c.Endpoints) == 0 {
		bad("endpoints: at least one vCenter or ESXi endpoint")
	}
	names := map[string]bool{}
	for i, e := range c.Endpoints {
		p := fmt.Sprintf("endpoints[%d]", i)
		if e.Name == "" {
			bad("%s.name: required", p)
		} else if names[e.Name] {
			bad("%s.name: %q used twice", p, e.Name)
		}
		names[e.Name] = true
		if u, err := url.Parse(e.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("%s.url: %q: want https://host/sdk", p, e.URL)
		} else if u.User != nil {
			bad("%s.url: must not carry credentials (use username and password_env/password_file)", p)
		}
		if e.Username == "" {
			bad("%s.username: required", p)
		}
		if (e.PasswordEnv == "") == (e.PasswordFile == "") {
			bad("%s: set exactly one of password_env and password_file", p)
		}
	}
	errs = append(errs, c.validatePlugins()...)
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			bad("metrics_listen: %q: want host:port, e.g. 127.0.0.1:9273", c.MetricsListen)
		}
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		bad("log.level: %v", err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format: %q is not text or json", c.Log.Format)
	}
	if err := errors.Join(errs...); err != nil {
		if c.path != "" {
			return fmt.Errorf("config %s:\n%w", c.path, err)
		}
		return err
	}
	return nil
}

// counterName is vCenter's dotted counter name: group.counter.rollup.
var counterName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*\.(average|summation|latest|maximum|minimum|none)$`)

// inventoryMaxWait is collection.max_wait as vsphere.InventoryConfig.MaxWait
// reads it (there, zero is the default and negative is no bound).
func (c *Config) inventoryMaxWait() time.Duration {
	if c.Collection.MaxWait == 0 {
		return -1
	}
	return time.Duration(c.Collection.MaxWait)
}

// Password reads an endpoint's password from its environment variable or file.
func (e EndpointConfig) Password() (string, error) {
	if e.PasswordEnv != "" {
		v, ok := os.LookupEnv(e.PasswordEnv)
		if !ok || v == "" {
			return "", fmt.Errorf("endpoint %s: environment variable %s is not set", e.Name, e.PasswordEnv)
		}
		return v, nil
	}
	b, err := os.ReadFile(e.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("endpoint %s: password_file: %w", e.Name, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// ParseLevel parses a slog level name.
func ParseLevel(s string) (slog.Level, error) { return parseLevel(s) }

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
	}
	return l, nil
}
