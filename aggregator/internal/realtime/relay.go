package realtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The relay between replicas. Every replica LISTENs on one channel on a
// connection of its own (outside the pool), and NOTIFYs there, after
// COMMIT, the batches its ingest published, as the samples themselves cut
// into notifications that fit PostgreSQL's 8000-byte payload limit
// (codec.go). A replica ignores its own notifications — it fanned those
// batches out locally already — and fans the others' out as if its own
// ingest had published them (but does not relay them again).
//
// Why the samples and not a pointer to them (batch coordinates for the
// receiver to read back): samples carry no batch id in the database, and
// an agent's poll is split into several batches over the same time range,
// so reading "the batch" back means reading more than it, and delivering
// samples twice; and every replica would query the database for every
// batch, whether or not anyone there watches it. Notifications cost ~7
// bytes per value (5.4 before base64); a 1,000-VM poll of 15 counters is
// ~20 notifications, sent in one round trip after the batch's commit.
//
// NOTIFY is at most once for a listener: what is notified while a
// replica's LISTEN connection is down is lost to it (Stats.RelayErrors
// counts the reconnections).

// runSender sends the batches queued by PublishSamples until ctx ends.
func (h *Hub) runSender(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-h.relayQ:
			h.relayValues.Add(-int64(b.values))
			if err := h.send(ctx, b); err != nil && ctx.Err() == nil {
				h.relayErrors.Add(1)
				h.log.Warn("relaying a batch to the other replicas failed", "site", b.Site, "err", err)
			}
		}
	}
}

// send notifies b, all of its notifications in one round trip.
func (h *Hub) send(ctx context.Context, b *Batch) error {
	payloads, skipped := encodeBatch(h.id, b, maxNotifyRaw)
	if skipped > 0 {
		h.relayOversize.Add(int64(skipped))
	}
	if len(payloads) == 0 {
		return nil
	}
	q := &pgx.Batch{}
	for _, p := range payloads {
		q.Queue(`SELECT pg_notify($1, $2)`, h.opts.Channel, p)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := h.opts.Pool.SendBatch(ctx, q).Close(); err != nil {
		return fmt.Errorf("realtime: notify: %w", err)
	}
	h.relaySent.Add(int64(len(payloads)))
	return nil
}

// runListener keeps a LISTEN connection until ctx ends, reconnecting with
// backoff when it is lost.
func (h *Hub) runListener(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for {
		started := time.Now()
		err := h.listen(ctx)
		h.relayUp.Store(false)
		if ctx.Err() != nil {
			return
		}
		h.relayErrors.Add(1)
		h.log.Warn("realtime relay: LISTEN connection lost; reconnecting (other replicas' samples are missed meanwhile)", "err", err, "retry_in", backoff)
		if time.Since(started) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// listen opens a connection, LISTENs and forwards notifications until the
// connection fails or ctx ends.
func (h *Hub) listen(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, h.opts.Pool.Config().ConnConfig.Copy())
	cancel()
	if err != nil {
		return fmt.Errorf("realtime: connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{h.opts.Channel}.Sanitize()); err != nil {
		return fmt.Errorf("realtime: listen: %w", err)
	}
	h.relayUp.Store(true)
	h.listeningOnce.Do(func() { close(h.listening) })
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("realtime: wait for notification: %w", err)
		}
		h.receive(n.Payload)
	}
}

// receive fans out a notification of another replica.
func (h *Hub) receive(payload string) {
	origin, b, err := decodeNotification(payload)
	if err != nil {
		h.relayErrors.Add(1)
		h.log.Warn("realtime relay: ignoring a malformed notification", "bytes", len(payload), "err", err)
		return
	}
	if origin == h.id {
		h.relayOwnSkipped.Add(1)
		return
	}
	h.relayReceived.Add(1)
	h.received.Add(1)
	b.values = cells(b.Samples)
	h.enqueue(b)
}

// WaitRelay waits until the relay listens (the replica receives the
// others' batches from then on), or ctx ends.
func (h *Hub) WaitRelay(ctx context.Context) error {
	if !h.opts.Relay {
		return errors.New("realtime: the relay is off")
	}
	select {
	case <-h.listening:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
