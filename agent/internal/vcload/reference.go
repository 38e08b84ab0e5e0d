package vcload

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vmware/govmomi/performance"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// Telegraf's vsphere input defaults that shape its load on vCenter.
const (
	telegrafMaxQueryMetrics = 256 // max_query_metrics
	telegrafMaxQueryObjects = 256 // max_query_objects
	telegrafMaxSample       = 10  // maxSampleConst: samples asked per entity and query
	telegrafLookback        = 3   // metric_lookback: realtime samples read on an entity's first query
	realtimeInterval        = 20  // seconds
)

// Reference collects realtime VM and host counters the way Telegraf's
// vsphere input does, as the baseline of the vCenter load benchmark:
// counter metadata and the object list are read once (Discover, which
// Telegraf repeats every object_discovery_interval, 5 minutes by default),
// and each Collect sends QueryPerf calls with MaxSample, a start time from
// each entity's newest sample and no end of the window left open, batched
// by Telegraf's default limits and run one at a time (collect_concurrency
// 1). Nothing runs between collections: no property collector waits, no
// event reads, no tags.
type Reference struct {
	Client *vim25.Client
	// Counters lists counter names by kind ("vm", "host").
	Counters map[string][]string

	ids  map[string][]types.PerfMetricId
	objs map[string][]types.ManagedObjectReference
	mu   sync.Mutex
	last map[types.ManagedObjectReference]time.Time
}

// Discover resolves the counters and lists the powered-on VMs and the
// connected hosts with a container view, destroyed afterwards.
func (r *Reference) Discover(ctx context.Context) error {
	byName, err := performance.NewManager(r.Client).CounterInfoByName(ctx)
	if err != nil {
		return fmt.Errorf("reference: counters: %w", err)
	}
	r.ids = map[string][]types.PerfMetricId{}
	for kind, names := range r.Counters {
		for _, n := range names {
			if info := byName[n]; info != nil {
				r.ids[kind] = append(r.ids[kind], types.PerfMetricId{CounterId: info.Key, Instance: "*"})
			}
		}
	}
	v, err := view.NewManager(r.Client).CreateContainerView(ctx, r.Client.ServiceContent.RootFolder, []string{"VirtualMachine", "HostSystem"}, true)
	if err != nil {
		return fmt.Errorf("reference: container view: %w", err)
	}
	defer func() { _ = v.Destroy(context.WithoutCancel(ctx)) }()
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name", "runtime.powerState", "runtime.host"}, &vms); err != nil {
		return fmt.Errorf("reference: list VMs: %w", err)
	}
	var hosts []mo.HostSystem
	if err := v.Retrieve(ctx, []string{"HostSystem"}, []string{"name", "parent", "runtime.connectionState"}, &hosts); err != nil {
		return fmt.Errorf("reference: list hosts: %w", err)
	}
	r.objs = map[string][]types.ManagedObjectReference{}
	for _, vm := range vms {
		if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
			r.objs["vm"] = append(r.objs["vm"], vm.Self)
		}
	}
	for _, h := range hosts {
		if h.Runtime.ConnectionState == types.HostSystemConnectionStateConnected {
			r.objs["host"] = append(r.objs["host"], h.Self)
		}
	}
	r.mu.Lock()
	if r.last == nil {
		r.last = map[types.ManagedObjectReference]time.Time{}
	}
	r.mu.Unlock()
	return nil
}

// Collect runs one collection and returns the values newer than each
// entity's previous newest sample.
func (r *Reference) Collect(ctx context.Context) (int, error) {
	now := time.Now()
	values := 0
	for _, kind := range []string{"vm", "host"} {
		ids := r.ids[kind]
		if len(ids) == 0 {
			continue
		}
		var batch []types.PerfQuerySpec
		metrics := 0
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			n, err := r.query(ctx, batch)
			values += n
			batch, metrics = nil, 0
			return err
		}
		for _, ref := range r.objs[kind] {
			r.mu.Lock()
			start, ok := r.last[ref]
			r.mu.Unlock()
			if !ok {
				start = now.Add(-time.Duration(telegrafLookback-1) * realtimeInterval * time.Second)
			}
			if len(batch) >= telegrafMaxQueryObjects || metrics+len(ids) > telegrafMaxQueryMetrics {
				if err := flush(); err != nil {
					return values, err
				}
			}
			s, e := start, now
			batch = append(batch, types.PerfQuerySpec{
				Entity: ref, MaxSample: telegrafMaxSample, MetricId: ids, IntervalId: realtimeInterval,
				StartTime: &s, EndTime: &e, Format: string(types.PerfFormatNormal),
			})
			metrics += len(ids)
		}
		if err := flush(); err != nil {
			return values, err
		}
	}
	return values, nil
}

func (r *Reference) query(ctx context.Context, specs []types.PerfQuerySpec) (int, error) {
	res, err := methods.QueryPerf(ctx, r.Client, &types.QueryPerf{This: *r.Client.ServiceContent.PerfManager, QuerySpec: specs})
	if err != nil {
		return 0, fmt.Errorf("reference: QueryPerf: %w", err)
	}
	values := 0
	for _, base := range res.Returnval {
		em, ok := base.(*types.PerfEntityMetric)
		if !ok {
			continue
		}
		r.mu.Lock()
		mark := r.last[em.Entity]
		r.mu.Unlock()
		newest := mark
		for i, si := range em.SampleInfo {
			if !si.Timestamp.After(mark) {
				continue
			}
			if si.Timestamp.After(newest) {
				newest = si.Timestamp
			}
			for _, s := range em.Value {
				if series, ok := s.(*types.PerfMetricIntSeries); ok && i < len(series.Value) && series.Value[i] >= 0 {
					values++
				}
			}
		}
		r.mu.Lock()
		r.last[em.Entity] = newest
		r.mu.Unlock()
	}
	return values, nil
}
