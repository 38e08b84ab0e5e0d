package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// With -wake-on-change an open WaitForUpdatesEx wakes when an object
// changes rather than every 20 ms.
//
// govmomi's PropertyCollector answers a waiting WaitForUpdatesEx from a
// loop that wakes every 20 ms to look for changes, so every client that
// keeps one open costs the simulator ~10 ms of CPU per second while
// nothing happens. vCenter's property collector does not poll: a waiting
// call costs it nothing until an object changes. The vCenter load
// benchmark (agent/internal/vcload) runs the agent against this mode too,
// to tell what the agent's standing calls cost apart from what the
// simulator's loop costs; the stock loop stays the default.
//
// waitingPC wraps the simulator's PropertyCollector. A waiting call
// registers a change listener with the simulator's registry (as the stock
// collector registers itself), then runs the stock code in its "one update
// calculation" form (MaxWaitSeconds 0: one 20 ms tick, then whatever
// changed) at once and again after every change, until one yields
// updates, the client's MaxWaitSeconds passes, or CancelWaitForUpdates.
// The listener is registered before the first calculation and its signal
// is buffered, so no change is missed between two calculations.
type waitingPC struct {
	simulator.PropertyCollector

	wmu     sync.Mutex
	waiting chan struct{} // closed by CancelWaitForUpdates; nil when no call waits
}

// wakeOnChange is -wake-on-change.
var wakeOnChange bool

// installWaitingPC replaces the model's PropertyCollector singleton (and so
// every session's copy of it, which the simulator makes by reflection from
// the singleton's type) with waitingPC.
func installWaitingPC(m *simulator.Model) {
	ref := m.Map().Get(types.ManagedObjectReference{Type: "PropertyCollector", Value: "propertyCollector"}).Reference()
	pc := &waitingPC{}
	pc.Self = ref
	m.Map().Put(pc)
}

// CreatePropertyCollector makes collectors of the same kind.
func (pc *waitingPC) CreatePropertyCollector(ctx *simulator.Context, _ *types.CreatePropertyCollector) soap.HasFault {
	return &methods.CreatePropertyCollectorBody{Res: &types.CreatePropertyCollectorResponse{
		Returnval: ctx.Session.Put(&waitingPC{}).Reference(),
	}}
}

// CancelWaitForUpdates ends a waiting call, between calculations or
// inside one.
func (pc *waitingPC) CancelWaitForUpdates(r *types.CancelWaitForUpdates) soap.HasFault {
	pc.endWait()
	return pc.PropertyCollector.CancelWaitForUpdates(r)
}

// DestroyPropertyCollector ends a waiting call (as vCenter does) before
// the simulator destroys the collector; its own code cancels only the
// current calculation.
func (pc *waitingPC) DestroyPropertyCollector(ctx *simulator.Context, r *types.DestroyPropertyCollector) soap.HasFault {
	pc.endWait()
	return pc.PropertyCollector.DestroyPropertyCollector(ctx, r)
}

// endWait ends the waiting call, if any.
func (pc *waitingPC) endWait() {
	pc.wmu.Lock()
	if pc.waiting != nil {
		close(pc.waiting)
		pc.waiting = nil
	}
	pc.wmu.Unlock()
}

// WaitForUpdatesEx serves a waiting call by calculating updates when
// something changed.
func (pc *waitingPC) WaitForUpdatesEx(ctx *simulator.Context, r *types.WaitForUpdatesEx) soap.HasFault {
	var maxWait *int32
	if r.Options != nil {
		maxWait = r.Options.MaxWaitSeconds
	}
	if !wakeOnChange || r.Version == "" || (maxWait != nil && *maxWait == 0) {
		return pc.PropertyCollector.WaitForUpdatesEx(ctx, r)
	}
	// A new call on the collector ends one still waiting (its client has
	// gone: a collector serves one wait at a time), so no orphan drains
	// the updates the new call is owed.
	cancelled := make(chan struct{})
	pc.wmu.Lock()
	if pc.waiting != nil {
		close(pc.waiting)
	}
	pc.waiting = cancelled
	pc.wmu.Unlock()
	defer func() {
		pc.wmu.Lock()
		if pc.waiting == cancelled {
			pc.waiting = nil
		}
		pc.wmu.Unlock()
	}()
	var deadline <-chan time.Time
	if maxWait != nil && *maxWait > 0 {
		t := time.NewTimer(time.Duration(*maxWait) * time.Second)
		defer t.Stop()
		deadline = t.C
	}
	changed := newChangeSignal()
	ctx.Map.AddHandler(changed)
	defer ctx.Map.RemoveHandler(changed)
	zero := int32(0)
	once := *r
	opts := types.WaitOptions{MaxWaitSeconds: &zero}
	if r.Options != nil {
		opts.MaxObjectUpdates = r.Options.MaxObjectUpdates
	}
	once.Options = &opts
	for {
		res := pc.PropertyCollector.WaitForUpdatesEx(ctx, &once)
		if body, ok := res.(*methods.WaitForUpdatesExBody); !ok || body.Fault_ != nil || body.Res == nil || body.Res.Returnval != nil {
			return res // updates, or a fault
		}
		select {
		case <-cancelled:
			return &methods.WaitForUpdatesExBody{Fault_: simulator.Fault("", new(types.RequestCanceled))}
		case <-deadline:
			return &methods.WaitForUpdatesExBody{Res: &types.WaitForUpdatesExResponse{}}
		case <-changed.c:
		}
	}
}

// changeSignal is a registry listener that signals every object change.
type changeSignal struct {
	ref types.ManagedObjectReference
	c   chan struct{}
}

var changeSignals atomic.Int64

func newChangeSignal() *changeSignal {
	return &changeSignal{
		ref: types.ManagedObjectReference{Type: "VmpulseChangeSignal", Value: fmt.Sprintf("signal-%d", changeSignals.Add(1))},
		c:   make(chan struct{}, 1),
	}
}

func (s *changeSignal) Reference() types.ManagedObjectReference { return s.ref }

func (s *changeSignal) poke() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

func (s *changeSignal) PutObject(*simulator.Context, mo.Reference) { s.poke() }
func (s *changeSignal) UpdateObject(*simulator.Context, mo.Reference, []types.PropertyChange) {
	s.poke()
}
func (s *changeSignal) RemoveObject(*simulator.Context, types.ManagedObjectReference) { s.poke() }
