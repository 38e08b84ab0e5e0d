package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Topology suppression. An alert that fires while its entity's parent is
// down is a symptom, not news: it is recorded with state "suppressed" and
// the parent's alert (suppressed_by), and never paged.
//
//   - a host not responding or disconnected, or in maintenance mode,
//     suppresses its VMs' alerts and its own (except the rules that watch
//     that very state);
//   - an inaccessible datastore suppresses the disk alerts (rules on disk.*,
//     virtualDisk.* or datastore.* metrics) of the VMs on it;
//   - a vCenter its agent reports unreachable suppresses the alerts of its
//     hosts, VMs, clusters and datastores (vcenter.go), before any of the
//     above: site offline > vCenter unreachable > host down > VM;
//   - a site with no agent connected already turns every instance of its
//     entities unknown.
//
// The parent is taken from the inventory as it was at the alert's event
// time: inventory_changes records every change of a VM's host (a vMotion),
// of a host's connection state and maintenance mode and of a datastore's
// accessibility, so a late sample is judged by the topology of its time.
// An alert suppressed at firing that still fires once its cause is gone is
// unsuppressed and paged then.

// topoHistory is how far back the topology's changes are kept: the
// lateness a site's backlog may have (the agents' spools hold days).
const topoHistory = 8 * 24 * time.Hour

// The inventory properties topology reads.
const (
	propHost         = "host_id"
	propConnection   = "connection_state"
	propMaintenance  = "maintenance_mode"
	propAccessible   = "accessible"
	propDatastoreIDs = "datastore_ids"
)

var topoProps = []string{propHost, propConnection, propMaintenance, propAccessible, propDatastoreIDs}

// propChange is one change of an inventory property (values as text: the
// JSON text of arrays, "true"/"false" for booleans).
type propChange struct {
	at       int64 // ms
	old, new string
}

// topology is the recent history of the properties suppression reads, per
// object and property, oldest first.
type topology map[entityKey]map[string][]propChange

// loadTopology adds to t the changes of the topology's properties
// recorded after the change afterID and observed since since (the
// migration's partial index inventory_changes_topology_idx serves it);
// it returns the newest change id read. The engine reads the history once
// and then only what is new.
func (d *DB) loadTopology(ctx context.Context, t topology, since time.Time, afterID int64) (int64, error) {
	rows, err := d.pool.Query(ctx, `
		SELECT c.id, c.site, c.source, c.kind, c.moref, c.observed_at, p.key,
		       coalesce(CASE WHEN jsonb_typeof(p.value->'old') = 'string' THEN p.value->>'old' ELSE (p.value->'old')::text END, ''),
		       coalesce(CASE WHEN jsonb_typeof(p.value->'new') = 'string' THEN p.value->>'new' ELSE (p.value->'new')::text END, '')
		FROM inventory_changes c, jsonb_each(c.changes) p
		WHERE c.kind IN ('vm', 'host', 'datastore') AND c.op = 'update'
		  AND c.changes ?| array['props.host_id', 'props.connection_state', 'props.maintenance_mode', 'props.accessible', 'props.datastore_ids']
		  AND c.id > $2 AND c.observed_at > $1
		  AND p.key IN ('props.host_id', 'props.connection_state', 'props.maintenance_mode', 'props.accessible', 'props.datastore_ids')
		ORDER BY c.id`, since, afterID)
	if err != nil {
		return afterID, fmt.Errorf("alert: topology: %w", err)
	}
	defer rows.Close()
	maxID := afterID
	for rows.Next() {
		var id int64
		var k entityKey
		var at time.Time
		var key, old, nw string
		if err := rows.Scan(&id, &k.site, &k.source, &k.kind, &k.id, &at, &key, &old, &nw); err != nil {
			return afterID, fmt.Errorf("alert: topology: %w", err)
		}
		maxID = max(maxID, id)
		m := t[k]
		if m == nil {
			m = map[string][]propChange{}
			t[k] = m
		}
		p := strings.TrimPrefix(key, "props.")
		c := propChange{at: at.UnixMilli(), old: jsonText(old), new: jsonText(nw)}
		// In order of observation (a late inventory batch may be older).
		i := sort.Search(len(m[p]), func(i int) bool { return m[p][i].at > c.at })
		m[p] = slices.Insert(m[p], i, c)
	}
	return maxID, rows.Err()
}

// prune forgets the changes observed before since.
func (t topology) prune(since int64) {
	for k, m := range t {
		for p, ch := range m {
			i := sort.Search(len(ch), func(i int) bool { return ch[i].at >= since })
			if i == len(ch) {
				delete(m, p)
			} else if i > 0 {
				m[p] = slices.Clone(ch[i:])
			}
		}
		if len(m) == 0 {
			delete(t, k)
		}
	}
}

// jsonText normalises "null" to "".
func jsonText(s string) string {
	if s == "null" {
		return ""
	}
	return s
}

// propAt is the value of an object's property at event time t: the old
// value of the first change after t, else the current value.
func (e *Engine) propAt(k entityKey, prop string, t int64) string {
	cur := ""
	if m := e.meta[k]; m != nil {
		cur = m.props[prop]
	}
	ch := e.topo[k][prop]
	i := sort.Search(len(ch), func(i int) bool { return ch[i].at > t })
	if i < len(ch) {
		return ch[i].old
	}
	return cur
}

