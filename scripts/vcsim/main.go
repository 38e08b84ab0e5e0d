// Command vcsim runs govmomi's in-process vCenter simulator for development,
// `make demo`, end-to-end tests and benchmarks, with VMware Tools and guest
// state set so the data looks alive.
//
//	vcsim -vms 200 -listen 127.0.0.1:8989            build an inventory
//	vcsim -vms 5000 -save var/inv5000 -exit           build once, save it
//	vcsim -load var/inv5000                           start from a saved one (fast)
//	vcsim -vms 1000 -cache var/bench/inv1000          load it if saved, else build, save and serve
//	vcsim ... -wake-on-change                         an open WaitForUpdatesEx wakes on a change, not every 20 ms
//
// It prints the SDK URL on stdout (and to -url-file) and runs until
// interrupted.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/cli"
	_ "github.com/vmware/govmomi/cli/object" // registers object.save
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator" // tags (vAPI REST)
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:8989", "address to serve the SDK on")
	dcs := flag.Int("datacenters", 1, "datacenters")
	clusters := flag.Int("clusters", 2, "clusters per datacenter")
	hosts := flag.Int("hosts", 3, "hosts per cluster")
	standalone := flag.Int("standalone", 1, "standalone hosts per datacenter")
	vms := flag.Int("vms", 40, "virtual machines in total (approximately: spread over resource pools)")
	datastores := flag.Int("datastores", 2, "datastores")
	poweredOff := flag.Float64("powered-off", 0.1, "fraction of VMs powered off")
	load := flag.String("load", "", "start from an inventory saved with -save (much faster for large ones)")
	save := flag.String("save", "", "save the inventory to this directory after building it")
	cache := flag.String("cache", "", "load the inventory from this directory if it holds one, else build it, save it there (atomically) and serve it")
	exit := flag.Bool("exit", false, "exit after building/saving instead of serving")
	user := flag.String("username", "vmpulse", "username the simulator accepts")
	pass := flag.String("password", "vmpulse", "password the simulator accepts")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the serving simulator to this file when it stops")
	urlFile := flag.String("url-file", "", "also write the SDK URL (without credentials) to this file")
	flag.BoolVar(&wakeOnChange, "wake-on-change", false, "wake an open WaitForUpdatesEx when an object changes rather than every 20 ms, as vCenter does (see vcwait.go)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "vcsim")
	saveTo, publish := *save, ""
	if *cache != "" {
		if *load != "" || *save != "" {
			return fmt.Errorf("-cache replaces -load and -save; give only one")
		}
		if ents, err := os.ReadDir(*cache); err == nil && len(ents) > 0 {
			*load = *cache
		} else {
			// Saved under a temporary name and renamed once complete, so an
			// interrupted build leaves no half inventory to load.
			saveTo, publish = *cache+".tmp", *cache
			if err := os.RemoveAll(saveTo); err != nil {
				return err
			}
		}
	}

	m := simulator.VPX()
	m.Datacenter = *dcs
	m.Cluster = *clusters
	m.ClusterHost = *hosts
	m.Host = *standalone
	m.Datastore = *datastores
	pools := *dcs * (*clusters + *standalone)
	m.Machine = max(1, (*vms+pools-1)/pools)
	start := time.Now()
	if *load != "" {
		if err := m.Load(*load); err != nil {
			return fmt.Errorf("load %s: %w", *load, err)
		}
	} else if err := m.Create(); err != nil {
		return fmt.Errorf("create model: %w", err)
	}
	defer m.Remove()
	if wakeOnChange {
		installWaitingPC(m)
	}
	// The simulator accepts exactly the credentials in its listen URL.
	m.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*user, *pass)}
	m.Service.TLS = nil
	m.Service.RegisterEndpoints = true // vAPI (tags)
	s := m.Service.NewServer()
	defer func() {
		// The simulator does not notice a client hanging up during a
		// WaitForUpdatesEx without a time limit (vCenter does): do not
		// let such a call hold the shutdown up.
		done := make(chan struct{})
		go func() { s.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			// The model cannot be removed under such a call either: exit
			// (the deferred profile is written already).
			log.Warn("open requests abandoned at shutdown")
			os.Exit(0)
		}
	}()
	u := *s.URL
	u.User = url.UserPassword(*user, *pass)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := govmomi.NewClient(ctx, &u, true)
	if err != nil {
		return fmt.Errorf("connect to own simulator: %w", err)
	}
	if *load == "" {
		n, err := liven(ctx, c, *poweredOff)
		if err != nil {
			return err
		}
		log.Info("inventory built", "vms", n, "took", time.Since(start).Round(time.Millisecond))
	} else {
		log.Info("inventory loaded", "from", *load, "took", time.Since(start).Round(time.Millisecond))
	}
	if saveTo != "" {
		if err := os.MkdirAll(saveTo, 0o755); err != nil {
			return err
		}
		if rc := cli.Run([]string{"object.save", "-u", u.String(), "-k", "-f", "-d", saveTo}); rc != 0 {
			return fmt.Errorf("save inventory to %s failed (exit %d)", saveTo, rc)
		}
		if publish != "" {
			if err := os.Rename(saveTo, publish); err != nil {
				return fmt.Errorf("publish saved inventory: %w", err)
			}
			saveTo = publish
		}
		log.Info("inventory saved", "dir", saveTo)
	}
	if *exit {
		return nil
	}
	clean := *s.URL
	clean.User = nil
	if *urlFile != "" {
		if err := os.WriteFile(*urlFile, []byte(clean.String()+"\n"), 0o644); err != nil {
			return err
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Println(clean.String())
	log.Info("simulator serving", "url", clean.String(), "username", *user)
	<-ctx.Done()
	return nil
}

// liven sets VMware Tools and guest state on every VM through the public
// API (the simulator applies "SET.guest.*" extraConfig keys as property
// changes) and powers a fraction of them off.
func liven(ctx context.Context, c *govmomi.Client, poweredOff float64) (int, error) {
	v, err := view.NewManager(c.Client).CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return 0, err
	}
	defer v.Destroy(ctx)
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name", "runtime.powerState"}, &vms); err != nil {
		return 0, err
	}
	work := make(chan int)
	errs := make(chan error, len(vms))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := livenVM(ctx, c, &vms[i], i, rand.Float64() < poweredOff); err != nil {
					errs <- fmt.Errorf("%s: %w", vms[i].Name, err)
				}
			}
		}()
	}
	for i := range vms {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		return 0, err
	}
	return len(vms), nil
}

