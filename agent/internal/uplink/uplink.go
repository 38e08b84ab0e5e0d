// Package uplink carries spooled batches to the aggregator over QUIC with
// mutual TLS, and deletes each from the spool once the aggregator has
// acknowledged it (which it does only after committing it).
//
// Each connection has a control stream (hello/welcome, heartbeats out,
// commands in) and two data lanes on their own streams:
//
//   - live: every batch appended after the connection came up, in order, as
//     soon as it is appended;
//   - backfill: the backlog that was in the spool when the connection came
//     up, oldest first, paced by a byte-rate limit, and yielding while the
//     live lane is waiting for acks, so a draining backlog never delays
//     fresh data.
//
// Any error tears the connection down; unacknowledged batches are still in
// the spool and are sent again after reconnecting (with jittered exponential
// backoff, capped so that the agent is back within seconds of the
// aggregator: see DefaultMaxBackoff). The aggregator's ledger makes the
// resend harmless.
//
// An aggregator that shuts down or restarts on purpose says it is going
// away (protocol.ErrCodeGoingAway), on the control stream and on each data
// stream. That is no error: the client stops sending, reads the acks of the
// batches the aggregator committed while draining, hangs up, and reconnects
// at once. Only batches the aggregator never read are sent again, so a
// planned restart stores nothing twice and acks nothing as a duplicate.
//
// While connected, the client renews its certificate at two thirds of the
// certificate's validity (see Identity.RenewAt), over the connection, on a
// stream of its own. Once the new identity is saved, the session ends and
// the client reconnects with it at once; batches whose acks were pending
// are sent again. A failed renewal is retried with backoff (from
// renewRetryMin up to renewRetryMax, jittered) and never ends the session.
package uplink

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/vmpulse/vmpulse/agent/internal/spool"
	"github.com/vmpulse/vmpulse/protocol"
)

// Spool is what the uplink needs from the agent's spool (*spool.Queue).
type Spool interface {
	Oldest(n int, after uint64) ([]*protocol.Batch, error)
	Ack(seqs ...uint64) error
	Stats() spool.Stats
	NewEpoch() (uint64, error)
}

// Lane names a data lane.
type Lane string

// Lanes.
const (
	Live     Lane = "live"
	Backfill Lane = "backfill"
)

// Config configures a Client.
type Config struct {
	Addr       string // aggregator host:port (UDP)
	ServerName string // TLS name of the aggregator; default: host of Addr
	Version    string // agent version, sent in the hello
	// BackfillBytesPerSec caps the backlog's wire rate; default 32 MiB/s.
	BackfillBytesPerSec int
	// LiveLagYield: the backfill lane pauses while a live batch has waited
	// longer than this for its ack; default 2s.
	LiveLagYield time.Duration
	MaxBackoff   time.Duration // reconnect delay cap; default DefaultMaxBackoff
	Logger       *slog.Logger
	// CollectionLag reports how far collection is behind (for heartbeats).
	CollectionLag func() time.Duration
	// Plugins reports the collector plugins' states (for heartbeats).
	Plugins func() []protocol.PluginStatus
	// VCenters reports each polled endpoint's reachability (for heartbeats).
	VCenters func() []protocol.VCenterStatus
	// SpoolMaxBytes is the spool's quota, reported in heartbeats.
	SpoolMaxBytes uint64
	// OnCommand receives commands from the aggregator (e.g. resync_inventory,
	// apply_collection), in order, on the goroutine reading them: it must
	// not block for long.
	OnCommand func(protocol.Command)
	// OnCollection receives the collection settings of a Welcome that
	// carries some (see protocol.Welcome.Collection), before any command
	// of that connection. Same rules as OnCommand.
	OnCollection func(*protocol.CollectionSettings)
	// OnAck observes every acknowledgement (metrics, benchmarks).
	OnAck func(lane Lane, seq uint64, status protocol.AckStatus, sentAt time.Time)
}

