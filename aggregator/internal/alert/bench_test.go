package alert

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/aggregator/internal/realtime"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// benchRules inserts n rules over four VM metrics, spread over the
// aggregations (avg and max over 1m and 5m, last) and thresholds.
func benchRules(b *testing.B, f *fixture, n int, threshold float64) {
	b.Helper()
	metrics := []string{"cpu.usage.average", "mem.usage.average", "disk.usage.average", "net.usage.average"}
	aggs := []struct {
		agg    string
		window string
	}{{AggAvg, "1m"}, {AggAvg, "5m"}, {AggMax, "5m"}, {AggLast, ""}}
	rows := make([][]any, n)
	for i := range rows {
		a := aggs[i%len(aggs)]
		r := Rule{Name: fmt.Sprintf("bench-%04d", i), EntityKind: KindVM, Severity: SeverityWarning, Enabled: true,
			Conditions: []Condition{{Metric: metrics[i%len(metrics)], Agg: a.agg, Op: ">", Threshold: threshold + float64(i%7)}}}
		if a.window != "" {
			r.Conditions[0].Window = dur(a.window)
		}
		r.Normalize()
		spec, err := specOf(&r)
		if err != nil {
			b.Fatal(err)
		}
		rows[i] = []any{uuid.New(), r.Name, r.EntityKind, r.Severity, spec}
	}
	if _, err := f.pool.CopyFrom(f.ctx, pgx.Identifier{"alert_rules"}, []string{"id", "name", "entity_kind", "severity", "spec"}, pgx.CopyFromRows(rows)); err != nil {
		b.Fatal(err)
	}
}

// vmBatch is one poll of vms VMs (four percent counters each) at ts.
func vmBatch(vms int, ts time.Time, pct float64) *protocol.Samples {
	counters := []protocol.Counter{cpu, mem, {Name: "disk.usage.average", Unit: "%"}, {Name: "net.usage.average", Unit: "%"}}
	p := &protocol.Samples{Series: make([]protocol.SeriesData, vms)}
	for i := range p.Series {
		v := pct * 100
		p.Series[i] = protocol.SeriesData{Key: protocol.SeriesKey{Source: "vc1", EntityKind: KindVM, EntityID: fmt.Sprintf("vm-%d", i), Counters: counters},
			Timestamps: []int64{ts.UnixMilli()}, Values: [][]float64{{v}, {v}, {v}, {v}}}
	}
	return p
}

