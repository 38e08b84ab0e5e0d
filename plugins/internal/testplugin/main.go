// Command testplugin is the plugin that the host's tests and benchmarks
// run as a real subprocess. It is a notifier and a collector whose
// behaviour each Notify picks through the channel config:
//
//	{"mode": "ok"}                 delivered at once (the no-op round trip)
//	{"mode": "sleep", "sleep": "200ms"}
//	{"mode": "hang"}               never answers, ignoring the context
//	{"mode": "block_once", "marker": F, "pid_file": F}
//	                               the first call (no marker yet) writes the
//	                               pid and blocks until the test kills the
//	                               process; later calls are delivered
//	{"mode": "crash_once", "marker": F}
//	                               the first call exits the process
//	{"mode": "error"}              returns an error
//	{"mode": "panic"}              panics
//	{"mode": "log", "message": M}  logs M at info, then is delivered
//
// Its name is its file name, so one build serves as several plugins.
// TESTPLUGIN_PROTOCOL_VERSION makes it claim another protocol version.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	plugin "github.com/hashicorp/go-plugin"

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

type config struct {
	Mode    string `json:"mode"`
	Sleep   string `json:"sleep"`
	Marker  string `json:"marker"`
	PIDFile string `json:"pid_file"`
	Message string `json:"message"`
}

type testPlugin struct{}

func (testPlugin) Validate(_ context.Context, raw json.RawMessage) error {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return err
	}
	verr := &sdk.ValidationError{}
	switch c.Mode {
	case "ok", "sleep", "hang", "block_once", "crash_once", "error", "panic", "log":
	default:
		verr.Add("mode", "unknown mode %q", c.Mode)
	}
	if c.Sleep != "" {
		if _, err := time.ParseDuration(c.Sleep); err != nil {
			verr.Add("sleep", "not a duration: %v", err)
		}
	}
	return verr.Err()
}

// once reports whether this is the first call for marker, creating it.
func once(marker string) bool {
	f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return false
	}
	_ = f.Close()
	return true
}

func (testPlugin) Notify(ctx context.Context, n sdk.Notification) (sdk.Result, error) {
	var c config
	if err := sdk.DecodeConfig(n.Config, &c); err != nil {
		return sdk.Result{}, err
	}
	switch c.Mode {
	case "sleep":
		d, _ := time.ParseDuration(c.Sleep)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return sdk.Result{}, ctx.Err()
		}
	case "hang":
		select {}
	case "block_once":
		if once(c.Marker) {
			if err := os.WriteFile(c.PIDFile+".tmp", []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
				return sdk.Result{}, err
			}
			if err := os.Rename(c.PIDFile+".tmp", c.PIDFile); err != nil {
				return sdk.Result{}, err
			}
			select {}
		}
	case "crash_once":
		if once(c.Marker) {
			os.Exit(3)
		}
	case "error":
		return sdk.Result{}, errors.New("testplugin: asked to fail")
	case "panic":
		panic("testplugin: asked to panic")
	case "log":
		slog.Info(c.Message, "alerts", len(n.Alerts))
	}
	return sdk.DeliveredResult(fmt.Sprintf("%s/%d", n.ID, os.Getpid())), nil
}

func (testPlugin) Describe(context.Context) (sdk.Description, error) {
	return sdk.Description{
		Series:   []sdk.Series{{Name: "test.value", Unit: "1", EntityKind: "host", Type: sdk.Gauge, Description: "a test series"}},
		Interval: 30 * time.Second,
	}, nil
}

func (testPlugin) Collect(_ context.Context, since time.Time) ([]sdk.Sample, error) {
	t := time.Now().Truncate(time.Second)
	if !since.IsZero() && !t.After(since) {
		return nil, nil
	}
	return []sdk.Sample{{Series: "test.value", Entity: sdk.Entity{Kind: "host", ID: "host-1"}, Time: t, Value: 42,
		Labels: map[string]string{"sensor": "a"}}}, nil
}

func main() {
	name := strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe")
	info := sdk.Info{Name: name, Version: "0.0.1-test", Description: "the host's test plugin"}
	if v := os.Getenv("TESTPLUGIN_PROTOCOL_VERSION"); v != "" {
		// Serve by hand with another version, as a plugin built against
		// another SDK would.
		pv, _ := strconv.Atoi(v)
		hs := sdk.Handshake
		hs.ProtocolVersion = uint(pv)
		info.Kinds = []sdk.Kind{sdk.KindNotifier}
		info.ProtocolVersion = pv
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig: hs,
			Plugins:         sdk.PluginSet(info, testPlugin{}, nil),
			GRPCServer:      plugin.DefaultGRPCServer,
		})
		return
	}
	sdk.Serve(sdk.ServeConfig{Info: info, Notifier: testPlugin{}, Collector: testPlugin{}})
}
