package alert

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vmpulse/vmpulse/protocol"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// State metrics: what the engine derives from the agent registry and the
// inventory rather than from performance samples, so that rules can watch
// liveness and vSphere's own states. They are observed at the wall clock
// (the inventory and the registry are current, not history), only for
// sites whose agents are connected: a dark site's entities go unknown.
const (
	// MetricHostConnected is 1 while a host's connection state is
	// "connected", else 0 (notResponding, disconnected).
	MetricHostConnected = "host.connected.state"
	// MetricHostMaintenance is 1 while a host is in maintenance mode.
	MetricHostMaintenance = "host.maintenance.state"
	// MetricDatastoreFreePct is a datastore's free space in percent.
	MetricDatastoreFreePct = "datastore.free.pct"
	// MetricSnapshotAgeHours is the age of a VM's oldest snapshot in
	// hours (0 without snapshots); MetricSnapshotCount counts them.
	MetricSnapshotAgeHours = "vm.snapshot.age_hours"
	MetricSnapshotCount    = "vm.snapshot.count"
	// MetricDatastoreAccessible is 1 while a datastore is accessible.
	MetricDatastoreAccessible = "datastore.accessible.state"
	// MetricDatastoreDaysUntilFull is when a datastore fills at the trend
	// of its free space over the last 7 days (a least-squares line through
	// the free space the inventory recorded), in days; absent while the
	// free space is not shrinking.
	MetricDatastoreDaysUntilFull = "datastore.full.days"
	// MetricVMConnected is 1 while a VM's connection state is "connected"
	// (a VM whose host is lost goes disconnected or orphaned).
	MetricVMConnected = "vm.connected.state"
	// MetricToolsRunning is 1 while a powered-on VM's VMware Tools run,
	// else 0 (absent for a VM that is not powered on).
	MetricToolsRunning = "vm.tools.running"
	// MetricToolsOutdated is 1 while a powered-on VM's VMware Tools need
	// an upgrade (too old, supported but old, or blacklisted), else 0.
	MetricToolsOutdated = "vm.tools.outdated"
	// MetricSpoolDropping is 1 while any agent of the site dropped spooled
	// batches (its spool was full) within the last 15 minutes.
	MetricSpoolDropping = "agent.spool.dropping"
	// MetricSpoolBacklogMinutes is the age of the oldest batch the site's
	// agents still hold unsent, in minutes.
	MetricSpoolBacklogMinutes = "agent.spool.backlog_minutes"
	// MetricConsolidationNeeded is 1 while vCenter says a VM's disks need
	// consolidation (runtime.consolidationNeeded: a snapshot removal left
	// delta disks behind), else 0; absent while the agent does not report
	// it.
	MetricConsolidationNeeded = "vm.consolidation.needed"
)

