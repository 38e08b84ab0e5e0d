package vsphere

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

// watchRetry is the pause before a watch that failed (with the session
// still valid) starts again.
const watchRetry = 5 * time.Second

// cancelTimeout bounds the cancelling of a wait; cancelRepeat is how long
// a cancelled wait may take to return before it is cancelled again.
const (
	cancelTimeout = 30 * time.Second
	cancelRepeat  = time.Second
)

// waitBound is the bound of one WaitForUpdatesEx call.
type waitBound struct {
	maxWait time.Duration // MaxWait when the call was prepared
	wait    time.Duration // the call's bound (zero: none), MaxWait or shorter
}

// shortened reports whether MaxWait, now mw, changed since the call was
// prepared to a bound shorter than the call's.
func (b waitBound) shortened(mw time.Duration) bool {
	return mw != b.maxWait && mw > 0 && (b.wait <= 0 || mw < b.wait)
}

// waitInterruptible runs req, a WaitForUpdatesEx bounded as bound says.
// When interruptible, a tag refresh or resync request, the time wake
// returns passing (when wake is set and returns a non-zero time), or
// SetMaxWait lowering the bound below the call's cancels the call with
// CancelWaitForUpdates (or, should that fail, by dropping the request) and
// records the request in wantTags/wantResync; the cancelled call then
// yields no update set and no error. A settings change (SetTagInterval)
// re-reads wake. Shutdown (ctx) cancels the request itself.
func (w *Inventory) waitInterruptible(ctx context.Context, vc *vim25.Client, pc types.ManagedObjectReference,
	req *types.WaitForUpdatesEx, wake func() time.Time, bound waitBound, interruptible bool) (*types.UpdateSet, error) {
	if !interruptible {
		return waitForUpdatesEx(ctx, vc, req)
	}
	wctx, abort := context.WithCancel(ctx)
	defer abort()
	done := make(chan struct{})
	var cancelled atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if !w.waitInterrupt(ctx, done, wake, bound) {
			return
		}
		cancelled.Store(true)
		cctx, cancel := context.WithTimeout(ctx, cancelTimeout)
		defer cancel()
		// A cancel that reaches the server before the wait it is meant for
		// (the request still on its way) cancels nothing, and the wait would
		// run to its bound: cancel again every cancelRepeat until the call
		// has returned.
		for {
			if _, err := methods.CancelWaitForUpdates(cctx, vc, &types.CancelWaitForUpdates{This: pc}); err != nil {
				w.log.Debug("inventory: CancelWaitForUpdates failed, dropping the request instead", "err", err)
				abort()
				return
			}
			select {
			case <-done:
				return
			case <-cctx.Done():
				abort()
				return
			case <-time.After(cancelRepeat):
			}
		}
	}()
	set, err := waitForUpdatesEx(wctx, vc, req)
	close(done)
	wg.Wait()
	if err != nil && ctx.Err() == nil {
		// Nobody but this loop cancels waits on its collector: a cancelled
		// call, even one whose cancel arrived late, is not a failure.
		if isRequestCanceled(err) || (cancelled.Load() && errors.Is(err, context.Canceled)) {
			return nil, nil
		}
	}
	return set, err
}

// isRequestCanceled reports the fault a WaitForUpdatesEx answers after
// CancelWaitForUpdates.
func isRequestCanceled(err error) bool {
	return fault.Is(err, &types.RequestCanceled{})
}

// waitInterrupt blocks until the open wait must be cancelled (true) or
// has ended by itself or ctx is done (false); see waitInterruptible.
func (w *Inventory) waitInterrupt(ctx context.Context, done <-chan struct{}, wake func() time.Time, bound waitBound) bool {
	for {
		changed := w.settingsChanged.C()
		if bound.shortened(w.MaxWait()) {
			return true // SetMaxWait shortened the bound: re-send with it
		}
		var due <-chan time.Time
		var t *time.Timer
		if wake != nil {
			if at := wake(); !at.IsZero() {
				t = time.NewTimer(time.Until(at))
				due = t.C
			}
		}
		stop := func() {
			if t != nil {
				t.Stop()
			}
		}
		select {
		case <-done:
			stop()
			return false
		case <-ctx.Done():
			stop()
			return false
		case <-w.tagReq:
			stop()
			w.wantTags = true // read by the loop after the wait
			return true
		case <-w.resyncReq:
			stop()
			w.wantResync = true
			return true
		case <-due:
			return true
		case <-changed:
			stop()
		}
	}
}
