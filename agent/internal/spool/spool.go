// Package spool is the agent's durable queue of batches awaiting
// acknowledgement by the aggregator.
//
// Every encoded batch is appended to the spool before it is sent and deleted
// only when the aggregator acknowledges it, so an aggregator outage, a
// network partition or an agent restart loses nothing. The spool is bounded:
// when its byte quota or the filesystem's free-space floor would be
// exceeded, it drops its oldest batches and appends a [protocol.KindGap]
// batch that tells the aggregator exactly what was lost.
//
// The queue is a Badger key-value store. Batches are stored under their
// sequence number, big-endian, so key order is delivery order; the next
// sequence number is written in the same transaction as each batch. See
// record.go for the key and record layouts.
package spool

import (
	"container/list"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/vmpulse/vmpulse/protocol"
)

// Defaults applied by Open to zero Options fields.
const (
	DefaultMaxBytes     int64 = 1 << 30
	DefaultSyncInterval       = time.Second
)

// Gap reasons, as they appear in protocol.Gap.Reason.
const (
	ReasonQuota     = "spool quota"
	ReasonDiskFloor = "disk free floor"
)

const (
	// gapReserve is room kept for the gap record when batches are dropped:
	// the record header plus a generous bound on the JSON of a protocol.Gap.
	gapReserve = headerLen + 512
	// dropSlackDiv makes a drop free 1/dropSlackDiv of the limit beyond what
	// the new batch needs, so that a spool that stays full drops (and
	// reports a gap) every few dozen appends rather than on every one.
	dropSlackDiv = 32
	// gcInterval is how often value-log GC runs when nothing triggers it.
	gcInterval = 5 * time.Minute
	// memTableSize is Badger's memtable size (see Open).
	memTableSize = 64 << 10
	// compactCheck is how often the level-0 table count is checked, and
	// l0CompactAt the count that triggers a compaction (Flatten leaves
	// level 0 alone below 3 tables with NumLevelZeroTables 2).
	compactCheck    = 5 * time.Second
	compactCheckOps = 256
	l0CompactAt     = 3
	// gcAfterBytes of acknowledged or dropped data trigger a value-log GC.
	gcAfterBytes = 64 << 20
	// diskRefresh bounds how stale the free-space reading may be.
	diskRefresh = time.Second
)

// Errors returned by the Queue. Callers classify them with errors.Is.
var (
	// ErrTooLarge means one batch cannot fit in the spool even when every
	// other batch is dropped.
	ErrTooLarge = errors.New("spool: batch larger than the spool quota")
	// ErrDiskFull means the free-space floor leaves no room for the batch
	// even when every other batch is dropped.
	ErrDiskFull = errors.New("spool: no room above the disk free-space floor")
	// ErrNotFound means no batch with the requested seq is stored.
	ErrNotFound = errors.New("spool: batch not found")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("spool: closed")
)

// Options configure a Queue. The zero value is usable.
type Options struct {
	// MaxBytes is the quota on stored batch bytes (record header plus
	// payload). Default DefaultMaxBytes.
	MaxBytes int64
	// MinFreeBytes is a floor on the free space of the spool's filesystem;
	// the spool drops its oldest batches rather than go below it. Zero
	// disables the floor. The floor is approximate: it counts the spool's
	// deleted-but-not-yet-reclaimed data as free, since compaction and
	// value-log GC give it back.
	MinFreeBytes int64
	// SyncInterval is the group-commit interval: writes are not fsynced
	// one by one but all together every SyncInterval. Default
	// DefaultSyncInterval; a negative value fsyncs every write.
	SyncInterval time.Duration
	// Logger receives warnings about drops, GC and Badger itself. Default
	// discards.
	Logger *slog.Logger
	// Now is the clock used for gap detection times. Default time.Now.
	Now func() time.Time

	// diskSpace replaces the free-space probe in tests.
	diskSpace func(dir string) (free, used uint64, err error)
}

