package vsphere

import (
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/protocol"
)

// Managed object types the inventory watches, with the protocol kind each
// maps to and the property paths fetched for it. ComputeResource is a
// standalone host's parent; it is kept so that paths and placement resolve.
var watchedTypes = []struct {
	vimType string
	kind    string
	paths   []string
}{
	{"VirtualMachine", "vm", []string{
		"name", "parent", "parentVApp", "runtime.powerState", "runtime.connectionState", "runtime.host",
		"guest.toolsRunningStatus", "guest.toolsVersionStatus2", "guest.toolsVersion",
		"guest.hostName", "guest.ipAddress", "guest.net", "guest.guestFullName", "guest.disk",
		"config.guestFullName", "config.hardware.numCPU", "config.hardware.memoryMB",
		"config.template", "config.uuid", "config.instanceUuid", "config.annotation",
		"resourcePool", "datastore", "snapshot", "customValue",
		"runtime.consolidationNeeded",
	}},
	{"HostSystem", "host", []string{
		"name", "parent", "runtime.connectionState", "runtime.powerState", "runtime.inMaintenanceMode",
		"summary.hardware.cpuMhz", "summary.hardware.numCpuCores", "summary.hardware.numCpuThreads",
		"summary.hardware.memorySize", "summary.config.product.fullName", "customValue",
	}},
	{"ClusterComputeResource", "cluster", []string{"name", "parent", "summary", "customValue"}},
	{"ComputeResource", "computeresource", []string{"name", "parent", "summary", "customValue"}},
	{"Datastore", "datastore", []string{
		"name", "parent", "summary.capacity", "summary.freeSpace", "summary.type",
		"summary.accessible", "summary.url", "summary.maintenanceMode", "customValue",
	}},
	{"ResourcePool", "resourcepool", []string{"name", "parent", "owner", "customValue"}},
	{"Datacenter", "datacenter", []string{"name", "parent"}},
	{"Folder", "folder", []string{"name", "parent"}},
}

func kindOf(vimType string) string {
	for _, t := range watchedTypes {
		if t.vimType == vimType {
			return t.kind
		}
	}
	return ""
}

// invObject is the raw state of one watched object: property path → value
// as the property collector delivered it.
type invObject struct {
	ref   types.ManagedObjectReference
	kind  string
	props map[string]any
	tags  []string // "category/name", sorted; nil until a tag refresh
}

func (o *invObject) str(path string) string {
	switch v := o.props[path].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		// enum types (VirtualMachinePowerState, ...) are string kinds
		if s, ok := enumString(v); ok {
			return s
		}
		return ""
	}
}

func enumString(v any) (string, bool) {
	switch e := v.(type) {
	case types.VirtualMachinePowerState:
		return string(e), true
	case types.VirtualMachineConnectionState:
		return string(e), true
	case types.HostSystemConnectionState:
		return string(e), true
	case types.HostSystemPowerState:
		return string(e), true
	case types.VirtualMachineToolsRunningStatus:
		return string(e), true
	case types.VirtualMachineToolsVersionStatus:
		return string(e), true
	}
	return "", false
}

func (o *invObject) ref1(path string) string {
	switch v := o.props[path].(type) {
	case types.ManagedObjectReference:
		return v.Value
	case *types.ManagedObjectReference:
		if v != nil {
			return v.Value
		}
	}
	return ""
}

func (o *invObject) parentID() string {
	if p := o.ref1("parent"); p != "" {
		return p
	}
	return o.ref1("parentVApp")
}

// setIf copies the raw value at path into props[key] when it is present.
func (o *invObject) setIf(props map[string]any, key, path string, conv func(any) any) {
	v, ok := o.props[path]
	if !ok || v == nil {
		return
	}
	if conv != nil {
		v = conv(v)
	} else if s, ok := enumString(v); ok {
		v = s
	}
	if v != nil {
		props[key] = v
	}
}

