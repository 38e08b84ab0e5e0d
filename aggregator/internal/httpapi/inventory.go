package httpapi

import (
	"context"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// Inventory is what the VM module's read routes (/vms, /hosts, /clusters,
// /datastores, /sites) need: queries over the inventory the agents send,
// filtered, sorted and paged by the implementation (*store.Store; the lists
// can hold tens of thousands of VMs). Lookups of an unknown object or site
// return store.ErrNotFound.
type Inventory interface {
	VMs(ctx context.Context, q store.VMQuery) ([]store.Object, int, error)
	VM(ctx context.Context, source, moref string) (store.VMDetail, error)
	VMStats(ctx context.Context, f store.VMFilter) (store.VMStats, error)
	Objects(ctx context.Context, q store.ObjectQuery) ([]store.Object, int, error)
	Object(ctx context.Context, kind, source, moref string) (store.Object, error)
	Sites(ctx context.Context, q store.SiteQuery) ([]store.SiteInfo, int, error)
	Site(ctx context.Context, name string) (store.SiteInfo, error)

	// The user side of VMs and VM groups (vmgroups.go).
	PatchVM(ctx context.Context, source, moref string, p store.VMFieldsPatch, by string) error
	ForgetVM(ctx context.Context, source, moref string) error
	VMGroups(ctx context.Context) ([]store.VMGroup, error)
	VMGroupByID(ctx context.Context, id uuid.UUID) (store.VMGroup, error)
	CreateVMGroup(ctx context.Context, in store.GroupInput, by string) (uuid.UUID, error)
	UpdateVMGroup(ctx context.Context, id uuid.UUID, in store.GroupInput, c store.GroupChange) error
	DeleteVMGroup(ctx context.Context, id uuid.UUID) error
	SetGroupMembers(ctx context.Context, id uuid.UUID, vms []store.VMRef, add bool, c store.GroupChange) ([]error, error)
	ScopeGroups(ctx context.Context, ids []string) (missing, labelRuled []string, err error)
}

// Commander sends commands to the agents connected to this aggregator (the
// ingest server). It is declared here so that this package does not depend
// on the ingest server.
type Commander interface {
	// Connected lists the ids of the agents connected to this aggregator.
	Connected() []string
	// SendCommand sends cmd to a connected agent; false if it is not
	// connected (or the send failed).
	SendCommand(agentID string, cmd protocol.Command) bool
}

// CommandResyncInventory asks an agent to send a full inventory of each of
// its vCenters (the agent's name for it).
const CommandResyncInventory = "resync_inventory"

// Object ids. An inventory object is identified in the API by
// "<source>:<moref>": the vCenter's instance UUID (or the configured name of
// the endpoint) and the managed object reference, e.g.
// "4c4c4544-0042-3510-8052-b4c04f4d4d32:vm-123". Morefs never contain ':',
// so the id splits at its last ':'. Clients should URL-encode it in paths.
const objectIDDoc = `an inventory object id, "<source>:<moref>": the vCenter instance UUID and the managed object reference, e.g. "4c4c4544-0042-3510-8052-b4c04f4d4d32:vm-123" (URL-encode it in paths)`

// maxObjectID bounds an object id's length.
const maxObjectID = 512

func objectID(source, moref string) string { return source + ":" + moref }

// parseObjectID splits an object id; ok is false for anything malformed.
func parseObjectID(id string) (source, moref string, ok bool) {
	if len(id) > maxObjectID || !utf8.ValidString(id) || strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", "", false
	}
	i := strings.LastIndexByte(id, ':')
	if i <= 0 || i == len(id)-1 {
		return "", "", false
	}
	return id[:i], id[i+1:], true
}

// pathObjectID reads the {id} parameter as an object id; a malformed id is
// the resource's 404.
func pathObjectID(r *http.Request, notFoundCode string) (source, moref string, err error) {
	raw, uerr := url.PathUnescape(chi.URLParam(r, "id"))
	source, moref, ok := parseObjectID(raw)
	if uerr != nil || !ok {
		return "", "", newError(http.StatusNotFound, notFoundCode)
	}
	return source, moref, nil
}

// Ref is another inventory object: its id and name (empty when the
// inventory does not have it).
type Ref struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func refOf(source string, r *store.ObjectRef) *Ref {
	if r == nil {
		return nil
	}
	return &Ref{ID: objectID(source, r.Moref), Name: r.Name}
}

// Typed reads of agent properties (JSON numbers arrive as float64).

func propStr(p map[string]any, k string) string { s, _ := p[k].(string); return s }