// stateMetrics computes an inventory object's state metrics at now.
func (m *entityMeta) stateMetrics(kind string, now time.Time) map[string]float64 {
	out := map[string]float64{}
	num := func(k string) (float64, bool) {
		v, err := strconv.ParseFloat(m.props[k], 64)
		return v, err == nil && !math.IsNaN(v) && !math.IsInf(v, 0)
	}
	switch kind {
	case KindHost:
		if s := m.props["connection_state"]; s != "" {
			out[MetricHostConnected] = b2f(s == "connected")
		}
		if s := m.props["maintenance_mode"]; s != "" {
			out[MetricHostMaintenance] = b2f(s == "true")
		}
	case KindDatastore:
		c, ok1 := num("capacity")
		f, ok2 := num("free")
		if ok1 && ok2 && c > 0 {
			out[MetricDatastoreFreePct] = f / c * 100
		}
		if s := m.props["accessible"]; s != "" {
			out[MetricDatastoreAccessible] = b2f(s == "true")
		}
		if days, ok := store.DaysToFull(f, m.freeSlope); ok2 && ok {
			out[MetricDatastoreDaysUntilFull] = days
		}
	case KindVM:
		if s := m.props["connection_state"]; s != "" {
			out[MetricVMConnected] = b2f(s == "connected")
		}
		if m.props["power_state"] == "poweredOn" {
			if s := m.props["tools_running_status"]; s != "" {
				out[MetricToolsRunning] = b2f(s == "guestToolsRunning")
			}
			switch m.props["tools_version_status"] {
			case "guestToolsNeedUpgrade", "guestToolsTooOld", "guestToolsSupportedOld", "guestToolsBlacklisted":
				out[MetricToolsOutdated] = 1
			case "guestToolsCurrent", "guestToolsSupportedNew", "guestToolsUnmanaged", "guestToolsTooNew":
				out[MetricToolsOutdated] = 0
			}
		}
		switch m.props["consolidation_needed"] {
		case "true":
			out[MetricConsolidationNeeded] = 1
		case "false":
			out[MetricConsolidationNeeded] = 0
		}
		n, _ := num("snapshot_count")
		out[MetricSnapshotCount] = n
		out[MetricSnapshotAgeHours] = 0
		if oldest, ok := num("snapshot_oldest"); ok && n > 0 && oldest > 0 {
			out[MetricSnapshotAgeHours] = max(0, float64(now.UnixMilli()-int64(oldest))/3.6e6)
		}
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// evalInventory evaluates the rules on the state metrics of every
// inventory object of a connected site, at now.
func (e *Engine) evalInventory(now time.Time) {
	ts := now.UnixMilli()
	for k, m := range e.meta {
		kr := e.kinds[k.kind]
		if kr == nil {
			continue
		}
		ss := e.site(k.site)
		if ss.known && !ss.connected {
			continue
		}
		vals := m.stateMetrics(k.kind, now)
		var counters []protocol.Counter
		var values [][]float64
		for name, v := range vals {
			if _, used := kr.slots[name]; used {
				counters = append(counters, protocol.Counter{Name: name})
				values = append(values, []float64{v})
			}
		}
		if len(counters) == 0 {
			continue
		}
		sd := protocol.SeriesData{Key: protocol.SeriesKey{Source: k.source, EntityKind: k.kind, EntityID: k.id, Counters: counters},
			Timestamps: []int64{ts}, Values: values}
		wm := ss.watermark
		e.evalSeries(k.site, ss, &sd, now)
		ss.watermark = wm // an observation, not data: the watermark is the samples'
	}
}

// DefaultPack is the editable default rule pack: installed once
// (InstallDefaultPack), then the operators' to change, disable or delete.
func DefaultPack() []Rule {
	clear15, clear21, clear70 := 15.0, 21.0, 70.0
	return []Rule{
		{Builtin: "site-offline", Name: "Site offline", EntityKind: KindSite, Severity: SeverityCritical,
			Description: "No agent of the site is connected: its entities' alerts are unknown, not resolved, until it is back.",
			Conditions:  []Condition{{Metric: MetricAgentConnected, Agg: AggLast, Op: "<", Threshold: 1}}, For: Duration(2 * time.Minute),
			Annotations: map[string]string{"summary": "Site {{site}} is offline: no agent connected"}},
		{Builtin: "host-not-responding", Name: "Host not responding or disconnected", EntityKind: KindHost, Severity: SeverityCritical,
			Conditions: []Condition{{Metric: MetricHostConnected, Agg: AggLast, Op: "<", Threshold: 1}}, For: Duration(2 * time.Minute),
			Annotations: map[string]string{"summary": "Host {{entity}} ({{site}}) is not connected to vCenter"}},
		{Builtin: "host-maintenance", Name: "Host in maintenance mode", EntityKind: KindHost, Severity: SeverityInfo,
			Conditions:  []Condition{{Metric: MetricHostMaintenance, Agg: AggLast, Op: "==", Threshold: 1}},
			Annotations: map[string]string{"summary": "Host {{entity}} ({{site}}) is in maintenance mode"}},
		{Builtin: "datastore-free-space", Name: "Datastore free space low", EntityKind: KindDatastore, Severity: SeverityWarning,
			Conditions: []Condition{{Metric: MetricDatastoreFreePct, Agg: AggLast, Op: "<", Threshold: 10, ClearThreshold: &clear15}},
			For:        Duration(5 * time.Minute), Annotations: map[string]string{"summary": "Datastore {{entity}} ({{site}}) has {{value}}% free"}},
		{Builtin: "vm-snapshot-age", Name: "VM snapshot older than 3 days", EntityKind: KindVM, Severity: SeverityWarning,
			Conditions:  []Condition{{Metric: MetricSnapshotAgeHours, Agg: AggLast, Op: ">", Threshold: 72}},
			Annotations: map[string]string{"summary": "VM {{entity}} ({{site}}) has a snapshot {{value}} hours old"}},
		{Builtin: "vm-snapshot-count", Name: "VM has many snapshots", EntityKind: KindVM, Severity: SeverityWarning,
			Conditions:  []Condition{{Metric: MetricSnapshotCount, Agg: AggLast, Op: ">", Threshold: 3}},
			Annotations: map[string]string{"summary": "VM {{entity}} ({{site}}) has {{value}} snapshots"}},
		{Builtin: "datastore-days-until-full", Name: "Datastore full within 14 days", EntityKind: KindDatastore, Severity: SeverityWarning,
			Description: "The datastore's free space, at its trend over the last 7 days, runs out within 14 days.",
			Conditions:  []Condition{{Metric: MetricDatastoreDaysUntilFull, Agg: AggLast, Op: "<", Threshold: 14, ClearThreshold: &clear21}},
			Annotations: map[string]string{"summary": "Datastore {{entity}} ({{site}}) is full in {{value}} days at its current trend"}},
		{Builtin: "datastore-inaccessible", Name: "Datastore inaccessible", EntityKind: KindDatastore, Severity: SeverityCritical,
			Description: "Suppresses the disk alerts of the VMs on it.",
			Conditions:  []Condition{{Metric: MetricDatastoreAccessible, Agg: AggLast, Op: "<", Threshold: 1}}, For: Duration(time.Minute),
			Annotations: map[string]string{"summary": "Datastore {{entity}} ({{site}}) is inaccessible"}},
		{Builtin: "vm-disconnected", Name: "VM disconnected", EntityKind: KindVM, Severity: SeverityWarning,
			Description: "The VM's connection state is not connected (disconnected, orphaned, inaccessible); suppressed while its host is down.",
			Conditions:  []Condition{{Metric: MetricVMConnected, Agg: AggLast, Op: "<", Threshold: 1}},
			Annotations: map[string]string{"summary": "VM {{entity}} ({{site}}) is not connected"}},
		{Builtin: "vm-tools-not-running", Name: "VMware Tools not running", EntityKind: KindVM, Severity: SeverityWarning,
			Conditions: []Condition{{Metric: MetricToolsRunning, Agg: AggLast, Op: "<", Threshold: 1}}, For: Duration(10 * time.Minute),
			Annotations: map[string]string{"summary": "VMware Tools are not running on powered-on VM {{entity}} ({{site}})"}},
		{Builtin: "vm-tools-outdated", Name: "VMware Tools outdated", EntityKind: KindVM, Severity: SeverityInfo,
			Conditions:  []Condition{{Metric: MetricToolsOutdated, Agg: AggLast, Op: "==", Threshold: 1}},
			Annotations: map[string]string{"summary": "VMware Tools on VM {{entity}} ({{site}}) need an upgrade"}},
		{Builtin: "spool-dropping", Name: "Agent spool dropping data", EntityKind: KindSite, Severity: SeverityCritical,
			Description: "An agent of the site dropped its oldest spooled batches (spool full): that data is lost and recorded as a gap.",
			Conditions:  []Condition{{Metric: MetricSpoolDropping, Agg: AggLast, Op: "==", Threshold: 1}},
			Annotations: map[string]string{"summary": "An agent of site {{site}} is dropping spooled data"}},
		{Builtin: "spool-backlog", Name: "Agent spool backlog over 1 hour", EntityKind: KindSite, Severity: SeverityWarning,
			Description: "The site's agents hold data older than an hour unsent; the spool fills while this lasts.",
			Conditions:  []Condition{{Metric: MetricSpoolBacklogMinutes, Agg: AggLast, Op: ">", Threshold: 60}}, For: Duration(5 * time.Minute),
			Annotations: map[string]string{"summary": "Agents of site {{site}} hold {{value}} minutes of unsent data"}},
		{Builtin: "spool-nearly-full", Name: "Agent spool nearly full", EntityKind: KindSite, Severity: SeverityWarning,
			Description: "An agent's spool holds 80 % of its quota (spool.max_bytes) or more: once full it drops its oldest batches.",
			Conditions:  []Condition{{Metric: MetricSpoolUsedPct, Agg: AggLast, Op: ">=", Threshold: 80, ClearThreshold: &clear70}},
			For:         Duration(5 * time.Minute),
			Annotations: map[string]string{"summary": "An agent of site {{site}} has filled {{value}}% of its spool quota"}},
		{Builtin: "vcenter-unreachable", Name: "vCenter unreachable", EntityKind: KindVCenter, Severity: SeverityCritical,
			Description: "The site's agent cannot reach the vCenter/ESXi endpoint: the alerts of its hosts, VMs, clusters and datastores are suppressed meanwhile.",
			Conditions:  []Condition{{Metric: MetricVCenterReachable, Agg: AggLast, Op: "<", Threshold: 1}}, For: Duration(2 * time.Minute),
			Annotations: map[string]string{"summary": "vCenter {{entity}} ({{site}}) is unreachable from its agent"}},
		{Builtin: "vm-consolidation-needed", Name: "VM disks need consolidation", EntityKind: KindVM, Severity: SeverityWarning,
			Description: "vCenter reports that the VM's disks need consolidation (delta disks left behind by a snapshot operation).",
			Conditions:  []Condition{{Metric: MetricConsolidationNeeded, Agg: AggLast, Op: "==", Threshold: 1}},
			Annotations: map[string]string{"summary": "VM {{entity}} ({{site}}) needs disk consolidation"}},
		{Builtin: "vcenter-alarm-vm", Name: "vCenter alarm (VM)", EntityKind: KindVM, Severity: SeverityWarning,
			Description: "Mirrors vCenter's triggered alarms on VMs: red is critical, yellow a warning, green or gray resolves.",
			Conditions:  []Condition{{Metric: MetricVCenterAlarm, Agg: AggLast, Op: ">=", Threshold: AlarmYellow}}},
		{Builtin: "vcenter-alarm-host", Name: "vCenter alarm (host)", EntityKind: KindHost, Severity: SeverityWarning,
			Description: "Mirrors vCenter's triggered alarms on hosts: red is critical, yellow a warning, green or gray resolves.",
			Conditions:  []Condition{{Metric: MetricVCenterAlarm, Agg: AggLast, Op: ">=", Threshold: AlarmYellow}}},
		{Builtin: "vcenter-alarm-datastore", Name: "vCenter alarm (datastore)", EntityKind: KindDatastore, Severity: SeverityWarning,
			Description: "Mirrors vCenter's triggered alarms on datastores: red is critical, yellow a warning, green or gray resolves.",
			Conditions:  []Condition{{Metric: MetricVCenterAlarm, Agg: AggLast, Op: ">=", Threshold: AlarmYellow}}},
		{Builtin: "vcenter-alarm-cluster", Name: "vCenter alarm (cluster)", EntityKind: KindCluster, Severity: SeverityWarning,
			Description: "Mirrors vCenter's triggered alarms on clusters: red is critical, yellow a warning, green or gray resolves.",
			Conditions:  []Condition{{Metric: MetricVCenterAlarm, Agg: AggLast, Op: ">=", Threshold: AlarmYellow}}},
	}
}

// InstallDefaultPack adds the default pack's rules that were never
// installed on this database: a rule an operator deleted stays deleted.
// It is safe to run on every start of every replica.
func (d *DB) InstallDefaultPack(ctx context.Context) (int, error) {
	n := 0
	for _, r := range DefaultPack() {
		r.Enabled = true
		err := d.inTx(ctx, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, `INSERT INTO alert_pack_installed (key) VALUES ($1) ON CONFLICT DO NOTHING`, r.Builtin)
			if err != nil || tag.RowsAffected() == 0 {
				return err
			}
			r.Normalize()
			if err := r.Validate(); err != nil {
				return fmt.Errorf("default pack rule %s: %w", r.Builtin, err)
			}
			spec, err := specOf(&r)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO alert_rules (id, name, description, entity_kind, severity, enabled, spec, builtin, created_by, updated_by)
				VALUES (gen_random_uuid(), $1, $2, $3, $4, true, $5, $6, 'vmpulse', 'vmpulse') ON CONFLICT (name) DO NOTHING`,
				r.Name, r.Description, r.EntityKind, r.Severity, spec, r.Builtin)
			if err == nil {
				n++
			}
			return err
		})
		if err != nil {
			return n, fmt.Errorf("alert: install the default pack: %w", err)
		}
	}
	return n, nil
}
