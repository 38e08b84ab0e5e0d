package store_test

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// BenchmarkHygiene times GET /vms/hygiene's query (store.Hygiene, first
// page of 50, default thresholds, unrestricted) over BENCH_HYGIENE_VMS VMs (default 10,000) written through the
// inventory write path: a full inventory 60 days ago, then a fifth of the
// VMs powered off 40 days ago and another tenth 2 days ago (each an
// inventory_changes row), a sixth with snapshots, a seventh with Tools
// outdated and an eleventh with Tools not running. It prints
// hygiene_query_ms: the median of 20 runs.
func BenchmarkHygiene(b *testing.B) {
	nVMs := 10000
	if s := os.Getenv("BENCH_HYGIENE_VMS"); s != "" {
		var err error
		if nVMs, err = strconv.Atoi(s); err != nil || nVMs < 100 {
			b.Fatalf("BENCH_HYGIENE_VMS=%q: want a number of at least 100", s)
		}
	}
	f := newFixture(b)
	now := time.Now()
	day := 24 * time.Hour
	vms := make([]protocol.InventoryObject, nVMs)
	objs := []protocol.InventoryObject{obj("cluster", "domain-c1", "Prod", "group-h1", "/DC1/host/Prod", nil)}
	for h := range 20 {
		objs = append(objs, obj("host", fmt.Sprintf("host-%d", h), fmt.Sprintf("esx%02d", h), "domain-c1", "/DC1/host/Prod", map[string]any{"cluster_id": "domain-c1"}))
	}
	for i := range vms {
		p := map[string]any{"tools_running_status": "guestToolsRunning", "tools_version_status": "guestToolsCurrent"}
		switch {
		case i%6 == 0:
			p["snapshot_count"], p["snapshot_oldest"] = 1+i%3, now.Add(-time.Duration(i%30)*day).UnixMilli()
		case i%7 == 0:
			p["tools_version_status"] = "guestToolsNeedUpgrade"
		case i%11 == 0:
			p["tools_running_status"] = "guestToolsNotRunning"
		}
		name := fmt.Sprintf("app-%05d", i)
		vms[i] = vmObj(fmt.Sprintf("vm-%d", i), name, "/DC1/vm/"+name, fmt.Sprintf("host-%d", i%20), "domain-c1", "poweredOn", "", 2, 4096, p)
	}
	t0 := time.Now()
	f.writeInventoryAt("dc1", f.agent, vcA, now.Add(-60*day), true, append(objs, vms...)...)
	off := func(at time.Time, pick func(i int) bool) {
		var delta []protocol.InventoryObject
		for i := range vms {
			if pick(i) {
				o := vms[i]
				o.Props = map[string]any{}
				for k, v := range vms[i].Props {
					o.Props[k] = v
				}
				o.Props["power_state"] = "poweredOff"
				delta = append(delta, o)
			}
		}
		f.writeInventoryAt("dc1", f.agent, vcA, at, false, delta...)
	}
	off(now.Add(-40*day), func(i int) bool { return i%5 == 1 })
	off(now.Add(-2*day), func(i int) bool { return i%10 == 3 })
	b.Logf("wrote %d VMs and their power changes in %s", nVMs, time.Since(t0).Round(time.Millisecond))

	rep, err := f.st.Hygiene(f.ctx, store.HygieneQuery{PageSize: 50})
	if err != nil {
		b.Fatal(err)
	}
	if rep.Counts[store.HygienePoweredOff] != (nVMs+3)/5 || len(rep.Findings) != 50 {
		b.Fatalf("counts %v, %d findings: want every VM powered off 40 days ago and a full page", rep.Counts, len(rep.Findings))
	}
	for b.Loop() {
		times := make([]float64, 0, 20)
		for range 20 {
			t := time.Now()
			if _, err := f.st.Hygiene(f.ctx, store.HygieneQuery{PageSize: 50}); err != nil {
				b.Fatal(err)
			}
			times = append(times, float64(time.Since(t).Microseconds())/1000)
		}
		slices.Sort(times)
		fmt.Printf("figure: hygiene_query_ms %.1f ms (%d VMs, %d findings)\n", times[len(times)/2], nVMs, rep.Total)
	}
}
