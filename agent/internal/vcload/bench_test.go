package vcload

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/agent/internal/vsphere"
	"github.com/vmpulse/vmpulse/protocol"
)

// Window of the vCenter load benchmark: after a warm-up cycle, this many
// realtime cycles (20 s apart) are measured.
const loadCycles = 3

// BenchmarkAgentVCenterLoad measures what collecting 1,000 VMs costs the
// vCenter simulator (scripts/vcsim, its own process, started from the
// saved inventory var/bench/inv1000, built on the first run) for the
// agent's vSphere collection (the inventory watcher, the event reader and
// the realtime perf collector, with the agent's default settings) and for
// Reference, a Telegraf-like client collecting the same VM and host
// counters. Each client gets a fresh simulator; after one warm-up cycle,
// loadCycles realtime cycles 20 s apart are measured. Calls and bytes are
// counted by a transport around the client's HTTP connection to the
// simulator; CPU is read from /proc (the simulator) and getrusage (the
// benchmark process, which runs only the client measured).
//
// Figures (the agent's unless the name says otherwise):
//
//   - vcenter_calls_per_cycle: vCenter calls per collection cycle (QueryPerf)
//   - vcenter_bytes_per_value: request+response bytes of the window per value
//   - vcenter_idle_calls_per_min: calls outside collection cycles per minute
//     (WaitForUpdatesEx, ReadNextEvents, tags, keepalive)
//   - vcenter_cpu_us_per_value: simulator CPU per value collected
//   - vcenter_cycle_cpu_us_per_value: the part of it spent inside cycles
//   - vcenter_idle_cpu_ms_per_s: simulator CPU per second between cycles
//     (the simulator spends ~10 ms/s while a WaitForUpdatesEx is open:
//     its wait loop wakes every 20 ms; vCenter does not)
//   - vcenter_cycle_cpu_ms_per_cycle: the simulator's CPU inside one cycle,
//     whatever the values: both clients ask for the same entities and
//     counters, so this compares what their queries cost regardless of
//     how many values the simulator's timing yields (and of the zero
//     values its normal-format encoder drops, which CSV results keep)
//   - vcenter_values_per_cycle: values collected per cycle
//   - vcenter_client_cpu_us_per_value: the collecting client's own CPU per value
//   - the same with _reference for the Telegraf-like client, _normal for
//     the agent asking for QueryPerf results in the normal format rather
//     than CSV, _before for the agent's standing calls as they were
//     before issue #15 (WaitForUpdatesEx returning every 5 s, events read
//     every 10 s; CSV results), _60s for the agent collecting realtime
//     data every 60 s (three 20 s samples per query), and _vcwait /
//     _60s_vcwait for the agent against the simulator run with
//     -wake-on-change (an open WaitForUpdatesEx wakes on a change, not
//     every 20 ms, as vCenter's does);
//   - vcenter_sim_wait_loop_ms_per_s (and _vcwait): what one open
//     WaitForUpdatesEx costs the simulator per second by itself;
//   - vcenter_cpu_ratio_vs_reference (goal ≤ 0.5) and its variants: the
//     simulator's CPU per value, the agent's over the reference's;
//   - vcenter_window_cpu_ratio_vs_reference (and variants): the
//     simulator's CPU over the whole window, the agent's over the
//     reference's (same entities, counters and cycles, whatever values
//     the simulator's timing yields), and
//     vcenter_cycle_cpu_ratio_vs_reference (per cycle, inside cycles).
func BenchmarkAgentVCenterLoad(b *testing.B) {
	if testing.Short() {
		b.Skip("the vCenter load benchmark takes minutes; skipped with -short")
	}
	bin := buildVcsim(b)
	inv, err := filepath.Abs(filepath.Join("..", "..", "..", "var", "bench", "inv1000"))
	if err != nil {
		b.Fatal(err)
	}
	var ref, agent, legacy, normal, minute, agentVC, minuteVC loadResult
	var waitLoop, waitLoopVC float64
	for range b.N {
		waitLoop = measureWaitLoop(b, bin, inv, "wait-loop")
		waitLoopVC = measureWaitLoop(b, bin, inv, "wait-loop-vcwait", vcWait...)
		ref = runLoad(b, bin, inv, "reference", nil, runReference)
		legacy = runLoad(b, bin, inv, "agent_before", nil, runAgentWith(legacySettings))
		normal = runLoad(b, bin, inv, "agent_normal", nil, runAgentWith(normalSettings))
		minute = runLoad(b, bin, inv, "agent_60s", nil, runAgentWith(minuteSettings))
		agentVC = runLoad(b, bin, inv, "agent_vcwait", vcWait, runAgentWith(agentDefaults))
		minuteVC = runLoad(b, bin, inv, "agent_60s_vcwait", vcWait, runAgentWith(minuteSettings))
		agent = runLoad(b, bin, inv, "agent", nil, runAgentWith(agentDefaults))
	}
	for _, r := range []struct {
		suffix string
		r      loadResult
	}{{"", agent}, {"_60s", minute}, {"_vcwait", agentVC}, {"_60s_vcwait", minuteVC}, {"_normal", normal}, {"_before", legacy}, {"_reference", ref}} {
		fmt.Printf("figure: vcenter_calls_per_cycle%s %.1f calls\n", r.suffix, r.r.callsPerCycle())
		fmt.Printf("figure: vcenter_bytes_per_value%s %.1f B\n", r.suffix, r.r.bytesPerValue())
		fmt.Printf("figure: vcenter_idle_calls_per_min%s %.1f calls\n", r.suffix, r.r.idleCallsPerMin())
		fmt.Printf("figure: vcenter_cpu_us_per_value%s %.2f us\n", r.suffix, r.r.simCPUPerValue())
		fmt.Printf("figure: vcenter_cycle_cpu_us_per_value%s %.2f us\n", r.suffix, r.r.cycleSimCPUPerValue())
		fmt.Printf("figure: vcenter_idle_cpu_ms_per_s%s %.2f ms\n", r.suffix, r.r.idleSimCPUPerSecond())
		fmt.Printf("figure: vcenter_cycle_cpu_ms_per_cycle%s %.1f ms\n", r.suffix, r.r.cycleSimCPUPerCycle())
		fmt.Printf("figure: vcenter_values_per_cycle%s %.0f values\n", r.suffix, float64(r.r.values)/float64(r.r.cycles))
		fmt.Printf("figure: vcenter_client_cpu_us_per_value%s %.2f us\n", r.suffix, r.r.clientCPUPerValue())
	}
	fmt.Printf("figure: vcenter_sim_wait_loop_ms_per_s %.2f ms\n", waitLoop)
	fmt.Printf("figure: vcenter_sim_wait_loop_ms_per_s_vcwait %.2f ms\n", waitLoopVC)
	if ref.simCPUPerValue() > 0 {
		fmt.Printf("figure: vcenter_cpu_ratio_vs_reference %.2f x\n", agent.simCPUPerValue()/ref.simCPUPerValue())
		fmt.Printf("figure: vcenter_cpu_ratio_vs_reference_before %.2f x\n", legacy.simCPUPerValue()/ref.simCPUPerValue())
		fmt.Printf("figure: vcenter_cpu_ratio_vs_reference_60s %.2f x\n", minute.simCPUPerValue()/ref.simCPUPerValue())
		fmt.Printf("figure: vcenter_cpu_ratio_vs_reference_vcwait %.2f x\n", agentVC.simCPUPerValue()/ref.simCPUPerValue())
		fmt.Printf("figure: vcenter_cpu_ratio_vs_reference_60s_vcwait %.2f x\n", minuteVC.simCPUPerValue()/ref.simCPUPerValue())
	}
	if ref.simCPU > 0 {
		// Per cycle over the whole window (inside cycles and between
		// them): both clients ask for the same entities and counters, so
		// this does not depend on how many values the simulator's timing
		// yields each.
		fmt.Printf("figure: vcenter_window_cpu_ratio_vs_reference %.2f x\n", agent.simCPU.Seconds()/ref.simCPU.Seconds())
		fmt.Printf("figure: vcenter_window_cpu_ratio_vs_reference_vcwait %.2f x\n", agentVC.simCPU.Seconds()/ref.simCPU.Seconds())
		fmt.Printf("figure: vcenter_window_cpu_ratio_vs_reference_60s_vcwait %.2f x\n", minuteVC.simCPU.Seconds()/ref.simCPU.Seconds())
	}
	if ref.cycleSimCPUPerCycle() > 0 {
		fmt.Printf("figure: vcenter_cycle_cpu_ratio_vs_reference %.2f x\n", agent.cycleSimCPUPerCycle()/ref.cycleSimCPUPerCycle())
		fmt.Printf("figure: vcenter_cycle_cpu_ratio_vs_reference_normal %.2f x\n", normal.cycleSimCPUPerCycle()/ref.cycleSimCPUPerCycle())
	}
	b.ReportMetric(agent.simCPUPerValue(), "sim-us/value")
	b.ReportMetric(ref.simCPUPerValue(), "ref-sim-us/value")
}