// Stats describe the spool. They are kept in memory, so reading them is
// cheap; Open rebuilds them from the stored index. Counters (Appended,
// Acked, Dropped, ...) count since Open.
type Stats struct {
	Epoch       uint64
	Depth       int       // batches stored (not yet acknowledged)
	Bytes       int64     // stored batch bytes, the quantity MaxBytes bounds
	OldestSeq   uint64    // 0 when empty
	NewestSeq   uint64    // 0 when empty
	OldestFirst time.Time // data timestamp of the oldest stored batch; zero when empty or unknown

	Appended     uint64 // batches appended, gap batches included
	Acked        uint64 // batches deleted by Ack
	Dropped      uint64 // data batches dropped by the quota or the floor
	DroppedBytes uint64 // their bytes
	Gaps         uint64 // gap batches appended
}

// Queue is a durable FIFO of batches. Open one per spool directory.
//
// # Contract
//
// Concurrency: every method is safe for concurrent use. The normal case is
// one appender (the collectors, through one goroutine or several) and a few
// readers and ackers (the uplink). Appends and acks are serialized with each
// other; reads run concurrently with everything and each sees a consistent
// snapshot. After Close every method returns ErrClosed.
//
// Ownership: Append copies the payload before it returns, so the caller may
// reuse b.Payload. Batches returned by Oldest, Newest and Get are fresh
// copies the caller owns and may modify.
//
// Ordering: Append assigns Seq values that increase by one per stored batch
// (gap batches take seqs too) and are never reused, not even after a crash
// or when batches are dropped. Oldest returns ascending seqs, Newest
// descending. A batch is visible to readers once Append has returned.
//
// Acknowledgement: when Ack returns nil the batches are deleted and will
// never be returned again. Acking a seq that is not stored (already acked,
// dropped, or never assigned) is not an error.
//
// Drops: when storing a batch would exceed MaxBytes or go below
// MinFreeBytes, the oldest stored batches, whether sent or not, are deleted
// in the same transaction that appends one KindGap batch describing them
// (see protocol.Gap) and then the new batch. At most one gap batch is
// stored at a time: a new gap supersedes the stored one, deleting it and
// carrying over its losses and its FromSeq, so a gap's range always starts
// where the unreported losses start. For the aggregator this means: a gap
// replaces an earlier gap of the same epoch with the same FromSeq, and the
// seq of a superseded gap batch may be covered by no gap. A batch in flight
// when it is dropped may reach the aggregator and still be counted by the
// gap; gaps may over-report, never under-report.
//
// Durability: Append and Ack commit before returning. A process crash
// (including kill -9) loses nothing that was committed. A power loss or
// kernel crash may lose the commits of the last SyncInterval; even then the
// next-seq record and the batches it covers are lost together, so seqs
// handed out after recovery never collide with seqs already delivered and
// acknowledged.
type Queue struct {
	db    *badger.DB
	opts  Options
	log   *slog.Logger
	dir   string
	epoch atomic.Uint64 // changes only by NewEpoch

	// life guards closed; methods hold it shared, Close exclusively.
	life   sync.RWMutex
	closed bool

	// mu serializes writers and guards everything below.
	mu        sync.Mutex
	next      uint64
	order     *list.List // of entry, ascending seq
	bySeq     map[uint64]*list.Element
	gaps      map[uint64]struct{} // seqs of the stored gap batches
	bytes     int64
	stats     Stats // counters only; the rest is derived
	gcDebt    int64 // bytes deleted since the last GC kick
	spaceAt   time.Time
	spaceSeen int64 // free + used bytes at spaceAt

	gcKick chan struct{}
	done   chan struct{}

	// unsynced is set after every commit (and maintenance) and cleared by
	// the group commit before it syncs, so an idle spool does not fsync.
	unsynced atomic.Bool

	// ops counts writes, to look at level 0 every compactCheckOps of them:
	// under load memtables fill faster than compactCheck.
	ops         atomic.Uint64
	compactKick chan struct{}
	wg          sync.WaitGroup
}