func propInt(p map[string]any, k string) *int64 {
	f, ok := p[k].(float64)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	n := int64(f)
	return &n
}

func propBool(p map[string]any, k string) *bool {
	b, ok := p[k].(bool)
	if !ok {
		return nil
	}
	return &b
}

func propStrs(p map[string]any, k string) []string {
	out := []string{}
	list, _ := p[k].([]any)
	for _, v := range list {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func propMap(p map[string]any, k string) map[string]string {
	out := map[string]string{}
	m, _ := p[k].(map[string]any)
	for k, v := range m {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

// objectBase is what every inventory object shows.
type objectBase struct {
	ID         string    `json:"id"`
	Site       string    `json:"site"`
	Source     string    `json:"source"`
	Moref      string    `json:"moref"`
	Name       string    `json:"name"`
	Path       string    `json:"path"`
	Datacenter string    `json:"datacenter"`
	Tags       []string  `json:"tags"`
	FirstSeen  time.Time `json:"first_seen"`
	ObservedAt time.Time `json:"observed_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

func baseOf(o *store.Object) objectBase {
	return objectBase{ID: objectID(o.Source, o.Moref), Site: o.Site, Source: o.Source, Moref: o.Moref, Name: o.Name,
		Path: o.Path, Datacenter: o.Datacenter, Tags: propStrs(o.Props, "tags"),
		FirstSeen: o.FirstSeen.UTC(), ObservedAt: o.ObservedAt.UTC(), UpdatedAt: o.UpdatedAt.UTC()}
}

// VM is a VM as GET /vms lists it.
type VM struct {
	objectBase
	PowerState         string   `json:"power_state"`
	ConnectionState    string   `json:"connection_state"`
	ToolsRunningStatus string   `json:"tools_running_status"`
	ToolsVersionStatus string   `json:"tools_version_status"`
	GuestHostname      string   `json:"guest_hostname"`
	GuestIPs           []string `json:"guest_ips"`
	GuestOS            string   `json:"guest_os"`
	NumCPU             *int64   `json:"num_cpu"`
	MemoryMB           *int64   `json:"memory_mb"`
	Template           bool     `json:"template"`
	Host               *Ref     `json:"host"`
	Cluster            *Ref     `json:"cluster"`
	SnapshotCount      int64    `json:"snapshot_count"`
}

func vmOf(o *store.Object) VM {
	p := o.Props
	v := VM{objectBase: baseOf(o),
		PowerState: propStr(p, "power_state"), ConnectionState: propStr(p, "connection_state"),
		ToolsRunningStatus: propStr(p, "tools_running_status"), ToolsVersionStatus: propStr(p, "tools_version_status"),
		GuestHostname: propStr(p, "guest_hostname"), GuestIPs: propStrs(p, "guest_ips"), GuestOS: propStr(p, "guest_os"),
		NumCPU: propInt(p, "num_cpu"), MemoryMB: propInt(p, "memory_mb"),
		Host: refOf(o.Source, o.Host), Cluster: refOf(o.Source, o.Cluster)}
	if b := propBool(p, "template"); b != nil {
		v.Template = *b
	}
	if n := propInt(p, "snapshot_count"); n != nil {
		v.SnapshotCount = *n
	}
	return v
}

// GuestDisk is a guest file system as VMware Tools reports it.
type GuestDisk struct {
	Path     string `json:"path"`
	Capacity *int64 `json:"capacity"`
	Free     *int64 `json:"free"`
}

// LatestValue is the newest value of one metric of an entity.
type LatestValue struct {
	Metric   string    `json:"metric"`
	Instance string    `json:"instance"`
	Unit     string    `json:"unit"`
	Value    float64   `json:"value"`
	TS       time.Time `json:"ts"`
}

// VMDetail is GET /vms/{id}: the list's fields and the whole placement,
// guest, snapshot and configuration details, the latest metric values, and
// the agent's raw properties.
type VMDetail struct {
	VM
	ResourcePool     *Ref              `json:"resource_pool"`
	Datastores       []Ref             `json:"datastores"`
	GuestDisks       []GuestDisk       `json:"guest_disks"`
	ToolsVersion     string            `json:"tools_version"`
	SnapshotOldest   *time.Time        `json:"snapshot_oldest"`
	CustomAttributes map[string]string `json:"custom_attributes"`
	UUID             string            `json:"uuid"`
	InstanceUUID     string            `json:"instance_uuid"`
	Annotation       string            `json:"annotation"`
	Latest           []LatestValue     `json:"latest"`
	Props            map[string]any    `json:"props"`
	// The operator's fields (PATCH /vms/{id}) and the VM's groups.
	Description string            `json:"description"`
	Owner       string            `json:"owner"`
	Labels      map[string]string `json:"labels"`
	Groups      []VMGroupRef      `json:"groups"`
}

// VMGroupRef is a group a VM is in, and how: by hand, by the group's rule,
// or both.
type VMGroupRef struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Static bool   `json:"static"`
	ByRule bool   `json:"by_rule"`
}

func vmDetailOf(d *store.VMDetail) VMDetail {
	p := d.Props
	out := VMDetail{VM: vmOf(&d.Object), ResourcePool: refOf(d.Source, d.ResourcePool), Datastores: []Ref{},
		GuestDisks: []GuestDisk{}, ToolsVersion: propStr(p, "tools_version"), CustomAttributes: propMap(p, "custom_attributes"),
		UUID: propStr(p, "uuid"), InstanceUUID: propStr(p, "instance_uuid"), Annotation: propStr(p, "annotation"),
		Latest: []LatestValue{}, Props: p,
		Description: d.UserFields.Description, Owner: d.UserFields.Owner, Labels: d.UserFields.Labels, Groups: []VMGroupRef{}}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	for _, g := range d.Groups {
		out.Groups = append(out.Groups, VMGroupRef{ID: g.ID.String(), Name: g.Name, Static: g.Static, ByRule: g.ByRule})
	}
	for i := range d.Datastores {
		out.Datastores = append(out.Datastores, *refOf(d.Source, &d.Datastores[i]))
	}
	disks, _ := p["guest_disks"].([]any)
	for _, x := range disks {
		if m, ok := x.(map[string]any); ok {
			out.GuestDisks = append(out.GuestDisks, GuestDisk{Path: propStr(m, "path"), Capacity: propInt(m, "capacity"), Free: propInt(m, "free")})
		}
	}
	if ms := propInt(p, "snapshot_oldest"); ms != nil && *ms > 0 {
		t := time.UnixMilli(*ms).UTC()
		out.SnapshotOldest = &t
	}
	for _, v := range d.Latest {
		out.Latest = append(out.Latest, LatestValue{Metric: v.Counter, Instance: v.Instance, Unit: v.Unit, Value: displayValue(v.Unit, v.Value), TS: v.TS.UTC()})
		if v.Counter == store.CounterCPUReady {
			out.Latest = append(out.Latest, LatestValue{Metric: store.MetricCPUReadyPercent, Instance: v.Instance, Unit: "%",
				Value: readyPercentLatest(store.KindVM, v.Instance, v.Value, d.Props), TS: v.TS.UTC()})
		}
	}
	return out
}

// Host is an ESXi host.
type Host struct {
	objectBase
	ConnectionState string `json:"connection_state"`
	PowerState      string `json:"power_state"`
	MaintenanceMode *bool  `json:"maintenance_mode"`
	CPUMHz          *int64 `json:"cpu_mhz"`
	CPUCores        *int64 `json:"cpu_cores"`
	CPUThreads      *int64 `json:"cpu_threads"`
	MemoryBytes     *int64 `json:"memory_bytes"`
	Product         string `json:"product"`
	Cluster         *Ref   `json:"cluster"`
	VMs             int64  `json:"vms"`
	// Props is the agent's raw properties (detail only).
	Props map[string]any `json:"props,omitempty"`
}

func hostOf(o *store.Object, detail bool) Host {
	p := o.Props
	h := Host{objectBase: baseOf(o), ConnectionState: propStr(p, "connection_state"), PowerState: propStr(p, "power_state"),
		MaintenanceMode: propBool(p, "maintenance_mode"), CPUMHz: propInt(p, "cpu_mhz"), CPUCores: propInt(p, "cpu_cores"),
		CPUThreads: propInt(p, "cpu_threads"), MemoryBytes: propInt(p, "memory_bytes"), Product: propStr(p, "product"),
		Cluster: refOf(o.Source, o.Cluster), VMs: o.VMs}
	if detail {
		h.Props = p
	}
	return h
}

// Cluster is a vSphere cluster.
type Cluster struct {
	objectBase
	NumHosts          *int64         `json:"num_hosts"`
	NumEffectiveHosts *int64         `json:"num_effective_hosts"`
	CPUMHzTotal       *int64         `json:"cpu_mhz_total"`
	MemoryBytesTotal  *int64         `json:"memory_bytes_total"`
	OverallStatus     string         `json:"overall_status"`
	Hosts             int64          `json:"hosts"`
	VMs               int64          `json:"vms"`
	Props             map[string]any `json:"props,omitempty"`
}

func clusterOf(o *store.Object, detail bool) Cluster {
	p := o.Props
	c := Cluster{objectBase: baseOf(o), NumHosts: propInt(p, "num_hosts"), NumEffectiveHosts: propInt(p, "num_effective_hosts"),
		CPUMHzTotal: propInt(p, "cpu_mhz_total"), MemoryBytesTotal: propInt(p, "memory_bytes_total"),
		OverallStatus: propStr(p, "overall_status"), Hosts: o.Hosts, VMs: o.VMs}
	if detail {
		c.Props = p
	}
	return c
}

// Datastore is a datastore.
type Datastore struct {
	objectBase
	Type            string         `json:"type"`
	URL             string         `json:"url"`
	Capacity        *int64         `json:"capacity"`
	Free            *int64         `json:"free"`
	Accessible      *bool          `json:"accessible"`
	MaintenanceMode string         `json:"maintenance_mode"`
	VMs             int64          `json:"vms"`
	Props           map[string]any `json:"props,omitempty"`
}

func datastoreOf(o *store.Object, detail bool) Datastore {
	p := o.Props
	d := Datastore{objectBase: baseOf(o), Type: propStr(p, "type"), URL: propStr(p, "url"), Capacity: propInt(p, "capacity"),
		Free: propInt(p, "free"), Accessible: propBool(p, "accessible"), MaintenanceMode: propStr(p, "maintenance_mode"), VMs: o.VMs}
	if detail {
		d.Props = p
	}
	return d
}

// Site is a site with its counts.
type Site struct {
	Name            string    `json:"name"`
	Description     string    `json:"description"`
	CreatedAt       time.Time `json:"created_at"`
	VMs             int64     `json:"vms"`
	Hosts           int64     `json:"hosts"`
	Sources         []string  `json:"sources"`
	Agents          int64     `json:"agents"`
	AgentsConnected int64     `json:"agents_connected"`
}

func siteOf(s *store.SiteInfo) Site {
	return Site{Name: s.Name, Description: s.Description, CreatedAt: s.CreatedAt.UTC(), VMs: s.VMs, Hosts: s.Hosts,
		Sources: s.Sources, Agents: s.Agents, AgentsConnected: s.AgentsConnected}
}

// Power states and tools running states the VM filters accept (vSphere's
// VirtualMachinePowerState and VirtualMachineToolsRunningStatus).
var (
	vmPowerStates  = []string{"poweredOn", "poweredOff", "suspended"}
	vmToolsStates  = []string{"guestToolsRunning", "guestToolsNotRunning", "guestToolsExecutingScripts"}
	siteSortFields = fieldSet(store.SiteSortFields())
)

func fieldSet(fields []string) map[string]string {
	m := make(map[string]string, len(fields))
	for _, f := range fields {
		m[f] = f
	}
	return m
}

func storeSort(keys []auth.SortKey) []store.SortKey {
	out := make([]store.SortKey, 0, len(keys))
	for _, k := range keys {
		out = append(out, store.SortKey{Field: k.Field, Desc: k.Desc})
	}
	return out
}

// objectMatch reads a "name or id" filter.
func (q *query) objectMatch(name string) store.ObjectMatch {
	s := q.str(name, maxObjectID)
	m := store.ObjectMatch{Name: s}
	if src, moref, ok := parseObjectID(s); ok {
		m.Source, m.Moref = src, moref
	}
	return m
}

func (q *query) vmFilter() store.VMFilter {
	return store.VMFilter{
		Site:       q.str("site", 63),
		Datacenter: q.str("datacenter", 255),
		Cluster:    q.objectMatch("cluster"),
		Host:       q.objectMatch("host"),
		PowerState: q.oneOf("power_state", vmPowerStates...),
		Tools:      q.oneOf("tools_status", vmToolsStates...),
		Tag:        q.str("tag", 255),
		Group:      q.groupID("group"),
		Q:          q.str("q", 200),
	}
}

var vmFilterParams = []Param{
	{Name: "site", Description: "site name"},
	{Name: "group", Description: "a VM group's id: its members (static and by rule)"},
	{Name: "datacenter", Description: "datacenter name"},
	{Name: "cluster", Description: "cluster name or id (" + objectIDDoc + ")"},
	{Name: "host", Description: "host name or id"},
	{Name: "power_state", Description: strings.Join(vmPowerStates, ", ")},
	{Name: "tools_status", Description: "VMware Tools running status: " + strings.Join(vmToolsStates, ", ")},
	{Name: "tag", Description: `vSphere tag "category/name"`},
	{Name: "q", Description: "substring of the name, guest hostname or a guest IP address, any case"},
}

// inventoryResource is the read side of the VM module: /vms, /hosts,
// /clusters, /datastores and /sites, and the site resync command.
type inventoryResource struct{ a *API }

// Routes lists the inventory routes.
func (h *inventoryResource) Routes() []Route {
	const tag = "inventory"
	sortDesc := func(kind, def string) string {
		return "comma-separated fields, - for descending (default " + def + "): " + strings.Join(store.SortFields(kind), ", ")
	}
	idDesc := "; {id} is " + objectIDDoc
	listParams := func(kind string) []Param {
		return append([]Param{
			{Name: "site", Description: "site name"},
			{Name: "q", Description: "substring of the name, any case"},
			{Name: "sort", Description: sortDesc(kind, "name")},
		}, pageParams...)
	}
	return []Route{
		{Method: "GET", Pattern: "/vms", Access: auth.PermVMRead, Handle: h.listVMs, Doc: Doc{Tag: tag,
			Summary:  "List VMs (live inventory), filtered, sorted and paged; ids are " + objectIDDoc,
			Params:   append(append(slices.Clone(vmFilterParams), Param{Name: "sort", Description: sortDesc(store.KindVM, "name")}), pageParams...),
			Response: pageSchema(ref("VM")), Errors: []int{401, 403, 422}}},
		{Method: "GET", Pattern: "/vms/stats", Access: auth.PermVMRead, Handle: h.vmStats, Doc: Doc{Tag: tag,
			Summary: "VM counts by power state, tools status, site and cluster (top 50), with the filters of GET /vms",
			Params:  vmFilterParams, Response: ref("VMStats"), Errors: []int{401, 403, 422}}},
		{Method: "GET", Pattern: "/vms/{id}", Access: auth.PermVMRead, Handle: h.getVM, Doc: Doc{Tag: tag,
			Summary:  "Get a VM: inventory, placement, guest info, snapshots, tags, custom attributes and the latest value of each metric (last hour)" + idDesc,
			Response: ref("VMDetail"), Errors: []int{401, 403, 404}}},
		{Method: "GET", Pattern: "/hosts", Access: auth.PermVMRead, Handle: h.listObjects(store.KindHost), Doc: Doc{Tag: tag,
			Summary: "List ESXi hosts with their VM counts", Params: listParams(store.KindHost), Response: pageSchema(ref("Host")), Errors: []int{401, 403, 422}}},
		{Method: "GET", Pattern: "/hosts/{id}", Access: auth.PermVMRead, Handle: h.getObject(store.KindHost), Doc: Doc{Tag: tag,
			Summary: "Get a host with its VM count and raw properties" + idDesc, Response: ref("Host"), Errors: []int{401, 403, 404}}},
		{Method: "GET", Pattern: "/clusters", Access: auth.PermVMRead, Handle: h.listObjects(store.KindCluster), Doc: Doc{Tag: tag,
			Summary: "List clusters with their host and VM counts", Params: listParams(store.KindCluster), Response: pageSchema(ref("Cluster")), Errors: []int{401, 403, 422}}},
		{Method: "GET", Pattern: "/clusters/{id}", Access: auth.PermVMRead, Handle: h.getObject(store.KindCluster), Doc: Doc{Tag: tag,
			Summary: "Get a cluster with its host and VM counts (VMs whose host is in the cluster) and raw properties" + idDesc, Response: ref("Cluster"), Errors: []int{401, 403, 404}}},
		{Method: "GET", Pattern: "/datastores", Access: auth.PermVMRead, Handle: h.listObjects(store.KindDatastore), Doc: Doc{Tag: tag,
			Summary: "List datastores with their VM counts", Params: listParams(store.KindDatastore), Response: pageSchema(ref("Datastore")), Errors: []int{401, 403, 422}}},
		{Method: "GET", Pattern: "/datastores/{id}", Access: auth.PermVMRead, Handle: h.getObject(store.KindDatastore), Doc: Doc{Tag: tag,
			Summary: "Get a datastore with its VM count and raw properties" + idDesc, Response: ref("Datastore"), Errors: []int{401, 403, 404}}},
		{Method: "GET", Pattern: "/sites", Access: auth.PermVMRead, Handle: h.listSites, Doc: Doc{Tag: tag,
			Summary: "List sites with their VM, host, vCenter and agent counts",
			Params: append([]Param{
				{Name: "q", Description: "substring of the name or description, any case"},
				{Name: "sort", Description: "comma-separated fields, - for descending (default name): " + strings.Join(store.SiteSortFields(), ", ")},
			}, pageParams...), Response: pageSchema(ref("Site")), Errors: []int{401, 403, 422}}},
		{Method: "GET", Pattern: "/sites/{id}", Access: auth.PermVMRead, Handle: h.getSite, Doc: Doc{Tag: tag,
			Summary: "Get a site by name with its counts", Response: ref("Site"), Errors: []int{401, 403, 404}}},
		{Method: "POST", Pattern: "/sites/{id}/resync", Access: auth.PermVMWrite, Action: "site.resync", Resource: "site", Handle: h.resync, Doc: Doc{Tag: tag,
			Summary:  "Ask the site's agents connected to this aggregator to resend a full inventory ({id} is the site name); no request body",
			Response: ref("ResyncResult"), Status: http.StatusAccepted, Errors: []int{401, 403, 404, 409}}},
	}
}

func (h *inventoryResource) listVMs(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	f := q.vmFilter()
	keys := q.sort(fieldSet(store.SortFields(store.KindVM)))
	page, size := q.page()
	if err := q.err(); err != nil {
		return err
	}
	objs, total, err := h.a.inventory.VMs(r.Context(), store.VMQuery{VMFilter: f, Sort: storeSort(keys), Page: page, PageSize: size})
	if err != nil {
		return err
	}
	items := make([]VM, 0, len(objs))
	for i := range objs {
		items = append(items, vmOf(&objs[i]))
	}
	writeData(w, r, http.StatusOK, pageOf[VM]{Items: items, Total: total, Page: page, PageSize: size})
	return nil
}

// ClusterVMs is one cluster's VM count in VMStats.
type ClusterVMs struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Site string `json:"site"`
	VMs  int64  `json:"vms"`
}

// VMStats is GET /vms/stats.
type VMStats struct {
	Total         int64            `json:"total"`
	ByPowerState  map[string]int64 `json:"by_power_state"`
	ByToolsStatus map[string]int64 `json:"by_tools_status"`
	BySite        map[string]int64 `json:"by_site"`
	ByCluster     []ClusterVMs     `json:"by_cluster"`
}

func (h *inventoryResource) vmStats(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	f := q.vmFilter()
	if err := q.err(); err != nil {
		return err
	}
	st, err := h.a.inventory.VMStats(r.Context(), f)
	if err != nil {
		return err
	}
	out := VMStats{Total: st.Total, ByPowerState: st.ByPowerState, ByToolsStatus: st.ByToolsStatus, BySite: st.BySite, ByCluster: []ClusterVMs{}}
	for _, c := range st.ByCluster {
		out.ByCluster = append(out.ByCluster, ClusterVMs{ID: objectID(c.Source, c.Moref), Name: c.Name, Site: c.Site, VMs: c.VMs})
	}
	writeData(w, r, http.StatusOK, out)
	return nil
}

func (h *inventoryResource) getVM(w http.ResponseWriter, r *http.Request) error {
	source, moref, err := pathObjectID(r, CodeVMNotFound)
	if err != nil {
		return err
	}
	d, err := h.a.inventory.VM(r.Context(), source, moref)
	if err != nil {
		return notFound(err, CodeVMNotFound)
	}
	writeData(w, r, http.StatusOK, vmDetailOf(&d))
	return nil
}

var notFoundCodes = map[string]string{store.KindHost: CodeHostNotFound, store.KindCluster: CodeClusterNotFound, store.KindDatastore: CodeDatastoreNotFound}

func viewOf(o *store.Object, detail bool) any {
	switch o.Kind {
	case store.KindHost:
		return hostOf(o, detail)
	case store.KindCluster:
		return clusterOf(o, detail)
	}
	return datastoreOf(o, detail)
}

func (h *inventoryResource) listObjects(kind string) handlerFunc {
	allowed := fieldSet(store.SortFields(kind))
	return func(w http.ResponseWriter, r *http.Request) error {
		q := newQuery(r)
		site := q.str("site", 63)
		name := q.str("q", 200)
		keys := q.sort(allowed)
		page, size := q.page()
		if err := q.err(); err != nil {
			return err
		}
		objs, total, err := h.a.inventory.Objects(r.Context(), store.ObjectQuery{Kind: kind, Site: site, Q: name, Sort: storeSort(keys), Page: page, PageSize: size})
		if err != nil {
			return err
		}
		items := make([]any, 0, len(objs))
		for i := range objs {
			items = append(items, viewOf(&objs[i], false))
		}
		writeData(w, r, http.StatusOK, pageOf[any]{Items: items, Total: total, Page: page, PageSize: size})
		return nil
	}
}

func (h *inventoryResource) getObject(kind string) handlerFunc {
	code := notFoundCodes[kind]
	return func(w http.ResponseWriter, r *http.Request) error {
		source, moref, err := pathObjectID(r, code)
		if err != nil {
			return err
		}
		o, err := h.a.inventory.Object(r.Context(), kind, source, moref)
		if err != nil {
			return notFound(err, code)
		}
		writeData(w, r, http.StatusOK, viewOf(&o, true))
		return nil
	}
}

func (h *inventoryResource) listSites(w http.ResponseWriter, r *http.Request) error {
	q := newQuery(r)
	name := q.str("q", 200)
	keys := q.sort(siteSortFields)
	page, size := q.page()
	if err := q.err(); err != nil {
		return err
	}
	sites, total, err := h.a.inventory.Sites(r.Context(), store.SiteQuery{Q: name, Sort: storeSort(keys), Page: page, PageSize: size})
	if err != nil {
		return err
	}
	items := make([]Site, 0, len(sites))
	for i := range sites {
		items = append(items, siteOf(&sites[i]))
	}
	writeData(w, r, http.StatusOK, pageOf[Site]{Items: items, Total: total, Page: page, PageSize: size})
	return nil
}

// pathSite looks up the site named by {id}; a malformed name is a 404.
func (h *inventoryResource) pathSite(r *http.Request) (store.SiteInfo, error) {
	name := chi.URLParam(r, "id")
	if !siteNameRE.MatchString(name) {
		return store.SiteInfo{}, newError(http.StatusNotFound, CodeSiteNotFound)
	}
	s, err := h.a.inventory.Site(r.Context(), name)
	if err != nil {
		return store.SiteInfo{}, notFound(err, CodeSiteNotFound)
	}
	return s, nil
}

func (h *inventoryResource) getSite(w http.ResponseWriter, r *http.Request) error {
	s, err := h.pathSite(r)
	if err != nil {
		return err
	}
	writeData(w, r, http.StatusOK, siteOf(&s))
	return nil
}

// resync sends resync_inventory to every agent of the site that is
// registered, not revoked, and connected to this aggregator. Agents
// connected to another replica are not reached (that replica's API is).
func (h *inventoryResource) resync(w http.ResponseWriter, r *http.Request) error {
	s, err := h.pathSite(r)
	if err != nil {
		return err
	}
	setAuditResource(r, s.Name)
	agents, err := h.a.agents.Agents(r.Context())
	if err != nil {
		return err
	}
	live := map[string]bool{}
	for _, id := range h.a.commander.Connected() {
		live[id] = true
	}
	notified := []string{}
	for _, ag := range agents {
		if ag.Site != s.Name || ag.RevokedAt != nil || !live[ag.ID] {
			continue
		}
		if h.a.commander.SendCommand(ag.ID, protocol.Command{Name: CommandResyncInventory}) {
			notified = append(notified, ag.ID)
		}
	}
	addAuditSummary(r, "agents", notified)
	if len(notified) == 0 {
		return newError(http.StatusConflict, CodeSiteNoAgent)
	}
	writeData(w, r, http.StatusAccepted, map[string]any{"agents_notified": len(notified), "agents": notified})
	return nil
}

// inventorySchemas are the OpenAPI schemas of the inventory routes.
func inventorySchemas() map[string]any {
	id := desc(str, objectIDDoc)
	refS := objectSchema(map[string]any{"id": id, "name": desc(str, "empty when the inventory does not have the object")})
	nullRef := func(d string) map[string]any { return nullable(refS, d) }
	num := func(d string) map[string]any { return nullable(integer, d) }
	base := func(extra map[string]any) map[string]any {
		props := map[string]any{
			"id": id, "site": str, "source": desc(str, "vCenter instance UUID"), "moref": desc(str, "managed object reference, e.g. vm-123"),
			"name": str, "path": desc(str, "inventory folder path"), "datacenter": desc(str, "datacenter name; empty when unknown"),
			"tags": desc(strList, `vSphere tags "category/name"`), "first_seen": dateTime, "observed_at": desc(dateTime, "when the agent observed this state"),
			"updated_at": dateTime,
		}
		for k, v := range extra {
			props[k] = v
		}
		return objectSchema(props)
	}
	rawProps := desc(map[string]any{"type": "object"}, "the agent's raw properties (detail only)")
	vm := map[string]any{
		"power_state": desc(str, strings.Join(vmPowerStates, ", ")), "connection_state": str,
		"tools_running_status": desc(str, strings.Join(vmToolsStates, ", ")), "tools_version_status": str,
		"guest_hostname": str, "guest_ips": strList, "guest_os": str,
		"num_cpu": num("virtual CPUs"), "memory_mb": num("memory in MiB"), "template": boolean,
		"host": nullRef("the VM's host"), "cluster": nullRef("the cluster of the VM's host"), "snapshot_count": integer,
	}
	vmDetail := map[string]any{
		"resource_pool": nullRef("resource pool or vApp"), "datastores": arrayOf(refS),
		"guest_disks":       arrayOf(objectSchema(map[string]any{"path": str, "capacity": num("bytes"), "free": num("bytes")})),
		"tools_version":     str,
		"snapshot_oldest":   nullable(dateTime, "creation time of the oldest snapshot; null without snapshots"),
		"custom_attributes": desc(map[string]any{"type": "object", "additionalProperties": str}, "vCenter custom attributes by name"),
		"uuid":              str, "instance_uuid": str, "annotation": str,
		"latest": desc(arrayOf(objectSchema(map[string]any{"metric": str, "instance": desc(str, "empty for the VM as a whole"),
			"unit": str, "value": map[string]any{"type": "number"}, "ts": dateTime})), "newest value of each metric within the last hour; empty when none"),
		"props":       desc(map[string]any{"type": "object"}, "the agent's raw properties"),
		"description": desc(str, "the operator's (PATCH /vms/{id})"), "owner": str,
		"labels": desc(map[string]any{"type": "object", "additionalProperties": str}, "the operator's labels"),
		"groups": desc(arrayOf(objectSchema(map[string]any{"id": uuidStr, "name": str,
			"static": desc(boolean, "a member by hand (members route or batch)"), "by_rule": desc(boolean, "selected by the group's rule")})),
			"the VM groups it is in, and how (both flags may be true)"),
	}
	for k, v := range vm {
		vmDetail[k] = v
	}
	counts := map[string]any{"type": "object", "additionalProperties": integer}
	return map[string]any{
		"ObjectRef": refS,
		"VM":        base(vm),
		"VMDetail":  base(vmDetail),
		"VMStats": objectSchema(map[string]any{"total": integer,
			"by_power_state":  desc(counts, `by power state; "unknown" when not reported`),
			"by_tools_status": desc(counts, `by VMware Tools running status; "unknown" when not reported`),
			"by_site":         counts,
			"by_cluster": desc(arrayOf(objectSchema(map[string]any{"id": id, "name": str, "site": str, "vms": integer})),
				"the 50 clusters with the most VMs, most first")}),
		"Host": base(map[string]any{"connection_state": str, "power_state": str, "maintenance_mode": nullable(boolean, ""),
			"cpu_mhz": num(""), "cpu_cores": num(""), "cpu_threads": num(""), "memory_bytes": num(""), "product": str,
			"cluster": nullRef("null for a standalone host"), "vms": desc(integer, "live VMs on the host"), "props": rawProps}),
		"Cluster": base(map[string]any{"num_hosts": num("as vCenter reports it"), "num_effective_hosts": num(""), "cpu_mhz_total": num(""),
			"memory_bytes_total": num(""), "overall_status": str, "hosts": desc(integer, "live hosts in the inventory"),
			"vms": desc(integer, "live VMs whose host is in the cluster"), "props": rawProps}),
		"Datastore": base(map[string]any{"type": str, "url": str, "capacity": num("bytes"), "free": num("bytes"),
			"accessible": nullable(boolean, ""), "maintenance_mode": str, "vms": desc(integer, "live VMs with files on it"), "props": rawProps}),
		"Site": objectSchema(map[string]any{"name": str, "description": str, "created_at": dateTime,
			"vms": integer, "hosts": integer, "sources": desc(strList, "the site's vCenters (instance UUIDs)"),
			"agents": desc(integer, "registered agents, not revoked"), "agents_connected": desc(integer, "of those, connected to an aggregator")}),
		"ResyncResult": objectSchema(map[string]any{"agents_notified": integer, "agents": desc(arrayOf(uuidStr), "ids of the agents notified")}),
	}
}
