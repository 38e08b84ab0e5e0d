// Package realtime is the aggregator's live sample feed. Ingest hands every
// samples batch to a Hub right after it is committed; the hub fans it out
// to its consumers, keeps a short replay ring, and relays it to the other
// aggregator replicas through PostgreSQL LISTEN/NOTIFY (relay.go), so that
// a client connected to any replica sees what every replica ingested.
//
// Contracts:
//
//   - Publishing never blocks and never fails. PublishSamples enqueues the
//     batch on a bounded queue and returns; when the queue is full the
//     batch is not fanned out (counted in Stats.QueueDrops). Ingest's
//     acknowledgements never wait for a consumer.
//   - A consumer that does not keep up is dropped, not waited for: every
//     subscription has a bounded buffer, and the delivery that finds it
//     full ends the subscription with ErrSlowConsumer (counted in
//     Stats.SlowConsumers). Other consumers are not affected.
//   - Batches are shared. A *Batch and its Samples are read-only for
//     everyone once published: the publisher must not modify them after
//     PublishSamples, and consumers must not modify what they receive.
//   - Deliveries to one consumer are in the hub's order (Seq increases).
//   - The hub does not check data scope: a Subscription receives exactly
//     the entities it was given, and whoever adds them (the API) has
//     checked them against the caller's scope.
//   - Values are as stored: float32 precision (the samples table's type),
//     percent counters in hundredths; non-finite values are not delivered.
//
// Delivery is best effort, at most once: a batch may be missed when the
// hub's queue is full, when a subscriber is dropped, or by another replica
// while its LISTEN connection is being re-established. Every such loss is
// counted in Stats. Durable consumers read PostgreSQL.
//
// Consumers declare their own small interface over what they use
// (Subscribe for filtered views, Feed for every batch); this package
// declares none for them.
package realtime

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/protocol"
)

// Errors that end a subscription or a feed (Subscription.Err, Feed.Err).
var (
	// ErrSlowConsumer: the consumer's buffer was full when a delivery was
	// due; it was dropped rather than allowed to delay the others.
	ErrSlowConsumer = errors.New("realtime: slow consumer: its buffer was full")
	// ErrClosed: the hub stopped (the aggregator is shutting down).
	ErrClosed = errors.New("realtime: hub closed")
	// ErrCanceled: the consumer closed its subscription.
	ErrCanceled = errors.New("realtime: subscription closed")
	// ErrTooManySubscriptions refuses an Add that would exceed its limit;
	// nothing of it was added.
	ErrTooManySubscriptions = errors.New("realtime: too many subscriptions")
)

// Entity identifies one entity's samples. Site is the site of the agent
// that sent them (from its certificate); Source, Kind and ID are those of
// protocol.SeriesKey (the vCenter, "vm", the moref).
type Entity struct {
	Site, Source, Kind, ID string
}

// Sample is one value of one metric of one entity at one time.
type Sample struct {
	Entity
	Instance string // "" for the entity as a whole
	Metric   string // vCenter's group.counter.rollup
	Unit     string
	Time     int64 // Unix milliseconds
	// Value is as stored: float32 precision, and a percent counter in
	// hundredths of a percent.
	Value float64
}

// Batch is one committed samples batch of a site.
type Batch struct {
	Site    string
	AgentID string
	// Origin is the ID of the hub (replica) that ingested the batch.
	Origin string
	// Committed is when the origin published it, right after its COMMIT.
	Committed time.Time
	Samples   *protocol.Samples
	// Seq is this hub's sequence number of the batch, set when it is
	// dispatched (1, 2, ...); remote batches get this hub's numbers too.
	Seq uint64

	values int // cells(Samples), for the queues' bounds
}

// Delivery is what a Subscription receives of one batch: the samples of
// its entities and metrics, never empty.
type Delivery struct {
	Seq       uint64
	Origin    string
	Committed time.Time
	Samples   []Sample
}

