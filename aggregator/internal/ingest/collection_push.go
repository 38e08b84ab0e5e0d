package ingest

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/collection"
	"github.com/vmpulse/vmpulse/protocol"
)

// Collection settings (PUT /system/settings, group "collection"; package
// collection) reach the agents of a Cluster's replica in two ways:
//
//   - the Welcome of every connection carries the settings in force;
//   - a change is announced on collection.Channel at the COMMIT of the
//     write, and every replica then sends protocol.CommandApplyCollection
//     to each agent connected to it that was sent an older revision.
//
// A replica also checks the settings' revision every heartbeat interval
// and after its listening connection (re)connects, so an announcement
// missed while that connection was down, a Welcome whose read failed or a
// full command queue is made good within one interval. Without a Cluster
// (no database pool) nothing is pushed: agents keep their own
// configuration.

// welcomeCollection is the collection settings for ac's Welcome: nil
// without a Cluster or while none are set. A failed read sends none (the
// agent keeps what it runs with) and asks for the periodic check at once.
func (s *Server) welcomeCollection(ctx context.Context, ac *agentConn) *protocol.CollectionSettings {
	if s.cl == nil || s.cl.cfg.Pool == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cs, err := collection.Current(rctx, s.cl.cfg.Pool)
	if err != nil {
		ac.log.Warn("collection settings unreadable; welcome without them, sent once readable", "err", err)
		s.cl.requestCollection()
		return nil
	}
	if cs != nil {
		storeMax(&ac.collectionRev, cs.Revision)
	}
	return cs
}

// requestCollection asks the push loop to check the settings now. It
// never blocks.
func (c *cluster) requestCollection() {
	select {
	case c.collectionReq <- struct{}{}:
	default:
	}
}

// runCollectionPush sends changed collection settings to this replica's
// agents until ctx ends: when asked (an announcement, a reconnected
// listener, a failed Welcome read) and every heartbeat interval.
func (s *Server) runCollectionPush(ctx context.Context) {
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.cl.collectionReq:
		case <-t.C:
		}
		err := s.pushCollection(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			failing = true
			s.log.Warn("collection settings unreadable; agents keep the ones they have, retrying every heartbeat interval", "err", err)
		case err == nil && failing:
			failing = false
			s.log.Info("collection settings readable again")
		}
	}
}

// pushCollection reads the collection settings and queues them for every
// agent connected here that was sent an older revision.
func (s *Server) pushCollection(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	cs, err := collection.Current(rctx, s.cl.cfg.Pool)
	cancel()
	if err != nil || cs == nil {
		return err
	}
	s.mu.Lock()
	conns := make([]*agentConn, 0, len(s.conns))
	for _, ac := range s.conns {
		conns = append(conns, ac)
	}
	s.mu.Unlock()
	cmd := protocol.Command{Name: protocol.CommandApplyCollection, Collection: cs}
	sent, full := 0, 0
	for _, ac := range conns {
		if ac.collectionRev.Load() >= cs.Revision {
			continue
		}
		// Queued before the Welcome is written, a command is sent after
		// it; an agent ignores a revision it already has.
		select {
		case ac.commands <- cmd:
			storeMax(&ac.collectionRev, cs.Revision)
			sent++
		default:
			full++
		}
	}
	if sent > 0 {
		s.log.Info("collection settings sent to the agents connected here", "revision", cs.Revision, "agents", sent)
	}
	if full > 0 {
		s.log.Warn("collection settings not queued for agents whose command queue is full; retried at the next check",
			"revision", cs.Revision, "agents", full)
	}
	return nil
}

// storeMax raises v to n if n is larger.
func storeMax(v *atomic.Int64, n int64) {
	for {
		cur := v.Load()
		if n <= cur || v.CompareAndSwap(cur, n) {
			return
		}
	}
}