// cause is why an alert is suppressed: in words, and the entity whose
// state causes it (zero for a maintenance window).
type cause struct {
	reason string
	parent entityKey
	metric string // the parent's state metric behind it
	window string // the maintenance window's id
}

// diskMetric reports whether a metric concerns a VM's disks (what an
// inaccessible datastore explains).
func diskMetric(m string) bool {
	return strings.HasPrefix(m, "disk.") || strings.HasPrefix(m, "virtualDisk.") || strings.HasPrefix(m, "datastore.")
}

// suppression returns why the rule's instance on en firing at event time
// at is suppressed, or nil.
func (e *Engine) suppression(c *compiled, en *entity, labels map[string]string, at int64) *cause {
	k := en.key
	watches := func(metric string) bool {
		for _, cd := range c.rule.Conditions {
			if cd.Metric == metric {
				return true
			}
		}
		return false
	}
	hostDown := func(hk entityKey) *cause {
		if cs := e.propAt(hk, propConnection, at); cs != "" && cs != "connected" && !watches(MetricHostConnected) {
			return &cause{reason: fmt.Sprintf("host %s is %s", e.nameOf(hk), cs), parent: hk, metric: MetricHostConnected}
		}
		if e.propAt(hk, propMaintenance, at) == "true" && !watches(MetricHostMaintenance) {
			return &cause{reason: fmt.Sprintf("host %s is in maintenance mode", e.nameOf(hk)), parent: hk, metric: MetricHostMaintenance}
		}
		return nil
	}
	// The vCenter first: while it is unreachable, nothing below it is news.
	switch k.kind {
	case KindVM, KindHost, KindCluster, KindDatastore:
		if cs := e.vcenterDown(k.site, k.source, at); cs != nil && !watches(MetricVCenterReachable) {
			return cs
		}
	}
	switch k.kind {
	case KindHost:
		if cs := hostDown(k); cs != nil {
			return cs
		}
	case KindVM:
		if h := e.propAt(k, propHost, at); h != "" {
			if cs := hostDown(entityKey{site: k.site, source: k.source, kind: KindHost, id: h}); cs != nil {
				return cs
			}
		}
		disk := false
		for _, cd := range c.rule.Conditions {
			disk = disk || diskMetric(cd.Metric)
		}
		if disk {
			var ds []string
			_ = json.Unmarshal([]byte(e.propAt(k, propDatastoreIDs, at)), &ds)
			for _, d := range ds {
				dk := entityKey{site: k.site, source: k.source, kind: KindDatastore, id: d}
				if e.propAt(dk, propAccessible, at) == "false" {
					return &cause{reason: fmt.Sprintf("datastore %s is inaccessible", e.nameOf(dk)), parent: dk, metric: MetricDatastoreAccessible}
				}
			}
		}
	}
	if w := e.windowAt(labels, at); w != nil {
		return &cause{reason: "maintenance window " + w.Name, window: w.ID.String()}
	}
	return nil
}

// nameOf is an entity's inventory name, else its moref.
func (e *Engine) nameOf(k entityKey) string {
	if m := e.meta[k]; m != nil && m.name != "" {
		return m.name
	}
	return k.id
}

// parentAlert is the active alert of the parent behind a cause: a firing
// instance on the parent of a rule watching the cause's state metric
// first, else any firing instance of the parent; 0 when it has none.
func (e *Engine) parentAlert(cs *cause) int64 {
	if cs == nil || cs.parent.id == "" {
		return 0
	}
	en := e.entities[cs.parent]
	if en == nil {
		return 0
	}
	var ids []int64
	var best int64
	for rid, in := range en.inst {
		if in.state != StateFiring || in.alertID == 0 {
			continue
		}
		if c := e.byID[rid]; c != nil && slices.ContainsFunc(c.rule.Conditions, func(cd Condition) bool { return cd.Metric == cs.metric }) {
			if best == 0 || in.alertID < best {
				best = in.alertID
			}
		}
		ids = append(ids, in.alertID)
	}
	if best != 0 || len(ids) == 0 {
		return best
	}
	return slices.Min(ids)
}

// reviewSuppressed unsuppresses the firing instances suppressed at firing
// whose cause is gone at their latest evaluation, and links those whose
// parent's alert appeared after them.
func (e *Engine) reviewSuppressed(now time.Time) {
	for _, en := range e.entities {
		for rid, in := range en.inst {
			if in.state != StateFiring || in.flags&flagSuppressed == 0 {
				continue
			}
			c := e.byID[rid]
			if c == nil {
				continue
			}
			at := max(in.lastAt, in.since)
			if cs := e.suppression(c, en, e.labels(c, en), at); cs != nil {
				continue
			}
			e.Stats.Transitions.Add(1)
			prevVersion, prevState := in.version, in.state
			in.flags &^= flagSuppressed
			snap := *in
			late := now.Sub(time.UnixMilli(at)) > e.cfg.Lateness
			e.pendingTr = append(e.pendingTr, &change{rule: c, ent: en, live: in, in: snap, kind: TrUnsuppressed, at: at, late: late,
				prevVersion: prevVersion, prevState: prevState, arrived: now})
		}
	}
}