// Options configure a Hub. The zero value is usable.
type Options struct {
	// Pool is the database of the replicas. With Relay, batches are
	// relayed through it; Drain reads the ingest ledger from it.
	Pool *pgxpool.Pool
	// Relay exchanges batches with the other replicas on Channel
	// (LISTEN/NOTIFY). It needs Pool.
	Relay bool
	// Channel is the NOTIFY channel; default DefaultChannel.
	Channel string
	// QueueSize bounds the batches waiting to be fanned out; default 256.
	QueueSize int
	// RelayQueue bounds the batches waiting to be sent to the other
	// replicas; default 256.
	RelayQueue int
	// QueueValues bounds the values (points × counters) each of those
	// queues holds, so that a burst of large batches (a backlog draining)
	// cannot pin much memory; default 4,000,000 (~32 MB of values).
	QueueValues int
	// RingValues and RingAge bound the replay ring (Since): at most this
	// many values, none older; defaults 500,000 values and 5 minutes.
	RingValues int
	RingAge    time.Duration
	Logger     *slog.Logger
}

// Stats are the hub's counters since it started.
type Stats struct {
	// Published batches were handed to the hub by ingest on this replica;
	// Received came from other replicas; Dispatched were fanned out.
	Published, Received, Dispatched int64
	// QueueDrops are batches not fanned out: the hub's queue was full
	// (Options.QueueSize batches or Options.QueueValues values).
	QueueDrops int64
	// Delivered counts samples handed to subscriptions.
	Delivered int64
	// SlowConsumers counts subscriptions and feeds dropped for a full
	// buffer.
	SlowConsumers int64
	// Subscriptions and Feeds are open now.
	Subscriptions, Feeds int64
	// Relay: notifications sent and received, own notifications ignored,
	// batches not relayed (queue full), pieces too large to relay, and
	// errors (sending, or the LISTEN connection lost: the batches notified
	// meanwhile were missed).
	RelaySent, RelayReceived, RelayOwnSkipped int64
	RelayDrops, RelayOversize, RelayErrors    int64
	// Relay reports whether the relay is on (Options.Relay with a Pool);
	// RelayListening whether its LISTEN connection is up.
	Relay, RelayListening bool
}

// Hub is the in-process fan-out of committed samples. It is safe for
// concurrent use; Run must be running for anything to be delivered.
type Hub struct {
	id     uuid.UUID
	idStr  string
	opts   Options
	log    *slog.Logger
	in     chan *Batch
	relayQ chan *Batch
	// inValues and relayValues count the values queued on in and relayQ.
	inValues, relayValues atomic.Int64
	done                  chan struct{}
	closed                atomic.Bool
	started               atomic.Bool

	mu    sync.RWMutex
	subs  map[*Subscription]struct{}
	index map[Entity]map[*Subscription]*metricSet
	feeds map[*Feed]struct{}

	ring ring
	// pending collects each subscription's samples of the batch being
	// dispatched; only the dispatcher touches it.
	pending map[*Subscription][]Sample
	seq     uint64 // dispatcher only

	listening     chan struct{} // closed once the relay first listens
	listeningOnce sync.Once

	published, received, dispatched, queueDrops atomic.Int64
	delivered, slowConsumers                    atomic.Int64
	relaySent, relayReceived, relayOwnSkipped   atomic.Int64
	relayDrops, relayOversize, relayErrors      atomic.Int64
	relayUp                                     atomic.Bool
}

// DefaultChannel is the default NOTIFY channel of the relay.
const DefaultChannel = "vmpulse_realtime"

