package store_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

const vcA, vcB = "11111111-aaaa", "22222222-bbbb"

func obj(kind, id, name, parent, path string, props map[string]any) protocol.InventoryObject {
	return protocol.InventoryObject{Kind: kind, ID: id, Name: name, ParentID: parent, Path: path, Props: props}
}

func vmObj(id, name, path, host, cluster, power, tools string, cpu, mem int, extra map[string]any) protocol.InventoryObject {
	p := map[string]any{"power_state": power, "num_cpu": cpu, "memory_mb": mem, "host_id": host,
		"datastore_ids": []string{"datastore-1"}, "guest_ips": []string{}, "snapshot_count": 0}
	if cluster != "" {
		p["cluster_id"] = cluster
	}
	if tools != "" {
		p["tools_running_status"] = tools
	}
	for k, v := range extra {
		p[k] = v
	}
	return obj("vm", id, name, "group-v1", path, p)
}

// writeInventory writes a full inventory of source for the fixture's agent.
func (f *fixture) writeInventory(site, agent, source string, objs ...protocol.InventoryObject) {
	f.t.Helper()
	f.seq++
	res, err := f.st.WriteInventory(f.ctx, store.BatchMeta{AgentID: agent, Site: site, Epoch: 1, Seq: f.seq, Kind: protocol.KindInventory},
		&protocol.Inventory{Source: source, Full: true, At: time.Now().UnixMilli(), Objects: objs})
	if err != nil || res.Duplicate {
		f.t.Fatalf("write inventory: %+v, %v", res, err)
	}
}

// inventoryFixture: site dc1 (vcA: datacenter DC1 with cluster Prod of
// hosts esx1 and esx2, a standalone host esx3, datastores, four VMs) and
// site dc2 (vcB: one VM).
func inventoryFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.writeInventory("dc1", f.agent, vcA,
		obj("folder", "group-d1", "Datacenters", "", "/Datacenters", nil),
		obj("datacenter", "datacenter-1", "DC1", "group-d1", "/Datacenters/DC1", nil),
		obj("folder", "group-v1", "vm", "datacenter-1", "/Datacenters/DC1/vm", nil),
		obj("cluster", "domain-c1", "Prod", "group-h1", "/Datacenters/DC1/host/Prod", map[string]any{"num_hosts": 2}),
		obj("host", "host-1", "esx1", "domain-c1", "/Datacenters/DC1/host/Prod/esx1", map[string]any{"cluster_id": "domain-c1", "power_state": "poweredOn", "cpu_cores": 16, "connection_state": "connected"}),
		obj("host", "host-2", "esx2", "domain-c1", "/Datacenters/DC1/host/Prod/esx2", map[string]any{"cluster_id": "domain-c1", "power_state": "poweredOn", "cpu_cores": 32, "connection_state": "connected"}),
		obj("host", "host-3", "esx3", "group-h1", "/Datacenters/DC1/host/esx3", map[string]any{"power_state": "poweredOn", "cpu_cores": 8, "connection_state": "connected"}),
		obj("datastore", "datastore-1", "ds-ssd", "group-s1", "/Datacenters/DC1/datastore/ds-ssd", map[string]any{"capacity": 1000, "free": 400, "type": "VMFS"}),
		obj("datastore", "datastore-2", "ds-nfs", "group-s1", "/Datacenters/DC1/datastore/ds-nfs", map[string]any{"capacity": 5000, "free": 100, "type": "NFS"}),
		obj("resourcepool", "resgroup-1", "Resources", "domain-c1", "/Datacenters/DC1/host/Prod/Resources", nil),
		vmObj("vm-1", "web-01", "/Datacenters/DC1/vm/web-01", "host-1", "domain-c1", "poweredOn", "guestToolsRunning", 4, 8192,
			map[string]any{"guest_hostname": "web01.example.com", "guest_ips": []string{"10.0.0.11", "fe80::1"}, "tags": []string{"env/prod", "tier/web"},
				"resource_pool_id": "resgroup-1", "datastore_ids": []string{"datastore-1", "datastore-2"}, "snapshot_count": 2, "snapshot_oldest": 1700000000000}),
		vmObj("vm-2", "web-02", "/Datacenters/DC1/vm/web-02", "host-2", "domain-c1", "poweredOff", "guestToolsNotRunning", 2, 4096,
			map[string]any{"tags": []string{"env/test"}}),
		vmObj("vm-3", "db_01", "/Datacenters/DC1/vm/db_01", "host-2", "domain-c1", "poweredOn", "guestToolsRunning", 8, 32768,
			map[string]any{"guest_hostname": "DB01.corp", "tags": []string{"env/prod"}}),
		vmObj("vm-4", "lonely", "/Datacenters/DC1/vm/lonely", "host-3", "", "suspended", "", 1, 1024, nil),
	)
	b := f.enroll("dc2")
	f.writeInventory("dc2", b, vcB,
		obj("datacenter", "datacenter-9", "DC9", "group-d1", "/Datacenters/DC9", nil),
		obj("host", "host-9", "esx9", "group-h9", "/Datacenters/DC9/host/esx9", nil),
		vmObj("vm-1", "edge-01", "/Datacenters/DC9/vm/edge-01", "host-9", "", "poweredOn", "guestToolsRunning", 2, 2048,
			map[string]any{"guest_ips": []string{"192.168.5.5"}}),
	)
	return f
}