// Stats are counters since the client started.
type Stats struct {
	Connected                   atomic.Bool
	Connects, Failures          atomic.Int64
	GoingAway                   atomic.Int64 // sessions ended by the aggregator going away (not failures)
	Renewals, RenewalFailures   atomic.Int64
	LiveSent, LiveAcked         atomic.Int64
	BackfillSent, BackfillAcked atomic.Int64
	Rejected                    atomic.Int64
	LastAck                     atomic.Int64 // Unix ns
}

// Client is the uplink of one agent.
type Client struct {
	cfg    Config
	id     atomic.Pointer[Identity] // replaced on renewal
	spool  Spool
	log    *slog.Logger
	notify chan struct{}
	Stats  Stats

	lastRenewal atomic.Int64 // Unix ns of the last successful renewal
}

// New makes a client; Run connects.
func New(cfg Config, id *Identity, sp Spool) *Client {
	if cfg.BackfillBytesPerSec <= 0 {
		cfg.BackfillBytesPerSec = 32 << 20
	}
	if cfg.LiveLagYield <= 0 {
		cfg.LiveLagYield = 2 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(cfg.Addr); err == nil {
			cfg.ServerName = host
		}
	}
	c := &Client{cfg: cfg, spool: sp, log: cfg.Logger, notify: make(chan struct{}, 1)}
	c.id.Store(id)
	return c
}

// Identity is the identity the client connects with: the one it was made
// with, or the latest renewal of it.
func (c *Client) Identity() *Identity { return c.id.Load() }

// Renewal retry backoff bounds, and the time one renewal exchange may take.
const (
	renewRetryMin = time.Minute
	renewRetryMax = time.Hour
	renewTimeout  = 30 * time.Second
)

// errRenewed ends a session after the certificate was renewed, so that the
// next one presents the new certificate.
var errRenewed = errors.New("certificate renewed; reconnecting with the new one")

