package uplink

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/vmpulse/vmpulse/protocol"
)

func TestBackoffBounds(t *testing.T) {
	b := newBackoff(reconnectBase, DefaultMaxBackoff, rand.New(rand.NewPCG(1, 2)))
	for n := 1; n <= 200; n++ {
		ceil := min(reconnectBase<<min(n-1, 20), DefaultMaxBackoff)
		if d := b.next(); d < ceil/2 || d >= ceil {
			t.Fatalf("failure %d: delay %s outside [%s, %s)", n, d, ceil/2, ceil)
		}
	}
	b.reset()
	if d := b.next(); d >= reconnectBase {
		t.Fatalf("after reset: delay %s, want < %s", d, reconnectBase)
	}
	for range 100 {
		if d := b.goingAway(); d < 0 || d >= goingAwaySpread {
			t.Fatalf("going away: delay %s outside [0, %s)", d, goingAwaySpread)
		}
	}
}

func TestIsGoingAway(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("live: aggregator closed the stream: %w", &protocol.Error{Code: protocol.ErrCodeGoingAway}), true},
		{&protocol.Error{Code: protocol.ErrCodeUnavailable}, false},
		{fmt.Errorf("live: send 4: %w", &quic.StreamError{ErrorCode: quic.StreamErrorCode(protocol.ErrCodeGoingAway), Remote: true}), true},
		{&quic.StreamError{ErrorCode: quic.StreamErrorCode(protocol.ErrCodeGoingAway), Remote: false}, false},
		{&quic.ApplicationError{ErrorCode: quic.ApplicationErrorCode(protocol.ErrCodeGoingAway), Remote: true}, true},
		{&quic.ApplicationError{ErrorCode: quic.ApplicationErrorCode(protocol.ErrCodeShutdown), Remote: true}, false},
		{fmt.Errorf("%w (then: heartbeat: closed)", errGoingAway), true},
		{errors.New("dial: timeout"), false},
	} {
		if got := isGoingAway(c.err); got != c.want {
			t.Errorf("isGoingAway(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// dialModel is how a dial behaves while the aggregator is unreachable:
// quic-go sends its first packet at once and again after each probe
// timeout (3 × its 100 ms initial RTT, doubling: 0.3, 0.9, 2.1, 4.5 s), and
// gives up after the handshake idle timeout. A dial in progress when the
// aggregator comes back connects at its next packet.
type dialModel struct {
	timeout time.Duration
	probes  []time.Duration
}

func newDialModel(handshakeIdleTimeout time.Duration) dialModel {
	m := dialModel{timeout: handshakeIdleTimeout, probes: []time.Duration{0}}
	for pto := 300 * time.Millisecond; m.probes[len(m.probes)-1]+pto < m.timeout; pto *= 2 {
		m.probes = append(m.probes, m.probes[len(m.probes)-1]+pto)
	}
	return m
}

// ourDial is the uplink's dial (quicConfig).
var ourDial = newDialModel(quicConfig().HandshakeIdleTimeout)

// reconnectAt runs one agent's reconnect loop from lost (the moment it
// notices the connection is gone) against an aggregator that is back at
// up, waiting first and then wait() after each failed dial, and returns
// when it is connected again.
func (m dialModel) reconnectAt(lost, up time.Duration, first time.Duration, wait func() time.Duration) time.Duration {
	s := lost + first
	for {
		if s >= up {
			return s
		}
		if s+m.timeout > up {
			for _, p := range m.probes {
				if s+p >= up {
					return s + p
				}
			}
		}
		s += m.timeout + wait()
	}
}

// spread summarizes reconnect delays (after the aggregator came back):
// quantiles, and the largest share of the fleet in any one-second window.
type spread struct {
	p50, p90, p99, max time.Duration
	peak               float64 // largest fraction in [x, x+1s)
	perSecond          []int   // arrivals in [k s, k+1 s)
}

func summarize(delays []time.Duration) spread {
	d := slices.Clone(delays)
	slices.Sort(d)
	q := func(f float64) time.Duration { return d[min(len(d)-1, int(f*float64(len(d))))] }
	s := spread{p50: q(0.50), p90: q(0.90), p99: q(0.99), max: d[len(d)-1]}
	j := 0
	for i := range d {
		for d[j] < d[i]-time.Second {
			j++
		}
		s.peak = max(s.peak, float64(i-j+1)/float64(len(d)))
	}
	s.perSecond = make([]int, int(s.max/time.Second)+1)
	for _, x := range d {
		s.perSecond[int(x/time.Second)]++
	}
	return s
}

func (s spread) String() string {
	return fmt.Sprintf("p50 %.1fs p90 %.1fs p99 %.1fs max %.1fs; busiest 1 s window %.1f%%; per second %v",
		s.p50.Seconds(), s.p90.Seconds(), s.p99.Seconds(), s.max.Seconds(), 100*s.peak, s.perSecond)
}

// fleetReconnect simulates agents agents (seeded) through an aggregator
// SIGKILL: each notices the dead connection at its idle timeout (15–20 s
// after the kill: keepalive 5 s against 20 s), and the aggregator is back
// at up. It returns each agent's reconnect delay after up, with policy
// drawing an agent's delays.
func fleetReconnect(dial dialModel, agents int, seed uint64, up time.Duration, policy func(rng *rand.Rand) func() time.Duration) []time.Duration {
	fleet := rand.New(rand.NewPCG(seed, 2026))
	out := make([]time.Duration, agents)
	for i := range out {
		rng := rand.New(rand.NewPCG(fleet.Uint64(), uint64(i)))
		lost := 15*time.Second + time.Duration(rng.Int64N(int64(5*time.Second)))
		wait := policy(rng)
		out[i] = dial.reconnectAt(lost, up, wait(), wait) - up
	}
	return out
}

func ourPolicy(rng *rand.Rand) func() time.Duration {
	return newBackoff(reconnectBase, DefaultMaxBackoff, rng).next
}

// TestReconnectSpread: 1,000 simulated agents, 20 seeds, outages of 40 s,
// 3 min (issue 13's) and 1 h. Every agent is connected within 10 s of the
// aggregator's return, and no second holds more than 30% of the fleet.
// Full jitter and the policy before issue 13 are simulated beside it for
// comparison.
func TestReconnectSpread(t *testing.T) {
	const agents, seeds = 1000, 20
	var worst spread
	for _, up := range []time.Duration{40 * time.Second, 3 * time.Minute, time.Hour} {
		var peaks []float64
		var slowest time.Duration
		for seed := range uint64(seeds) {
			s := summarize(fleetReconnect(ourDial, agents, seed, up, ourPolicy))
			if seed == 0 && up == 3*time.Minute {
				t.Logf("after a 3 min outage (seed 0): %s", s)
			}
			peaks = append(peaks, s.peak)
			slowest = max(slowest, s.max)
			worst.max = max(worst.max, s.max)
			worst.peak = max(worst.peak, s.peak)
		}
		mean := 0.0
		for _, p := range peaks {
			mean += p / seeds
		}
		t.Logf("outage %s, %d agents × %d seeds: slowest %.1fs; busiest second %.1f%% on average, %.1f%% at worst",
			up, agents, seeds, slowest.Seconds(), 100*mean, 100*slices.Max(peaks))
	}
	full := summarize(fleetReconnect(ourDial, agents, 0, 3*time.Minute, func(rng *rand.Rand) func() time.Duration {
		b := newBackoff(reconnectBase, DefaultMaxBackoff, rng)
		return func() time.Duration {
			b.fails++
			return time.Duration(rng.Int64N(int64(min(b.max, b.base<<min(b.fails-1, 20)))))
		}
	}))
	t.Logf("the same 3 min outage with full jitter: %s", full)
	// The policy before issue 13: backoff/2 + rand(backoff), doubling from
	// 500 ms to a 60 s cap, with quic-go's 5 s handshake idle timeout.
	old := summarize(fleetReconnect(newDialModel(5*time.Second), agents, 0, 3*time.Minute, func(rng *rand.Rand) func() time.Duration {
		b := 500 * time.Millisecond
		return func() time.Duration {
			w := b/2 + time.Duration(rng.Int64N(int64(b)))
			b = min(2*b, 60*time.Second)
			return w
		}
	}))
	t.Logf("the same with the policy before issue 13: %s", old)
	t.Logf("over all outages and seeds: slowest %.1fs, busiest second %.1f%%", worst.max.Seconds(), 100*worst.peak)

	if worst.max > 10*time.Second {
		t.Errorf("slowest agent reconnected %s after the aggregator came back, want ≤ 10 s", worst.max)
	}
	if worst.peak > 0.30 {
		t.Errorf("%.1f%% of the fleet reconnected within one second, want ≤ 30%%", 100*worst.peak)
	}

	// A planned restart (going away, back 2 s later) is quicker still.
	fleet := rand.New(rand.NewPCG(7, 2026))
	restart := make([]time.Duration, agents)
	for i := range restart {
		b := newBackoff(reconnectBase, DefaultMaxBackoff, rand.New(rand.NewPCG(fleet.Uint64(), uint64(i))))
		restart[i] = ourDial.reconnectAt(0, 2*time.Second, b.goingAway(), b.next) - 2*time.Second
	}
	rs := summarize(restart)
	t.Logf("after a planned restart that takes 2 s: %s", rs)
	if rs.max > 10*time.Second {
		t.Errorf("slowest agent reconnected %s after a restart, want ≤ 10 s", rs.max)
	}
}
