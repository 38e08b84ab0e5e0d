package ingest

import (
	"context"
	"sync"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// gate lets the maintenance mode of a restore stop every commit of this
// server (Pause) and start them again (Resume). A paused server commits
// nothing and so acknowledges nothing: each data stream's writer waits at
// the gate with its batch, its queue fills, the reader stops reading and
// QUIC flow control stops the agent, which keeps spooling; on Resume the
// held batches are committed and acknowledged in order. Heartbeats,
// enrollment and renewal go on (they are not batches). The zero gate is
// open.
type gate struct {
	mu       sync.Mutex
	paused   bool
	inflight int
	changed  chan struct{} // closed at the next change; nil until waited on
}

// wait returns a channel closed at the next change (g.mu held).
func (g *gate) wait() <-chan struct{} {
	if g.changed == nil {
		g.changed = make(chan struct{})
	}
	return g.changed
}

// notify wakes the waiters (g.mu held).
func (g *gate) notify() {
	if g.changed != nil {
		close(g.changed)
		g.changed = nil
	}
}

// enter waits until the gate is open and counts a commit in flight.
func (g *gate) enter(ctx context.Context) error {
	for {
		g.mu.Lock()
		if !g.paused {
			g.inflight++
			g.mu.Unlock()
			return nil
		}
		ch := g.wait()
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (g *gate) leave() {
	g.mu.Lock()
	g.inflight--
	if g.inflight == 0 {
		g.notify()
	}
	g.mu.Unlock()
}

// Pause stops this server's commits and returns once none is in flight (or
// with ctx's error; the server stays paused until Resume either way).
func (s *Server) Pause(ctx context.Context) error {
	g := &s.gate
	g.mu.Lock()
	g.paused = true
	for g.inflight > 0 {
		ch := g.wait()
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		g.mu.Lock()
	}
	g.mu.Unlock()
	s.log.Info("ingest paused: batches are held unacknowledged")
	return nil
}

// Resume lets the held batches commit.
func (s *Server) Resume() {
	g := &s.gate
	g.mu.Lock()
	was := g.paused
	g.paused = false
	g.notify()
	g.mu.Unlock()
	if was {
		s.log.Info("ingest resumed")
	}
}

// Paused reports whether commits are paused.
func (s *Server) Paused() bool {
	s.gate.mu.Lock()
	defer s.gate.mu.Unlock()
	return s.gate.paused
}

// gated runs one commit attempt through the gate.
func (s *Server) gated(ctx context.Context, write func(context.Context) (store.Result, error)) (store.Result, error) {
	if err := s.gate.enter(ctx); err != nil {
		return store.Result{}, err
	}
	defer s.gate.leave()
	return write(ctx)
}