// New makes a hub; Run starts it.
func New(opts Options) *Hub {
	if opts.Channel == "" {
		opts.Channel = DefaultChannel
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 256
	}
	if opts.RelayQueue <= 0 {
		opts.RelayQueue = 256
	}
	if opts.QueueValues <= 0 {
		opts.QueueValues = 4_000_000
	}
	if opts.RingValues <= 0 {
		opts.RingValues = 500_000
	}
	if opts.RingAge <= 0 {
		opts.RingAge = 5 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Pool == nil {
		opts.Relay = false
	}
	id := uuid.New()
	h := &Hub{
		id: id, idStr: id.String(), opts: opts, log: opts.Logger,
		in:        make(chan *Batch, opts.QueueSize),
		done:      make(chan struct{}),
		subs:      map[*Subscription]struct{}{},
		index:     map[Entity]map[*Subscription]*metricSet{},
		feeds:     map[*Feed]struct{}{},
		pending:   map[*Subscription][]Sample{},
		listening: make(chan struct{}),
	}
	h.ring.maxValues, h.ring.maxAge = opts.RingValues, opts.RingAge
	if opts.Relay {
		h.relayQ = make(chan *Batch, opts.RelayQueue)
	}
	return h
}

// ID identifies this hub (this replica's process) among the replicas: the
// Origin of the batches it ingests.
func (h *Hub) ID() string { return h.idStr }

// Done is closed when the hub has stopped; every subscription and feed has
// ended with ErrClosed by then.
func (h *Hub) Done() <-chan struct{} { return h.done }

// Run dispatches batches (and relays them, with Options.Relay) until ctx
// ends, then ends every subscription and feed with ErrClosed. It returns
// nil; call it once.
func (h *Hub) Run(ctx context.Context) error {
	if !h.started.CompareAndSwap(false, true) {
		return errors.New("realtime: Run called twice")
	}
	var wg sync.WaitGroup
	if h.opts.Relay {
		wg.Add(2)
		go func() { defer wg.Done(); h.runSender(ctx) }()
		go func() { defer wg.Done(); h.runListener(ctx) }()
	}
	for {
		select {
		case <-ctx.Done():
			h.stop()
			wg.Wait()
			return nil
		case b := <-h.in:
			h.inValues.Add(-int64(b.values))
			h.dispatch(b)
		}
	}
}

// stop marks the hub closed and ends every consumer.
func (h *Hub) stop() {
	h.closed.Store(true)
	h.mu.Lock()
	subs, feeds := h.subs, h.feeds
	h.subs, h.feeds = map[*Subscription]struct{}{}, map[*Feed]struct{}{}
	h.index = map[Entity]map[*Subscription]*metricSet{}
	h.mu.Unlock()
	for s := range subs {
		s.finish(ErrClosed)
	}
	for f := range feeds {
		f.finish(ErrClosed)
	}
	close(h.done)
}

// PublishSamples hands a samples batch of site, committed just now, to the
// hub (ingest calls it after COMMIT). It never blocks: when the queue is
// full the batch is dropped and counted. p must not be modified afterwards.
func (h *Hub) PublishSamples(site, agentID string, p *protocol.Samples) {
	if p == nil || len(p.Series) == 0 {
		return
	}
	b := &Batch{Site: site, AgentID: agentID, Origin: h.idStr, Committed: time.Now(), Samples: p, values: cells(p)}
	h.published.Add(1)
	h.enqueue(b)
	if h.relayQ != nil {
		if !admit(&h.relayValues, b.values, h.opts.QueueValues) {
			h.relayDrops.Add(1)
			return
		}
		select {
		case h.relayQ <- b:
		default:
			h.relayValues.Add(-int64(b.values))
			h.relayDrops.Add(1)
		}
	}
}

// cells counts the values of p (points × counters, NaNs included).
func cells(p *protocol.Samples) int {
	n := 0
	for i := range p.Series {
		sd := &p.Series[i]
		n += len(sd.Timestamps) * len(sd.Key.Counters)
	}
	return n
}

// admit reserves n values on a queue's counter unless that would exceed
// limit (a batch alone larger than limit is admitted to an empty queue).
func admit(queued *atomic.Int64, n, limit int) bool {
	for {
		q := queued.Load()
		if q > 0 && q+int64(n) > int64(limit) {
			return false
		}
		if queued.CompareAndSwap(q, q+int64(n)) {
			return true
		}
	}
}

// enqueue queues b for dispatch without blocking.
func (h *Hub) enqueue(b *Batch) {
	if h.closed.Load() {
		return
	}
	if !admit(&h.inValues, b.values, h.opts.QueueValues) {
		h.queueDrops.Add(1)
		return
	}
	select {
	case h.in <- b:
	default:
		h.inValues.Add(-int64(b.values))
		h.queueDrops.Add(1)
	}
}

// Stats returns the counters.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	subs, feeds := int64(len(h.subs)), int64(len(h.feeds))
	h.mu.RUnlock()
	return Stats{
		Published: h.published.Load(), Received: h.received.Load(), Dispatched: h.dispatched.Load(),
		QueueDrops: h.queueDrops.Load(), Delivered: h.delivered.Load(), SlowConsumers: h.slowConsumers.Load(),
		Subscriptions: subs, Feeds: feeds,
		RelaySent: h.relaySent.Load(), RelayReceived: h.relayReceived.Load(), RelayOwnSkipped: h.relayOwnSkipped.Load(),
		RelayDrops: h.relayDrops.Load(), RelayOversize: h.relayOversize.Load(), RelayErrors: h.relayErrors.Load(),
		Relay: h.opts.Relay, RelayListening: h.relayUp.Load(),
	}
}