func livenVM(ctx context.Context, c *govmomi.Client, vm *mo.VirtualMachine, i int, off bool) error {
	o := object.NewVirtualMachine(c.Client, vm.Self)
	tools := "guestToolsRunning"
	if off {
		tools = "guestToolsNotRunning"
	}
	opts := []types.BaseOptionValue{
		&types.OptionValue{Key: "SET.guest.toolsRunningStatus", Value: tools},
		&types.OptionValue{Key: "SET.guest.toolsVersionStatus2", Value: "guestToolsCurrent"},
		&types.OptionValue{Key: "SET.guest.toolsVersion", Value: "12352"},
		&types.OptionValue{Key: "SET.guest.hostName", Value: fmt.Sprintf("%s.lab.example", vm.Name)},
		&types.OptionValue{Key: "SET.guest.ipAddress", Value: fmt.Sprintf("10.%d.%d.%d", 20+i/65025, (i/255)%255, i%255+1)},
	}
	task, err := o.Reconfigure(ctx, types.VirtualMachineConfigSpec{ExtraConfig: opts})
	if err != nil {
		return err
	}
	if err := task.Wait(ctx); err != nil {
		return err
	}
	if off && vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
		task, err := o.PowerOff(ctx)
		if err != nil {
			return err
		}
		return task.Wait(ctx)
	}
	return nil
}
