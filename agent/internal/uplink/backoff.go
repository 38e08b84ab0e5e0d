package uplink

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/vmpulse/vmpulse/protocol"
)

// Reconnect timing.
//
// A failed session is retried after a jittered delay (see backoff) that
// never exceeds Config.MaxBackoff (DefaultMaxBackoff).
// While the aggregator is unreachable a dial itself lasts
// handshakeIdleTimeout (2 s), sending its first packet at 0, 0.3 and 0.9 s.
// So once the aggregator is reachable again an agent is connected within
// DefaultMaxBackoff + 1.1 s: a dial in progress gets through at its next
// packet (at most 0.6 s later) or fails within 1.1 s, and the next starts
// within the cap. The jitter spreads a fleet's reconnects over those
// seconds (TestReconnectSpread).
//
// An aggregator that is going away on purpose (protocol.ErrCodeGoingAway:
// restart, scale-down) is not a failure: the agent reconnects within
// goingAwaySpread, and the backoff starts over.
const (
	// handshakeIdleTimeout ends a dial that heard nothing (quicConfig).
	handshakeIdleTimeout = 2 * time.Second
	// DefaultMaxBackoff is the default Config.MaxBackoff.
	DefaultMaxBackoff = 8 * time.Second
	// reconnectBase is the ceiling of the first retry's delay; it doubles
	// with each consecutive failure up to the cap.
	reconnectBase = 500 * time.Millisecond
	// goingAwaySpread bounds the delay before reconnecting after the
	// aggregator went away.
	goingAwaySpread = time.Second
	// goingAwayAcks bounds how long a session that was told the aggregator
	// is going away keeps reading the acks still due before hanging up (the
	// aggregator's own drain gives up after ingest.DefaultDrainTimeout, 10 s).
	goingAwayAcks = 15 * time.Second
	// longSession: a session that lasted this long resets the backoff.
	longSession = 30 * time.Second
)

// backoff draws reconnect delays with "equal jitter": after the n-th
// consecutive failure (n from 1), with ceiling c = min(max, base·2^(n-1)),
// a delay uniform in [c/2, c) (Brooker, "Exponential Backoff And Jitter",
// AWS Architecture Blog, 2015).
//
// Why not full jitter, uniform in [0, c): what bunches a fleet's
// reconnects is not the delays but the dials. An agent whose dial is in
// progress when the aggregator comes back connects at once, so the more
// of its cycle (dial, then delay) an agent spends dialing, the more of the
// fleet arrives in the first second. Full jitter's short delays make
// dialing a larger share of the cycle: in TestReconnectSpread's model the
// busiest second held 31–35% of 1,000 agents with full jitter, 24–28%
// with equal jitter and 25–28% with decorrelated jitter, the slowest agent
// 9.1 s after the aggregator's return with each. Not safe for concurrent
// use.
type backoff struct {
	base, max time.Duration
	fails     int
	rng       *rand.Rand
}

func newBackoff(base, max time.Duration, rng *rand.Rand) *backoff {
	return &backoff{base: base, max: max, rng: rng}
}

// next returns the delay before the next attempt, counting one more
// failure.
func (b *backoff) next() time.Duration {
	ceil := b.max
	if b.fails < 30 && b.base<<b.fails < b.max {
		ceil = b.base << b.fails
	}
	b.fails++
	return ceil/2 + time.Duration(b.rng.Int64N(int64(ceil-ceil/2)))
}

// reset forgets the failures: the next delay is drawn from [base/2, base).
func (b *backoff) reset() { b.fails = 0 }

// goingAway returns the delay before reconnecting to an aggregator that
// went away, and resets the backoff.
func (b *backoff) goingAway() time.Duration {
	b.reset()
	return time.Duration(b.rng.Int64N(int64(goingAwaySpread)))
}

// errGoingAway ends a session that the aggregator ended by going away.
var errGoingAway = errors.New("the aggregator is going away")

// isGoingAway reports whether err is the aggregator saying it is going
// away (protocol.ErrCodeGoingAway): in an Error frame, as the code of a
// stream it stopped, or of the connection it closed.
func isGoingAway(err error) bool {
	if errors.Is(err, errGoingAway) {
		return true
	}
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Code == protocol.ErrCodeGoingAway
	}
	var se *quic.StreamError
	if errors.As(err, &se) {
		return se.Remote && se.ErrorCode == quic.StreamErrorCode(protocol.ErrCodeGoingAway)
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		return ae.Remote && ae.ErrorCode == quic.ApplicationErrorCode(protocol.ErrCodeGoingAway)
	}
	return false
}
