package vsphere

import (
	"context"
	"errors"
	"fmt"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/types"
)

// The inventory watcher's WaitForUpdatesEx is open all the time, so it also
// follows the latestPage of the EventReader's event collector: a new event
// wakes the reader without a call of its own, and vCenter has one waiting
// request per agent, not two.

// errNotWatching is AnnounceEvents' answer while the watcher has no
// property collector on the caller's connection.
var errNotWatching = errors.New("inventory: not watching this connection")

// follower is one followed event collector.
type follower struct {
	gen    uint64        // the connection the collector belongs to
	ch     chan struct{} // buffered 1: reports coalesce
	filter *property.Filter
}

// AnnounceEvents implements EventAnnouncer.
func (w *Inventory) AnnounceEvents(ctx context.Context, conn *Conn, collector types.ManagedObjectReference) (<-chan struct{}, error) {
	w.mu.Lock()
	pc, gen := w.pc, w.pcGen
	if pc == nil || gen != conn.Gen {
		w.mu.Unlock()
		return nil, errNotWatching
	}
	// Registered before the filter exists: a watch that starts meanwhile
	// follows it too (a second filter on a collector is harmless).
	f := &follower{gen: conn.Gen, ch: make(chan struct{}, 1)}
	w.follow[collector] = f
	w.mu.Unlock()
	filter, err := followOn(ctx, pc, collector)
	if err != nil {
		w.mu.Lock()
		if w.follow[collector] == f {
			delete(w.follow, collector)
		}
		w.mu.Unlock()
		return nil, err
	}
	w.mu.Lock()
	f.filter = filter
	w.mu.Unlock()
	return f.ch, nil
}

// StopAnnouncing implements EventAnnouncer.
func (w *Inventory) StopAnnouncing(ctx context.Context, collector types.ManagedObjectReference) {
	w.mu.Lock()
	f := w.follow[collector]
	delete(w.follow, collector)
	w.mu.Unlock()
	if f != nil && f.filter != nil {
		_ = f.filter.Destroy(ctx) // gone with its property collector, if that is gone
	}
}

// followOn adds a filter for collector's latestPage to pc.
func followOn(ctx context.Context, pc *property.Collector, collector types.ManagedObjectReference) (*property.Filter, error) {
	f, err := pc.CreateFilter(ctx, types.CreateFilter{Spec: types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{Obj: collector}},
		PropSet:   []types.PropertySpec{{Type: collector.Type, PathSet: []string{"latestPage"}}},
	}})
	if err != nil {
		return nil, fmt.Errorf("inventory: follow event collector %s: %w", collector.Value, err)
	}
	return f, nil
}

// startFollowing publishes pc as the watch of connection gen and follows
// the collectors registered for it.
func (w *Inventory) startFollowing(ctx context.Context, pc *property.Collector, gen uint64) {
	w.mu.Lock()
	w.pc, w.pcGen = pc, gen
	var refs []types.ManagedObjectReference
	for ref, f := range w.follow {
		if f.gen == gen {
			refs = append(refs, ref)
		}
	}
	w.mu.Unlock()
	for _, ref := range refs {
		filter, err := followOn(ctx, pc, ref)
		if err != nil {
			w.log.Warn("inventory: cannot follow the event collector; events are polled", "err", err)
			continue
		}
		w.mu.Lock()
		if f := w.follow[ref]; f != nil {
			f.filter = filter
		}
		w.mu.Unlock()
	}
}

// stopFollowing ends the watch on pc and wakes every follower, so that
// readers notice a lost connection.
func (w *Inventory) stopFollowing(pc *property.Collector) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pc == pc {
		w.pc = nil
	}
	for _, f := range w.follow {
		f.filter = nil
		notify(f.ch)
	}
}

// announce reports a change of a followed collector (w.mu held).
func (w *Inventory) announce(collector types.ManagedObjectReference) {
	if f := w.follow[collector]; f != nil {
		notify(f.ch)
	}
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