// Open opens the spool in dir, creating it if needed. A new spool gets a
// fresh random epoch; an existing one keeps its epoch and continues its
// sequence.
func Open(dir string, opts Options) (*Queue, error) {
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxBytes < 0 || opts.MinFreeBytes < 0 {
		return nil, fmt.Errorf("spool: open %s: negative MaxBytes or MinFreeBytes", dir)
	}
	if opts.SyncInterval == 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.diskSpace == nil {
		opts.diskSpace = diskSpace
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", dir, err)
	}
	if opts.MinFreeBytes > 0 {
		if _, _, err := opts.diskSpace(dir); err != nil {
			return nil, fmt.Errorf("spool: open %s: %w", dir, err)
		}
	}

	bopts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{opts.Logger}).
		WithLoggingLevel(badger.WARNING).
		WithSyncWrites(opts.SyncInterval < 0).
		WithNumVersionsToKeep(1).
		WithDetectConflicts(false). // the Queue serializes its writers
		WithMetricsEnabled(false).
		// Small memtables: payloads of 1 KB or more are in the value log,
		// so the LSM holds keys, value pointers, index records and small
		// batches (gaps, small events or inventory deltas). A 16 MB
		// memtable took days to fill at a realtime cycle's pace, and until
		// it was flushed and compacted Badger had no discard statistics
		// and value-log GC reclaimed nothing: acknowledged batches stayed
		// on disk. 64 KB fills in minutes of 5,000-VM collection, or
		// within seconds while a backlog drains.
		WithMemTableSize(memTableSize).
		WithNumMemtables(2).
		WithBaseTableSize(4 << 20).
		WithNumLevelZeroTables(2).
		// No background compactors: each wakes every 50 ms, which was
		// most of an idle agent's CPU. maintainLoop compacts instead,
		// when level 0 has l0CompactAt tables (see compactIfNeeded).
		WithNumCompactors(0).
		// Badger blocks memtable flushes (and then every write) at this
		// many level-0 tables until a compactor makes room; there are
		// none, and one Append dropping 12,000 small batches or a
		// value-log rewrite flushes more than the default 15 before
		// maintainLoop runs: the spool hung for good. Level 0 may grow
		// instead; maintainLoop brings it down.
		WithNumLevelZeroTablesStall(1 << 20).
		WithValueLogFileSize(32 << 20).
		WithValueThreshold(1 << 10). // payloads go to the value log, keys stay small
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20)
	db, err := badger.Open(bopts)
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", dir, err)
	}
	q := &Queue{
		db:     db,
		opts:   opts,
		log:    opts.Logger,
		dir:    dir,
		gcKick: make(chan struct{}, 1),

		compactKick: make(chan struct{}, 1),
		done:        make(chan struct{}),
	}
	if err := q.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("spool: open %s: %w", dir, err)
	}
	if opts.SyncInterval > 0 {
		q.wg.Add(1)
		go q.syncLoop()
	}
	q.wg.Add(1)
	go q.maintainLoop()
	return q, nil
}

// load reads the epoch and next seq, creating them for a new spool, and
// rebuilds the in-memory index.
func (q *Queue) load() error {
	err := q.db.Update(func(txn *badger.Txn) error {
		epoch, err := getU64(txn, keyEpoch)
		if err != nil {
			return err
		}
		if epoch != 0 {
			q.epoch.Store(epoch)
			q.next, err = getU64(txn, keyNext)
			return err
		}
		for q.epoch.Load() == 0 {
			var b [8]byte
			rand.Read(b[:]) // never fails
			q.epoch.Store(binary.BigEndian.Uint64(b[:]))
		}
		q.next = 1
		if err := txn.Set(keyEpoch, u64(q.epoch.Load())); err != nil {
			return err
		}
		return txn.Set(keyNext, u64(q.next))
	})
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	if q.next == 0 {
		return errors.New("load state: missing next seq")
	}
	return q.loadIndex()
}

