package host_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
	"github.com/vmpulse/vmpulse/plugins/sdk/plugintest"
)

// figures guards the "figure:" lines so that each prints once per run.
var figures sync.Map

func figure(name string, v float64, unit string) {
	if _, dup := figures.LoadOrStore(name, true); !dup {
		fmt.Printf("figure: %s %.3g %s\n", name, v, unit)
	}
}

func quietHost(b *testing.B, names ...string) *host.Host {
	dir, cfgs := install(b, names...)
	return plugintest.Host(b, host.Config{Dir: dir, Plugins: cfgs,
		Logger: slog.New(slog.DiscardHandler)})
}

// BenchmarkNotifyNoop is the round trip of a Notify that the plugin answers
// at once: host wrapper, gRPC over a unix socket with mutual TLS, plugin,
// and back. It reports the p99 as plugin_call_p99_ms.
func BenchmarkNotifyNoop(b *testing.B) {
	h := quietHost(b, "noop")
	n := notifier(b, h, "noop")
	nt := note("bench", ok)
	for range 200 { // warm up connections and the plugin's heap
		if _, err := n.Notify(context.Background(), nt); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		res, err := n.Notify(context.Background(), nt)
		lat = append(lat, time.Since(t0))
		if err != nil || res.Outcome != sdk.Delivered {
			b.Fatalf("notify: %+v, %v", res, err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99_ms")
	if b.N >= 1000 {
		figure("plugin_call_p50_ms", float64(p50.Microseconds())/1000, "ms")
		figure("plugin_call_p99_ms", float64(p99.Microseconds())/1000, "ms")
	}
}

// BenchmarkRestart kills the plugin's process with SIGKILL and measures
// until a Notify is delivered by the new process: crash noticed, process
// started, handshake, Info, call. It reports the mean as plugin_restart_ms.
func BenchmarkRestart(b *testing.B) {
	h := quietHost(b, "phoenix")
	n := notifier(b, h, "phoenix")
	mustDeliver(b, n, "warm")
	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		pid := status(b, h, "phoenix").PID
		t0 := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		for {
			st := status(b, h, "phoenix")
			if st.State == host.StateRunning && st.PID != pid {
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		mustDeliver(b, n, fmt.Sprint("r", i)) // also resets the backoff
		total += time.Since(t0)
	}
	b.StopTimer()
	mean := total / time.Duration(b.N)
	b.ReportMetric(float64(mean.Microseconds())/1000, "restart_ms")
	if b.N >= 5 {
		figure("plugin_restart_ms", float64(mean.Microseconds())/1000, "ms")
	}
}