// Notify tells the live lane that a batch was appended. It never blocks.
func (c *Client) Notify() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// Run keeps a connection to the aggregator until ctx ends, reconnecting
// with jittered exponential backoff (see backoff).
func (c *Client) Run(ctx context.Context) error {
	bo := newBackoff(reconnectBase, c.cfg.MaxBackoff, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
	for ctx.Err() == nil {
		started := time.Now()
		err := c.session(ctx)
		c.Stats.Connected.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errRenewed) {
			// Not a failure: reconnect at once with the new certificate.
			c.log.Info("reconnecting with the renewed certificate")
			bo.reset()
			continue
		}
		if time.Since(started) > longSession {
			bo.reset()
		}
		var wait time.Duration
		if isGoingAway(err) {
			// Not a failure either: a restart or a scale-down.
			c.Stats.GoingAway.Add(1)
			wait = bo.goingAway()
			c.log.Info("aggregator going away; reconnecting", "in", wait.Round(time.Millisecond), "spool_depth", c.spool.Stats().Depth)
		} else {
			c.Stats.Failures.Add(1)
			wait = bo.next()
			c.log.Warn("uplink disconnected; reconnecting", "err", err, "in", wait.Round(time.Millisecond), "spool_depth", c.spool.Stats().Depth)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	return nil
}

func (c *Client) session(ctx context.Context) error {
	id := c.id.Load()
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	conn, err := quic.DialAddr(dctx, c.cfg.Addr, &tls.Config{
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{protocol.ALPN},
		Certificates: []tls.Certificate{id.Cert},
		RootCAs:      id.CAs,
		ServerName:   c.cfg.ServerName,
	}, quicConfig())
	cancel()
	if err != nil {
		return expiredError(id, fmt.Errorf("dial %s: %w", c.cfg.Addr, err))
	}
	defer conn.CloseWithError(0, "")
	// In TLS 1.3 the aggregator judges our certificate after our side of
	// the handshake is done: a refusal shows up on the first stream.
	ctl, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return expiredError(id, fmt.Errorf("control stream: %w", err))
	}
	st := c.spool.Stats()
	if err := protocol.WriteMessage(ctl, &protocol.Hello{AgentID: id.AgentID, AgentVersion: c.cfg.Version,
		MinVersion: 1, MaxVersion: protocol.Version, Epoch: st.Epoch}); err != nil {
		return expiredError(id, fmt.Errorf("hello: %w", err))
	}
	ctlR := bufio.NewReader(ctl)
	m, err := protocol.ReadMessage(ctlR)
	if err != nil {
		return expiredError(id, fmt.Errorf("hello: %w", err))
	}
	welcomed := time.Now()
	w, ok := m.(*protocol.Welcome)
	if !ok {
		if e, ok := m.(*protocol.Error); ok {
			return fmt.Errorf("hello refused: %w", e)
		}
		return fmt.Errorf("hello: unexpected %T", m)
	}
	c.Stats.Connects.Add(1)
	c.Stats.Connected.Store(true)
	window := max(w.MaxInFlight, 1)
	liveFloor := st.NewestSeq // everything up to here is backlog
	c.log.Info("uplink connected", "aggregator", c.cfg.Addr, "site", w.Site, "backlog", st.Depth, "window", window)
	if w.Collection != nil && c.cfg.OnCollection != nil {
		c.cfg.OnCollection(w.Collection)
	}

	g, ctx := errgroup.WithContext(ctx)
	// goingAway is set before the first error that says the aggregator is
	// going away ends the session (errgroup cancels ctx after it returns).
	var goingAway atomic.Bool
	watch := func(f func() error) func() error {
		return func() error {
			err := f()
			if isGoingAway(err) {
				goingAway.Store(true)
			}
			return err
		}
	}
	var lanes sync.WaitGroup
	lanesDone := make(chan struct{})
	// Reads on the streams do not watch ctx: closing the connection is
	// what unblocks them when the session ends.
	go func() {
		<-ctx.Done()
		if goingAway.Load() {
			// The aggregator is draining: it acks every batch it read, then
			// says going-away on each data stream, and waits for us to
			// hang up. The lanes stopped sending; let them read those acks
			// first, or the batches would be sent again as duplicates.
			t := time.NewTimer(goingAwayAcks)
			select {
			case <-lanesDone:
			case <-t.C:
			}
			t.Stop()
		}
		conn.CloseWithError(0, "")
	}()
	g.Go(func() error { return c.heartbeats(ctx, ctl, w.HeartbeatInterval) })
	// The certificate's validity is in the aggregator's clock; schedule its
	// renewal by that clock, so that an agent whose clock is off neither
	// misses it nor renews over and over.
	var skew time.Duration
	if w.ServerTime > 0 {
		skew = time.UnixMilli(w.ServerTime).Sub(welcomed)
	}
	g.Go(func() error { return c.renewals(ctx, conn, id, skew) })
	g.Go(watch(func() error { return c.commands(ctlR) }))
	runLane := func(l *lane, live *lane) {
		lanes.Add(1)
		g.Go(watch(func() error {
			defer lanes.Done()
			return l.run(ctx, conn, live)
		}))
	}
	live := &lane{c: c, name: Live, after: liveFloor, upTo: ^uint64(0), window: window}
	runLane(live, nil)
	if st.Depth > 0 && st.OldestSeq <= liveFloor {
		bf := &lane{c: c, name: Backfill, after: 0, upTo: liveFloor, window: window,
			limit: rate.NewLimiter(rate.Limit(c.cfg.BackfillBytesPerSec), max(c.cfg.BackfillBytesPerSec, protocol.MaxFrameSize))}
		runLane(bf, live)
	}
	go func() {
		lanes.Wait()
		close(lanesDone)
	}()
	err = g.Wait()
	if goingAway.Load() && !isGoingAway(err) {
		// Another goroutine's error (e.g. a heartbeat write on the closing
		// connection) won the race: the session still ended by going away.
		err = fmt.Errorf("%w (then: %v)", errGoingAway, err)
	}
	return err
}

func (c *Client) heartbeats(ctx context.Context, ctl *quic.Stream, every time.Duration) error {
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		st := c.spool.Stats()
		hb := &protocol.Heartbeat{SpoolDepth: uint64(st.Depth), SpoolBytes: uint64(st.Bytes), SpoolMaxBytes: c.cfg.SpoolMaxBytes,
			Dropped: st.Dropped, SentAt: time.Now().UnixMilli()}
		if !st.OldestFirst.IsZero() {
			hb.OldestUnsentAge = time.Since(st.OldestFirst).Milliseconds()
		}
		if c.cfg.CollectionLag != nil {
			hb.CollectionLag = c.cfg.CollectionLag().Milliseconds()
		}
		if c.cfg.Plugins != nil {
			hb.Plugins = c.cfg.Plugins()
		}
		if c.cfg.VCenters != nil {
			hb.VCenters = c.cfg.VCenters()
		}
		if err := protocol.WriteMessage(ctl, hb); err != nil {
			return fmt.Errorf("heartbeat: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (c *Client) commands(r *bufio.Reader) error {
	for {
		m, err := protocol.ReadMessage(r)
		if err != nil {
			return fmt.Errorf("control stream: %w", err)
		}
		switch v := m.(type) {
		case *protocol.Command:
			if v.Collection != nil {
				c.log.Info("command from aggregator", "command", v.Name, "revision", v.Collection.Revision)
			} else {
				c.log.Info("command from aggregator", "command", v.Name)
			}
			if c.cfg.OnCommand != nil {
				c.cfg.OnCommand(*v)
			}
		case *protocol.Error:
			return fmt.Errorf("aggregator closed the control stream: %w", v)
		default:
			return fmt.Errorf("control stream: unexpected %T", m)
		}
	}
}

// lane sends spooled batches with seq in (after, upTo] on one stream,
// keeping at most window unacknowledged.
type lane struct {
	c      *Client
	name   Lane
	after  uint64
	upTo   uint64
	window int
	limit  *rate.Limiter // backfill only

	inflightN    atomic.Int64
	lastProgress atomic.Int64 // Unix ns of the last ack, or of a send into an empty window
}

type sent struct {
	seq uint64
	at  time.Time
}

// lagging reports whether this lane has waited too long for an ack.
func (l *lane) lagging(d time.Duration) bool {
	return l.inflightN.Load() > 0 && time.Since(time.Unix(0, l.lastProgress.Load())) > d
}

func (l *lane) run(ctx context.Context, conn *quic.Conn, live *lane) error {
	outer := ctx
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("%s stream: %w", l.name, err)
	}
	defer st.CancelRead(0)
	inflight := make(chan sent, l.window)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return l.ack(ctx, bufio.NewReader(st), inflight) })
	g.Go(func() error {
		defer close(inflight)
		return l.send(ctx, st, inflight, live)
	})
	err = g.Wait()
	if err == nil && l.name == Backfill && outer.Err() == nil {
		l.c.log.Info("backlog drained")
		st.Close()
	}
	return err
}