// buildObject converts raw state into the protocol form. all resolves
// parents for paths and placement; fields maps custom field keys to names.
func buildObject(source string, o *invObject, all map[string]*invObject, fields map[int32]string) protocol.InventoryObject {
	out := protocol.InventoryObject{
		Source:   source,
		Kind:     o.kind,
		ID:       o.ref.Value,
		Name:     o.str("name"),
		ParentID: o.parentID(),
		Path:     inventoryPath(o, all),
		Props:    map[string]any{},
	}
	p := out.Props
	switch o.kind {
	case "vm":
		buildVM(o, all, p)
	case "host":
		p["connection_state"] = o.str("runtime.connectionState")
		p["power_state"] = o.str("runtime.powerState")
		o.setIf(p, "maintenance_mode", "runtime.inMaintenanceMode", nil)
		o.setIf(p, "cpu_mhz", "summary.hardware.cpuMhz", nil)
		o.setIf(p, "cpu_cores", "summary.hardware.numCpuCores", nil)
		o.setIf(p, "cpu_threads", "summary.hardware.numCpuThreads", nil)
		o.setIf(p, "memory_bytes", "summary.hardware.memorySize", nil)
		o.setIf(p, "product", "summary.config.product.fullName", nil)
		if parent := all[o.parentID()]; parent != nil && parent.kind == "cluster" {
			p["cluster_id"] = parent.ref.Value
		}
	case "cluster", "computeresource":
		if s, ok := o.props["summary"].(types.BaseComputeResourceSummary); ok {
			cs := s.GetComputeResourceSummary()
			p["cpu_mhz_total"] = cs.TotalCpu
			p["memory_bytes_total"] = cs.TotalMemory
			p["num_hosts"] = cs.NumHosts
			p["num_effective_hosts"] = cs.NumEffectiveHosts
			p["overall_status"] = string(cs.OverallStatus)
		}
	case "datastore":
		o.setIf(p, "capacity", "summary.capacity", nil)
		o.setIf(p, "free", "summary.freeSpace", nil)
		o.setIf(p, "type", "summary.type", nil)
		o.setIf(p, "accessible", "summary.accessible", nil)
		o.setIf(p, "url", "summary.url", nil)
		o.setIf(p, "maintenance_mode", "summary.maintenanceMode", nil)
	case "resourcepool":
		if owner := o.ref1("owner"); owner != "" {
			p["cluster_id"] = owner
		}
	}
	if ca := customAttributes(o.props["customValue"], fields); len(ca) > 0 {
		p["custom_attributes"] = ca
	}
	if o.tags != nil {
		p["tags"] = o.tags
	}
	return out
}