func getU64(txn *badger.Txn, key []byte) (uint64, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var v uint64
	err = item.Value(func(b []byte) error {
		if len(b) != 8 {
			return fmt.Errorf("malformed value of %q", key)
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	})
	return v, err
}

// loadIndex rebuilds the in-memory index from the 'i' entries and
// reconciles it with the batch keys: a transaction too big for Badger is
// committed in parts, so a crash may leave a batch without its index entry
// or the reverse.
func (q *Queue) loadIndex() error {
	idx := map[uint64]entry{}
	var batches []uint64
	err := q.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte{prefixIndex}
		it := txn.NewIterator(opts)
		for it.Rewind(); it.Valid(); it.Next() {
			seq := keySeq(it.Item().Key())
			err := it.Item().Value(func(v []byte) error {
				e, err := decodeIndex(seq, v)
				idx[seq] = e
				return err
			})
			if err != nil {
				it.Close()
				return err
			}
		}
		it.Close()
		it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixBatch}}) // keys only
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			batches = append(batches, keySeq(it.Item().Key()))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load index: %w", err)
	}

	var fix []func(*badger.Txn) error
	q.order, q.bySeq, q.gaps, q.bytes = list.New(), map[uint64]*list.Element{}, map[uint64]struct{}{}, 0
	for _, seq := range batches {
		e, ok := idx[seq]
		if !ok {
			b, err := q.get(seq)
			if err != nil {
				return fmt.Errorf("load index: %w", err)
			}
			e = entryOf(seq, b)
			fix = append(fix, func(txn *badger.Txn) error { return txn.Set(seqKey(prefixIndex, seq), encodeIndex(e)) })
		}
		delete(idx, seq)
		q.push(e)
		if seq >= q.next {
			q.next = seq + 1
			fix = append(fix, func(txn *badger.Txn) error { return txn.Set(keyNext, u64(q.next)) })
		}
	}
	for seq := range idx {
		fix = append(fix, func(txn *badger.Txn) error { return txn.Delete(seqKey(prefixIndex, seq)) })
	}
	if len(fix) > 0 {
		q.log.Warn("spool: repairing index after an interrupted write", "entries", len(fix))
		w := q.writer()
		defer w.discard()
		for _, f := range fix {
			if err := w.do(f); err != nil {
				return fmt.Errorf("repair index: %w", err)
			}
		}
		if err := w.commit(); err != nil {
			return fmt.Errorf("repair index: %w", err)
		}
	}
	return nil
}

func entryOf(seq uint64, b *protocol.Batch) entry {
	return entry{seq: seq, kind: b.Kind, size: int64(headerLen + len(b.Payload)), first: b.First, last: b.Last}
}

// Epoch returns the spool's epoch, fixed when the spool was created.
func (q *Queue) Epoch() uint64 { return q.epoch.Load() }

// NewEpoch moves the spool to a fresh random epoch, synced to disk before
// it returns. Stored batches keep their seqs and are read back under the new
// epoch. The uplink calls it when the aggregator reports that an (epoch,
// seq) it already holds came with different data: the spool was rolled back
// (a VM snapshot reverted, or commits lost to a power failure) and is
// reusing seqs.
func (q *Queue) NewEpoch() (uint64, error) {
	q.life.RLock()
	defer q.life.RUnlock()
	if q.closed {
		return 0, ErrClosed
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	old := q.epoch.Load()
	var epoch uint64
	for epoch == 0 || epoch == old {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("spool: new epoch: %w", err)
		}
		epoch = binary.BigEndian.Uint64(b[:])
	}
	if err := q.db.Update(func(txn *badger.Txn) error { return txn.Set(keyEpoch, u64(epoch)) }); err != nil {
		return 0, q.failed(fmt.Errorf("spool: new epoch: %w", err))
	}
	if err := q.db.Sync(); err != nil {
		return 0, q.failed(fmt.Errorf("spool: new epoch: sync: %w", err))
	}
	q.epoch.Store(epoch)
	q.log.Warn("spool moved to a new epoch", "old", old, "new", epoch)
	return epoch, nil
}

