package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Window of the agent collection benchmark: after the first realtime cycle
// that stores samples, the agent runs this many more realtime cycles before
// its CPU time and peak RSS are read.
const benchCycles = 3

// BenchmarkAgentCollect runs the real agent binary against the simulator
// (scripts/vcsim, a separate process started from a saved inventory so its
// CPU is not counted) at 1,000 and 5,000 VMs, with a real aggregator and
// PostgreSQL behind it, and reports per size:
//
//   - agent_cpu_us_per_value_N: the agent process's CPU time (user+system,
//     from its start) divided by the sample values it delivered, i.e. the
//     non-NULL values in samples_named once its spool has drained. Like
//     Telegraf's vsphere figure (≈ 26 µs/value) it includes discovery: the
//     initial inventory, counter resolution and the first cycles, plus
//     spooling, encoding and sending over QUIC.
//   - agent_rss_mb_N: the agent's peak RSS (VmHWM) over the window.
//   - agent_cpu_us_per_value_steady_N: the same after the first cycle
//     with values, i.e. without discovery, as a long-running agent pays.
//   - agent_cycle_s_N: the mean duration of the realtime cycles in the
//     window (plan, QueryPerf, convert, spool), as the agent logs them.
//
// The 5,000-VM figures are also printed as the headline agent_cpu_us_per_value
// and agent_rss_mb (goal: half of Telegraf's, ≤ 13 µs/value and ≤ 122 MB).
// Saved inventories live under var/bench/inv<N>; the first run builds them
// (≈ 3 minutes for 5,000 VMs), later runs load them in seconds.
func BenchmarkAgentCollect(b *testing.B) {
	if testing.Short() {
		b.Skip("agent collection benchmark takes minutes; skipped with -short")
	}
	buildVcsim(b)
	results := map[int]agentCollectResult{}
	for _, vms := range []int{1000, 5000} {
		b.Run(strconv.Itoa(vms), func(b *testing.B) {
			var r agentCollectResult
			for range b.N {
				r = runAgentCollect(b, vms)
			}
			b.ReportMetric(r.cpuPerValue(), "cpu-us/value")
			b.ReportMetric(r.rssMB(), "rss-MB")
			b.ReportMetric(r.cycle.Seconds(), "cycle-s")
			results[vms] = r
		})
		if r, ok := results[vms]; ok {
			fmt.Printf("figure: agent_cpu_us_per_value_%d %.2f us\n", vms, r.cpuPerValue())
			fmt.Printf("figure: agent_rss_mb_%d %.1f MB\n", vms, r.rssMB())
			fmt.Printf("figure: agent_cycle_s_%d %.2f s\n", vms, r.cycle.Seconds())
			fmt.Printf("figure: agent_cpu_us_per_value_steady_%d %.2f us\n", vms, r.steadyCPUPerValue)
			fmt.Printf("# %d VMs: %d values in %.2f CPU-s (%d realtime cycles after discovery took %s; sim load %s, first samples after %s)\n",
				vms, r.values, r.cpu.Seconds(), len(r.cycles), strings.Join(r.cycles, " "),
				r.simLoad.Round(100*time.Millisecond), r.firstSamples.Round(100*time.Millisecond))
		}
	}
	if r, ok := results[5000]; ok {
		fmt.Printf("figure: agent_cpu_us_per_value %.2f us\n", r.cpuPerValue())
		fmt.Printf("figure: agent_rss_mb %.1f MB\n", r.rssMB())
	}
}

// agentCollectResult is what one benchmark run at one size measured.
type agentCollectResult struct {
	cpu          time.Duration // agent user+system CPU since its start
	rssKB        int64         // agent VmHWM
	values       int64         // non-NULL values stored
	cycle        time.Duration // mean realtime cycle in the window
	cycles       []string      // each window cycle's duration, for the log
	simLoad      time.Duration // simulator start from the saved inventory
	firstSamples time.Duration // agent start → first realtime cycle with values

	// steadyCPUPerValue is CPU µs per value after the first cycle with
	// values: what a long-running agent spends once discovery is behind.
	steadyCPUPerValue float64
}

func (r agentCollectResult) cpuPerValue() float64 {
	if r.values == 0 {
		return 0
	}
	return float64(r.cpu.Microseconds()) / float64(r.values)
}

func (r agentCollectResult) rssMB() float64 { return float64(r.rssKB) / 1024 }

var vcsimOnce sync.Once

// buildVcsim adds the simulator command to the binaries TestMain built.
func buildVcsim(tb testing.TB) {
	tb.Helper()
	var err error
	vcsimOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", binDir+"/", "../vcsim")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		err = cmd.Run()
	})
	if err != nil {
		tb.Fatalf("build vcsim: %v", err)
	}
	if _, err := os.Stat(filepath.Join(binDir, "vcsim")); err != nil {
		tb.Fatalf("vcsim binary: %v", err)
	}
}

