package vcload

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/agent/internal/vsphere"
)

// idleWindow is how long BenchmarkAgentIdleCPU measures each client.
const idleWindow = 30 * time.Second

// BenchmarkAgentIdleCPU measures the agent's own CPU while its vSphere
// collection is idle between cycles: the inventory watcher, the event
// reader and the perf loops (after their first cycles) against a
// simulator (scripts/vcsim, its own process, 1,000 VMs) where nothing
// changes. It runs the agent's defaults and the settings before issue #15
// (agentDefaults, legacySettings), each for idleWindow, and prints
//
//   - agent_idle_cpu_ms_per_s: the benchmark process's CPU per second of
//     the window (it runs nothing else)
//   - agent_idle_cpu_ms_per_s_before: the same with the old settings
//   - agent_idle_calls_per_min: the calls to the simulator in the window
//
// With BENCH_AGENT_IDLE_CPUPROFILE=DIR it writes a CPU profile of each
// window to DIR/agent-idle-NAME.pprof.
func BenchmarkAgentIdleCPU(b *testing.B) {
	if testing.Short() {
		b.Skip("the idle benchmark takes a minute; skipped with -short")
	}
	bin := buildVcsim(b)
	inv, err := filepath.Abs(filepath.Join("..", "..", "..", "var", "bench", "inv1000"))
	if err != nil {
		b.Fatal(err)
	}
	var now, before idleResult
	for range b.N {
		before = runIdle(b, bin, inv, "before", legacySettings)
		now = runIdle(b, bin, inv, "agent", agentDefaults)
	}
	fmt.Printf("figure: agent_idle_cpu_ms_per_s %.3f ms\n", now.cpuPerSecond())
	fmt.Printf("figure: agent_idle_cpu_ms_per_s_before %.3f ms\n", before.cpuPerSecond())
	fmt.Printf("figure: agent_idle_calls_per_min %.1f calls\n", now.callsPerMin())
	b.ReportMetric(now.cpuPerSecond(), "idle-cpu-ms/s")
}

type idleResult struct {
	window time.Duration
	cpu    time.Duration
	calls  Stats
}

func (r idleResult) cpuPerSecond() float64 {
	return float64(r.cpu.Nanoseconds()) / 1e6 / r.window.Seconds()
}

func (r idleResult) callsPerMin() float64 {
	return float64(r.calls.Total(nil).Calls) / r.window.Minutes()
}

// runIdle starts a simulator and the agent's vSphere parts with set,
// waits for the first inventory and perf cycles, and measures the window.
func runIdle(b *testing.B, bin, inv, name string, set agentSettings) idleResult {
	b.Helper()
	b.StopTimer()
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	_, u := startVcsim(b, bin, inv, "idle-"+name, func(f func()) { cleanups = append(cleanups, f) })
	counter := &Counter{}
	sess, err := vsphere.NewSession(vsphere.Endpoint{Name: "sim", URL: u.String(), Username: simUser, Password: simPass, Insecure: true}, nil)
	if err != nil {
		b.Fatal(err)
	}
	sess.WrapTransport = counter.Wrap
	sink := &countingSink{}
	meta := &memMeta{m: map[string][]byte{}}
	watcher := vsphere.NewInventory(sess, sink, set.inv, nil)
	if set.announce {
		set.events.Announcer = watcher
	}
	events := vsphere.NewEventReader(sess, sink, meta, set.events, nil)
	// The perf loops run their first cycles, then wait an hour: the
	// window is what the agent does between cycles.
	perf := vsphere.NewCollector(sess, watcher, sink, meta, vsphere.PerfConfig{RealtimeEvery: time.Hour, HistoricalEvery: time.Hour}, nil)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{watcher.Run, events.Run, perf.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(ctx) }()
	}
	cleanups = append(cleanups, func() {
		stop()
		wg.Wait()
		_ = sess.Close(context.Background())
	})
	deadline := time.Now().Add(3 * time.Minute)
	for perf.LastStats(vsphere.IntervalRealtime).Values == 0 || perf.LastStats(vsphere.IntervalHistorical).Start.IsZero() {
		if time.Now().After(deadline) {
			b.Fatalf("%s: no first perf cycles within 3 minutes", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(12 * time.Second) // the tag refresh, the events' first read and announcement (after one PollEvery)
	// Return what start-up (and an earlier client in this process) freed
	// to the OS now: the runtime's background scavenger would otherwise
	// spend the window doing it (madvise), which is not the agent's idle
	// work.
	debug.FreeOSMemory()

	if dir := os.Getenv("BENCH_AGENT_IDLE_CPUPROFILE"); dir != "" {
		f, err := os.Create(filepath.Join(dir, "agent-idle-"+name+".pprof"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	b.StartTimer()
	calls0, cpu0, begin := counter.Snapshot(), selfCPU(b), time.Now()
	time.Sleep(idleWindow)
	r := idleResult{window: time.Since(begin), cpu: selfCPU(b) - cpu0, calls: counter.Snapshot().Sub(calls0)}
	b.StopTimer()
	fmt.Printf("# idle %s: %.3f ms CPU/s over %s; calls %v\n", name, r.cpuPerSecond(), r.window.Round(time.Millisecond), r.calls)
	return r
}