// Append assigns b.Epoch and b.Seq and stores the batch. If the quota or
// the free-space floor would be exceeded it first drops the oldest batches
// and appends a gap batch describing them (see the Queue contract). It
// returns an error wrapping ErrTooLarge or ErrDiskFull if b cannot fit even
// in an empty spool; nothing is dropped then.
func (q *Queue) Append(b *protocol.Batch) error {
	if b == nil {
		return errors.New("spool: append: nil batch")
	}
	q.life.RLock()
	defer q.life.RUnlock()
	if q.closed {
		return ErrClosed
	}
	rec := encodeRecord(b)
	size := int64(len(rec))

	q.mu.Lock()
	defer q.mu.Unlock()
	if size > q.opts.MaxBytes {
		return fmt.Errorf("spool: append: %d-byte batch, quota %d bytes: %w", size, q.opts.MaxBytes, ErrTooLarge)
	}
	limit, reason := q.limit()
	var (
		drops  []entry // the oldest batches, dropped to make room
		folded []entry // stored gap batches the new gap supersedes
		gapRec []byte
		gapEnt entry
	)
	if q.bytes+size > limit {
		var err error
		if drops, err = q.planDrops(size, limit, reason); err != nil {
			return err
		}
		for seq := range q.gaps {
			if seq > drops[len(drops)-1].seq {
				folded = append(folded, q.bySeq[seq].Value.(entry))
			}
		}
	}

	w := q.writer()
	defer w.discard()
	seq := q.next
	if len(drops) > 0 {
		g, err := q.gapFor(w.txn, drops, folded, reason)
		if err != nil {
			return fmt.Errorf("spool: append: %w", err)
		}
		gb := &protocol.Batch{Kind: protocol.KindGap, First: g.Detected, Last: g.Detected, Codec: protocol.CodecNone}
		if gb.Payload, err = json.Marshal(g); err != nil {
			return fmt.Errorf("spool: append: encode gap: %w", err)
		}
		gapRec, gapEnt = encodeRecord(gb), entryOf(seq, gb)
		if err := q.put(w, seq, gapRec, gapEnt); err != nil {
			return fmt.Errorf("spool: append gap: %w", err)
		}
		for _, e := range slices.Concat(drops, folded) {
			err := w.do(func(txn *badger.Txn) error { return txn.Delete(seqKey(prefixBatch, e.seq)) })
			if err == nil {
				err = w.do(func(txn *badger.Txn) error { return txn.Delete(seqKey(prefixIndex, e.seq)) })
			}
			if err != nil {
				return q.failed(fmt.Errorf("spool: append: drop %d: %w", e.seq, err))
			}
		}
		seq++
	}
	ent := entryOf(seq, b)
	if err := q.put(w, seq, rec, ent); err != nil {
		return q.failed(fmt.Errorf("spool: append: %w", err))
	}
	if err := w.commit(); err != nil {
		return q.failed(fmt.Errorf("spool: append: commit: %w", err))
	}

	if len(drops) > 0 {
		var n, bytes uint64
		for _, e := range folded {
			q.remove(e.seq)
		}
		for _, e := range drops {
			q.remove(e.seq)
			if e.kind != protocol.KindGap {
				n++
				bytes += uint64(e.size)
			}
		}
		q.stats.Dropped += n
		q.stats.DroppedBytes += bytes
		q.stats.Gaps++
		q.stats.Appended++
		q.push(gapEnt)
		q.log.Warn("spool: dropped oldest batches", "reason", reason,
			"batches", n, "bytes", bytes, "from_seq", drops[0].seq, "to_seq", drops[len(drops)-1].seq)
		q.debt(int64(bytes))
	}
	q.push(ent)
	q.stats.Appended++
	q.next = seq + 1
	b.Epoch, b.Seq = q.epoch.Load(), seq
	return nil
}

// put writes one batch record, its index entry and the next seq.
func (q *Queue) put(w *writer, seq uint64, rec []byte, e entry) error {
	if err := w.do(func(txn *badger.Txn) error { return txn.Set(seqKey(prefixBatch, seq), rec) }); err != nil {
		return err
	}
	if err := w.do(func(txn *badger.Txn) error { return txn.Set(seqKey(prefixIndex, seq), encodeIndex(e)) }); err != nil {
		return err
	}
	return w.do(func(txn *badger.Txn) error { return txn.Set(keyNext, u64(seq+1)) })
}

// failed handles a write that may have been partly committed: the index is
// rebuilt from disk so that memory matches what is stored.
func (q *Queue) failed(err error) error {
	if lerr := q.load(); lerr != nil {
		q.log.Error("spool: reload after failed write", "err", lerr)
	}
	return err
}

