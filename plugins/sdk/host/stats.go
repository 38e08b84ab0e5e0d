package host

import (
	"slices"
	"sync"
	"time"
)

// Call outcomes as counted in Status and the metrics.
const (
	outcomeOK          = "ok"          // the call returned without error
	outcomeError       = "error"       // the plugin's code returned an error
	outcomeTimeout     = "timeout"     // the per-call timeout ended the call
	outcomeUnavailable = "unavailable" // the plugin crashed or could not be started
	outcomeCanceled    = "canceled"    // the caller gave up
)

var outcomes = []string{outcomeOK, outcomeError, outcomeTimeout, outcomeUnavailable, outcomeCanceled}

// latencyBuckets are the upper bounds, in seconds, of the call duration
// histogram: a no-op call takes well under a millisecond, an SMTP delivery
// seconds.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// ringSize is how many recent call durations feed the quantiles in Status.
const ringSize = 1024

type methodStats struct {
	counts  map[string]uint64 // by outcome
	buckets []uint64          // cumulative counts are made at export
	sum     float64           // seconds
	n       uint64
}

// stats counts one plugin's calls. Its own mutex keeps the call path off
// the plugin's lifecycle lock.
type stats struct {
	mu       sync.Mutex
	methods  map[string]*methodStats
	ring     [ringSize]time.Duration
	ringN    int // number of samples written, ever
	inFlight int
	timeouts int // consecutive, for the hang detector
}

func newStats() *stats { return &stats{methods: map[string]*methodStats{}} }

func (s *stats) begin() {
	s.mu.Lock()
	s.inFlight++
	s.mu.Unlock()
}

// end records a finished call and returns the number of consecutive
// timeouts so far.
func (s *stats) end(method, outcome string, d time.Duration) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight--
	m := s.methods[method]
	if m == nil {
		m = &methodStats{counts: map[string]uint64{}, buckets: make([]uint64, len(latencyBuckets))}
		s.methods[method] = m
	}
	m.counts[outcome]++
	if outcome == outcomeOK || outcome == outcomeError {
		sec := d.Seconds()
		for i, b := range latencyBuckets {
			if sec <= b {
				m.buckets[i]++
				break
			}
		}
		m.sum += sec
		m.n++
		s.ring[s.ringN%ringSize] = d
		s.ringN++
	}
	switch outcome {
	case outcomeTimeout:
		s.timeouts++
	case outcomeOK, outcomeError:
		s.timeouts = 0
	}
	return s.timeouts
}

// snapshot fills the call fields of st.
func (s *stats) snapshot(st *Status) {
	s.mu.Lock()
	n := min(s.ringN, ringSize)
	recent := slices.Clone(s.ring[:n])
	st.InFlight = s.inFlight
	for _, m := range s.methods {
		for o, c := range m.counts {
			st.Calls += c
			switch o {
			case outcomeError:
				st.Errors += c
			case outcomeTimeout:
				st.Timeouts += c
			case outcomeUnavailable:
				st.Unavailable += c
			}
		}
	}
	s.mu.Unlock()
	if n == 0 {
		return
	}
	slices.Sort(recent)
	st.P50 = quantile(recent, 0.50)
	st.P99 = quantile(recent, 0.99)
}

// quantile returns the q-quantile of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// methodSnapshot is one method's counters for the metrics.
type methodSnapshot struct {
	method  string
	counts  map[string]uint64
	buckets map[float64]uint64 // cumulative, as prometheus wants them
	sum     float64
	n       uint64
}

func (s *stats) methodSnapshots() []methodSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]methodSnapshot, 0, len(s.methods))
	for name, m := range s.methods {
		ms := methodSnapshot{method: name, counts: map[string]uint64{}, buckets: map[float64]uint64{}, sum: m.sum, n: m.n}
		for o, c := range m.counts {
			ms.counts[o] = c
		}
		var cum uint64
		for i, b := range latencyBuckets {
			cum += m.buckets[i]
			ms.buckets[b] = cum
		}
		out = append(out, ms)
	}
	slices.SortFunc(out, func(a, b methodSnapshot) int {
		switch {
		case a.method < b.method:
			return -1
		case a.method > b.method:
			return 1
		}
		return 0
	})
	return out
}