// savedInventory returns var/bench/inv<vms>, building and saving the
// simulator inventory there first if it is absent. The inventory is saved
// to a temporary directory and renamed, so an interrupted build leaves no
// half inventory behind.
func savedInventory(tb testing.TB, vms int) string {
	tb.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "var", "bench", fmt.Sprintf("inv%d", vms)))
	if err != nil {
		tb.Fatal(err)
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return dir
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		tb.Fatal(err)
	}
	began := time.Now()
	out, err := exec.Command(filepath.Join(binDir, "vcsim"), "-vms", strconv.Itoa(vms),
		"-listen", "127.0.0.1:0", "-save", tmp, "-exit").CombinedOutput()
	if err != nil {
		tb.Fatalf("vcsim -save %s: %v\n%s", tmp, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("built and saved a %d-VM inventory in %s (once; later runs load it)", vms, time.Since(began).Round(time.Second))
	return dir
}

// perfCycle is one "perf: cycle done" line of the agent's JSON log.
type perfCycle struct {
	Msg      string        `json:"msg"`
	Interval int32         `json:"interval"`
	Entities int           `json:"entities"`
	Values   int64         `json:"values"`
	Took     time.Duration `json:"took"` // slog's JSON handler writes nanoseconds
}

// cycles returns the collection cycles the agent has logged so far.
func (p *proc) cycles() []perfCycle {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []perfCycle
	for _, l := range p.out {
		if !strings.Contains(l, `"perf: cycle done"`) {
			continue
		}
		var c perfCycle
		if json.Unmarshal([]byte(l), &c) == nil {
			out = append(out, c)
		}
	}
	return out
}

// procUsage reads a live process's user+system CPU time and peak RSS.
func procUsage(tb testing.TB, pid int) (cpu time.Duration, hwmKB int64) {
	tb.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the parenthesised command name start with field 3
	// (state); utime and stime are fields 14 and 15.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(f) < 13 {
		tb.Fatalf("/proc/%d/stat: %q", pid, stat)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("/proc/%d/stat: %q", pid, stat)
	}
	cpu = time.Duration(utime+stime) * time.Second / time.Duration(clockTicks(tb))

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			hwmKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return cpu, hwmKB
}

var (
	clkTckOnce sync.Once
	clkTck     int64
)

// clockTicks is the kernel's USER_HZ (getconf CLK_TCK), 100 when unknown.
func clockTicks(tb testing.TB) int64 {
	clkTckOnce.Do(func() {
		clkTck = 100
		if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
				clkTck = n
			}
		}
	})
	return clkTck
}

