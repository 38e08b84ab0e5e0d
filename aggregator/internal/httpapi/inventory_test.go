package httpapi

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/aggregator/internal/audit"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

const vcEast, vcWest = "4c4c4544-0042-3510-8052-b4c04f4d4d32", "5d5d5555-west"

// invFixture is two sites: dc-east (an agent, vCenter vcEast: datacenter
// DC1, cluster Prod with esx1 and esx2, datastore ds1, three VMs) and
// dc-west (an agent, vcWest: one VM on a standalone host), and samples of
// web-01.
type invFixture struct {
	east, west store.Agent
}

func (e *env) writeInv(a store.Agent, seq uint64, source string, objs ...protocol.InventoryObject) {
	e.t.Helper()
	_, err := e.store.WriteInventory(context.Background(), store.BatchMeta{AgentID: a.ID, Site: a.Site, Epoch: 1, Seq: seq, Kind: protocol.KindInventory},
		&protocol.Inventory{Source: source, Full: true, At: time.Now().UnixMilli(), Objects: objs})
	if err != nil {
		e.t.Fatal(err)
	}
}

func invObj(kind, id, name, path string, props map[string]any) protocol.InventoryObject {
	return protocol.InventoryObject{Kind: kind, ID: id, Name: name, Path: path, Props: props}
}

func (e *env) inventory() invFixture {
	e.t.Helper()
	f := invFixture{east: e.enrollAgent("dc-east", "east-1"), west: e.enrollAgent("dc-west", "west-1")}
	e.writeInv(f.east, 1, vcEast,
		invObj("datacenter", "datacenter-1", "DC1", "/Datacenters/DC1", nil),
		invObj("cluster", "domain-c1", "Prod", "/Datacenters/DC1/host/Prod", map[string]any{"num_hosts": 2, "overall_status": "green"}),
		invObj("host", "host-1", "esx1", "/Datacenters/DC1/host/Prod/esx1", map[string]any{"cluster_id": "domain-c1", "connection_state": "connected", "cpu_cores": 16, "maintenance_mode": false}),
		invObj("host", "host-2", "esx2", "/Datacenters/DC1/host/Prod/esx2", map[string]any{"cluster_id": "domain-c1", "connection_state": "connected", "cpu_cores": 32}),
		invObj("datastore", "datastore-1", "ds1", "/Datacenters/DC1/datastore/ds1", map[string]any{"capacity": 1 << 40, "free": 1 << 39, "type": "VMFS", "accessible": true}),
		invObj("resourcepool", "resgroup-1", "Resources", "/Datacenters/DC1/host/Prod/Resources", nil),
		invObj("vm", "vm-1", "web-01", "/Datacenters/DC1/vm/web-01", map[string]any{
			"power_state": "poweredOn", "tools_running_status": "guestToolsRunning", "num_cpu": 4, "memory_mb": 8192,
			"guest_hostname": "web01.example.com", "guest_ips": []string{"10.1.2.3"}, "guest_os": "Ubuntu Linux (64-bit)",
			"guest_disks": []map[string]any{{"path": "/", "capacity": 1000, "free": 250}},
			"host_id":     "host-1", "cluster_id": "domain-c1", "resource_pool_id": "resgroup-1", "datastore_ids": []string{"datastore-1"},
			"snapshot_count": 1, "snapshot_oldest": int64(1700000000000), "tags": []string{"env/prod"},
			"custom_attributes": map[string]string{"owner": "web-team"}, "uuid": "4211-aaaa", "annotation": "front end"}),
		invObj("vm", "vm-2", "web-02", "/Datacenters/DC1/vm/web-02", map[string]any{
			"power_state": "poweredOff", "tools_running_status": "guestToolsNotRunning", "num_cpu": 2, "memory_mb": 4096,
			"host_id": "host-2", "cluster_id": "domain-c1", "datastore_ids": []string{"datastore-1"}, "tags": []string{"env/test"}}),
		invObj("vm", "vm-3", "db-01", "/Datacenters/DC1/vm/db-01", map[string]any{
			"power_state": "poweredOn", "tools_running_status": "guestToolsRunning", "num_cpu": 8, "memory_mb": 32768,
			"host_id": "host-2", "cluster_id": "domain-c1", "tags": []string{"env/prod"}}),
	)
	e.writeInv(f.west, 1, vcWest,
		invObj("host", "host-9", "esx9", "/Datacenters/DCW/host/esx9", nil),
		invObj("vm", "vm-1", "edge-01", "/Datacenters/DCW/vm/edge-01", map[string]any{"power_state": "suspended", "host_id": "host-9"}),
	)
	now := time.Now()
	_, err := e.store.WriteSamples(context.Background(), store.BatchMeta{AgentID: f.east.ID, Site: "dc-east", Epoch: 1, Seq: 2, Kind: protocol.KindSamples},
		&protocol.Samples{Series: []protocol.SeriesData{{
			Key:        protocol.SeriesKey{Source: vcEast, EntityKind: "vm", EntityID: "vm-1", Counters: []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}}},
			Timestamps: []int64{now.Add(-2 * time.Minute).UnixMilli(), now.Add(-time.Minute).UnixMilli()},
			Values:     [][]float64{{12.5, 42.5}},
		}}})
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

