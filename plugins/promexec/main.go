// Command promexec is a vmpulse collector plugin for the agent: on every
// collection it runs a command, or fetches a URL on the local machine, and
// reads its output in the Prometheus text exposition format, so anything
// with a Prometheus exporter or a script that prints metrics (IPMI
// sensors, UPS, storage arrays' CLIs) becomes vmpulse series. The config
// is documented in README.md beside this file.
package main

import (
	"context"
	"os"
	"time"

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	sdk.Serve(sdk.ServeConfig{
		Info:      sdk.Info{Name: "promexec", Version: version, Description: "Prometheus text format from a command or a local URL"},
		Collector: load(),
	})
}

// load returns the collector for the config in the environment, or one
// that fails every call with the config's error, so that the agent shows
// the error in the plugin's status.
func load() sdk.Collector {
	if os.Getenv(sdk.EnvConfig) == "" {
		return broken{errNoConfig}
	}
	var c Config
	if err := sdk.CollectorConfig(&c); err != nil {
		return broken{err}
	}
	src, err := newSource(c)
	if err != nil {
		return broken{err}
	}
	return &collector{src: src}
}

// broken is a collector whose config is invalid.
type broken struct{ err error }

func (b broken) Describe(context.Context) (sdk.Description, error) { return sdk.Description{}, b.err }
func (b broken) Collect(context.Context, time.Time) ([]sdk.Sample, error) {
	return nil, b.err
}