func (l *lane) send(ctx context.Context, st *quic.Stream, inflight chan<- sent, live *lane) error {
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		batches, err := l.c.spool.Oldest(l.window, l.after)
		if err != nil {
			return fmt.Errorf("%s: read spool: %w", l.name, err)
		}
		n, past := 0, len(batches) == 0
		for _, b := range batches {
			if b.Seq > l.upTo {
				past = true
				break
			}
			if l.limit != nil {
				for live != nil && live.lagging(l.c.cfg.LiveLagYield) {
					select {
					case <-ctx.Done():
						return nil
					case <-time.After(100 * time.Millisecond):
					}
				}
				if err := l.limit.WaitN(ctx, min(len(b.Payload)+64, l.limit.Burst())); err != nil {
					return nil
				}
			}
			select {
			case inflight <- sent{seq: b.Seq, at: time.Now()}:
			case <-ctx.Done():
				return nil
			}
			if l.inflightN.Add(1) == 1 {
				l.lastProgress.Store(time.Now().UnixNano())
			}
			if err := protocol.WriteMessage(st, b); err != nil {
				return fmt.Errorf("%s: send %d: %w", l.name, b.Seq, err)
			}
			if l.name == Live {
				l.c.Stats.LiveSent.Add(1)
			} else {
				l.c.Stats.BackfillSent.Add(1)
			}
			l.after = b.Seq
			n++
		}
		if l.name == Backfill && (past || l.after >= l.upTo) {
			// Backlog fully sent (or the rest was dropped by the spool's
			// quota); the acker finishes the lane.
			return nil
		}
		if n == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-l.c.notify:
			case <-poll.C:
			}
		}
	}
}