func vmNamesOf(items []VM) []string {
	out := []string{}
	for _, v := range items {
		out = append(out, v.Name)
	}
	return out
}

func TestVMsList(t *testing.T) {
	e := newEnv(t, nil)
	e.inventory()
	viewer := e.tokens["viewer"]
	list := func(query string) pageOf[VM] {
		t.Helper()
		res := e.do("GET", "/api/v1/vms?"+query, viewer, "")
		if res.status != 200 {
			t.Fatalf("?%s = %d %s", query, res.status, res.raw)
		}
		var p pageOf[VM]
		res.data(&p)
		return p
	}
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"", []string{"db-01", "edge-01", "web-01", "web-02"}},
		{"site=dc-west", []string{"edge-01"}},
		{"datacenter=DC1", []string{"db-01", "web-01", "web-02"}},
		{"cluster=Prod", []string{"db-01", "web-01", "web-02"}},
		{"cluster=" + url.QueryEscape(vcEast+":domain-c1"), []string{"db-01", "web-01", "web-02"}},
		{"host=esx2", []string{"db-01", "web-02"}},
		{"host=" + url.QueryEscape(vcEast+":host-1"), []string{"web-01"}},
		{"power_state=poweredOn", []string{"db-01", "web-01"}},
		{"tools_status=guestToolsNotRunning", []string{"web-02"}},
		{"tag=" + url.QueryEscape("env/prod"), []string{"db-01", "web-01"}},
		{"q=WEB", []string{"web-01", "web-02"}},
		{"q=10.1.2", []string{"web-01"}},
		{"q=example.com", []string{"web-01"}},
		{"q=nothing", []string{}},
		{"sort=-num_cpu", []string{"db-01", "web-01", "web-02", "edge-01"}},
		{"sort=site,-memory_mb", []string{"db-01", "web-01", "web-02", "edge-01"}},
		{"sort=-power_state,name", []string{"edge-01", "db-01", "web-01", "web-02"}},
	} {
		if got := list(c.query); !slices.Equal(vmNamesOf(got.Items), c.want) || got.Total != len(c.want) {
			t.Errorf("?%s = %v (total %d); want %v", c.query, vmNamesOf(got.Items), got.Total, c.want)
		}
	}
	p := list("page=2&page_size=3")
	if !slices.Equal(vmNamesOf(p.Items), []string{"web-02"}) || p.Total != 4 || p.Page != 2 || p.PageSize != 3 {
		t.Errorf("page 2 = %+v", p)
	}
	web := list("q=web-01").Items[0]
	if web.ID != vcEast+":vm-1" || web.Site != "dc-east" || web.Source != vcEast || web.Moref != "vm-1" || web.Datacenter != "DC1" ||
		web.PowerState != "poweredOn" || web.ToolsRunningStatus != "guestToolsRunning" || web.NumCPU == nil || *web.NumCPU != 4 ||
		*web.MemoryMB != 8192 || web.Host == nil || *web.Host != (Ref{ID: vcEast + ":host-1", Name: "esx1"}) ||
		*web.Cluster != (Ref{ID: vcEast + ":domain-c1", Name: "Prod"}) || !slices.Equal(web.GuestIPs, []string{"10.1.2.3"}) ||
		!slices.Equal(web.Tags, []string{"env/prod"}) || web.SnapshotCount != 1 || web.GuestOS != "Ubuntu Linux (64-bit)" {
		t.Errorf("web-01 = %+v", web)
	}
	if edge := list("q=edge").Items[0]; edge.Cluster != nil || edge.NumCPU != nil || edge.Tags == nil || edge.GuestIPs == nil {
		t.Errorf("edge-01 = %+v", edge)
	}

	for _, c := range []struct{ query, field, code string }{
		{"power_state=on", "power_state", FieldInvalidValue},
		{"tools_status=running", "tools_status", FieldInvalidValue},
		{"sort=props", "sort", FieldInvalidValue},
		{"sort=name,-guest_os", "sort", FieldInvalidValue},
		{"page_size=501", "page_size", FieldOutOfRange},
		{"page=x", "page", FieldInvalidType},
		{"q=" + strings.Repeat("x", 201), "q", FieldTooLong},
		{"site=" + strings.Repeat("x", 64), "site", FieldTooLong},
	} {
		for _, lang := range Languages {
			res := e.do("GET", "/api/v1/vms?"+c.query, viewer, "", "Accept-Language", lang)
			var d errData
			res.data(&d)
			if res.status != 422 || res.code() != CodeValidation || len(d.Fields) != 1 || d.Fields[0].Field != c.field || d.Fields[0].Code != c.code ||
				res.env.Message != messages[CodeValidation][lang] {
				t.Errorf("?%s (%s) = %d %s; want 422 %s/%s", c.query, lang, res.status, res.raw, c.field, c.code)
			}
		}
	}
	// Odd but well-formed input is no error.
	for _, q := range []string{"tag=%00", "q=%ff", "host=%C3"} {
		if res := e.do("GET", "/api/v1/vms?"+q, viewer, ""); res.status != 422 || res.code() != CodeValidation {
			t.Errorf("?%s = %d %s; want 422", q, res.status, res.raw)
		}
	}
	for _, q := range []string{"cluster=a:b:c", "host=:", "q=%25_%5C", "datacenter=" + url.QueryEscape("'; DROP TABLE sites; --")} {
		if res := e.do("GET", "/api/v1/vms?"+q, viewer, ""); res.status != 200 {
			t.Errorf("?%s = %d %s", q, res.status, res.raw)
		}
	}
}

