package alert

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vmpulse/vmpulse/protocol"
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
	case KindVM:
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
	clear15 := 15.0
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