// loadResult is what one client's window measured.
type loadResult struct {
	window   time.Duration
	cycles   int
	values   int64
	calls    Stats         // every call in the window
	idle     Stats         // calls outside collection cycles
	idleTime time.Duration // time between cycles
	simCPU   time.Duration // simulator CPU over the window
	simIdle  time.Duration // simulator CPU between cycles
	selfCPU  time.Duration // benchmark process CPU over the window
}

func (r loadResult) callsPerCycle() float64 {
	return float64(r.calls.Total(nil).Calls-r.idle.Total(nil).Calls) / float64(r.cycles)
}

func (r loadResult) bytesPerValue() float64 {
	t := r.calls.Total(nil)
	return perValue(float64(t.ReqBytes+t.RespBytes), r.values)
}

func (r loadResult) idleCallsPerMin() float64 {
	return float64(r.idle.Total(nil).Calls) / r.window.Minutes()
}

func (r loadResult) simCPUPerValue() float64 {
	return perValue(float64(r.simCPU.Nanoseconds())/1e3, r.values)
}

// cycleSimCPUPerValue is the simulator's CPU inside collection cycles
// per value: what the queries cost it, without what it spends between
// cycles.
func (r loadResult) cycleSimCPUPerValue() float64 {
	return perValue(float64((r.simCPU-r.simIdle).Nanoseconds())/1e3, r.values)
}