// dispatch numbers b, keeps it in the ring and fans it out.
func (h *Hub) dispatch(b *Batch) {
	h.seq++
	b.Seq = h.seq
	h.dispatched.Add(1)
	h.ring.add(b, time.Now())

	var slow []*Feed
	h.mu.RLock()
	for f := range h.feeds {
		select {
		case f.c <- b:
		default:
			slow = append(slow, f)
		}
	}
	if len(h.index) > 0 {
		for i := range b.Samples.Series {
			sd := &b.Samples.Series[i]
			e := Entity{Site: b.Site, Source: sd.Key.Source, Kind: sd.Key.EntityKind, ID: sd.Key.EntityID}
			for s, ms := range h.index[e] {
				out := h.pending[s]
				if out == nil {
					out = make([]Sample, 0, max(s.hint, 16))
				}
				h.pending[s] = appendSamples(out, e, sd, ms)
			}
		}
	}
	h.mu.RUnlock()
	for _, f := range slow {
		h.dropFeed(f)
	}
	for s, samples := range h.pending {
		delete(h.pending, s)
		if len(samples) == 0 {
			continue
		}
		s.hint = len(samples)
		select {
		case s.c <- Delivery{Seq: b.Seq, Origin: b.Origin, Committed: b.Committed, Samples: samples}:
			h.delivered.Add(int64(len(samples)))
		default:
			h.drop(s, ErrSlowConsumer)
		}
	}
}

// appendSamples appends the finite values of the metrics of sd that ms
// selects.
func appendSamples(out []Sample, e Entity, sd *protocol.SeriesData, ms *metricSet) []Sample {
	for c, ctr := range sd.Key.Counters {
		if c >= len(sd.Values) {
			break
		}
		if !ms.has(ctr.Name) {
			continue
		}
		col := sd.Values[c]
		for t, ts := range sd.Timestamps {
			if t >= len(col) {
				break
			}
			v := float64(float32(col[t])) // as the samples table stores it
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			out = append(out, Sample{Entity: e, Instance: sd.Key.Instance, Metric: ctr.Name, Unit: ctr.Unit, Time: ts, Value: v})
		}
	}
	return out
}

// metricSet is what a subscription takes of one entity: every metric, or
// the named ones. It is read by the dispatcher under the hub's read lock
// and changed only under its write lock.
type metricSet struct {
	all   bool
	names map[string]struct{}
}

func (m *metricSet) has(name string) bool {
	if m.all {
		return true
	}
	_, ok := m.names[name]
	return ok
}

// size is how many subscriptions the set counts as: one per metric, and
// one for "every metric".
func (m *metricSet) size() int {
	n := len(m.names)
	if m.all {
		n++
	}
	return n
}

// Subscription is a filtered view of the feed: the samples of the entities
// and metrics added to it. Its methods are safe for concurrent use.
type Subscription struct {
	h    *Hub
	c    chan Delivery
	done chan struct{}
	once sync.Once
	err  error // set before done is closed

	sel   map[Entity]*metricSet // under h.mu
	count int                   // under h.mu
	// hint is the size of the last delivery: the next one's capacity
	// (dispatcher only).
	hint int
}

// Subscribe opens an empty subscription whose buffer holds buffer
// deliveries (one per batch with something for it; at least 1). On a hub
// that has stopped it is returned already ended with ErrClosed.
func (h *Hub) Subscribe(buffer int) *Subscription {
	s := &Subscription{h: h, c: make(chan Delivery, max(buffer, 1)), done: make(chan struct{}), sel: map[Entity]*metricSet{}}
	h.mu.Lock()
	if h.closed.Load() {
		h.mu.Unlock()
		s.finish(ErrClosed)
		return s
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// C delivers the subscription's samples. It is never closed: select on
// Done as well.
func (s *Subscription) C() <-chan Delivery { return s.c }

// Done is closed when the subscription has ended; Err says why.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is why the subscription ended (ErrSlowConsumer, ErrClosed,
// ErrCanceled), or nil while it lasts.
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

func (s *Subscription) finish(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
	})
}