func (l *lane) ack(ctx context.Context, r *bufio.Reader, inflight <-chan sent) error {
	for s := range inflight {
		m, err := protocol.ReadMessage(r)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%s: waiting for ack of %d: %w", l.name, s.seq, err)
		}
		var a *protocol.Ack
		switch v := m.(type) {
		case *protocol.Ack:
			a = v
		case *protocol.Error:
			return fmt.Errorf("%s: aggregator closed the stream: %w", l.name, v)
		default:
			return fmt.Errorf("%s: unexpected %T", l.name, m)
		}
		if a.Seq != s.seq {
			return fmt.Errorf("%s: ack for seq %d, expected %d", l.name, a.Seq, s.seq)
		}
		if a.Status == protocol.AckRejected && a.Code == protocol.ErrCodeSeqReuse {
			// The aggregator holds this (epoch, seq) with other data: our spool
			// was rolled back. Keep the batch, move to a new epoch, and start
			// a new session, whose hello carries it; everything unacked is
			// sent again under the new epoch.
			epoch, err := l.c.spool.NewEpoch()
			if err != nil {
				return fmt.Errorf("%s: seq %d reused; new epoch: %w", l.name, a.Seq, err)
			}
			l.c.log.Error("the aggregator already holds this seq with other data (spool rolled back); moved to a new epoch",
				"seq", a.Seq, "old_epoch", a.Epoch, "new_epoch", epoch)
			return fmt.Errorf("%s: seq %d reused under epoch %d; reconnecting with epoch %d", l.name, a.Seq, a.Epoch, epoch)
		}
		if a.Status == protocol.AckRejected {
			l.c.Stats.Rejected.Add(1)
			l.c.log.Error("aggregator rejected a batch; dropping it", "seq", a.Seq, "code", a.Code)
		}
		if err := l.c.spool.Ack(a.Seq); err != nil {
			return fmt.Errorf("%s: spool ack %d: %w", l.name, a.Seq, err)
		}
		now := time.Now()
		l.inflightN.Add(-1)
		l.lastProgress.Store(now.UnixNano())
		l.c.Stats.LastAck.Store(now.UnixNano())
		if l.name == Live {
			l.c.Stats.LiveAcked.Add(1)
		} else {
			l.c.Stats.BackfillAcked.Add(1)
		}
		if l.c.cfg.OnAck != nil {
			l.c.cfg.OnAck(l.name, a.Seq, a.Status, s.at)
		}
	}
	return nil
}