// cycleSimCPUPerCycle is the simulator's CPU inside collection cycles per
// cycle, in ms.
func (r loadResult) cycleSimCPUPerCycle() float64 {
	if r.cycles == 0 {
		return math.NaN()
	}
	return float64((r.simCPU - r.simIdle).Nanoseconds()) / 1e6 / float64(r.cycles)
}

func (r loadResult) clientCPUPerValue() float64 {
	return perValue(float64(r.selfCPU.Nanoseconds())/1e3, r.values)
}

func (r loadResult) idleSimCPUPerSecond() float64 {
	if r.idleTime <= 0 {
		return 0
	}
	return float64(r.simIdle.Nanoseconds()) / 1e6 / r.idleTime.Seconds()
}

func perValue(x float64, values int64) float64 {
	if values == 0 {
		return math.NaN()
	}
	return x / float64(values)
}

// loadEnv is what a client under test gets.
type loadEnv struct {
	u       *url.URL // the simulator's SDK URL, without credentials
	counter *Counter
	// cleanup registers f to run when the client's run ends (last
	// registered, first run), before the next client starts.
	cleanup func(f func())
}

// cycleFunc runs one collection cycle and returns the values it
// collected; the client's standing work runs in between.
type cycleFunc func(ctx context.Context) (int64, error)

