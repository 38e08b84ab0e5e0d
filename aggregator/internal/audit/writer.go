package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit: writer closed")

// WriterOptions configure a Writer.
type WriterOptions struct {
	Logger *slog.Logger
	// QueueSize bounds the records waiting to be written; Append blocks
	// (until its context ends) when the queue is full. 0 means 4096.
	QueueSize int
	// BatchSize is the most records written in one transaction. 0 means 256.
	BatchSize int
	// Retries is how many times a write the database could not take (it is
	// unreachable, busy or slow) is retried before its records are dropped,
	// logged and counted. A write the database refuses for its content is
	// not retried as is: its batch is written again record by record. 0
	// means 30, which with the backoff below rides out about two minutes
	// of a database restart or failover (the queue keeps filling meanwhile,
	// up to QueueSize).
	Retries int
	// RetryDelay is the first backoff between retries, doubled each time
	// up to maxRetryDelay. 0 means 200ms.
	RetryDelay time.Duration
}

// Writer appends records to the hash-chained operation log in the
// background.
//
// Contract: Append, Flush and Stats are safe for concurrent use. Append only
// queues; a record is durable once Flush returns nil, or once Close returns.
// Close stops accepting records and drains the queue, so a clean shutdown
// loses nothing. Several Writers (on several aggregators) may append to the
// same database: the chain head row serializes them.
//
// No record is lost for what it contains: Append escapes every text field
// (see SanitizeText) before the record is hashed, and if PostgreSQL still
// refuses a batch, its records are written one by one, so a record the
// database refuses never takes its neighbours with it. Records that cannot
// be written at all are logged with their fields and counted in
// WriterStats.Failed.
type Writer struct {
	pool *pgxpool.Pool
	opts WriterOptions
	log  *slog.Logger

	queue  chan item
	mu     sync.RWMutex // guards closed against concurrent Append/Close
	closed bool
	done   chan struct{}

	written   atomic.Uint64
	failed    atomic.Uint64
	sanitized atomic.Uint64
	fallbacks atomic.Uint64
}

type item struct {
	rec   *Record
	flush chan struct{} // closed when everything queued before it is written
}

// WriterStats are a Writer's counters.
type WriterStats struct {
	Written uint64 // records stored
	// Failed counts records that could not be written: appended after
	// Close, dropped on a full queue, refused by the database even on
	// their own, or still failing when the database stayed unreachable.
	Failed uint64
	// Sanitized counts records stored with text escaped or cut by
	// SanitizeText (hostile headers, paths, names).
	Sanitized uint64
	// Fallbacks counts batches the database refused, written again one
	// record at a time.
	Fallbacks uint64
	Queued    int // records waiting
}

// NewWriter starts a Writer.
func NewWriter(pool *pgxpool.Pool, opts WriterOptions) *Writer {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4096
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 256
	}
	if opts.Retries <= 0 {
		opts.Retries = 30
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = 200 * time.Millisecond
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Writer{pool: pool, opts: opts, log: log, queue: make(chan item, opts.QueueSize), done: make(chan struct{})}
	go w.run()
	return w
}

// Append queues rec. Time defaults to now. It blocks only while the queue is
// full.
func (w *Writer) Append(ctx context.Context, rec Record) error {
	if rec.Time.IsZero() {
		rec.Time = time.Now()
	}
	if rec.normalize() {
		w.sanitized.Add(1)
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.failed.Add(1)
		w.log.Error("audit record after close dropped", "action", rec.Action, "request_id", rec.RequestID)
		return ErrClosed
	}
	select {
	case w.queue <- item{rec: &rec}:
		return nil
	case <-ctx.Done():
		w.failed.Add(1)
		w.log.Error("audit queue full; record dropped", "action", rec.Action, "request_id", rec.RequestID, "err", ctx.Err())
		return fmt.Errorf("audit: append: %w", ctx.Err())
	}
}

// Flush waits until every record queued before it has been written (or
// dropped after failing).
func (w *Writer) Flush(ctx context.Context) error {
	ch := make(chan struct{})
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return ErrClosed
	}
	select {
	case w.queue <- item{flush: ch}:
	case <-ctx.Done():
		w.mu.RUnlock()
		return fmt.Errorf("audit: flush: %w", ctx.Err())
	}
	w.mu.RUnlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit: flush: %w", ctx.Err())
	}
}

// Close stops accepting records and waits until the queue is drained or ctx
// ends.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit: close: %d records not written: %w", len(w.queue), ctx.Err())
	}
}

// Stats returns the writer's counters.
func (w *Writer) Stats() WriterStats {
	return WriterStats{Written: w.written.Load(), Failed: w.failed.Load(), Sanitized: w.sanitized.Load(),
		Fallbacks: w.fallbacks.Load(), Queued: len(w.queue)}
}

