package alert

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
)

// entityMeta is what scopes and labels need of an inventory object.
type entityMeta struct {
	name          string
	host, cluster string // morefs (VMs: their host and cluster; hosts: their cluster)
	tags          []string
	groups        []string          // VM group ids
	props         map[string]string // the props state metrics read
	// freeSlope is a datastore's trend of free space, bytes a second (0:
	// no trend).
	freeSlope float64
}

// rulesFingerprint changes whenever a rule is created, changed or deleted.
func (d *DB) rulesFingerprint(ctx context.Context) (string, error) {
	var n, sum int64
	var last *time.Time
	if err := d.pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(revision), 0), max(updated_at) FROM alert_rules`).Scan(&n, &sum, &last); err != nil {
		return "", fmt.Errorf("alert: rules fingerprint: %w", err)
	}
	fp := fmt.Sprintf("%d/%d", n, sum)
	if last != nil {
		fp += "/" + last.UTC().Format(time.RFC3339Nano)
	}
	return fp, nil
}

// enabledRules reads every enabled rule.
func (d *DB) enabledRules(ctx context.Context) ([]*Rule, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+ruleCols+` FROM alert_rules WHERE enabled ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("alert: rules: %w", err)
	}
	defer rows.Close()
	var out []*Rule
	for rows.Next() {
		r, err := scanRule(rows)
		if err != nil {
			return nil, fmt.Errorf("alert: rules: %w", err)
		}
		out = append(out, &r)
	}
	return out, rows.Err()
}