// runLoad starts a simulator from inv, lets start set the client up,
// runs a warm-up cycle and loadCycles measured cycles 20 s apart, and
// measures them.
func runLoad(b *testing.B, bin, inv, name string, simArgs []string, start func(ctx context.Context, b *testing.B, env loadEnv) cycleFunc) loadResult {
	b.Helper()
	b.StopTimer()
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	register := func(f func()) { cleanups = append(cleanups, f) }
	simPID, u := startVcsim(b, bin, inv, name, register, simArgs...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := loadEnv{u: u, counter: &Counter{}, cleanup: register}
	cycle := start(ctx, b, env)
	warm := time.Now()
	if _, err := cycle(ctx); err != nil { // warm-up: discovery, first samples
		b.Fatalf("%s: warm-up cycle: %v", name, err)
	}
	// What the warm-up and the clients measured before freed goes back to
	// the OS now, not in the window: the runtime's background scavenger
	// would charge it to this client's CPU (it did, ~1.5 ms/s, to the
	// last client measured).
	debug.FreeOSMemory()
	b.StartTimer()

	var r loadResult
	const every = 20 * time.Second
	// The window starts with the first measured cycle, one interval
	// after the warm-up began, and covers loadCycles whole intervals.
	next := warm.Add(every)
	time.Sleep(time.Until(next))
	calls0, sim0, self0, begin := env.counter.Snapshot(), procCPU(b, simPID), selfCPU(b), time.Now()
	mark, simMark, statsMark := begin, sim0, calls0
	for range loadCycles {
		time.Sleep(time.Until(next))
		next = next.Add(every)
		// Between cycles: everything since the last one ended.
		now, simNow, statsNow := time.Now(), procCPU(b, simPID), env.counter.Snapshot()
		r.idleTime += now.Sub(mark)
		r.simIdle += simNow - simMark
		r.idle = addStats(r.idle, statsNow.Sub(statsMark))
		n, err := cycle(ctx)
		if err != nil {
			b.Fatalf("%s: cycle: %v", name, err)
		}
		r.values += n
		r.cycles++
		mark, simMark, statsMark = time.Now(), procCPU(b, simPID), env.counter.Snapshot()
	}
	// The window ends a full interval after the last cycle began.
	time.Sleep(time.Until(next))
	now, simNow, statsNow := time.Now(), procCPU(b, simPID), env.counter.Snapshot()
	r.idleTime += now.Sub(mark)
	r.simIdle += simNow - simMark
	r.idle = addStats(r.idle, statsNow.Sub(statsMark))
	r.window = now.Sub(begin)
	r.simCPU = simNow - sim0
	r.selfCPU = selfCPU(b) - self0
	r.calls = statsNow.Sub(calls0)
	b.StopTimer()

	var lines []string
	for _, m := range r.calls.Methods() {
		st := r.calls[m]
		lines = append(lines, fmt.Sprintf("%s %d calls %d B out %d B in (between cycles: %d calls)", m, st.Calls, st.ReqBytes, st.RespBytes, r.idle[m].Calls))
	}
	fmt.Printf("# %s: %d cycles, %d values in %s; simulator %.2f CPU-s (%.2f between cycles); client %.2f CPU-s\n#   %s\n",
		name, r.cycles, r.values, r.window.Round(time.Millisecond), r.simCPU.Seconds(), r.simIdle.Seconds(), r.selfCPU.Seconds(),
		strings.Join(lines, "\n#   "))
	if r.values == 0 {
		b.Fatalf("%s collected no values", name)
	}
	return r
}

func addStats(a, b Stats) Stats {
	out := Stats{}
	for _, s := range []Stats{a, b} {
		for m, st := range s {
			t := out[m]
			t.Calls += st.Calls
			t.ReqBytes += st.ReqBytes
			t.RespBytes += st.RespBytes
			out[m] = t
		}
	}
	return out
}

const (
	simUser = "vmpulse"
	simPass = "vmpulse"
)

// runReference sets up the Telegraf-like client.
func runReference(ctx context.Context, b *testing.B, env loadEnv) cycleFunc {
	sc := soap.NewClient(env.u, true)
	sc.Client.Transport = env.counter.Wrap(sc.Client.Transport)
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		b.Fatal(err)
	}
	sm := session.NewManager(vc)
	if err := sm.Login(ctx, url.UserPassword(simUser, simPass)); err != nil {
		b.Fatal(err)
	}
	env.cleanup(func() { _ = sm.Logout(context.Background()) })
	ref := &Reference{Client: vc, Counters: map[string][]string{
		"vm": vsphere.DefaultCounters["vm"], "host": vsphere.DefaultCounters["host"],
	}}
	discovered := false
	return func(ctx context.Context) (int64, error) {
		if !discovered {
			if err := ref.Discover(ctx); err != nil {
				return 0, err
			}
			discovered = true
		}
		n, err := ref.Collect(ctx)
		return int64(n), err
	}
}

// agentSettings configures the agent's vSphere parts.
type agentSettings struct {
	inv    vsphere.InventoryConfig
	events vsphere.EventsConfig
	perf   vsphere.PerfConfig
	// announce makes the inventory watcher the event reader's Announcer,
	// as the agent wires them.
	announce bool
	// every makes the realtime cycle run on every every-th tick of the
	// benchmark (0 or 1: every tick, 20 s).
	every int
}

