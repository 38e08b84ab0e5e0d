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

// cancelTimeout bounds a CancelWaitForUpdates call.
const cancelTimeout = 30 * time.Second

// waitInterruptible runs req, a WaitForUpdatesEx that may wait as long as
// vCenter allows. When interruptible, a tag refresh or resync request, or
// wake (when set) passing, cancels the call with CancelWaitForUpdates (or,
// should that fail, by dropping the request) and records the request in
// wantTags/wantResync; the cancelled call then yields no update set and no
// error. Shutdown (ctx) cancels the request itself.
func (w *Inventory) waitInterruptible(ctx context.Context, vc *vim25.Client, pc types.ManagedObjectReference,
	req *types.WaitForUpdatesEx, wake time.Time, interruptible bool) (*types.UpdateSet, error) {
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
		var due <-chan time.Time
		if !wake.IsZero() {
			t := time.NewTimer(time.Until(wake))
			defer t.Stop()
			due = t.C
		}
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-w.tagReq:
			w.wantTags = true // read by the loop after wg.Wait
		case <-w.resyncReq:
			w.wantResync = true
		case <-due:
		}
		cancelled.Store(true)
		cctx, cancel := context.WithTimeout(ctx, cancelTimeout)
		defer cancel()
		if _, err := methods.CancelWaitForUpdates(cctx, vc, &types.CancelWaitForUpdates{This: pc}); err != nil {
			w.log.Debug("inventory: CancelWaitForUpdates failed, dropping the request instead", "err", err)
			abort()
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
