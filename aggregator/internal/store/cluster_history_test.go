package store_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/access"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// expectCluster computes, from the raw points of the given VMs, what the
// hourly tier answers for the VMs together: every hour overlapping
// [from, to) counts whole, all the VMs' values of a step are combined.
func expectCluster(raw []rawPoint, vms []string, counter int, from, to time.Time, step time.Duration, agg store.Agg) []store.Point {
	pooled := make([]rawPoint, 0, len(raw))
	for _, p := range raw {
		if slices.Contains(vms, p.entity) {
			p.entity = "*"
			pooled = append(pooled, p)
		}
	}
	return expectHourly(pooled, "*", counter, from, to, step, agg)
}

func clusterVM(id, cluster string) protocol.InventoryObject {
	return vmObj(id, id, "/Datacenters/DC1/vm/"+id, "host-1", cluster, "poweredOn", "guestToolsRunning", 2, 2048, nil)
}

// TestClusterAggregatesMatchVMs checks the cluster aggregates (migration
// 018) against an independent computation over the raw samples written
// through the ingest path, and against the VMs' own series, for every
// aggregation and several steps; after late data from an offline site
// lands in hours already aggregated (exactly those hours recomputed, no
// value counted twice, also when the job runs again); and across a VM
// moving into the cluster (answered from the VMs until the next run
// rebuilds the cluster).
func TestClusterAggregatesMatchVMs(t *testing.T) {
	f := newFixture(t)
	rng := rand.New(rand.NewPCG(3, 9))
	today := time.Now().UTC().Truncate(day)
	from := today.Add(-4 * day)
	if err := f.st.EnsurePartitions(f.ctx, from, today); err != nil {
		t.Fatal(err)
	}
	inv := []protocol.InventoryObject{
		obj("cluster", "domain-c1", "Prod", "group-h1", "/Datacenters/DC1/host/Prod", nil),
		clusterVM("vm-1", "domain-c1"), clusterVM("vm-2", "domain-c1"), clusterVM("vm-3", "domain-c1"), clusterVM("vm-4", "domain-c2"),
	}
	f.writeInventory("dc1", f.agent, "vc1", inv...)
	var raw []rawPoint
	for _, vm := range []string{"vm-1", "vm-2", "vm-3", "vm-4"} {
		raw = append(raw, f.randomSeries(rng, vm, from, today.Add(-day), 300)...)
	}
	rep := f.rollup()
	if rep.Clusters.Rebuilt != 2 {
		t.Fatalf("first run: %+v, want the 2 clusters built", rep.Clusters)
	}
	members := []string{"vm-1", "vm-2", "vm-3"}
	q := store.ClusterVMQuery{Site: "dc1", Source: "vc1", Cluster: "domain-c1", From: from.Add(90 * time.Minute), To: today.Add(-day + 50*time.Minute)}

	check := func(stage string, members []string, wantPath string) {
		t.Helper()
		for _, step := range []time.Duration{time.Hour, 3 * time.Hour, day} {
			for _, agg := range []store.Agg{store.AggAvg, store.AggMin, store.AggMax, store.AggSum, store.AggCount} {
				q.Step, q.Agg, q.VMsOnly = step, agg, false
				res, err := f.st.QueryClusterVMs(f.ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				q.VMsOnly = true
				vms, err := f.st.QueryClusterVMs(f.ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				if res.Path != wantPath || vms.Path != store.ClusterPathVMs || res.VMs != len(members) {
					t.Fatalf("%s step %s %s: path %s (%s), VMs-only path %s, %d VMs", stage, step, agg, res.Path, res.Reason, vms.Path, res.VMs)
				}
				if len(res.Series) != len(vmCounters) || len(vms.Series) != len(vmCounters) {
					t.Fatalf("%s: %d series, from the VMs %d", stage, len(res.Series), len(vms.Series))
				}
				// The series come by counter name: cpu, mem, net.
				for i, sp := range res.Series {
					if sp.Counter != vmCounters[i].Name || sp.Unit != vmCounters[i].Unit || sp.EntityKind != store.KindCluster {
						t.Fatalf("series %d: %+v", i, sp)
					}
					want := expectCluster(raw, members, i, q.From, q.To, res.Step, agg)
					if res.Resolution == store.Resolution1d {
						want = expectCluster(raw, members, i, q.From.Truncate(day), q.To, res.Step, agg)
					}
					for name, w := range map[string][]store.Point{"raw": want, "the VMs' series": vms.Series[i].Points} {
						if !samePoints(sp.Points, w) {
							t.Errorf("%s %s %s step %s (%s): differs from %s\n got %v\nwant %v", stage, sp.Counter, agg, res.Step, res.Path, name, sp.Points, w)
						}
					}
				}
			}
		}
	}
	check("built", members, store.ClusterPathRollup)

	// Late data from an offline site, into hours already aggregated: the
	// run recomputes those hours, and a run without new data changes
	// nothing.
	late := from.Add(day)
	raw = append(raw, f.randomSeries(rng, "vm-2", late.Add(3*time.Hour), late.Add(5*time.Hour), 60)...)
	rep = f.rollup()
	if rep.ClusterRows == 0 || rep.Clusters.Rebuilt != 0 {
		t.Errorf("late data: %d cluster rows recomputed, %+v", rep.ClusterRows, rep.Clusters)
	}
	check("after late data", members, store.ClusterPathRollup)
	if rep = f.rollup(); rep.ClusterRows != 0 {
		t.Errorf("a run without new data rewrote %d cluster rows", rep.ClusterRows)
	}
	var total int64
	if err := f.st.Pool().QueryRow(f.ctx, `SELECT sum(vcnt) FROM cluster_vm_1h WHERE cluster = 'domain-c1' AND counter = 'cpu'`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, p := range raw {
		if p.counter == 0 && slices.Contains(members, p.entity) {
			want++
		}
	}
	if total != want {
		t.Errorf("the cluster's cpu rows count %d values, %d were written", total, want)
	}

	// vm-4 moves into the cluster: the VMs answer until the job rebuilds it.
	inv[4] = clusterVM("vm-4", "domain-c1")
	f.writeInventory("dc1", f.agent, "vc1", inv...)
	members = append(members, "vm-4")
	q.Step, q.Agg, q.VMsOnly = time.Hour, store.AggAvg, false
	res, err := f.st.QueryClusterVMs(f.ctx, q)
	if err != nil || res.Path != store.ClusterPathVMs || !strings.Contains(res.Reason, "changed") || res.VMs != 4 {
		t.Fatalf("after the move: %s (%s), %d VMs, %v", res.Path, res.Reason, res.VMs, err)
	}
	rep = f.rollup()
	if rep.Clusters.Rebuilt != 1 || rep.Clusters.Dropped != 1 {
		t.Errorf("after the move: %+v, want domain-c1 rebuilt and domain-c2 dropped", rep.Clusters)
	}
	check("after the move", members, store.ClusterPathRollup)

	// Finer steps come from the VMs; so does a range before the aggregates.
	for _, c := range []struct {
		from, to time.Time
		step     time.Duration
		reason   string
	}{
		{from, from.Add(6 * time.Hour), 0, "finer"},
		{from, from.Add(2 * day), 5 * time.Minute, "finer"},
		{today.Add(-200 * day), today, day, "before"},
	} {
		res, err := f.st.QueryClusterVMs(f.ctx, store.ClusterVMQuery{Site: "dc1", Source: "vc1", Cluster: "domain-c1", From: c.from, To: c.to, Step: c.step})
		if err != nil || res.Path != store.ClusterPathVMs || !strings.Contains(res.Reason, c.reason) {
			t.Errorf("%s..%s step %s: %s (%s), %v", c.from, c.to, c.step, res.Path, res.Reason, err)
		}
	}

	// A caller scoped to another site does not see the cluster.
	other := access.WithScope(context.Background(), access.Scope{Sites: []string{"dc2"}})
	if _, err := f.st.QueryClusterVMs(other, q); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("scoped to dc2: %v, want not found", err)
	}
}