func TestVMGet(t *testing.T) {
	e := newEnv(t, nil)
	e.inventory()
	viewer := e.tokens["viewer"]
	res := e.do("GET", "/api/v1/vms/"+url.PathEscape(vcEast+":vm-1"), viewer, "")
	if res.status != 200 {
		t.Fatalf("get = %d %s", res.status, res.raw)
	}
	var d VMDetail
	res.data(&d)
	if d.Name != "web-01" || d.ResourcePool == nil || *d.ResourcePool != (Ref{ID: vcEast + ":resgroup-1", Name: "Resources"}) ||
		!slices.Equal(d.Datastores, []Ref{{ID: vcEast + ":datastore-1", Name: "ds1"}}) ||
		len(d.GuestDisks) != 1 || d.GuestDisks[0].Path != "/" || *d.GuestDisks[0].Capacity != 1000 || *d.GuestDisks[0].Free != 250 ||
		d.SnapshotOldest == nil || !d.SnapshotOldest.Equal(time.UnixMilli(1700000000000)) ||
		d.CustomAttributes["owner"] != "web-team" || d.UUID != "4211-aaaa" || d.Annotation != "front end" || d.GuestHostname != "web01.example.com" ||
		d.Props["power_state"] != "poweredOn" || d.Datacenter != "DC1" || d.Host.Name != "esx1" {
		t.Errorf("detail = %s", res.raw)
	}
	if len(d.Latest) != 1 || d.Latest[0].Metric != "cpu.usage.average" || d.Latest[0].Value != 0.425 || d.Latest[0].Unit != "%" || time.Since(d.Latest[0].TS) > 5*time.Minute {
		t.Errorf("latest = %+v", d.Latest)
	}
	// Same moref, other source; and an unescaped id works too.
	res = e.do("GET", "/api/v1/vms/"+vcWest+":vm-1", viewer, "")
	var edge VMDetail
	res.data(&edge)
	if res.status != 200 || edge.Name != "edge-01" || len(edge.Latest) != 0 || edge.Latest == nil || edge.Datastores == nil || edge.SnapshotOldest != nil {
		t.Errorf("edge-01 = %d %s", res.status, res.raw)
	}
	for _, id := range []string{vcEast + ":vm-404", "nope:vm-1", vcEast + ":host-1", "vm-1", ":vm-1", vcEast + ":", "%00:vm-1", strings.Repeat("a", 600) + ":vm-1", "a%2Fb:vm-1", "%ff:vm-1"} {
		for _, lang := range Languages {
			res := e.do("GET", "/api/v1/vms/"+id, viewer, "", "Accept-Language", lang)
			if res.status != 404 || res.code() != CodeVMNotFound || res.env.Message != messages[CodeVMNotFound][lang] {
				t.Errorf("get %s (%s) = %d %s; want 404 %s", id, lang, res.status, res.raw, CodeVMNotFound)
			}
		}
	}
	for _, code := range []string{CodeVMNotFound, CodeHostNotFound, CodeClusterNotFound, CodeDatastoreNotFound, CodeSiteNotFound, CodeSiteNoAgent} {
		m := messages[code]
		if m[LangEN] == "" || m[LangEN] == m[LangZH] || m[LangEN] == m[LangJA] || m[LangZH] == m[LangJA] {
			t.Errorf("%s is not translated: %v", code, m)
		}
	}
}