// limit returns the most stored bytes allowed now, and the reason to give
// if batches must be dropped to respect it.
func (q *Queue) limit() (int64, string) {
	limit, reason := q.opts.MaxBytes, ReasonQuota
	if q.opts.MinFreeBytes <= 0 {
		return limit, reason
	}
	if time.Since(q.spaceAt) > diskRefresh {
		free, used, err := q.opts.diskSpace(q.dir)
		if err != nil {
			q.log.Warn("spool: free space unknown, floor not enforced", "err", err)
			return limit, reason
		}
		// free+used does not change as the spool writes or reclaims, so
		// a reading up to diskRefresh old is still accurate for it.
		q.spaceSeen, q.spaceAt = int64(free+used), time.Now()
	}
	if floor := q.spaceSeen - q.opts.MinFreeBytes; floor < limit {
		limit, reason = floor, ReasonDiskFloor
		if q.bytes > limit/2 {
			q.kickGC()
		}
	}
	return limit, reason
}

// planDrops picks the oldest batches to drop so that a batch of size bytes
// and a gap record fit under limit, with some slack.
func (q *Queue) planDrops(size, limit int64, reason string) ([]entry, error) {
	target := limit - size - gapReserve
	if target < 0 {
		if reason == ReasonDiskFloor {
			return nil, fmt.Errorf("spool: append: %d-byte batch, %d bytes above the floor: %w", size, max(limit, 0), ErrDiskFull)
		}
		return nil, fmt.Errorf("spool: append: %d-byte batch and a gap record, quota %d bytes: %w", size, limit, ErrTooLarge)
	}
	target = max(target-limit/dropSlackDiv, 0)
	var drops []entry
	stored := q.bytes
	for el := q.order.Front(); el != nil && stored > target; el = el.Next() {
		e := el.Value.(entry)
		drops = append(drops, e)
		stored -= e.size
	}
	return drops, nil
}

// gapFor describes the dropped batches. The stored gap batches among them
// and those in folded are superseded: their losses are carried over and the
// range extended back to cover theirs.
func (q *Queue) gapFor(txn *badger.Txn, drops, folded []entry, reason string) (protocol.Gap, error) {
	g := protocol.Gap{
		Epoch:    q.epoch.Load(),
		FromSeq:  drops[0].seq,
		ToSeq:    drops[len(drops)-1].seq,
		Reason:   reason,
		Detected: q.opts.Now().UnixMilli(),
	}
	span := func(first, last int64) {
		if first != 0 && (g.First == 0 || first < g.First) {
			g.First = first
		}
		if last > g.Last {
			g.Last = last
		}
	}
	for _, e := range slices.Concat(drops, folded) {
		if e.kind != protocol.KindGap {
			g.Batches++
			g.Bytes += uint64(e.size)
			span(e.first, e.last)
			continue
		}
		var old protocol.Gap
		item, err := txn.Get(seqKey(prefixBatch, e.seq))
		if err != nil {
			return g, fmt.Errorf("read gap %d: %w", e.seq, err)
		}
		err = item.Value(func(v []byte) error {
			b, err := decodeRecord(v, q.epoch.Load(), e.seq)
			if err != nil {
				return err
			}
			return json.Unmarshal(b.Payload, &old)
		})
		if err != nil {
			return g, fmt.Errorf("read gap %d: %w", e.seq, err)
		}
		g.FromSeq = min(g.FromSeq, old.FromSeq)
		g.Batches += old.Batches
		g.Bytes += old.Bytes
		span(old.First, old.Last)
	}
	return g, nil
}

func (q *Queue) push(e entry) {
	q.bySeq[e.seq] = q.order.PushBack(e)
	q.bytes += e.size
	if e.kind == protocol.KindGap {
		q.gaps[e.seq] = struct{}{}
	}
}

func (q *Queue) remove(seq uint64) (entry, bool) {
	el, ok := q.bySeq[seq]
	if !ok {
		return entry{}, false
	}
	e := q.order.Remove(el).(entry)
	delete(q.bySeq, seq)
	delete(q.gaps, seq)
	q.bytes -= e.size
	return e, true
}

