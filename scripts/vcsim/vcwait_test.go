package main

import (
	"context"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

// TestWakeOnChange: with -wake-on-change an open WaitForUpdatesEx still
// delivers a change at once, honours MaxWaitSeconds, and ends with
// RequestCanceled on CancelWaitForUpdates.
func TestWakeOnChange(t *testing.T) {
	wakeOnChange = true
	t.Cleanup(func() { wakeOnChange = false })
	m := simulator.VPX()
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Remove)
	installWaitingPC(m)
	s := m.Service.NewServer()
	t.Cleanup(s.Close)
	ctx := context.Background()
	c, err := govmomi.NewClient(ctx, s.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := find.NewFinder(c.Client, true).VirtualMachine(ctx, "/DC0/vm/DC0_H0_VM0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := property.DefaultCollector(c.Client).Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.CreateFilter(ctx, types.CreateFilter{Spec: types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{Obj: vm.Reference()}},
		PropSet:   []types.PropertySpec{{Type: "VirtualMachine", PathSet: []string{"name"}}},
	}}); err != nil {
		t.Fatal(err)
	}
	wait := func(maxWait *int32, version string) (*types.UpdateSet, error) {
		res, err := methods.WaitForUpdatesEx(ctx, c.Client, &types.WaitForUpdatesEx{This: pc.Reference(), Version: version,
			Options: &types.WaitOptions{MaxWaitSeconds: maxWait}})
		if err != nil {
			return nil, err
		}
		return res.Returnval, nil
	}
	first, err := wait(nil, "")
	if err != nil || first == nil {
		t.Fatalf("initial update set: %v %v", first, err)
	}

	// A change is delivered at once.
	renameErr := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		task, err := object.NewVirtualMachine(c.Client, vm.Reference()).Rename(ctx, "renamed")
		if err == nil {
			err = task.Wait(ctx)
		}
		renameErr <- err
	}()
	began := time.Now()
	five := int32(5)
	set, err := wait(&five, first.Version)
	if err != nil || set == nil {
		t.Fatalf("waiting for the rename: %v %v", set, err)
	}
	if err := <-renameErr; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("the rename came %v after the wait began; want about 300ms", took)
	}
	renamed := false
	for _, fs := range set.FilterSet {
		for _, os := range fs.ObjectSet {
			for _, ch := range os.ChangeSet {
				renamed = renamed || (ch.Name == "name" && ch.Val == "renamed")
			}
		}
	}
	if !renamed {
		t.Fatalf("update set without the rename: %+v", set)
	}

	// MaxWaitSeconds: nothing changes, the call returns empty when it ends.
	one := int32(1)
	began = time.Now()
	set, err = wait(&one, set.Version)
	if err != nil || set != nil {
		t.Fatalf("MaxWaitSeconds 1: %v %v, want no update set", set, err)
	}
	if took := time.Since(began); took < 900*time.Millisecond || took > 3*time.Second {
		t.Errorf("MaxWaitSeconds 1 returned after %v", took)
	}

	// CancelWaitForUpdates, and destroying the collector, end a waiting
	// call.
	for _, end := range []struct {
		name string
		f    func() error
	}{
		{"CancelWaitForUpdates", func() error { return pc.CancelWaitForUpdates(ctx) }},
		{"DestroyPropertyCollector", func() error { return pc.Destroy(ctx) }},
	} {
		ended := make(chan error, 1)
		go func() {
			time.Sleep(500 * time.Millisecond)
			ended <- end.f()
		}()
		began = time.Now()
		ten := int32(10)
		_, err = wait(&ten, first.Version)
		if e := <-ended; e != nil {
			t.Fatalf("%s: %v", end.name, e)
		}
		var rc *types.RequestCanceled
		if _, ok := fault.As(err, &rc); !ok {
			t.Fatalf("wait ended by %s: %v, want RequestCanceled", end.name, err)
		}
		if took := time.Since(began); took > 5*time.Second {
			t.Errorf("%s took %v to end the wait", end.name, took)
		}
	}
}
