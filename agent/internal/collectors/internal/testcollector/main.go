// Command testcollector is the collector plugin the collectors runtime's
// tests and the agent's end-to-end test run: a real plugin process whose
// behaviour the test picks through its environment.
//
//	TESTCOLLECTOR_MODE=ok          two series: temp (host-1, labels) and up (the site)
//	TESTCOLLECTOR_MODE=hang        Collect never answers
//	TESTCOLLECTOR_MODE=undeclared  also returns a series Describe did not declare
//	TESTCOLLECTOR_CRASH=FILE       the Collect that finds FILE missing creates it and exits the process
//	TESTCOLLECTOR_INTERVAL=200ms   the interval Describe reports
package main

import (
	"context"
	"os"
	"time"

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

type testCollector struct{ mode string }

func (c testCollector) Describe(context.Context) (sdk.Description, error) {
	iv, _ := time.ParseDuration(os.Getenv("TESTCOLLECTOR_INTERVAL"))
	return sdk.Description{Interval: iv, Series: []sdk.Series{
		{Name: "temp", Unit: "Cel", EntityKind: "host", Type: sdk.Gauge, Description: "a sensor"},
		{Name: "up", Unit: "1", Type: sdk.Gauge},
	}}, nil
}

func (c testCollector) Collect(ctx context.Context, since time.Time) ([]sdk.Sample, error) {
	if f := os.Getenv("TESTCOLLECTOR_CRASH"); f != "" {
		if _, err := os.Stat(f); os.IsNotExist(err) {
			_ = os.WriteFile(f, []byte("crashed"), 0o600)
			os.Exit(3)
		}
	}
	if c.mode == "hang" {
		select {} // ignores ctx, like a wedged plugin
	}
	t := time.Now().Truncate(time.Millisecond)
	out := []sdk.Sample{
		{Series: "temp", Entity: sdk.Entity{Kind: "host", ID: "host-1"}, Labels: map[string]string{"sensor": "cpu"}, Time: t, Value: 41.5},
		{Series: "temp", Entity: sdk.Entity{ID: "host-1"}, Labels: map[string]string{"sensor": "inlet"}, Time: t, Value: 22},
		{Series: "up", Time: t, Value: 1},
	}
	if c.mode == "undeclared" {
		out = append(out, sdk.Sample{Series: "surprise", Time: t, Value: 7})
	}
	return out, nil
}

func main() {
	sdk.Serve(sdk.ServeConfig{
		Info:      sdk.Info{Name: "testcollector", Version: "0.0.1-test", Description: "the collectors runtime's test plugin"},
		Collector: testCollector{mode: os.Getenv("TESTCOLLECTOR_MODE")},
	})
}