// inventoryMeta reads the live inventory objects that rules can apply to,
// with the VM groups of each VM. It is the aggregator's own work, across
// every site.
func (d *DB) inventoryMeta(ctx context.Context) (map[entityKey]*entityMeta, error) {
	rows, err := d.pool.Query(ctx, `
		SELECT o.site, o.source, o.kind, o.moref, o.name, coalesce(o.props->>'host_id', ''), coalesce(o.props->>'cluster_id', ''),
		       CASE WHEN jsonb_typeof(o.props->'tags') = 'array' THEN ARRAY(SELECT jsonb_array_elements_text(o.props->'tags')) ELSE '{}'::text[] END,
		       jsonb_build_object('connection_state', o.props->>'connection_state', 'maintenance_mode', o.props->>'maintenance_mode',
		           'capacity', o.props->>'capacity', 'free', o.props->>'free', 'snapshot_count', o.props->>'snapshot_count',
		           'snapshot_oldest', o.props->>'snapshot_oldest', 'host_id', o.props->>'host_id', 'accessible', o.props->>'accessible',
		           'datastore_ids', (o.props->'datastore_ids')::text, 'power_state', o.props->>'power_state',
		           'tools_running_status', o.props->>'tools_running_status', 'tools_version_status', o.props->>'tools_version_status',
		           'consolidation_needed', o.props->>'consolidation_needed')
		FROM inventory_objects o
		WHERE o.deleted_at IS NULL AND o.kind IN ('vm', 'host', 'cluster', 'datastore')`)
	if err != nil {
		return nil, fmt.Errorf("alert: inventory: %w", err)
	}
	out := map[entityKey]*entityMeta{}
	for rows.Next() {
		var k entityKey
		m := &entityMeta{}
		var props map[string]*string
		if err := rows.Scan(&k.site, &k.source, &k.kind, &k.id, &m.name, &m.host, &m.cluster, &m.tags, &props); err != nil {
			rows.Close()
			return nil, fmt.Errorf("alert: inventory: %w", err)
		}
		m.props = map[string]string{}
		for pk, pv := range props {
			if pv != nil {
				m.props[pk] = *pv
			}
		}
		out[k] = m
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alert: inventory: %w", err)
	}
	// Datastores' free space trend: a least-squares line through the
	// free space recorded over the last 7 days, the current value included.
	// The rule is the store's, shared with the fleet overview.
	rows, err = d.pool.Query(ctx, store.DatastoreFreeSlopeSQL)
	if err != nil {
		return nil, fmt.Errorf("alert: datastore trends: %w", err)
	}
	for rows.Next() {
		k := entityKey{kind: KindDatastore}
		var slope *float64
		if err := rows.Scan(&k.site, &k.source, &k.id, &slope); err != nil {
			rows.Close()
			return nil, fmt.Errorf("alert: datastore trends: %w", err)
		}
		if m := out[k]; m != nil && slope != nil {
			m.freeSlope = *slope
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alert: datastore trends: %w", err)
	}
	rows, err = d.pool.Query(ctx, `
		SELECT g.id::text, o.site, o.source, o.moref FROM vm_groups g JOIN inventory_objects o ON o.kind = 'vm' AND o.deleted_at IS NULL AND (
			EXISTS (SELECT 1 FROM vm_group_members m WHERE m.group_id = g.id AND m.site = o.site AND m.source = o.source AND m.moref = o.moref)
			OR vm_rule_matches(g.rule, o.site, o.source, o.moref, o.name, o.path, o.props))`)
	if err != nil {
		return nil, fmt.Errorf("alert: vm groups: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var g string
		k := entityKey{kind: KindVM}
		if err := rows.Scan(&g, &k.site, &k.source, &k.id); err != nil {
			return nil, fmt.Errorf("alert: vm groups: %w", err)
		}
		if m := out[k]; m != nil {
			m.groups = append(m.groups, g)
		}
	}
	return out, rows.Err()
}

// stateRow is one persisted instance.
type stateRow struct {
	ruleID uuid.UUID
	key    entityKey
	in     instance
}

// states reads the persisted instances changed after since (all when
// zero), and the newest change time.
func (d *DB) states(ctx context.Context, since time.Time) ([]stateRow, time.Time, error) {
	var sincep *time.Time
	if !since.IsZero() {
		sincep = &since
	}
	rows, err := d.pool.Query(ctx, `
		SELECT s.rule_id, s.site, s.source, s.entity_kind, s.entity_id, s.state, s.prior, s.since, s.last_true, s.keeping, s.last_at,
		       coalesce(s.alert_id, 0), coalesce(s.value, 0), s.version, s.updated_at,
		       coalesce(a.late, false), coalesce(a.silenced, false), a.pending_since, coalesce(a.state = 'suppressed', false)
		FROM alert_states s LEFT JOIN alerts a ON a.id = s.alert_id
		WHERE $1::timestamptz IS NULL OR s.updated_at > $1`, sincep)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("alert: states: %w", err)
	}
	defer rows.Close()
	var out []stateRow
	var maxAt time.Time
	for rows.Next() {
		var r stateRow
		var state, prior string
		var sinceT, lastAt, updated time.Time
		var lastTrue, pending *time.Time
		var late, silenced, suppressed bool
		if err := rows.Scan(&r.ruleID, &r.key.site, &r.key.source, &r.key.kind, &r.key.id, &state, &prior, &sinceT, &lastTrue, &r.in.keeping, &lastAt,
			&r.in.alertID, &r.in.value, &r.in.version, &updated, &late, &silenced, &pending, &suppressed); err != nil {
			return nil, time.Time{}, fmt.Errorf("alert: states: %w", err)
		}
		r.in.state, r.in.prior = State(state), State(prior)
		r.in.since, r.in.lastAt = sinceT.UnixMilli(), lastAt.UnixMilli()
		if lastTrue != nil {
			r.in.lastTrue = lastTrue.UnixMilli()
		}
		if pending != nil {
			r.in.pending = pending.UnixMilli()
		}
		if late {
			r.in.flags |= flagLate
		}
		if silenced {
			r.in.flags |= flagSilenced
		}
		if suppressed {
			r.in.flags |= flagSuppressed
		}
		if updated.After(maxAt) {
			maxAt = updated
		}
		out = append(out, r)
	}
	return out, maxAt, rows.Err()
}

// recentSamples streams the stored samples since of the entities of kind
// whose series carry any of metrics, oldest first.
func (d *DB) recentSamples(ctx context.Context, kind string, metrics []string, since time.Time,
	fn func(site, source, id string, counters, units []string, ts time.Time, v []*float32)) error {
	rows, err := d.pool.Query(ctx, `
		SELECT se.site, se.source, se.entity_id, se.counters, se.units, s.ts, s.v
		FROM series se JOIN samples s ON s.series_id = se.id
		WHERE se.entity_kind = $1 AND se.instance = '' AND se.counters && $2::text[] AND s.ts > $3
		ORDER BY s.ts`, kind, metrics, since)
	if err != nil {
		return fmt.Errorf("alert: warm %s windows: %w", kind, err)
	}
	defer rows.Close()
	for rows.Next() {
		var site, source, id string
		var counters, units []string
		var ts time.Time
		var v []*float32
		if err := rows.Scan(&site, &source, &id, &counters, &units, &ts, &v); err != nil {
			return fmt.Errorf("alert: warm %s windows: %w", kind, err)
		}
		fn(site, source, id, counters, units, ts, v)
	}
	return rows.Err()
}