func vmNames(objs []store.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Name)
	}
	return out
}

func TestInventoryVMsFilters(t *testing.T) {
	f := inventoryFixture(t)
	cases := []struct {
		name string
		f    store.VMFilter
		want []string // in name order
	}{
		{"all", store.VMFilter{}, []string{"db_01", "edge-01", "lonely", "web-01", "web-02"}},
		{"site", store.VMFilter{Site: "dc2"}, []string{"edge-01"}},
		{"datacenter", store.VMFilter{Datacenter: "DC1"}, []string{"db_01", "lonely", "web-01", "web-02"}},
		{"datacenter unknown", store.VMFilter{Datacenter: "DC"}, nil},
		{"cluster by name", store.VMFilter{Cluster: store.ObjectMatch{Name: "Prod"}}, []string{"db_01", "web-01", "web-02"}},
		{"cluster by id", store.VMFilter{Cluster: store.ObjectMatch{Name: vcA + ":domain-c1", Source: vcA, Moref: "domain-c1"}}, []string{"db_01", "web-01", "web-02"}},
		{"cluster id of other source", store.VMFilter{Cluster: store.ObjectMatch{Source: vcB, Moref: "domain-c1"}}, nil},
		{"host by name", store.VMFilter{Host: store.ObjectMatch{Name: "esx2"}}, []string{"db_01", "web-02"}},
		{"host by id", store.VMFilter{Host: store.ObjectMatch{Source: vcB, Moref: "host-9"}}, []string{"edge-01"}},
		{"power", store.VMFilter{PowerState: "poweredOn"}, []string{"db_01", "edge-01", "web-01"}},
		{"tools", store.VMFilter{Tools: "guestToolsNotRunning"}, []string{"web-02"}},
		{"tag", store.VMFilter{Tag: "env/prod"}, []string{"db_01", "web-01"}},
		{"tag partial is no match", store.VMFilter{Tag: "env"}, nil},
		{"q name", store.VMFilter{Q: "WEB"}, []string{"web-01", "web-02"}},
		{"q hostname", store.VMFilter{Q: "db01.CORP"}, []string{"db_01"}},
		{"q ip", store.VMFilter{Q: "192.168.5"}, []string{"edge-01"}},
		{"q ipv6", store.VMFilter{Q: "fe80"}, []string{"web-01"}},
		{"q underscore is literal", store.VMFilter{Q: "b_0"}, []string{"db_01"}},
		{"q percent is literal", store.VMFilter{Q: "%"}, nil},
		{"combined", store.VMFilter{Site: "dc1", PowerState: "poweredOn", Tag: "env/prod", Q: "web"}, []string{"web-01"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, total, err := f.st.VMs(f.ctx, store.VMQuery{VMFilter: c.f})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(vmNames(got), c.want) || total != len(c.want) {
				t.Errorf("VMs(%+v) = %v (total %d); want %v", c.f, vmNames(got), total, c.want)
			}
		})
	}
}

