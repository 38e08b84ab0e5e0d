package sdk

import (
	"context"
	"time"
)

// Collector produces extra series on the agent (hardware sensors, vSAN
// health, a command's Prometheus output). Its samples go through the
// agent's spool and uplink like the agent's own vSphere samples.
//
// A collector's settings come from its command line and environment, which
// the host sets from the agent's config (host.PluginConfig Args and Env):
// they then survive a restart of the plugin with no extra call. The
// agent passes the `config` mapping of the plugin's entry as JSON in
// EnvConfig; CollectorConfig decodes it.
//
// Implementations must be safe for concurrent use; each method gets a
// context carrying the host's per-call deadline.
type Collector interface {
	// Describe returns the series the collector produces and how often
	// the host should call Collect.
	Describe(ctx context.Context) (Description, error)

	// Collect returns the samples taken strictly after since (the
	// newest sample time the host has already spooled; zero on the first
	// call). A collector that only sees the present returns what it sees
	// now.
	Collect(ctx context.Context, since time.Time) ([]Sample, error)
}

// Series types.
const (
	Gauge   = "gauge"
	Counter = "counter"
)

// Series describes one series a collector produces.
type Series struct {
	// Name is the series' name; the host prefixes it with the plugin's
	// name when it stores it ("ipmi" + "fan.speed").
	Name string
	// Unit is the unit of the values: "Cel", "rpm", "By", "%", "1".
	Unit        string
	Description string
	// EntityKind is what the samples are bound to ("host", "vm", ...).
	EntityKind string
	// Type is Gauge or Counter.
	Type string
}

// Description is what Describe returns.
type Description struct {
	Series []Series
	// Interval is how often Collect should run; zero leaves it to the host.
	Interval time.Duration
}

// Sample is one value of one series at one time.
type Sample struct {
	Series string
	Entity Entity // Kind and ID; Name is ignored
	Labels map[string]string
	Time   time.Time
	Value  float64
}