// renewals renews id's certificate over conn when it is due (at once if it
// is overdue), retrying failures with jittered backoff. skew is how far the
// aggregator's clock, which the certificate's validity is in, is ahead of
// ours. It returns errRenewed, which ends the session, once the new
// identity is saved and in use for the next connection; nil when ctx ends.
func (c *Client) renewals(ctx context.Context, conn *quic.Conn, id *Identity, skew time.Duration) error {
	at := id.RenewAt().Add(-skew)
	// Whatever the clocks say, renewals are at least a tenth of the
	// validity (at most renewRetryMin) apart: never a renew-reconnect loop.
	if last := c.lastRenewal.Load(); last != 0 {
		l := id.Cert.Leaf
		gap := min(renewRetryMin, l.NotAfter.Sub(l.NotBefore)/10)
		at = later(at, time.Unix(0, last).Add(gap))
	}
	backoff := renewRetryMin
	for {
		if wait := time.Until(at); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		nid, err := c.renew(ctx, conn, id)
		if err == nil {
			c.id.Store(nid)
			c.lastRenewal.Store(time.Now().UnixNano())
			c.Stats.Renewals.Add(1)
			c.log.Info("certificate renewed", "not_after", nid.Cert.Leaf.NotAfter.Format(time.RFC3339),
				"serial", nid.Cert.Leaf.SerialNumber.Text(16), "renew_at", nid.RenewAt().Format(time.RFC3339))
			return errRenewed
		}
		if ctx.Err() != nil {
			return nil
		}
		c.Stats.RenewalFailures.Add(1)
		wait := backoff/2 + rand.N(backoff)
		c.log.Warn("certificate renewal failed; keeping the current certificate and retrying", "err", err,
			"in", wait.Round(time.Second), "not_after", id.Cert.Leaf.NotAfter.Format(time.RFC3339))
		at = time.Now().Add(wait)
		backoff = min(backoff*2, renewRetryMax)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// renew asks the aggregator for a certificate for a new key, on a stream of
// its own, then checks and saves the result (Identity.renewed).
func (c *Client) renew(ctx context.Context, conn *quic.Conn, id *Identity) (*Identity, error) {
	key, csr, err := newKeyAndCSR()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, renewTimeout)
	defer cancel()
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("renew: open stream: %w", err)
	}
	defer st.CancelRead(0)
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	if err := protocol.WriteMessage(st, &protocol.RenewRequest{CSR: csr}); err != nil {
		st.CancelWrite(0)
		return nil, fmt.Errorf("renew: %w", err)
	}
	st.Close() // the request is all we send
	m, err := protocol.ReadMessage(st)
	if err != nil {
		return nil, fmt.Errorf("renew: read answer: %w", err)
	}
	switch r := m.(type) {
	case *protocol.Error:
		return nil, fmt.Errorf("renew: refused: %w", r)
	case *protocol.RenewResponse:
		nid, err := id.renewed(key, r.Cert)
		if err != nil {
			return nil, fmt.Errorf("renew: %w", err)
		}
		return nid, nil
	default:
		return nil, fmt.Errorf("renew: unexpected %T", m)
	}
}

// alertCertificateExpired is the QUIC transport error carrying TLS alert 45,
// which the aggregator sends for an expired client certificate.
const alertCertificateExpired = quic.TransportErrorCode(0x100 + 45)

// expiredError explains a failure to connect when the cause is the
// certificate's expiry: renewal needs a connection, so only a new
// enrollment helps. The aggregator's alert is authoritative; our own clock
// only adds a hint to other errors (the network may be down too).
func expiredError(id *Identity, err error) error {
	notAfter := id.Cert.Leaf.NotAfter.Format(time.RFC3339)
	var te *quic.TransportError
	switch {
	case errors.As(err, &te) && te.ErrorCode == alertCertificateExpired:
		return fmt.Errorf("the agent certificate expired at %s and can no longer connect or be renewed: "+
			"the agent must be re-enrolled with a new enrollment token (remove the identity directory %s and start the agent with the token): %w",
			notAfter, id.dir, err)
	case time.Now().After(id.Cert.Leaf.NotAfter):
		return fmt.Errorf("%w (by this host's clock the agent certificate expired at %s: if so, "+
			"the agent must be re-enrolled with a new enrollment token; remove the identity directory %s and start the agent with the token)",
			err, notAfter, id.dir)
	}
	return err
}

// IsRefused reports whether err means the aggregator refused this agent
// (revoked or unknown certificate), which retrying will not fix.
func IsRefused(err error) bool {
	var pe *protocol.Error
	if errors.As(err, &pe) && (pe.Code == protocol.ErrCodeUnauthenticated || pe.Code == protocol.ErrCodeForbidden) {
		return true
	}
	var te *quic.TransportError
	return errors.As(err, &te) && te.ErrorCode.IsCryptoError()
}