func (w *Writer) run() {
	defer close(w.done)
	var batch []*Record
	var flushes []chan struct{}
	for {
		it, ok := <-w.queue
		if !ok {
			return
		}
		batch, flushes = batch[:0], flushes[:0]
		add := func(it item) {
			if it.rec != nil {
				batch = append(batch, it.rec)
			} else {
				flushes = append(flushes, it.flush)
			}
		}
		add(it)
		// Take what is already queued, up to a batch.
	fill:
		for len(batch) < w.opts.BatchSize {
			select {
			case it, ok := <-w.queue:
				if !ok {
					break fill
				}
				add(it)
			default:
				break fill
			}
		}
		if len(batch) > 0 {
			w.write(batch)
		}
		for _, f := range flushes {
			close(f)
		}
	}
}

// write stores a batch. When the database refuses it for its content, the
// records are written one by one, so only the record that is refused on its
// own is lost (logged and counted). When the database stays unreachable,
// writing record by record could not help: the batch is dropped.
func (w *Writer) write(batch []*Record) {
	err := w.writeWithRetry(batch)
	if err == nil {
		w.written.Add(uint64(len(batch)))
		return
	}
	if len(batch) == 1 || unavailable(err) {
		for _, r := range batch {
			w.drop(r, err)
		}
		return
	}
	w.fallbacks.Add(1)
	w.log.Warn("audit batch refused; writing its records one by one", "records", len(batch), "err", err)
	for _, r := range batch {
		if err := w.writeWithRetry([]*Record{r}); err != nil {
			w.drop(r, err)
			continue
		}
		w.written.Add(1)
	}
}

// maxRetryDelay caps the backoff between retries of a write.
const maxRetryDelay = 5 * time.Second

// writeWithRetry appends batch to the chain, retrying (with backoff) while
// the failure is not the database refusing the data.
func (w *Writer) writeWithRetry(batch []*Record) error {
	delay := w.opts.RetryDelay
	var err error
	for attempt := 0; attempt <= w.opts.Retries; attempt++ {
		if attempt > 0 {
			time.Sleep(delay)
			delay = min(2*delay, maxRetryDelay)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = appendChain(ctx, w.pool, batch)
		cancel()
		if err == nil {
			return nil
		}
		if refused(err) {
			return err
		}
		w.log.Warn("audit write failed; retrying", "records", len(batch), "attempt", attempt+1, "err", err)
	}
	return err
}

// drop counts and logs a record that could not be written, with enough of
// its fields to reconstruct it from the log.
func (w *Writer) drop(r *Record, err error) {
	w.failed.Add(1)
	w.log.Error("audit record dropped: it could not be written", "time", r.Time, "source", r.Source,
		"actor_type", r.ActorType, "actor_id", r.ActorID, "actor_name", r.ActorName, "action", r.Action,
		"resource_type", r.ResourceType, "resource_id", r.ResourceID, "result", r.Result, "status", r.Status,
		"ip", r.IP, "user_agent", r.UserAgent, "request_id", r.RequestID, "summary", string(r.Summary), "err", err)
}

// refused reports whether PostgreSQL answered and refused the statement
// (bad data, a constraint): running it again unchanged cannot succeed.
func refused(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && !store.IsTransient(err)
}

// unavailable reports whether the database could not be reached or did not
// answer in time, so that writing the records one by one cannot help.
func unavailable(err error) bool {
	return !refused(err) && (store.IsTransient(err) || errors.Is(err, context.DeadlineExceeded))
}

// appendChain stores records as the next links of the chain, in one
// transaction holding the chain head's row lock.
func appendChain(ctx context.Context, pool *pgxpool.Pool, batch []*Record) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return appendInTx(ctx, tx, batch) })
}

// appendInTx links records to the chain and stores them inside tx, which
// holds (or here takes) the chain head's row lock until it ends.
func appendInTx(ctx context.Context, tx pgx.Tx, batch []*Record) error {
	var seq int64
	var prev []byte
	if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_chain WHERE id = 1 FOR UPDATE`).Scan(&seq, &prev); err != nil {
		return fmt.Errorf("audit: lock chain head: %w", err)
	}
	rows := make([][]any, 0, len(batch))
	for _, r := range batch {
		seq++
		r.Seq = seq
		r.PrevHash = prev
		r.Hash = chainHash(prev, r)
		prev = r.Hash
		rows = append(rows, []any{r.Seq, r.Time, r.Source, r.ActorType, r.ActorID, r.ActorName, r.Action, r.ResourceType, r.ResourceID,
			string(r.Summary), r.Result, r.Status, r.IP, r.UserAgent, r.RequestID, r.LatencyUS, r.PrevHash, r.Hash})
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_log"}, recordColumns, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("audit: insert: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE audit_chain SET seq = $1, hash = $2 WHERE id = 1`, seq, prev); err != nil {
		return fmt.Errorf("audit: move chain head: %w", err)
	}
	return nil
}

var recordColumns = []string{"seq", "time", "source", "actor_type", "actor_id", "actor_name", "action", "resource_type", "resource_id",
	"summary", "result", "status", "ip", "user_agent", "request_id", "latency_us", "prev_hash", "hash"}
