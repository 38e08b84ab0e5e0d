package agent

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/simulator"

	"github.com/vmpulse/vmpulse/agent/internal/spool"
	"github.com/vmpulse/vmpulse/agent/internal/uplink"
	"github.com/vmpulse/vmpulse/agent/internal/vsphere"
	"github.com/vmpulse/vmpulse/protocol"
)

// Layout of the spool-size benchmark's site: 5,000 powered-on VMs on 150
// hosts (10 clusters of 15) with 20 datastores.
const (
	spoolBenchVMs        = 5000
	spoolBenchClusters   = 10
	spoolBenchHosts      = 15 // per cluster
	spoolBenchDatastores = 20
	// Realtime and historical cycles in a day at the default intervals.
	realtimeCyclesPerDay   = 24 * 3600 / 20
	historicalCyclesPerDay = 24 * 3600 / 300
)

// BenchmarkAgentSpoolPerDay measures how many bytes a day of collection
// adds to the spool (the quantity spool.max_bytes bounds: record headers
// plus compressed batches) at a 5,000-VM site with the default counter
// set, that is, how much an offline site needs per day it stays offline.
// It runs the agent's own pipeline in process: the inventory watcher and
// perf collector against a simulated vCenter (scripts/vcsim's inventory,
// built once and saved under var/bench/spool-inv5000), the agent's batching
// (Agent.Samples) and a real spool, for a few realtime (20 s) and
// historical (5 min) cycles, and extrapolates:
//
//	per day = realtime cycle × 4,320 + historical cycle × 288 + one full inventory
//
// The simulator answers a "*" instance query with the aggregate only,
// where vCenter also returns per-instance series (per vCPU, vNIC, disk,
// datastore). So the pipeline feeds two spools: one as the simulator
// answers (spool_mb_per_day_5000vms_aggregates), and one with per-instance
// series added as vCenter would send them for a typical VM (2 vCPUs, 1
// vNIC, 1 disk) and host (32 threads, 4 NICs, 8 LUNs, 8 datastores): the
// headline spool_mb_per_day_5000vms, which sizes spool.max_bytes.
func BenchmarkAgentSpoolPerDay(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a 5,000-VM simulator inventory on first use; skipped with -short")
	}
	inv := spoolBenchInventory(b)
	var r spoolDay
	for range b.N {
		r = runSpoolDay(b, inv)
	}
	b.ReportMetric(r.mbPerDay(r.instances), "MB/day")
	b.ReportMetric(r.mbPerDay(r.aggregates), "MB/day-aggregates")
	fmt.Printf("# %d VMs, %d hosts: realtime cycle %.1f KB (%.1f KB aggregates only), historical cycle %.1f KB, inventory %.1f KB; %d series per realtime cycle (%d aggregates)\n",
		spoolBenchVMs, spoolBenchClusters*spoolBenchHosts, float64(r.instances.realtime)/1e3, float64(r.aggregates.realtime)/1e3,
		float64(r.instances.historical)/1e3, float64(r.instances.inventory)/1e3, r.series, r.aggSeries)
	fmt.Printf("# 7 days offline: %.0f MB (%.0f MB aggregates only)\n", 7*r.mbPerDay(r.instances), 7*r.mbPerDay(r.aggregates))
	fmt.Printf("figure: spool_mb_per_day_5000vms %.0f MB\n", r.mbPerDay(r.instances))
	fmt.Printf("figure: spool_mb_per_day_5000vms_aggregates %.0f MB\n", r.mbPerDay(r.aggregates))
}

// spoolBytes is what one spool received, in stored bytes.
type spoolBytes struct {
	inventory  int64 // the full inventory snapshot
	realtime   int64 // one realtime cycle (mean)
	historical int64 // one historical cycle (mean)
}

type spoolDay struct {
	instances, aggregates spoolBytes
	series, aggSeries     int // series in the last realtime cycle
}

func (d spoolDay) mbPerDay(s spoolBytes) float64 {
	return float64(s.realtime*realtimeCyclesPerDay+s.historical*historicalCyclesPerDay+s.inventory) / 1e6
}