// BenchmarkAlertEval: 1,000 rules over 10,000 VMs (four counters each),
// values at 50 % against thresholds of 90–96 %, nothing firing: the cost of evaluation per VM sample (one poll of four
// counters) and per rule × entity evaluation, and its share of ingest's
// CPU for the same polls, measured in the same run: each poll is also
// decoded from its wire batch (zstd, columnar) and committed with
// Store.WriteSamples (ledger and COPY), as the ingest server does for
// every batch. Both sides are this process's CPU time (getrusage: user +
// system, GC included); ingest's excludes QUIC and TLS and PostgreSQL's
// own CPU, so it is a lower bound and the share an upper bound. Then the
// memory per alert instance, with every rule firing on 200 VMs.
func BenchmarkAlertEval(b *testing.B) {
	const rules, vms = 1000, 10000
	const polls = 10 // per iteration
	f := newFixture(b, Config{Logger: discardLog()})
	benchRules(b, f, rules, 90)
	e := f.newEngine(Config{Logger: discardLog()})
	e.discard = true
	t0 := time.Now().Add(-time.Hour).Truncate(20 * time.Second)
	// The engine sees batches as ingest decoded them (one schema, strings
	// interned, columns in shared arrays), so the poll goes through the
	// wire format once.
	p, err := ingesttest.MustBatch(protocol.KindSamples, vmBatch(vms, t0, 50), 1, 1).Samples()
	if err != nil {
		b.Fatal(err)
	}
	at := func(i int) int64 { return t0.Add(time.Duration(i) * 20 * time.Second).UnixMilli() }
	stamp := func(p *protocol.Samples, ts int64) {
		for i := range p.Series {
			p.Series[i].Timestamps[0] = ts
		}
	}
	// Warm the windows (15 minutes of 20-second polls: every window full,
	// every buffer at its steady capacity).
	const warm = 45
	for i := range warm {
		stamp(p, at(i))
		if err := e.Process(f.ctx, "site-a", p); err != nil {
			b.Fatal(err)
		}
	}
	evals := e.Stats.Evaluations.Load()
	var evalCPU []time.Duration // per poll
	n := 0
	b.ResetTimer()
	for i := range b.N {
		for j := range polls {
			b.StopTimer()
			stamp(p, at(warm+i*polls+j))
			b.StartTimer()
			c0 := cpuTime()
			if err := e.Process(f.ctx, "site-a", p); err != nil {
				b.Fatal(err)
			}
			evalCPU = append(evalCPU, cpuTime()-c0)
			n++
		}
	}
	b.StopTimer()
	perSample := float64(b.Elapsed().Nanoseconds()) / float64(n*vms)
	perRule := perSample / rules
	done := e.Stats.Evaluations.Load() - evals

	// Ingest's CPU for the same polls: wire batches decoded and committed
	// (the series and the partition exist first, as in a running system).
	ingestPolls := min(n, 20)
	wire := make([]*protocol.Batch, ingestPolls+1)
	for i := range wire {
		q := vmBatch(vms, time.UnixMilli(at(i)), 50)
		wire[i] = ingesttest.MustBatch(protocol.KindSamples, q, 7, uint64(i+1))
	}
	ingest := func(w *protocol.Batch) {
		q, err := w.Samples()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.st.WriteSamples(f.ctx, store.BatchMeta{AgentID: f.agent, Site: "site-a", Epoch: w.Epoch, Seq: w.Seq,
			Kind: protocol.KindSamples, Bytes: len(w.Payload)}, q); err != nil {
			b.Fatal(err)
		}
	}
	ingest(wire[0])
	var ingestCPU []time.Duration
	pg := postgresCPU(f.ctx, f.pool)
	pg0, pgOK := pg()
	for _, w := range wire[1:] {
		c0 := cpuTime()
		ingest(w)
		ingestCPU = append(ingestCPU, cpuTime()-c0)
	}
	pg1, _ := pg()
	// Totals (the garbage collector's work included: ingest allocates,
	// evaluation does not).
	evalPer := float64(sum(evalCPU).Nanoseconds()) / float64(len(evalCPU)*vms)
	ingestPer := float64(sum(ingestCPU).Nanoseconds()) / float64(len(ingestCPU)*vms)

	b.ReportMetric(perSample, "ns/vm-sample")
	b.ReportMetric(perRule, "ns/rule×entity")
	fmt.Printf("figure: alert_eval_ns_per_sample %.0f ns (one VM poll of 4 counters, %d rules × %d VMs, %d polls)\n", perSample, rules, vms, n)
	fmt.Printf("figure: alert_eval_ns_per_rule_entity %.2f ns (amortized; the threshold index evaluated %.1f of the %d rules per poll)\n",
		perRule, float64(done)/float64(n*vms), rules)
	fmt.Printf("figure: alert_eval_cpu_ns_per_sample %.0f ns (CPU time, %d polls)\n", evalPer, n)
	fmt.Printf("figure: ingest_cpu_ns_per_vm_poll %.0f ns (CPU time: decode + WriteSamples of the same 4-counter polls, %d polls)\n", ingestPer, ingestPolls)
	fmt.Printf("figure: alert_eval_share_of_ingest_pct %.1f %% (of this process's ingest CPU only: an upper bound)\n", 100*evalPer/ingestPer)
	// The database's side of the same writes (COPY, index and WAL work in
	// its backends and background processes) is ingest's CPU too; the
	// share of the whole is what evaluation adds to ingesting.
	if pgOK {
		pgPer := float64((pg1 - pg0).Nanoseconds()) / float64(len(ingestCPU)*vms)
		fmt.Printf("figure: ingest_pg_cpu_ns_per_vm_poll %.0f ns (PostgreSQL's processes, same polls)\n", pgPer)
		fmt.Printf("figure: alert_eval_share_of_ingest_with_pg_pct %.1f %% (evaluation ÷ this process's + PostgreSQL's ingest CPU)\n",
			100*evalPer/(ingestPer+pgPer))
	} else {
		fmt.Println("# bench: PostgreSQL's CPU not readable here (its postmaster.pid or /proc): alert_eval_share_of_ingest_with_pg_pct not measured")
	}

	// Memory per instance: the rules on the last value and on the 5-minute
	// maximum (half of them) fire on the first 200 VMs.
	const firing = 200
	next := time.UnixMilli(at(warm + n))
	small := vmBatch(firing, next, 50)
	if err := e.Process(f.ctx, "site-a", small); err != nil {
		b.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	if err := e.Process(f.ctx, "site-a", vmBatch(firing, next.Add(20*time.Second), 99)); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	fired := e.ActiveInstances()[StateFiring]
	if fired != firing*rules/2 {
		b.Fatalf("%d instances firing, want %d", fired, firing*rules/2)
	}
	fmt.Printf("figure: alert_instance_bytes %.0f B (%d firing instances)\n", float64(m1.HeapAlloc-m0.HeapAlloc)/float64(fired), fired)
}

func sum(d []time.Duration) (t time.Duration) {
	for _, x := range d {
		t += x
	}
	return t
}

// postgresCPU returns a reader of the CPU time (user + system) of the
// PostgreSQL server the pool is connected to: its postmaster and every
// child (backends, WAL writer, checkpointer). It works when that server
// runs on this machine and its postmaster.pid is readable (the test
// cluster of scripts/pg.sh, as root); ok is false otherwise.
func postgresCPU(ctx context.Context, pool *pgxpool.Pool) func() (time.Duration, bool) {
	var dir string
	if err := pool.QueryRow(ctx, `SHOW data_directory`).Scan(&dir); err != nil {
		return func() (time.Duration, bool) { return 0, false }
	}
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return func() (time.Duration, bool) { return 0, false }
	}
	line, _, _ := strings.Cut(string(b), "\n")
	postmaster, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return func() (time.Duration, bool) { return 0, false }
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return func() (time.Duration, bool) {
		procs, err := os.ReadDir("/proc")
		if err != nil {
			return 0, false
		}
		var total time.Duration
		found := false
		for _, p := range procs {
			pid, err := strconv.Atoi(p.Name())
			if err != nil {
				continue
			}
			stat, err := os.ReadFile("/proc/" + p.Name() + "/stat")
			if err != nil {
				continue
			}
			// The command may hold spaces: the fields after it start
			// behind its closing parenthesis.
			i := strings.LastIndexByte(string(stat), ')')
			if i < 0 {
				continue
			}
			f := strings.Fields(string(stat[i+1:]))
			if len(f) < 13 {
				continue
			}
			ppid, _ := strconv.Atoi(f[1])
			if pid != postmaster && ppid != postmaster {
				continue
			}
			utime, _ := strconv.ParseInt(f[11], 10, 64)
			stime, _ := strconv.ParseInt(f[12], 10, 64)
			total += time.Duration(utime+stime) * tick
			found = found || pid == postmaster
		}
		return total, found
	}
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAlertFireToNotify: the time from the COMMIT of a sample batch
// that fires a rule to the webhook receiver's request, through the whole
// production path: realtime hub → engine (evaluation, the transition and
// its outbox row in one transaction, NOTIFY) → dispatcher holding the
// lease → webhook plugin (a subprocess, through the plugin host) → a local
// HTTP receiver.
func BenchmarkAlertFireToNotify(b *testing.B) {
	f := newFixture(b, Config{Logger: discardLog()})
	rec := newReceiver(b)
	ch := f.channel("ops", rec.srv.URL)
	f.rule(Rule{Name: "cpu-high", Conditions: []Condition{{Metric: "cpu.usage.average", Op: ">", Threshold: 80}}, Channels: []uuid.UUID{ch}})
	hub := realtime.New(realtime.Options{Logger: discardLog()})
	ctx, cancel := context.WithCancel(f.ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	eng := NewEngine(f.pool, f.sites, Config{Logger: discardLog()})
	d := NewDispatcher(f.pool, webhookNotifier(b), DispatcherConfig{Logger: discardLog(), PollInterval: time.Second})
	for _, run := range []func(context.Context) error{hub.Run, eng.Run, func(ctx context.Context) error { return eng.Consume(ctx, hub) }, d.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(ctx) }()
	}
	for d.Epoch() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	const n = 200
	lat := make([]time.Duration, 0, n)
	for i := range n {
		p := &protocol.Samples{Series: []protocol.SeriesData{cpuSeries("vc1", fmt.Sprintf("vm-%d", i), time.Now().Add(-time.Second), time.Second, 99)}}
		if _, err := f.st.WriteSamples(f.ctx, store.BatchMeta{AgentID: f.agent, Site: "site-a", Epoch: 2, Seq: uint64(i + 1), Kind: protocol.KindSamples}, p); err != nil {
			b.Fatal(err)
		}
		committed := time.Now()
		hub.PublishSamples("site-a", f.agent, p)
		deadline := time.Now().Add(30 * time.Second)
		for {
			rec.mu.Lock()
			got := len(rec.at) > i
			var at time.Time
			if got {
				at = rec.at[i]
			}
			rec.mu.Unlock()
			if got {
				lat = append(lat, at.Sub(committed))
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("notification %d never arrived", i)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	fmt.Printf("figure: alert_fire_to_notify_p50_ms %.1f ms\n", float64(p50.Microseconds())/1000)
	fmt.Printf("figure: alert_fire_to_notify_p99_ms %.1f ms (%d alerts, one at a time)\n", float64(p99.Microseconds())/1000, n)
}

// BenchmarkAlertLateReplay: a site offline for 72 hours drains its
// backlog — 5,000 VMs, four counters each, a poll every 20 seconds of
// sample time (12,960 polls, 64.8 million VM samples) — through the engine
// with 20 rules, persisting every transition (late: recorded at their own
// times, to the digest). One VM in a hundred runs hot for 10 minutes every
// 6 hours, so alerts fire and resolve along the way. The figure is the
// sample time replayed per second of wall time.
func BenchmarkAlertLateReplay(b *testing.B) {
	const vms, hours, rules = 5000, 72, 20
	const polls = hours * 180
	f := newFixture(b, Config{Logger: discardLog()})
	benchRules(b, f, rules, 85)
	var elapsed time.Duration
	var fired int
	for range b.N {
		if _, err := f.pool.Exec(f.ctx, `DELETE FROM alert_states; DELETE FROM alerts`); err != nil {
			b.Fatal(err)
		}
		e := f.newEngine(Config{Logger: discardLog()})
		t0 := time.Now().Add(-hours * time.Hour).Truncate(20 * time.Second)
		p := vmBatch(vms, t0, 50)
		b.StartTimer()
		start := time.Now()
		for i := range polls {
			ts := t0.Add(time.Duration(i) * 20 * time.Second).UnixMilli()
			for v := range p.Series {
				sd := &p.Series[v]
				sd.Timestamps[0] = ts
				x := 5000.0 + float64((v*37+i)%800) // 50–58%, in hundredths
				if v%100 == 0 && (i+v*7)%1080 < 30 {
					x = 9700
				}
				for c := range sd.Values {
					sd.Values[c][0] = x
				}
			}
			if err := e.Process(f.ctx, "site-a", p); err != nil {
				b.Fatal(err)
			}
		}
		elapsed += time.Since(start)
		b.StopTimer()
		fired = f.count(`SELECT count(*) FROM alerts WHERE late`)
		if fired == 0 {
			b.Fatal("no late alert recorded")
		}
	}
	per := elapsed / time.Duration(b.N)
	speedup := float64(hours*time.Hour) / float64(per)
	b.ReportMetric(speedup, "x-realtime")
	fmt.Printf("figure: alert_late_replay_speedup %.0f x (72 h of a %d-VM site, %d rules, in %.1f s; %d late alerts recorded)\n",
		speedup, vms, rules, per.Seconds(), fired)
}
