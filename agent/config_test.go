package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestConfigFixtures(t *testing.T) {
	t.Setenv("VMPULSE_ENROLL_TOKEN", "")
	cases := []struct {
		file string
		want []string // substrings of the error; none means valid
	}{
		{"testdata/good.yml", nil},
		{"testdata/typo.bad.yml", []string{"testdata/typo.bad.yml: line 8: field pasword_env not found"}},
		{"testdata/creds-in-url.bad.yml", []string{
			"endpoints[0].url: must not carry credentials",
			"endpoints[0]: set exactly one of password_env and password_file"}},
		{"testdata/ranges.bad.yml", []string{
			"config testdata/ranges.bad.yml:",
			`aggregator.address: "agg": want host:port`,
			"collection.realtime_interval: 5s is below vCenter's 20s realtime interval",
			"collection.counters.vapp: unknown entity kind",
			"collection.max_wait: 1.5s: want 0 (as long as vCenter allows) or whole seconds in 1s..1h",
			`collection.counters.vm[1]: "cpu.ready" is not a vCenter counter name group.counter.rollup`,
			"endpoints: at least one"}},
		{"testdata/bad-duration.bad.yml", []string{`line 5: "soon" is not a duration`}},
		{"testdata/wrong-type.bad.yml", []string{"line 2: cannot unmarshal !!map (wrong type)"}},
	}
	for _, c := range cases {
		cfg, err := LoadConfig(c.file)
		if err == nil {
			err = cfg.Validate()
		}
		if len(c.want) == 0 {
			if err != nil {
				t.Errorf("%s: unexpected error: %v", c.file, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error, want %q", c.file, c.want)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error\n%v\nwant it to contain %q", c.file, err, w)
			}
		}
	}
}

func TestEndpointPasswordFromEnvOnly(t *testing.T) {
	cfg, err := LoadConfig("testdata/good.yml")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("VC1_PASSWORD", "")
	if _, err := cfg.Endpoints[0].Password(); err == nil || !strings.Contains(err.Error(), "VC1_PASSWORD is not set") {
		t.Fatalf("unset env: %v", err)
	}
	t.Setenv("VC1_PASSWORD", "s3cret")
	if pw, err := cfg.Endpoints[0].Password(); err != nil || pw != "s3cret" {
		t.Fatalf("password = %q, %v", pw, err)
	}
	if s := fmt.Sprintf("%+v", cfg); strings.Contains(s, "s3cret") {
		t.Fatal("config printed the password")
	}
}

// The example in deploy/ documents every option with its default.
func TestDeployExampleShowsTheDefaults(t *testing.T) {
	cfg, err := LoadConfig("../deploy/agent.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	if cfg.Spool != d.Spool || cfg.Aggregator.BackfillBytesPerS != d.Aggregator.BackfillBytesPerS || cfg.Log != d.Log ||
		cfg.Collection.RealtimeInterval != d.Collection.RealtimeInterval || cfg.Collection.HistoricalInterval != d.Collection.HistoricalInterval ||
		cfg.Collection.Concurrency != d.Collection.Concurrency || cfg.Collection.EventsPoll != d.Collection.EventsPoll ||
		cfg.Collection.TagInterval != d.Collection.TagInterval || cfg.Collection.MaxQueryMetrics != d.Collection.MaxQueryMetrics ||
		cfg.Collection.MaxWait != d.Collection.MaxWait {
		t.Errorf("the example's values differ from the defaults:\nexample  %+v\ndefaults %+v", cfg, d)
	}
}

// collection.max_wait: 0 is "as long as vCenter allows", which the
// inventory watcher reads as a negative bound (its zero is the default).
func TestConfigMaxWait(t *testing.T) {
	cfg := DefaultConfig()
	if got := cfg.inventoryMaxWait(); got != time.Minute {
		t.Errorf("default max_wait: %s, want 1m", got)
	}
	cfg.Collection.MaxWait = 0
	if got := cfg.inventoryMaxWait(); got >= 0 {
		t.Errorf("max_wait 0: %s, want no bound (negative)", got)
	}
	cfg.Collection.MaxWait = Duration(30 * time.Second)
	if got := cfg.inventoryMaxWait(); got != 30*time.Second {
		t.Errorf("max_wait 30s: %s", got)
	}
}