// Close ends the subscription (Err: ErrCanceled).
func (s *Subscription) Close() { s.h.remove(s, ErrCanceled) }

// Add subscribes to metrics of entities (every metric when metrics is
// empty), all or nothing: when the subscription would count more than
// limit (entity, metric) pairs — "every metric" of an entity counting as
// one — nothing is added and the error is ErrTooManySubscriptions. It
// returns the count after the change.
func (s *Subscription) Add(entities []Entity, metrics []string, limit int) (int, error) {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; !ok {
		if err := s.Err(); err != nil {
			return s.count, err
		}
		return s.count, ErrClosed
	}
	added := 0
	seen := map[Entity]bool{}
	for _, e := range entities {
		if seen[e] {
			continue
		}
		seen[e] = true
		ms := s.sel[e]
		if len(metrics) == 0 {
			if ms == nil || !ms.all {
				added++
			}
			continue
		}
		names := map[string]bool{}
		for _, m := range metrics {
			if names[m] {
				continue
			}
			names[m] = true
			if ms == nil {
				added++
			} else if _, ok := ms.names[m]; !ok {
				added++
			}
		}
	}
	if s.count+added > limit {
		return s.count, ErrTooManySubscriptions
	}
	for e := range seen {
		ms := s.sel[e]
		if ms == nil {
			ms = &metricSet{names: map[string]struct{}{}}
			s.sel[e] = ms
			if h.index[e] == nil {
				h.index[e] = map[*Subscription]*metricSet{}
			}
			h.index[e][s] = ms
		}
		if len(metrics) == 0 {
			ms.all = true
		}
		for _, m := range metrics {
			ms.names[m] = struct{}{}
		}
	}
	s.count += added
	return s.count, nil
}

// Remove unsubscribes from metrics of entities (every metric of them when
// metrics is empty; everything when entities is nil too) and returns the
// count after the change. Removing "cpu.usage.average" from an entity
// subscribed to every metric leaves every metric.
func (s *Subscription) Remove(entities []Entity, metrics []string) int {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if entities == nil && len(metrics) == 0 {
		for e := range s.sel {
			h.unindex(s, e)
		}
		s.sel, s.count = map[Entity]*metricSet{}, 0
		return 0
	}
	if entities == nil {
		for e := range s.sel {
			entities = append(entities, e)
		}
	}
	for _, e := range entities {
		ms := s.sel[e]
		if ms == nil {
			continue
		}
		before := ms.size()
		if len(metrics) == 0 {
			ms.all = false
			clear(ms.names)
		}
		for _, m := range metrics {
			delete(ms.names, m)
		}
		s.count -= before - ms.size()
		if ms.size() == 0 {
			delete(s.sel, e)
			h.unindex(s, e)
		}
	}
	return s.count
}

// unindex removes s from the index entry of e; h.mu is held.
func (h *Hub) unindex(s *Subscription, e Entity) {
	if m := h.index[e]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(h.index, e)
		}
	}
}

// Entities lists the subscription's entities.
func (s *Subscription) Entities() []Entity {
	s.h.mu.RLock()
	defer s.h.mu.RUnlock()
	out := make([]Entity, 0, len(s.sel))
	for e := range s.sel {
		out = append(out, e)
	}
	return out
}

// Count is how many (entity, metric) pairs the subscription holds.
func (s *Subscription) Count() int {
	s.h.mu.RLock()
	defer s.h.mu.RUnlock()
	return s.count
}

// remove takes s out of the hub and ends it with err.
func (h *Hub) remove(s *Subscription, err error) bool {
	h.mu.Lock()
	_, ok := h.subs[s]
	if ok {
		delete(h.subs, s)
		for e := range s.sel {
			h.unindex(s, e)
		}
	}
	h.mu.Unlock()
	s.finish(err)
	return ok
}

func (h *Hub) drop(s *Subscription, err error) {
	if h.remove(s, err) && errors.Is(err, ErrSlowConsumer) {
		h.slowConsumers.Add(1)
		h.log.Info("dropped a slow realtime subscriber", "buffer", cap(s.c))
	}
}