// Ack deletes the batches with the given seqs. Seqs that are not stored
// are ignored.
func (q *Queue) Ack(seqs ...uint64) error {
	q.life.RLock()
	defer q.life.RUnlock()
	if q.closed {
		return ErrClosed
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	w := q.writer()
	defer w.discard()
	var found []uint64
	for _, seq := range seqs {
		if _, ok := q.bySeq[seq]; !ok {
			continue
		}
		found = append(found, seq)
		err := w.do(func(txn *badger.Txn) error { return txn.Delete(seqKey(prefixBatch, seq)) })
		if err == nil {
			err = w.do(func(txn *badger.Txn) error { return txn.Delete(seqKey(prefixIndex, seq)) })
		}
		if err != nil {
			return q.failed(fmt.Errorf("spool: ack %d: %w", seq, err))
		}
	}
	if len(found) == 0 {
		return nil
	}
	if err := w.commit(); err != nil {
		return q.failed(fmt.Errorf("spool: ack: commit: %w", err))
	}
	var bytes int64
	for _, seq := range found {
		if e, ok := q.remove(seq); ok {
			bytes += e.size
			q.stats.Acked++
		}
	}
	q.debt(bytes)
	return nil
}

// debt records deleted bytes and kicks value-log GC when enough piled up.
func (q *Queue) debt(bytes int64) {
	q.gcDebt += bytes
	if q.gcDebt >= gcAfterBytes {
		q.gcDebt = 0
		q.kickGC()
	}
}

// Get returns the batch with the given seq, or an error wrapping
// ErrNotFound.
func (q *Queue) Get(seq uint64) (*protocol.Batch, error) {
	q.life.RLock()
	defer q.life.RUnlock()
	if q.closed {
		return nil, ErrClosed
	}
	return q.get(seq)
}

func (q *Queue) get(seq uint64) (*protocol.Batch, error) {
	var b *protocol.Batch
	err := q.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(seqKey(prefixBatch, seq))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		b, err = q.decode(item)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("spool: get %d: %w", seq, err)
	}
	return b, nil
}

// Oldest returns up to n stored batches with seq > after, in ascending seq
// order. Pass after = 0 to start from the oldest.
func (q *Queue) Oldest(n int, after uint64) ([]*protocol.Batch, error) {
	if n <= 0 || after == math.MaxUint64 {
		return nil, nil
	}
	return q.scan(n, seqKey(prefixBatch, after+1), false)
}

// Newest returns up to n stored batches in descending seq order, starting
// with the newest.
func (q *Queue) Newest(n int) ([]*protocol.Batch, error) {
	if n <= 0 {
		return nil, nil
	}
	return q.scan(n, seqKey(prefixBatch, math.MaxUint64), true)
}

func (q *Queue) scan(n int, from []byte, reverse bool) ([]*protocol.Batch, error) {
	q.life.RLock()
	defer q.life.RUnlock()
	if q.closed {
		return nil, ErrClosed
	}
	var out []*protocol.Batch
	err := q.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte{prefixBatch}
		opts.Reverse = reverse
		opts.PrefetchSize = min(n, opts.PrefetchSize)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(from); it.Valid() && len(out) < n; it.Next() {
			b, err := q.decode(it.Item())
			if err != nil {
				return err
			}
			out = append(out, b)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: read: %w", err)
	}
	return out, nil
}

// decode copies a batch out of Badger, whose value buffers are only valid
// inside the transaction.
func (q *Queue) decode(item *badger.Item) (*protocol.Batch, error) {
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, err
	}
	return decodeRecord(v, q.epoch.Load(), keySeq(item.Key()))
}

// Stats returns the spool's current statistics.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.stats
	s.Epoch = q.epoch.Load()
	s.Depth = q.order.Len()
	s.Bytes = q.bytes
	if front := q.order.Front(); front != nil {
		oldest := front.Value.(entry)
		s.OldestSeq = oldest.seq
		s.NewestSeq = q.order.Back().Value.(entry).seq
		if oldest.first != 0 {
			s.OldestFirst = time.UnixMilli(oldest.first)
		}
	}
	return s
}

// Close stops the background work, syncs the spool to disk and closes it.
// Further calls return ErrClosed; so does every other method.
func (q *Queue) Close() error {
	q.life.Lock()
	defer q.life.Unlock()
	if q.closed {
		return ErrClosed
	}
	q.closed = true
	close(q.done)
	q.wg.Wait()
	serr := q.db.Sync()
	if err := q.db.Close(); err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("spool: close: sync: %w", serr)
	}
	return nil
}