func TestInventoryVMsSortAndPage(t *testing.T) {
	f := inventoryFixture(t)
	list := func(sort []store.SortKey, page, size int) ([]string, int) {
		t.Helper()
		got, total, err := f.st.VMs(f.ctx, store.VMQuery{Sort: sort, Page: page, PageSize: size})
		if err != nil {
			t.Fatal(err)
		}
		return vmNames(got), total
	}
	if got, _ := list([]store.SortKey{{Field: "num_cpu", Desc: true}}, 1, 50); !slices.Equal(got, []string{"db_01", "web-01", "edge-01", "web-02", "lonely"}) {
		t.Errorf("by -num_cpu: %v", got)
	}
	if got, _ := list([]store.SortKey{{Field: "memory_mb"}}, 1, 50); !slices.Equal(got, []string{"lonely", "edge-01", "web-02", "web-01", "db_01"}) {
		t.Errorf("by memory_mb: %v", got)
	}
	// Ties on site and power state fall back to the name.
	if got, _ := list([]store.SortKey{{Field: "site", Desc: true}, {Field: "power_state"}}, 1, 50); !slices.Equal(got, []string{"edge-01", "web-02", "db_01", "web-01", "lonely"}) {
		t.Errorf("by -site,power_state: %v", got)
	}
	if got, total := list(nil, 2, 2); !slices.Equal(got, []string{"lonely", "web-01"}) || total != 5 {
		t.Errorf("page 2 of 2: %v total %d", got, total)
	}
	if got, total := list(nil, 9, 2); len(got) != 0 || total != 5 {
		t.Errorf("page past the end: %v total %d", got, total)
	}
	if _, _, err := f.st.VMs(f.ctx, store.VMQuery{Sort: []store.SortKey{{Field: "props"}}}); err == nil {
		t.Error("unknown sort field accepted")
	}
	// Placement resolved in the list.
	got, _, err := f.st.VMs(f.ctx, store.VMQuery{VMFilter: store.VMFilter{Q: "web-01"}})
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	vm := got[0]
	if vm.Datacenter != "DC1" || vm.Host == nil || vm.Host.Name != "esx1" || vm.Cluster == nil || vm.Cluster.Name != "Prod" || vm.Source != vcA || vm.Moref != "vm-1" {
		t.Errorf("web-01 = %+v", vm)
	}
	got, _, _ = f.st.VMs(f.ctx, store.VMQuery{VMFilter: store.VMFilter{Q: "lonely"}})
	if got[0].Cluster != nil || got[0].Host.Name != "esx3" {
		t.Errorf("lonely = %+v", got[0])
	}
}