// Feed is every batch the hub dispatches, unfiltered (the alert engine's
// view). Its methods are safe for concurrent use.
type Feed struct {
	h    *Hub
	c    chan *Batch
	done chan struct{}
	once sync.Once
	err  error
}

// Feed opens a feed of every batch whose buffer holds buffer batches (at
// least 1).
func (h *Hub) Feed(buffer int) *Feed {
	f := &Feed{h: h, c: make(chan *Batch, max(buffer, 1)), done: make(chan struct{})}
	h.mu.Lock()
	if h.closed.Load() {
		h.mu.Unlock()
		f.finish(ErrClosed)
		return f
	}
	h.feeds[f] = struct{}{}
	h.mu.Unlock()
	return f
}

// C delivers the batches, read-only. It is never closed: select on Done
// as well.
func (f *Feed) C() <-chan *Batch { return f.c }

// Done is closed when the feed has ended; Err says why.
func (f *Feed) Done() <-chan struct{} { return f.done }

// Err is why the feed ended, or nil while it lasts.
func (f *Feed) Err() error {
	select {
	case <-f.done:
		return f.err
	default:
		return nil
	}
}

// Close ends the feed (Err: ErrCanceled).
func (f *Feed) Close() {
	f.h.mu.Lock()
	delete(f.h.feeds, f)
	f.h.mu.Unlock()
	f.finish(ErrCanceled)
}

func (f *Feed) finish(err error) {
	f.once.Do(func() {
		f.err = err
		close(f.done)
	})
}

func (h *Hub) dropFeed(f *Feed) {
	h.mu.Lock()
	_, ok := h.feeds[f]
	delete(h.feeds, f)
	h.mu.Unlock()
	if ok {
		h.slowConsumers.Add(1)
		h.log.Warn("dropped a slow realtime feed", "buffer", cap(f.c))
	}
	f.finish(ErrSlowConsumer)
}

// Since returns what s would have received of the batches after seq that
// the replay ring still holds, oldest first, and whether the ring still
// holds every batch after seq (false: some were evicted, and what they
// carried for s is lost to it). Call it after adding s's entities: what is
// dispatched meanwhile reaches s's channel as well, with a Seq the caller
// skips if it already had it.
func (h *Hub) Since(seq uint64, s *Subscription) ([]Delivery, bool) {
	batches, complete := h.ring.since(seq)
	var out []Delivery
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, b := range batches {
		var samples []Sample
		for i := range b.Samples.Series {
			sd := &b.Samples.Series[i]
			e := Entity{Site: b.Site, Source: sd.Key.Source, Kind: sd.Key.EntityKind, ID: sd.Key.EntityID}
			if ms := s.sel[e]; ms != nil {
				samples = appendSamples(samples, e, sd, ms)
			}
		}
		if len(samples) > 0 {
			out = append(out, Delivery{Seq: b.Seq, Origin: b.Origin, Committed: b.Committed, Samples: samples})
		}
	}
	return out, complete
}

// LastSeq is the Seq of the newest batch dispatched (0: none yet).
func (h *Hub) LastSeq() uint64 { return h.ring.last() }

// ring is the bounded replay ring of dispatched batches: written by the
// dispatcher, read by Since.
type ring struct {
	mu        sync.Mutex
	maxValues int
	maxAge    time.Duration
	entries   []ringEntry // oldest first
	values    int
	evicted   uint64 // Seq of the newest batch evicted
	newest    uint64
}

type ringEntry struct {
	b      *Batch
	at     time.Time
	values int
}

func (r *ring) add(b *Batch, now time.Time) {
	n := b.values
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, ringEntry{b: b, at: now, values: n})
	r.values += n
	r.newest = b.Seq
	drop := 0
	for drop < len(r.entries) && (r.values > r.maxValues || now.Sub(r.entries[drop].at) > r.maxAge) {
		r.values -= r.entries[drop].values
		r.evicted = r.entries[drop].b.Seq
		drop++
	}
	if drop > 0 {
		clear(r.entries[:drop])
		r.entries = r.entries[drop:]
	}
}

func (r *ring) since(seq uint64) ([]*Batch, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*Batch
	for _, e := range r.entries {
		if e.b.Seq > seq {
			out = append(out, e.b)
		}
	}
	return out, seq >= r.evicted
}

func (r *ring) last() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.newest
}
