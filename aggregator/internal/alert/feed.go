package alert

import (
	"context"
	"errors"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/realtime"
)

// Hub is the realtime hub as the engine uses it: *realtime.Hub.
type Hub interface {
	// ID names this replica's hub: the Origin of the batches it ingested.
	ID() string
	// Feed opens a feed of every batch the hub dispatches.
	Feed(buffer int) *realtime.Feed
}

// feedBuffer is the batches the engine's feed holds; beyond it the hub
// drops the feed (and Consume opens another).
const feedBuffer = 4096

// Consume offers the engine every samples batch this replica commits, as
// the realtime hub publishes it after COMMIT, until ctx ends. Batches that
// other replicas ingested (relayed to this hub) are left to those
// replicas' engines: each site is evaluated where its agent is connected.
// A feed the hub drops for falling behind is reopened; what it missed is
// counted (Stats.FeedDrops) and not evaluated.
func (e *Engine) Consume(ctx context.Context, h Hub) error {
	for ctx.Err() == nil {
		f := h.Feed(feedBuffer)
		if err := e.pump(ctx, h.ID(), f); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) pump(ctx context.Context, origin string, f *realtime.Feed) error {
	defer f.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.Done():
			if errors.Is(f.Err(), realtime.ErrClosed) {
				return nil
			}
			e.Stats.FeedDrops.Add(1)
			e.log.Warn("alert engine: realtime feed dropped; reopening", "err", f.Err())
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			return nil
		case b := <-f.C():
			if b.Origin == origin && b.Samples != nil {
				e.offer(offered{site: b.Site, p: b.Samples, at: b.Committed})
			}
		}
	}
}
