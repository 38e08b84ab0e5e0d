package alert

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/protocol"
)

type protocolCounter = protocol.Counter

func samplesOf(sds ...protocol.SeriesData) *protocol.Samples { return &protocol.Samples{Series: sds} }

// snapshot renders every instance of e.
func snapshot(e *Engine) map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]string{}
	for k, en := range e.entities {
		for id, in := range en.inst {
			out[k.String()+" "+e.byID[id].rule.Name] = fmt.Sprintf("%s since %d true %d keeping %v", in.state, in.since, in.lastTrue, in.keeping)
		}
	}
	return out
}

// TestThresholdIndexMatchesNaive: the threshold index (and the window
// bounds that let it skip a window no threshold reaches) changes which
// rules are evaluated, never the outcome: on random rules and random data,
// the indexed and the naive engine hold the same instances after every
// batch and made the same number of transitions.
func TestThresholdIndexMatchesNaive(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { indexMatchesNaive(t, seed) })
	}
}

func indexMatchesNaive(t *testing.T, seed uint64) {
	f := newFixture(t, Config{})
	rng := rand.New(rand.NewPCG(1+seed, 2))
	ops := []string{">", ">=", "<", "<=", "=="}
	aggs := []string{AggLast, AggAvg, AggMax, AggMin}
	for i := range 60 {
		c := Condition{Metric: []string{"cpu.usage.average", "mem.usage.average"}[rng.IntN(2)], Agg: aggs[rng.IntN(len(aggs))],
			Op: ops[rng.IntN(len(ops))], Threshold: float64(rng.IntN(10) * 10)}
		if c.Agg != AggLast {
			c.Window = dur("1m")
		}
		if c.Op == ">" && rng.IntN(2) == 0 {
			c.ClearThreshold = ptr(c.Threshold - 10)
		}
		r := Rule{Name: fmt.Sprintf("r%02d", i), Conditions: []Condition{c}}
		if rng.IntN(3) == 0 {
			r.For = dur("40s")
		}
		if rng.IntN(3) == 0 {
			r.KeepFiringFor = dur("1m")
		}
		if i%10 == 9 { // some two-condition rules, not indexed
			r.Conditions = append(r.Conditions, Condition{Metric: "mem.usage.average", Op: ">", Threshold: 50})
		}
		f.rule(r)
	}
	indexed := f.newEngine(Config{})
	naive := NewEngine(f.pool, f.sites, Config{Now: f.clock.Now, Logger: discardLog()})
	naive.naive = true
	if err := naive.Load(f.ctx); err != nil {
		t.Fatal(err)
	}
	indexed.discard, naive.discard = true, true
	t0 := f.clock.Now().Add(-time.Hour)
	for step := range 120 {
		sds := series("vc1", "vm-1", []protocolCounter{cpu, mem}, t0.Add(time.Duration(step)*20*time.Second), 20*time.Second,
			[]float64{float64(rng.IntN(11) * 10), float64(rng.IntN(11) * 10)})
		sds2 := series("vc1", "vm-2", []protocolCounter{cpu, mem}, t0.Add(time.Duration(step)*20*time.Second), 20*time.Second,
			[]float64{float64(rng.IntN(101)), float64(rng.IntN(101))})
		// vm-3 idles low with a spike now and then: a spike leaving the
		// windows leaves their bounds loose, to be tightened.
		quiet := 5 + float64(rng.IntN(3))
		if step%15 == 7 {
			quiet = float64(60 + rng.IntN(41))
		}
		sds3 := series("vc1", "vm-3", []protocolCounter{cpu, mem}, t0.Add(time.Duration(step)*20*time.Second), 20*time.Second,
			[]float64{quiet, 100 - quiet})
		for _, e := range []*Engine{indexed, naive} {
			if err := e.Process(f.ctx, "site-a", samplesOf(sds, sds2, sds3)); err != nil {
				t.Fatal(err)
			}
		}
		a, b := snapshot(indexed), snapshot(naive)
		if len(a) != len(b) {
			t.Fatalf("step %d: %d instances indexed, %d naive", step, len(a), len(b))
		}
		for k, v := range b {
			if a[k] != v {
				t.Fatalf("step %d: %s: indexed %q, naive %q", step, k, a[k], v)
			}
		}
	}
	if x, y := indexed.Stats.Transitions.Load(), naive.Stats.Transitions.Load(); x != y || x == 0 {
		t.Errorf("transitions: indexed %d, naive %d", x, y)
	}
	if x, y := indexed.Stats.Evaluations.Load(), naive.Stats.Evaluations.Load(); x >= y {
		t.Errorf("evaluations: indexed %d, naive %d; the index saved nothing", x, y)
	}
}