// syncLoop is the group commit: one fsync per interval covers every write
// made since the last one.
func (q *Queue) syncLoop() {
	defer q.wg.Done()
	t := time.NewTicker(q.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-q.done:
			return
		case <-t.C:
			if !q.unsynced.Swap(false) {
				continue // nothing committed since the last sync
			}
			if err := q.db.Sync(); err != nil {
				q.unsynced.Store(true)
				q.log.Warn("spool: sync", "err", err)
			}
		}
	}
}

func (q *Queue) kickCompact() {
	select {
	case q.compactKick <- struct{}{}:
	default:
	}
}

func (q *Queue) kickGC() {
	select {
	case q.gcKick <- struct{}{}:
	default:
	}
}

// maintainLoop keeps the LSM compacted and runs value-log GC: compaction
// when level 0 fills (checked every compactCheck and every
// compactCheckOps writes), GC after a compaction,
// every gcInterval and when kicked. GC rewrites value-log files until none
// is at least half garbage; the discard statistics it goes by come from
// compactions, which is why the two are run together.
func (q *Queue) maintainLoop() {
	defer q.wg.Done()
	check := time.NewTicker(compactCheck)
	defer check.Stop()
	gc := time.NewTicker(gcInterval)
	defer gc.Stop()
	for {
		select {
		case <-q.done:
			return
		case <-check.C:
			if !q.compactIfNeeded() {
				continue
			}
		case <-q.compactKick:
			if !q.compactIfNeeded() {
				continue
			}
		case <-gc.C:
		case <-q.gcKick:
		}
		q.compactIfNeeded()
		q.valueLogGC()
		q.compactIfNeeded() // the rewrite wrote to the LSM too
		q.unsynced.Store(true)
	}
}

// compactIfNeeded compacts the LSM into one level when level 0 holds
// l0CompactAt tables or more, and reports whether it did. Flatten runs
// alongside writers (as Badger's own compactors do), so it does not take
// mu: a writer blocked inside Badger must never wait for it.
func (q *Queue) compactIfNeeded() bool {
	levels := q.db.Levels()
	if len(levels) == 0 || levels[0].NumTables < l0CompactAt {
		return false
	}
	if err := q.db.Flatten(1); err != nil {
		q.log.Warn("spool: compaction", "err", err)
		return false
	}
	return true
}

// valueLogGC rewrites value-log files until none is half garbage. Each
// rewrite (one 32 MB file, well under a second) holds mu, so no Queue
// write runs meanwhile: Badger's GC reads the memtable's version without
// synchronisation (a race -race reports in badger v4.9 when writes run
// concurrently). Writers get the lock between files.
func (q *Queue) valueLogGC() {
	for {
		q.mu.Lock()
		err := q.db.RunValueLogGC(0.5)
		q.mu.Unlock()
		if err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				q.log.Warn("spool: value log gc", "err", err)
			}
			return
		}
		select {
		case <-q.done:
			return
		default:
		}
	}
}

// writer is a write transaction that commits and starts over when Badger
// says it is too big, so that dropping or acking thousands of batches works.
// Such a write is not atomic; loadIndex repairs what a crash between the
// parts leaves behind, and the order of operations in Append (gap first,
// then drops, then the batch) makes a partial write over-report a loss
// rather than hide one.
type writer struct {
	q   *Queue
	txn *badger.Txn
}

func (q *Queue) writer() *writer { return &writer{q: q, txn: q.db.NewTransaction(true)} }

func (w *writer) do(op func(*badger.Txn) error) error {
	if w.q.ops.Add(1)%compactCheckOps == 0 {
		w.q.kickCompact()
	}
	err := op(w.txn)
	if !errors.Is(err, badger.ErrTxnTooBig) {
		return err
	}
	if err := w.txn.Commit(); err != nil {
		return err
	}
	w.q.unsynced.Store(true)
	w.txn = w.q.db.NewTransaction(true)
	return op(w.txn)
}

func (w *writer) commit() error {
	err := w.txn.Commit()
	w.q.unsynced.Store(true) // also on error: part of it may have landed
	return err
}

func (w *writer) discard() { w.txn.Discard() }