// runAgentCollect starts the simulator from the saved inventory, a fresh
// aggregator and the agent, lets the agent discover the inventory and run
// benchCycles realtime cycles after its first samples, waits for its spool
// to drain and measures it.
func runAgentCollect(b *testing.B, vms int) agentCollectResult {
	b.StopTimer()
	inv := savedInventory(b, vms)
	dir := b.TempDir()
	var r agentCollectResult

	simAddr := fmt.Sprintf("127.0.0.1:%d", freePort(b, "tcp"))
	urlFile := filepath.Join(dir, "sim.url")
	began := time.Now()
	sim := start(b, "vcsim", nil, "vcsim", "-load", inv, "-listen", simAddr, "-url-file", urlFile)
	var simURL string
	eventually(b, 2*time.Minute, "simulator serving", func() error {
		data, err := os.ReadFile(urlFile)
		if err != nil || len(strings.TrimSpace(string(data))) == 0 {
			return fmt.Errorf("no %s yet", urlFile)
		}
		simURL = strings.TrimSpace(string(data))
		return nil
	}, sim)
	r.simLoad = time.Since(began)

	d := db{t: b, url: newDatabase(b)}
	iport, hport := freePort(b, "udp"), freePort(b, "tcp")
	aggHTTP := fmt.Sprintf("http://127.0.0.1:%d", hport)
	aggCfg := filepath.Join(dir, "aggregator.yml")
	writeFile(b, aggCfg, fmt.Sprintf(`database_url: %s
data_dir: %s
ingest:
  listen: 127.0.0.1:%d
  heartbeat_interval: 2s
http:
  listen: 127.0.0.1:%d
`, d.url, filepath.Join(dir, "aggregator"), iport, hport))
	agg := start(b, "aggregator", nil, "vmpulse-aggregator", "serve", "-config", aggCfg)
	eventually(b, 30*time.Second, "aggregator ready", func() error { return httpOK(aggHTTP + "/readyz") }, agg)
	token, err := exec.Command(filepath.Join(binDir, "vmpulse-aggregator"), "enroll-token", "-config", aggCfg, "-site", "bench").Output()
	if err != nil {
		b.Fatalf("enroll-token: %v", err)
	}

	// Collection settings are the defaults; only the log is JSON at debug
	// level, for the per-cycle "perf: cycle done" lines.
	agentCfg := filepath.Join(dir, "agent.yml")
	writeFile(b, agentCfg, fmt.Sprintf(`name: bench-agent
data_dir: %s
aggregator:
  address: 127.0.0.1:%d
  server_name: localhost
endpoints:
  - name: sim
    url: %s
    username: vmpulse
    password_env: BENCH_VC_PASSWORD
log:
  level: debug
  format: json
`, filepath.Join(dir, "agent"), iport, simURL))
	env := []string{"BENCH_VC_PASSWORD=vmpulse", "VMPULSE_ENROLL_TOKEN=" + strings.TrimSpace(string(token))}
	agentStart := time.Now()
	args := []string{"-config", agentCfg}
	if dir := os.Getenv("BENCH_AGENT_CPUPROFILE"); dir != "" {
		// The profile covers the agent's whole run, discovery included; it
		// is written when the agent stops.
		args = append(args, "-cpuprofile", filepath.Join(dir, fmt.Sprintf("agent-%d.pprof", vms)))
	}
	agent := start(b, "agent", env, "vmpulse-agent", args...)
	procs := []*proc{agent, agg, sim}
	b.StartTimer()

	// realtime returns the realtime cycles from the first one with values.
	realtime := func() []perfCycle {
		var out []perfCycle
		for _, c := range agent.cycles() {
			if c.Interval == 20 && (len(out) > 0 || c.Values > 0) {
				out = append(out, c)
			}
		}
		return out
	}
	eventually(b, 5*time.Minute, "first realtime samples", func() error {
		if len(realtime()) == 0 {
			return fmt.Errorf("no realtime cycle with values yet")
		}
		return nil
	}, procs...)
	r.firstSamples = time.Since(agentStart)
	// The steady-state window starts after the first cycle with values:
	// discovery and the first cycle's queries are behind, their spooling
	// and sending mostly too.
	cpu0, _ := procUsage(b, agent.cmd.Process.Pid)
	var values0 int64
	for _, c := range agent.cycles() {
		values0 += c.Values
	}
	eventually(b, time.Duration(benchCycles+3)*30*time.Second, fmt.Sprintf("%d more realtime cycles", benchCycles), func() error {
		if n := len(realtime()) - 1; n < benchCycles {
			return fmt.Errorf("%d of %d cycles", n, benchCycles)
		}
		return nil
	}, procs...)
	windowEnd := time.Now()
	eventually(b, 2*time.Minute, "spool drained", func() error {
		depth, err := d.one(`SELECT spool_depth FROM agents WHERE connected AND last_seen > $1`, windowEnd.Add(time.Second))
		if err == nil && depth != 0 {
			err = fmt.Errorf("spool depth %d", depth)
		}
		return err
	}, procs...)
	r.cpu, r.rssKB = procUsage(b, agent.cmd.Process.Pid)
	b.StopTimer()
	simCPU, simKB := procUsage(b, sim.cmd.Process.Pid)

	r.values = d.must(`SELECT count(*) FROM samples_named`)
	rt := realtime()
	var logged int64
	for _, c := range agent.cycles() {
		logged += c.Values
	}
	if logged > values0 {
		r.steadyCPUPerValue = float64((r.cpu - cpu0).Microseconds()) / float64(logged-values0)
	}
	for _, c := range rt[1 : benchCycles+1] {
		r.cycle += c.Took
		r.cycles = append(r.cycles, c.Took.Round(10*time.Millisecond).String())
	}
	r.cycle /= benchCycles
	if gaps := d.must(`SELECT count(*) FROM ingest_gaps`); gaps != 0 {
		b.Fatalf("the agent reported %d lost ranges", gaps)
	}
	b.Logf("%d VMs: first realtime cycle %d entities %d values in %s; agent logged %d values, %d stored; simulator used %.1f CPU-s, %d MB",
		vms, rt[0].Entities, rt[0].Values, rt[0].Took.Round(10*time.Millisecond), logged, r.values, simCPU.Seconds(), simKB/1024)
	if r.values == 0 {
		b.Fatal("no values stored")
	}
	agent.stop(syscall.SIGTERM)
	agg.stop(syscall.SIGTERM)
	sim.stop(syscall.SIGTERM)
	return r
}