// agentDefaults are the agent's defaults (as agent.yml's are).
var agentDefaults = agentSettings{events: vsphere.EventsConfig{PollEvery: 10 * time.Second}, announce: true}

// normalSettings are the agent's defaults with QueryPerf results in the
// normal format, as the agent asked for them before it used CSV (the
// "_normal" figures).
var normalSettings = agentSettings{events: vsphere.EventsConfig{PollEvery: 10 * time.Second}, announce: true, perf: vsphere.PerfConfig{Format: "normal"}}

// vcWait runs the simulator with -wake-on-change: an open
// WaitForUpdatesEx wakes when an object changes rather than every 20 ms
// (scripts/vcsim/vcwait.go), as vCenter's does. The "_vcwait" figures are
// measured against it.
var vcWait = []string{"-wake-on-change"}

// minuteSettings are the agent's defaults with the realtime cycle every
// 60 s rather than 20 s (collection.realtime_interval: 60s): the same 20 s
// samples, three per counter and query, a minute later (the "_60s"
// figures). The benchmark's ticks stay 20 s apart; this agent collects on
// every third.
var minuteSettings = agentSettings{events: vsphere.EventsConfig{PollEvery: 10 * time.Second}, announce: true, every: 3}

// legacySettings reproduce the agent before issue #15 for the "_before"
// figures: WaitForUpdatesEx returning every 5 s, events read every 10 s.
var legacySettings = agentSettings{inv: vsphere.InventoryConfig{MaxWait: 5 * time.Second}, events: vsphere.EventsConfig{PollEvery: 10 * time.Second, Poll: true}}

// runAgentWith sets up the agent's vSphere collection: the inventory
// watcher and the event reader run on their own, the realtime perf cycle
// runs when the benchmark says.
func runAgentWith(set agentSettings) func(ctx context.Context, b *testing.B, env loadEnv) cycleFunc {
	return func(ctx context.Context, b *testing.B, env loadEnv) cycleFunc { return runAgent(ctx, b, env, set) }
}

func runAgent(ctx context.Context, b *testing.B, env loadEnv, set agentSettings) cycleFunc {
	sess, err := vsphere.NewSession(vsphere.Endpoint{Name: "sim", URL: env.u.String(), Username: simUser, Password: simPass, Insecure: true}, nil)
	if err != nil {
		b.Fatal(err)
	}
	sess.WrapTransport = env.counter.Wrap
	sink := &countingSink{}
	meta := &memMeta{m: map[string][]byte{}}
	inv := vsphere.NewInventory(sess, sink, set.inv, nil)
	if set.announce {
		set.events.Announcer = inv
	}
	events := vsphere.NewEventReader(sess, sink, meta, set.events, nil)
	perf := vsphere.NewCollector(sess, inv, sink, meta, set.perf, nil)
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = inv.Run(rctx) }()
	go func() { defer wg.Done(); _ = events.Run(rctx) }()
	env.cleanup(func() {
		stop()
		wg.Wait()
		_ = sess.Close(context.Background())
	})
	deadline := time.Now().Add(2 * time.Minute)
	for len(inv.Entities()) == 0 {
		if time.Now().After(deadline) {
			b.Fatal("agent: no inventory after 2 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	tick := 0
	return func(ctx context.Context) (int64, error) {
		tick++
		if set.every > 1 && tick > 1 && (tick-1)%set.every != 0 {
			return 0, nil // not this client's cycle (the first is the warm-up)
		}
		before := sink.values.Load()
		if _, err := perf.Collect(ctx, vsphere.IntervalRealtime); err != nil {
			return 0, err
		}
		return sink.values.Load() - before, nil
	}
}

// countingSink counts the values the collector delivers and drops the rest.
type countingSink struct{ values atomic.Int64 }

func (s *countingSink) Samples(_ context.Context, p *protocol.Samples) error {
	var n int64
	for _, sd := range p.Series {
		for _, col := range sd.Values {
			for _, v := range col {
				if !math.IsNaN(v) {
					n++
				}
			}
		}
	}
	s.values.Add(n)
	return nil
}

func (s *countingSink) Inventory(context.Context, *protocol.Inventory) error { return nil }
func (s *countingSink) Events(context.Context, *protocol.Events) error       { return nil }
func (s *countingSink) Gap(context.Context, *protocol.Gap) error             { return nil }

type memMeta struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (m *memMeta) GetMeta(k string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[k], nil
}

func (m *memMeta) SetMeta(k string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[k] = append([]byte(nil), v...)
	return nil
}

// buildVcsim builds scripts/vcsim into a temporary directory.
func buildVcsim(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "vcsim")
	cmd := exec.Command("go", "build", "-o", bin, "../../../scripts/vcsim")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("build vcsim: %v", err)
	}
	return bin
}