func buildVM(o *invObject, all map[string]*invObject, p map[string]any) {
	p["power_state"] = o.str("runtime.powerState")
	p["connection_state"] = o.str("runtime.connectionState")
	o.setIf(p, "tools_running_status", "guest.toolsRunningStatus", nil)
	o.setIf(p, "tools_version_status", "guest.toolsVersionStatus2", nil)
	o.setIf(p, "tools_version", "guest.toolsVersion", nil)
	o.setIf(p, "guest_hostname", "guest.hostName", nil)
	if os := o.str("guest.guestFullName"); os != "" {
		p["guest_os"] = os
	} else {
		o.setIf(p, "guest_os", "config.guestFullName", nil)
	}
	p["guest_ips"] = guestIPs(o)
	if d, ok := o.props["guest.disk"].(types.ArrayOfGuestDiskInfo); ok {
		disks := make([]map[string]any, 0, len(d.GuestDiskInfo))
		for _, g := range d.GuestDiskInfo {
			disks = append(disks, map[string]any{"path": g.DiskPath, "capacity": g.Capacity, "free": g.FreeSpace})
		}
		p["guest_disks"] = disks
	}
	o.setIf(p, "num_cpu", "config.hardware.numCPU", nil)
	o.setIf(p, "memory_mb", "config.hardware.memoryMB", nil)
	o.setIf(p, "template", "config.template", nil)
	o.setIf(p, "uuid", "config.uuid", nil)
	o.setIf(p, "instance_uuid", "config.instanceUuid", nil)
	o.setIf(p, "annotation", "config.annotation", nil)
	if h := o.ref1("runtime.host"); h != "" {
		p["host_id"] = h
		if host := all[h]; host != nil {
			if parent := all[host.parentID()]; parent != nil && parent.kind == "cluster" {
				p["cluster_id"] = parent.ref.Value
			}
		}
	}
	if rp := o.ref1("resourcePool"); rp != "" {
		p["resource_pool_id"] = rp
	}
	ds := []string{}
	if a, ok := o.props["datastore"].(types.ArrayOfManagedObjectReference); ok {
		for _, r := range a.ManagedObjectReference {
			ds = append(ds, r.Value)
		}
	}
	p["datastore_ids"] = ds
	// Disks whose snapshot deletion left redo logs behind: the hygiene
	// view and alert rules read it. Absent when vCenter does not say.
	o.setIf(p, "consolidation_needed", "runtime.consolidationNeeded", nil)
	count, oldest := snapshotStats(o.props["snapshot"])
	p["snapshot_count"] = count
	if count > 0 {
		p["snapshot_oldest"] = oldest
	}
}

func guestIPs(o *invObject) []string {
	ips := []string{}
	if n, ok := o.props["guest.net"].(types.ArrayOfGuestNicInfo); ok {
		for _, nic := range n.GuestNicInfo {
			ips = append(ips, nic.IpAddress...)
		}
	}
	if ip := o.str("guest.ipAddress"); ip != "" && !slices.Contains(ips, ip) {
		ips = append(ips, ip)
	}
	return ips
}

// snapshotStats counts the snapshot tree and returns the oldest creation
// time in Unix ms.
func snapshotStats(v any) (count int, oldest int64) {
	var info *types.VirtualMachineSnapshotInfo
	switch s := v.(type) {
	case types.VirtualMachineSnapshotInfo:
		info = &s
	case *types.VirtualMachineSnapshotInfo:
		info = s
	}
	if info == nil {
		return 0, 0
	}
	var walk func([]types.VirtualMachineSnapshotTree)
	walk = func(list []types.VirtualMachineSnapshotTree) {
		for _, t := range list {
			count++
			if ms := t.CreateTime.UnixMilli(); oldest == 0 || ms < oldest {
				oldest = ms
			}
			walk(t.ChildSnapshotList)
		}
	}
	walk(info.RootSnapshotList)
	return count, oldest
}

func customAttributes(v any, fields map[int32]string) map[string]string {
	a, ok := v.(types.ArrayOfCustomFieldValue)
	if !ok {
		return nil
	}
	out := map[string]string{}
	for _, b := range a.CustomFieldValue {
		sv, ok := b.(*types.CustomFieldStringValue)
		if !ok {
			continue
		}
		name := fields[sv.Key]
		if name == "" {
			continue // definition not known (yet); re-sent when fields arrive
		}
		out[name] = sv.Value
	}
	return out
}

// inventoryPath returns the object's full inventory path, as govc prints
// it: "/DC0/vm/web/VM1". The root folder is not part of the path.
func inventoryPath(o *invObject, all map[string]*invObject) string {
	var parts []string
	for cur, depth := o, 0; cur != nil && depth < 64; depth++ {
		parts = append(parts, cur.str("name"))
		cur = all[cur.parentID()]
	}
	slices.Reverse(parts)
	return "/" + strings.Join(parts, "/")
}

// sortedTags turns tag IDs into sorted "category/name" strings.
func sortedTags(ids []string, names map[string]string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if n, ok := names[id]; ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func nowMs() int64 { return time.Now().UnixMilli() }