func TestInventoryVMDeletedIsGone(t *testing.T) {
	f := inventoryFixture(t)
	// A full snapshot without vm-2 deletes it.
	f.seq++
	if _, err := f.st.WriteInventory(f.ctx, store.BatchMeta{AgentID: f.agent, Site: "dc1", Epoch: 1, Seq: f.seq, Kind: protocol.KindInventory},
		&protocol.Inventory{Source: vcA, At: time.Now().UnixMilli(), Objects: []protocol.InventoryObject{{Kind: "vm", ID: "vm-2", Deleted: true}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.VM(f.ctx, vcA, "vm-2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted VM: %v", err)
	}
	if got, total, _ := f.st.VMs(f.ctx, store.VMQuery{VMFilter: store.VMFilter{Q: "web"}}); total != 1 || got[0].Name != "web-01" {
		t.Errorf("after delete: %v", vmNames(got))
	}
}

func TestInventoryVMDetail(t *testing.T) {
	f := inventoryFixture(t)
	now := time.Now()
	sd := protocol.SeriesData{
		Key:    protocol.SeriesKey{Source: vcA, EntityKind: "vm", EntityID: "vm-1", Counters: []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}, {Name: "mem.usage.average", Unit: "%"}}},
		Values: [][]float64{{10, 20, 30}, {50, 60, nan}},
	}
	for _, d := range []time.Duration{-3 * time.Hour, -2 * time.Minute, -time.Minute} {
		sd.Timestamps = append(sd.Timestamps, now.Add(d).UnixMilli())
	}
	f.write(sd)
	// A NaN-only counter and another VM's series are not this VM's values.
	f.write(protocol.SeriesData{Key: protocol.SeriesKey{Source: vcA, EntityKind: "vm", EntityID: "vm-2", Counters: []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}}},
		Timestamps: []int64{now.UnixMilli()}, Values: [][]float64{{99}}})

	d, err := f.st.VM(f.ctx, vcA, "vm-1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "web-01" || d.Site != "dc1" || d.Datacenter != "DC1" || d.Host.Name != "esx1" || d.Cluster.Name != "Prod" {
		t.Errorf("vm = %+v", d.Object)
	}
	if d.ResourcePool == nil || d.ResourcePool.Name != "Resources" {
		t.Errorf("resource pool = %+v", d.ResourcePool)
	}
	if !slices.Equal(d.Datastores, []store.ObjectRef{{Moref: "datastore-1", Name: "ds-ssd"}, {Moref: "datastore-2", Name: "ds-nfs"}}) {
		t.Errorf("datastores = %+v", d.Datastores)
	}
	got := map[string]float64{}
	for _, v := range d.Latest {
		got[v.Counter] = v.Value
		if v.Unit != "%" || v.Instance != "" || now.Sub(v.TS) > 3*time.Minute {
			t.Errorf("latest %+v", v)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(map[string]float64{"cpu.usage.average": 30, "mem.usage.average": 60}) {
		t.Errorf("latest = %v", got)
	}
	if d, err := f.st.VM(f.ctx, vcA, "vm-4"); err != nil || len(d.Latest) != 0 || d.ResourcePool != nil {
		t.Errorf("vm-4 = %+v, %v", d, err)
	}
	for _, id := range [][2]string{{vcA, "vm-404"}, {"nope", "vm-1"}, {vcA, "host-1"}, {"", ""}} {
		if _, err := f.st.VM(f.ctx, id[0], id[1]); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("VM(%q, %q) = %v; want ErrNotFound", id[0], id[1], err)
		}
	}
}