// startVcsim starts the simulator from the saved inventory inv (building
// and saving it first if absent) and returns its pid and SDK URL. With
// BENCH_VCSIM_CPUPROFILE=DIR it writes a CPU profile to DIR/vcsim-NAME.pprof.
func startVcsim(b *testing.B, bin, inv, name string, cleanup func(func()), extra ...string) (int, *url.URL) {
	b.Helper()
	urlFile := filepath.Join(b.TempDir(), "sim.url")
	args := []string{"-vms", "1000", "-cache", inv, "-listen", "127.0.0.1:0", "-url-file", urlFile,
		"-username", simUser, "-password", simPass}
	args = append(args, extra...)
	if dir := os.Getenv("BENCH_VCSIM_CPUPROFILE"); dir != "" {
		// The simulator's profile, written when it stops, shows where its
		// CPU goes for each client.
		args = append(args, "-cpuprofile", filepath.Join(dir, "vcsim-"+name+".pprof"))
	}
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { // keep the pipe drained; show the simulator's own log
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			b.Log("vcsim: " + sc.Text())
		}
	}()
	cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(3 * time.Minute)
	for {
		data, err := os.ReadFile(urlFile)
		if s := strings.TrimSpace(string(data)); err == nil && s != "" {
			u, err := soap.ParseURL(s)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := http.Get(u.String()); err != nil {
				b.Fatalf("simulator at %s: %v", u, err)
			}
			return cmd.Process.Pid, u
		}
		if time.Now().After(deadline) {
			b.Fatal("simulator did not start within 3 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// procCPU reads a process's user+system CPU time from /proc.
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, stat)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// selfCPU is this process's user+system CPU time.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measureWaitLoop measures what an open WaitForUpdatesEx costs the
// simulator by itself: its wait loop wakes every 20 ms to look for
// updates, where vCenter sleeps until there is one. A simulator is
// measured for waitLoopWindow with a logged-in session and nothing else,
// then for as long with one WaitForUpdatesEx open on a filter of one
// property of the root folder (which never changes); the difference, in
// ms of simulator CPU per second, is the loop's cost, charged to every
// client that keeps such a call open.
func measureWaitLoop(b *testing.B, bin, inv, name string, simArgs ...string) float64 {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	pid, u := startVcsim(b, bin, inv, name, func(f func()) { cleanups = append(cleanups, f) }, simArgs...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	vc, err := vim25.NewClient(ctx, soap.NewClient(u, true))
	if err != nil {
		b.Fatal(err)
	}
	sm := session.NewManager(vc)
	if err := sm.Login(ctx, url.UserPassword(simUser, simPass)); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sm.Logout(context.Background()) }()
	const waitLoopWindow = 15 * time.Second
	measure := func() float64 {
		time.Sleep(3 * time.Second) // settle
		c0, t0 := procCPU(b, pid), time.Now()
		time.Sleep(waitLoopWindow)
		return float64((procCPU(b, pid) - c0).Microseconds()) / 1e3 / time.Since(t0).Seconds()
	}
	quiet := measure()
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- property.Wait(wctx, property.DefaultCollector(vc), vc.ServiceContent.RootFolder, []string{"name"},
			func([]types.PropertyChange) bool { return false })
	}()
	open := measure()
	stop()
	if err := <-done; err != nil && wctx.Err() == nil {
		b.Fatalf("wait loop: %v", err)
	}
	fmt.Printf("# %s: simulator %.2f ms/s with a session only, %.2f ms/s with one WaitForUpdatesEx open\n", name, quiet, open)
	return max(open-quiet, 0)
}