func runSpoolDay(b *testing.B, inv string) spoolDay {
	b.StopTimer()
	ctx := context.Background()
	m := simulator.VPX()
	if err := m.Load(inv); err != nil {
		b.Fatalf("load %s: %v", inv, err)
	}
	defer m.Remove()
	m.Service.Listen = &url.URL{User: url.UserPassword("vmpulse", "vmpulse")}
	srv := m.Service.NewServer()
	defer srv.Close()

	dir := b.TempDir()
	inst, agg := benchAgent(b, filepath.Join(dir, "instances")), benchAgent(b, filepath.Join(dir, "aggregates"))
	sink := &teeSink{inst: inst, agg: agg}
	u := *srv.URL
	u.User = nil
	sess, err := vsphere.NewSession(vsphere.Endpoint{Name: "sim", URL: u.String(), Username: "vmpulse", Password: "vmpulse", Insecure: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close(ctx)
	invr := vsphere.NewInventory(sess, sink, vsphere.InventoryConfig{MaxWait: time.Second}, nil)
	ictx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = invr.Run(ictx) }()
	for deadline := time.Now().Add(5 * time.Minute); sink.fullInventories() == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("no full inventory within 5 minutes")
		}
	}
	var d spoolDay
	d.instances.inventory, d.aggregates.inventory = inst.spool.Stats().Bytes, agg.spool.Stats().Bytes

	c := vsphere.NewCollector(sess, invr, sink, agg.spool, vsphere.PerfConfig{}, nil)
	b.StartTimer()
	// cycle runs n cycles of interval after a first one (which also sets
	// the marks) and returns the mean bytes each spool gained per cycle.
	cycle := func(interval int32, n int) (inst, aggr int64) {
		if _, err := c.Collect(ctx, interval); err != nil {
			b.Fatal(err)
		}
		i0, a0 := sink.inst.spool.Stats().Bytes, sink.agg.spool.Stats().Bytes
		for range n {
			st, err := c.Collect(ctx, interval)
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("interval %d: %d entities, %d series, %d values in %s", interval, st.Entities, st.Series, st.Values, st.Duration.Round(time.Millisecond))
		}
		return (sink.inst.spool.Stats().Bytes - i0) / int64(n), (sink.agg.spool.Stats().Bytes - a0) / int64(n)
	}
	sink.resetSeries()
	d.instances.realtime, d.aggregates.realtime = cycle(vsphere.IntervalRealtime, 3)
	d.series, d.aggSeries = sink.seriesCounts(3)
	d.instances.historical, d.aggregates.historical = cycle(vsphere.IntervalHistorical, 2)
	b.StopTimer()
	if st := c.LastStats(vsphere.IntervalRealtime); st.Entities < spoolBenchVMs {
		b.Fatalf("realtime cycle queried %d entities, want at least %d VMs", st.Entities, spoolBenchVMs)
	}
	return d
}

// benchAgent is an Agent with a spool and no uplink: what it appends stays.
func benchAgent(b *testing.B, dir string) *Agent {
	q, err := spool.Open(dir, spool.Options{MaxBytes: 64 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = q.Close() })
	return &Agent{log: slog.New(slog.DiscardHandler), spool: q, up: uplink.New(uplink.Config{}, &uplink.Identity{}, q)}
}

// teeSink feeds the aggregate-only agent what the collector sends, and the
// other agent the same with the per-instance series vCenter would add.
type teeSink struct {
	inst, agg *Agent
	mu        sync.Mutex
	full      int    // full inventories seen
	series    [2]int // series sent: with instances, aggregates only
}

func (s *teeSink) Samples(ctx context.Context, p *protocol.Samples) error {
	x := withInstances(p)
	s.mu.Lock()
	s.series[0] += len(x.Series)
	s.series[1] += len(p.Series)
	s.mu.Unlock()
	if err := s.agg.Samples(ctx, p); err != nil {
		return err
	}
	return s.inst.Samples(ctx, x)
}

func (s *teeSink) Inventory(ctx context.Context, inv *protocol.Inventory) error {
	if err := s.agg.Inventory(ctx, inv); err != nil {
		return err
	}
	if err := s.inst.Inventory(ctx, inv); err != nil {
		return err
	}
	if inv.Full {
		s.mu.Lock()
		s.full++
		s.mu.Unlock()
	}
	return nil
}

func (s *teeSink) Events(ctx context.Context, ev *protocol.Events) error {
	if err := s.agg.Events(ctx, ev); err != nil {
		return err
	}
	return s.inst.Events(ctx, ev)
}

func (s *teeSink) Gap(ctx context.Context, g *protocol.Gap) error {
	if err := s.agg.Gap(ctx, g); err != nil {
		return err
	}
	return s.inst.Gap(ctx, g)
}

func (s *teeSink) fullInventories() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.full
}

func (s *teeSink) resetSeries() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.series = [2]int{}
}

// seriesCounts returns the series per cycle of the last cycles+1 cycles.
func (s *teeSink) seriesCounts(cycles int) (inst, agg int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.series[0] / (cycles + 1), s.series[1] / (cycles + 1)
}