func TestInventoryVMStats(t *testing.T) {
	f := inventoryFixture(t)
	st, err := f.st.VMStats(f.ctx, store.VMFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Total != 5 || fmt.Sprint(st.ByPowerState) != "map[poweredOff:1 poweredOn:3 suspended:1]" ||
		fmt.Sprint(st.ByToolsStatus) != "map[guestToolsNotRunning:1 guestToolsRunning:3 unknown:1]" ||
		fmt.Sprint(st.BySite) != "map[dc1:4 dc2:1]" {
		t.Errorf("stats = %+v", st)
	}
	if len(st.ByCluster) != 1 || st.ByCluster[0] != (store.ClusterCount{Site: "dc1", Source: vcA, Moref: "domain-c1", Name: "Prod", VMs: 3}) {
		t.Errorf("by cluster = %+v", st.ByCluster)
	}
	st, err = f.st.VMStats(f.ctx, store.VMFilter{PowerState: "poweredOn", Site: "dc1"})
	if err != nil || st.Total != 2 || fmt.Sprint(st.BySite) != "map[dc1:2]" || st.ByCluster[0].VMs != 2 {
		t.Errorf("filtered stats = %+v, %v", st, err)
	}
	st, err = f.st.VMStats(f.ctx, store.VMFilter{Q: "nothing matches"})
	if err != nil || st.Total != 0 || len(st.ByPowerState) != 0 || st.ByCluster == nil {
		t.Errorf("empty stats = %+v, %v", st, err)
	}
}

func TestInventoryObjects(t *testing.T) {
	f := inventoryFixture(t)
	hosts, total, err := f.st.Objects(f.ctx, store.ObjectQuery{Kind: store.KindHost, Sort: []store.SortKey{{Field: "cpu_cores", Desc: true}}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hosts {
		cl := ""
		if h.Cluster != nil {
			cl = h.Cluster.Name
		}
		got = append(got, fmt.Sprintf("%s/%s/%d/%s", h.Name, cl, h.VMs, h.Datacenter))
	}
	if total != 4 || !slices.Equal(got, []string{"esx2/Prod/2/DC1", "esx1/Prod/1/DC1", "esx3//1/DC1", "esx9//1/DC9"}) {
		t.Errorf("hosts = %v (total %d)", got, total)
	}
	if hosts, total, _ := f.st.Objects(f.ctx, store.ObjectQuery{Kind: store.KindHost, Site: "dc1", Q: "ESX", Page: 2, PageSize: 2}); total != 3 || len(hosts) != 1 || hosts[0].Name != "esx3" {
		t.Errorf("hosts page 2 = %v (total %d)", vmNames(hosts), total)
	}
	c, err := f.st.Object(f.ctx, store.KindCluster, vcA, "domain-c1")
	if err != nil || c.VMs != 3 || c.Hosts != 2 || c.Name != "Prod" || c.Datacenter != "DC1" {
		t.Errorf("cluster = %+v, %v", c, err)
	}
	ds, _, err := f.st.Objects(f.ctx, store.ObjectQuery{Kind: store.KindDatastore, Sort: []store.SortKey{{Field: "free"}}})
	if err != nil || len(ds) != 2 || ds[0].Name != "ds-nfs" || ds[0].VMs != 1 || ds[1].VMs != 4 {
		t.Errorf("datastores = %+v, %v", ds, err)
	}
	if _, err := f.st.Object(f.ctx, store.KindHost, vcA, "vm-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a VM as a host: %v", err)
	}
	if _, _, err := f.st.Objects(f.ctx, store.ObjectQuery{Kind: store.KindVM}); err == nil {
		t.Error("Objects of vm accepted")
	}
}

func TestInventorySites(t *testing.T) {
	f := inventoryFixture(t)
	if err := f.st.EnsureSite(f.ctx, "empty", "nothing here"); err != nil {
		t.Fatal(err)
	}
	if err := f.st.AgentConnected(f.ctx, f.agent, "test", "127.0.0.1:1", 1, "1"); err != nil {
		t.Fatal(err)
	}
	sites, total, err := f.st.Sites(f.ctx, store.SiteQuery{Sort: []store.SortKey{{Field: "vms", Desc: true}}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range sites {
		got = append(got, fmt.Sprintf("%s:%d/%d/%v/%d/%d", s.Name, s.VMs, s.Hosts, s.Sources, s.Agents, s.AgentsConnected))
	}
	if total != 3 || !slices.Equal(got, []string{"dc1:4/3/[" + vcA + "]/1/1", "dc2:1/1/[" + vcB + "]/1/0", "empty:0/0/[]/0/0"}) {
		t.Errorf("sites = %v (total %d)", got, total)
	}
	if sites, total, _ := f.st.Sites(f.ctx, store.SiteQuery{Q: "NOTHING"}); total != 1 || sites[0].Name != "empty" {
		t.Errorf("q: %+v", sites)
	}
	if s, err := f.st.Site(f.ctx, "dc2"); err != nil || s.VMs != 1 {
		t.Errorf("site dc2 = %+v, %v", s, err)
	}
	if _, err := f.st.Site(f.ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown site: %v", err)
	}
}