func TestVMStats(t *testing.T) {
	e := newEnv(t, nil)
	e.inventory()
	var st VMStats
	res := e.do("GET", "/api/v1/vms/stats", e.tokens["viewer"], "")
	res.data(&st)
	want := VMStats{Total: 4,
		ByPowerState:  map[string]int64{"poweredOn": 2, "poweredOff": 1, "suspended": 1},
		ByToolsStatus: map[string]int64{"guestToolsRunning": 2, "guestToolsNotRunning": 1, "unknown": 1},
		BySite:        map[string]int64{"dc-east": 3, "dc-west": 1},
		ByCluster:     []ClusterVMs{{ID: vcEast + ":domain-c1", Name: "Prod", Site: "dc-east", VMs: 3}}}
	if res.status != 200 || !jsonEqual(st, want) {
		t.Errorf("stats = %d %s", res.status, res.raw)
	}
	res = e.do("GET", "/api/v1/vms/stats?site=dc-west", e.tokens["viewer"], "")
	res.data(&st)
	if st.Total != 1 || len(st.ByCluster) != 0 || st.ByCluster == nil {
		t.Errorf("west stats = %s", res.raw)
	}
	if res := e.do("GET", "/api/v1/vms/stats?power_state=off", e.tokens["viewer"], ""); res.status != 422 {
		t.Errorf("bad filter = %d", res.status)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestHostsClustersDatastores(t *testing.T) {
	e := newEnv(t, nil)
	e.inventory()
	viewer := e.tokens["viewer"]
	var hosts pageOf[Host]
	res := e.do("GET", "/api/v1/hosts?sort=-cpu_cores", viewer, "")
	res.data(&hosts)
	var got []string
	for _, h := range hosts.Items {
		got = append(got, h.Name)
	}
	if res.status != 200 || hosts.Total != 3 || !slices.Equal(got, []string{"esx2", "esx1", "esx9"}) || hosts.Items[0].VMs != 2 ||
		hosts.Items[0].Cluster.Name != "Prod" || hosts.Items[0].Props != nil || hosts.Items[2].Cluster != nil {
		t.Errorf("hosts = %d %s", res.status, res.raw)
	}
	res = e.do("GET", "/api/v1/hosts?site=dc-west&q=ESX", viewer, "")
	res.data(&hosts)
	if hosts.Total != 1 || hosts.Items[0].ID != vcWest+":host-9" {
		t.Errorf("west hosts = %s", res.raw)
	}
	var h Host
	res = e.do("GET", "/api/v1/hosts/"+vcEast+":host-1", viewer, "")
	res.data(&h)
	if res.status != 200 || h.VMs != 1 || *h.CPUCores != 16 || h.MaintenanceMode == nil || *h.MaintenanceMode || h.Props["connection_state"] != "connected" || h.Datacenter != "DC1" {
		t.Errorf("host = %d %s", res.status, res.raw)
	}
	var c Cluster
	res = e.do("GET", "/api/v1/clusters/"+url.PathEscape(vcEast+":domain-c1"), viewer, "")
	res.data(&c)
	if res.status != 200 || c.VMs != 3 || c.Hosts != 2 || *c.NumHosts != 2 || c.OverallStatus != "green" {
		t.Errorf("cluster = %d %s", res.status, res.raw)
	}
	var clusters pageOf[Cluster]
	e.do("GET", "/api/v1/clusters", viewer, "").data(&clusters)
	if clusters.Total != 1 || clusters.Items[0].VMs != 3 {
		t.Errorf("clusters = %+v", clusters)
	}
	var ds pageOf[Datastore]
	e.do("GET", "/api/v1/datastores?sort=-capacity", viewer, "").data(&ds)
	if ds.Total != 1 || ds.Items[0].VMs != 2 || ds.Items[0].Type != "VMFS" || *ds.Items[0].Capacity != 1<<40 || !*ds.Items[0].Accessible {
		t.Errorf("datastores = %+v", ds)
	}
	var one Datastore
	if res := e.do("GET", "/api/v1/datastores/"+vcEast+":datastore-1", viewer, ""); res.status != 200 {
		t.Errorf("datastore = %d %s", res.status, res.raw)
	} else if res.data(&one); one.VMs != 2 || one.Props == nil {
		t.Errorf("datastore = %s", res.raw)
	}
	for _, c := range []struct{ base, code, good string }{
		{"/api/v1/hosts/", CodeHostNotFound, vcEast + ":vm-1"},
		{"/api/v1/clusters/", CodeClusterNotFound, vcEast + ":host-1"},
		{"/api/v1/datastores/", CodeDatastoreNotFound, vcWest + ":datastore-1"},
	} {
		for _, id := range []string{c.good, "garbage", "x:", uuidLike()} {
			for _, lang := range Languages {
				res := e.do("GET", c.base+id, viewer, "", "Accept-Language", lang)
				if res.status != 404 || res.code() != c.code || res.env.Message != messages[c.code][lang] {
					t.Errorf("GET %s%s (%s) = %d %s", c.base, id, lang, res.status, res.raw)
				}
			}
		}
		list := strings.TrimSuffix(c.base, "/")
		for _, q := range []string{"sort=num_cpu", "page_size=0", "q=" + strings.Repeat("q", 201)} {
			if res := e.do("GET", list+"?"+q, viewer, ""); res.status != 422 || res.code() != CodeValidation {
				t.Errorf("GET %s?%s = %d %s", list, q, res.status, res.raw)
			}
		}
	}
}

func uuidLike() string { return "6ba7b810-9dad-11d1-80b4-00c04fd430c8" }

func TestSites(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	e.connectAgent(f.east, &protocol.Heartbeat{})
	viewer := e.tokens["viewer"]
	var sites pageOf[Site]
	res := e.do("GET", "/api/v1/sites?sort=-vms", viewer, "")
	res.data(&sites)
	if res.status != 200 || sites.Total != 2 || sites.Items[0].Name != "dc-east" || sites.Items[0].VMs != 3 || sites.Items[0].Hosts != 2 ||
		!slices.Equal(sites.Items[0].Sources, []string{vcEast}) || sites.Items[0].Agents != 1 || sites.Items[0].AgentsConnected != 1 ||
		sites.Items[1].AgentsConnected != 0 {
		t.Errorf("sites = %d %s", res.status, res.raw)
	}
	e.do("GET", "/api/v1/sites?q=WEST", viewer, "").data(&sites)
	if sites.Total != 1 || sites.Items[0].Name != "dc-west" {
		t.Errorf("q = %+v", sites)
	}
	var s Site
	if res := e.do("GET", "/api/v1/sites/dc-west", viewer, ""); res.status != 200 {
		t.Errorf("site = %d %s", res.status, res.raw)
	} else if res.data(&s); s.VMs != 1 || s.Hosts != 1 {
		t.Errorf("site = %s", res.raw)
	}
	for _, name := range []string{"nope", "DC-EAST", "a%20b", strings.Repeat("a", 70)} {
		for _, lang := range Languages {
			res := e.do("GET", "/api/v1/sites/"+name, viewer, "", "Accept-Language", lang)
			if res.status != 404 || res.code() != CodeSiteNotFound || res.env.Message != messages[CodeSiteNotFound][lang] {
				t.Errorf("site %s (%s) = %d %s", name, lang, res.status, res.raw)
			}
		}
	}
	if res := e.do("GET", "/api/v1/sites?sort=agents", viewer, ""); res.status != 422 {
		t.Errorf("bad sort = %d", res.status)
	}
}

func TestSiteResync(t *testing.T) {
	e := newEnv(t, nil)
	f := e.inventory()
	second := e.enrollAgent("dc-east", "east-2")
	revoked := e.enrollAgent("dc-east", "east-3")
	if err := e.store.RevokeAgent(store.AllSites(context.Background()), revoked.ID); err != nil {
		t.Fatal(err)
	}
	op := e.tokens["operator"]

	// Nothing connected: 409, in every language.
	for _, lang := range Languages {
		res := e.do("POST", "/api/v1/sites/dc-east/resync", op, "", "Accept-Language", lang)
		if res.status != 409 || res.code() != CodeSiteNoAgent || res.env.Message != messages[CodeSiteNoAgent][lang] {
			t.Errorf("resync with no agent (%s) = %d %s", lang, res.status, res.raw)
		}
	}
	// Connected: the east agents (not the revoked one, not west's) get
	// resync_inventory.
	e.cmds.set(f.east.ID, second.ID, revoked.ID, f.west.ID)
	res := e.do("POST", "/api/v1/sites/dc-east/resync", op, "", "X-Request-ID", "req-resync")
	var out struct {
		AgentsNotified int      `json:"agents_notified"`
		Agents         []string `json:"agents"`
	}
	res.data(&out)
	sent := e.cmds.sends()
	slices.Sort(sent)
	want := []string{f.east.ID + " resync_inventory", second.ID + " resync_inventory"}
	slices.Sort(want)
	if res.status != 202 || out.AgentsNotified != 2 || len(out.Agents) != 2 || !slices.Equal(sent, want) {
		t.Errorf("resync = %d %s; sent %v", res.status, res.raw, sent)
	}
	if CommandResyncInventory != "resync_inventory" {
		t.Errorf("command name %q is not the agent's", CommandResyncInventory)
	}
	// A send that fails does not count.
	e.cmds.set(f.west.ID)
	e.cmds.refuse[f.west.ID] = true
	if res := e.do("POST", "/api/v1/sites/dc-west/resync", op, ""); res.status != 409 || res.code() != CodeSiteNoAgent {
		t.Errorf("refused send = %d %s", res.status, res.raw)
	}
	// Unknown and malformed sites.
	for _, name := range []string{"nope", "NOPE", "-x"} {
		if res := e.do("POST", "/api/v1/sites/"+name+"/resync", op, ""); res.status != 404 || res.code() != CodeSiteNotFound {
			t.Errorf("resync %s = %d %s", name, res.status, res.raw)
		}
	}
	// vm:write is needed.
	if res := e.do("POST", "/api/v1/sites/dc-east/resync", e.tokens["viewer"], ""); res.status != 403 {
		t.Errorf("viewer resync = %d", res.status)
	}

	e.flushAudit()
	var recs cursorOf[audit.Record]
	e.do("GET", "/api/v1/audit-logs?action=site.resync", e.tokens["auditor"], "").data(&recs)
	var ok *audit.Record
	for i, r := range recs.Items {
		if r.RequestID == "req-resync" {
			ok = &recs.Items[i]
		}
	}
	if ok == nil || ok.ResourceType != "site" || ok.ResourceID != "dc-east" || ok.Result != audit.ResultSuccess || ok.Status != 202 || !strings.Contains(string(ok.Summary), second.ID) {
		t.Errorf("audit record = %+v", ok)
	}
	if len(recs.Items) < 8 {
		t.Errorf("audit records = %d; want every attempt", len(recs.Items))
	}
}