// instanceModel is, per entity kind, the instances vCenter returns for a
// "*" query besides the aggregate, and the counters each carries.
var instanceModel = map[string][]struct {
	names    func(entity string) []string
	counters []string
}{
	"vm": {
		{func(string) []string { return []string{"0", "1"} }, []string{"cpu.usagemhz.average", "cpu.ready.summation"}},
		{func(string) []string { return []string{"4000"} }, []string{"net.usage.average", "net.received.average", "net.transmitted.average"}},
		{func(e string) []string { return []string{lun(e, 0)} }, []string{"disk.usage.average", "disk.read.average", "disk.write.average"}},
	},
	"host": {
		{func(string) []string { return numbered("", 32) }, []string{"cpu.usage.average", "cpu.usagemhz.average"}},
		{func(string) []string { return numbered("vmnic", 4) }, []string{"net.usage.average", "net.received.average", "net.transmitted.average"}},
		{func(e string) []string {
			out := make([]string, 8)
			for i := range out {
				out[i] = lun(e, i)
			}
			return out
		}, []string{"disk.usage.average", "disk.read.average", "disk.write.average", "disk.maxTotalLatency.latest"}},
		{func(e string) []string {
			out := make([]string, 8)
			for i := range out {
				out[i] = fmt.Sprintf("5f3c%04x-1b2a9e40-7d1e-0050568%05x", i, i*7919)
			}
			return out
		}, []string{"datastore.totalReadLatency.average", "datastore.totalWriteLatency.average"}},
	},
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

// lun names one of the site's LUNs (one per datastore) for entity e.
func lun(e string, i int) string {
	h := fnv.New32a()
	h.Write([]byte(e))
	return fmt.Sprintf("naa.6000c29%025x", (int(h.Sum32())+i)%spoolBenchDatastores)
}

// withInstances returns p with, after each aggregate series of a VM or a
// host, the per-instance series of instanceModel: the kind's columns, the
// instance's counters carrying a share of the aggregate's value (varied
// per instance), the others NaN.
func withInstances(p *protocol.Samples) *protocol.Samples {
	out := &protocol.Samples{Series: make([]protocol.SeriesData, 0, len(p.Series)*8)}
	for _, sd := range p.Series {
		out.Series = append(out.Series, sd)
		if sd.Key.Instance != "" {
			continue
		}
		col := map[string]int{}
		for i, c := range sd.Key.Counters {
			col[c.Name] = i
		}
		for _, group := range instanceModel[sd.Key.EntityKind] {
			names := group.names(sd.Key.EntityID)
			for k, inst := range names {
				x := protocol.SeriesData{Key: sd.Key, Timestamps: sd.Timestamps, Values: make([][]float64, len(sd.Values))}
				x.Key.Instance = inst
				for c := range x.Values {
					x.Values[c] = nanColumn(len(sd.Timestamps))
				}
				for _, name := range group.counters {
					c, ok := col[name]
					if !ok {
						continue
					}
					for j, v := range sd.Values[c] {
						if !math.IsNaN(v) {
							x.Values[c][j] = math.Round(v * float64(2*k+1) / float64(len(names)*len(names)))
						}
					}
				}
				out.Series = append(out.Series, x)
			}
		}
	}
	return out
}

func nanColumn(n int) []float64 {
	c := make([]float64, n)
	for i := range c {
		c[i] = math.NaN()
	}
	return c
}

// spoolBenchInventory returns var/bench/spool-inv5000, building it with
// scripts/vcsim and saving it first if it is absent (minutes, once).
func spoolBenchInventory(b *testing.B) string {
	b.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "var", "bench", fmt.Sprintf("spool-inv%d", spoolBenchVMs)))
	if err != nil {
		b.Fatal(err)
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return dir
	}
	bin := b.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "../scripts/vcsim")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		b.Fatalf("build vcsim: %v", err)
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		b.Fatal(err)
	}
	began := time.Now()
	out, err := exec.Command(filepath.Join(bin, "vcsim"), "-vms", strconv.Itoa(spoolBenchVMs),
		"-clusters", strconv.Itoa(spoolBenchClusters), "-hosts", strconv.Itoa(spoolBenchHosts), "-standalone", "0",
		"-datastores", strconv.Itoa(spoolBenchDatastores), "-powered-off", "0",
		"-listen", "127.0.0.1:0", "-save", tmp, "-exit").CombinedOutput()
	if err != nil {
		b.Fatalf("vcsim -save %s: %v\n%s", tmp, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		b.Fatal(err)
	}
	b.Logf("built and saved a %d-VM inventory in %s (once; later runs load it)", spoolBenchVMs, time.Since(began).Round(time.Second))
	return dir
}
