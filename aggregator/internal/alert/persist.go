package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// DB is the alert tables: the engine's reads and transition writes, and
// the API's rules, alerts, silences and channels. It is safe for concurrent
// use. Reads of alerts run under the data scope of their context (see
// scope.go).
type DB struct {
	pool *pgxpool.Pool
}

// NewDB returns the alert tables of the database behind pool.
func NewDB(pool *pgxpool.Pool) *DB { return &DB{pool: pool} }

// outboxChannel is the NOTIFY channel that wakes the dispatcher.
const outboxChannel = "vmpulse_alert_outbox"

// Instance flags kept beside the state: facts of its current alert.
const (
	flagLate       uint8 = 1 << iota // the alert's firing was late (digest)
	flagSilenced                     // a silence matched when it fired
	flagSuppressed                   // suppressed (topology, maintenance): not paged
)

// change is one transition to persist.
type change struct {
	rule        *compiled
	ent         *entity
	live        *instance // the engine's instance (may have moved on)
	in          instance  // the instance right after the transition
	kind        string
	at          int64 // ms, event time
	late        bool
	reason      string // for unknown: site_offline, no_data
	prevVersion int64
	prevState   State
	arrived     time.Time
	cause       *cause // firing: why it is suppressed (nil: it pages)
}

// conflictError: an instance's row was changed by another writer.
type conflictError struct{ rule, entity string }

func (e *conflictError) Error() string {
	return fmt.Sprintf("alert: state of rule %s on %s changed by another writer", e.rule, e.entity)
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func nullMS(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := msTime(ms)
	return &t
}

// running tracks an instance's row across the changes of one flush.
type running struct {
	version int64
	alertID int64
	flags   uint8
}

// persist writes the changes in one transaction, in order.
func (d *DB) persist(ctx context.Context, e *Engine, trs []*change) error {
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("alert: persist: %w", err)
	}
	defer tx.Rollback(ctx)
	cur := map[*instance]*running{}
	notify := false
	for _, ch := range trs {
		r := cur[ch.live]
		if r == nil {
			r = &running{version: ch.prevVersion, alertID: ch.in.alertID, flags: ch.in.flags}
			cur[ch.live] = r
		}
		n, err := d.apply(ctx, tx, e, ch, r)
		if err != nil {
			return err
		}
		notify = notify || n
		ch.in.version, ch.in.alertID, ch.in.flags = r.version, r.alertID, r.flags
	}
	if notify {
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, outboxChannel); err != nil {
			return fmt.Errorf("alert: persist: notify: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("alert: persist: commit: %w", err)
	}
	return nil
}

// apply writes one change; it reports whether it queued a notification.
func (d *DB) apply(ctx context.Context, tx pgx.Tx, e *Engine, ch *change, r *running) (bool, error) {
	in := &ch.in
	switch ch.kind {
	case TrPending:
		return false, d.writeState(ctx, tx, ch, r)
	case TrCancelled, TrForgotten:
		return false, d.deleteState(ctx, tx, ch, r)
	case TrKeeping, TrKept:
		if err := d.writeState(ctx, tx, ch, r); err != nil {
			return false, err
		}
		return false, d.event(ctx, tx, r.alertID, ch.kind, ch.at, ch.late, in.value, nil)
	case TrUnknown:
		if err := d.writeState(ctx, tx, ch, r); err != nil {
			return false, err
		}
		if r.alertID == 0 || ch.prevState != StateFiring {
			return false, nil
		}
		if _, err := tx.Exec(ctx, `UPDATE alerts SET state = 'unknown', updated_at = now() WHERE id = $1 AND state = 'firing'`, r.alertID); err != nil {
			return false, fmt.Errorf("alert: persist unknown: %w", err)
		}
		return false, d.event(ctx, tx, r.alertID, TrUnknown, ch.at, false, in.value, map[string]any{"reason": ch.reason})
	case TrKnown:
		if err := d.writeState(ctx, tx, ch, r); err != nil {
			return false, err
		}
		if r.alertID == 0 {
			return false, nil
		}
		if _, err := tx.Exec(ctx, `UPDATE alerts SET state = 'firing', value = $2, updated_at = now() WHERE id = $1 AND state = 'unknown'`, r.alertID, in.value); err != nil {
			return false, fmt.Errorf("alert: persist known: %w", err)
		}
		return false, d.event(ctx, tx, r.alertID, TrKnown, ch.at, ch.late, in.value, nil)
	case TrFiring:
		return d.fire(ctx, tx, e, ch, r)
	case TrUnsuppressed:
		return d.unsuppress(ctx, tx, e, ch, r)
	case TrResolved:
		return d.resolve(ctx, tx, e, ch, r)
	}
	return false, fmt.Errorf("alert: persist: unknown transition %q", ch.kind)
}

// writeState inserts or updates the instance's row, checking its version.
func (d *DB) writeState(ctx context.Context, tx pgx.Tx, ch *change, r *running) error {
	in := &ch.in
	k := ch.ent.key
	var alertID *int64
	if r.alertID != 0 {
		alertID = &r.alertID
	}
	var err error
	if r.version == 0 {
		err = tx.QueryRow(ctx, `
			INSERT INTO alert_states AS s (rule_id, site, source, entity_kind, entity_id, state, prior, since, last_true, keeping, last_at, alert_id, value)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
			ON CONFLICT (rule_id, site, source, entity_id) DO UPDATE SET
				state = EXCLUDED.state, prior = EXCLUDED.prior, since = EXCLUDED.since, last_true = EXCLUDED.last_true,
				keeping = EXCLUDED.keeping, last_at = EXCLUDED.last_at, alert_id = EXCLUDED.alert_id, value = EXCLUDED.value,
				version = s.version + 1, updated_at = now()
			WHERE s.state = 'ok'
			RETURNING version`,
			ch.rule.rule.ID, k.site, k.source, k.kind, k.id, string(in.state), string(orOK(in.prior)), msTime(in.since), nullMS(in.lastTrue),
			in.keeping, msTime(in.lastAt), alertID, finite(in.value)).Scan(&r.version)
	} else {
		err = tx.QueryRow(ctx, `
			UPDATE alert_states SET state = $6, prior = $7, since = $8, last_true = $9, keeping = $10, last_at = $11, alert_id = $12,
				value = $13, version = version + 1, updated_at = now()
			WHERE rule_id = $1 AND site = $2 AND source = $3 AND entity_id = $5 AND entity_kind = $4 AND version = $14
			RETURNING version`,
			ch.rule.rule.ID, k.site, k.source, k.kind, k.id, string(in.state), string(orOK(in.prior)), msTime(in.since), nullMS(in.lastTrue),
			in.keeping, msTime(in.lastAt), alertID, finite(in.value), r.version).Scan(&r.version)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return &conflictError{rule: ch.rule.rule.Name, entity: k.String()}
	}
	if err != nil {
		return fmt.Errorf("alert: persist state: %w", err)
	}
	return nil
}

func (d *DB) deleteState(ctx context.Context, tx pgx.Tx, ch *change, r *running) error {
	if r.version == 0 {
		return nil // never written
	}
	k := ch.ent.key
	tag, err := tx.Exec(ctx, `DELETE FROM alert_states WHERE rule_id = $1 AND site = $2 AND source = $3 AND entity_id = $4 AND version = $5`,
		ch.rule.rule.ID, k.site, k.source, k.id, r.version)
	if err != nil {
		return fmt.Errorf("alert: persist state: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return &conflictError{rule: ch.rule.rule.Name, entity: k.String()}
	}
	r.version, r.alertID, r.flags = 0, 0, 0
	return nil
}

func orOK(s State) State {
	if s == "" {
		return StateOK
	}
	return s
}

func finite(v float64) *float64 {
	if v != v || v > 1e300 || v < -1e300 {
		return nil
	}
	return &v
}

// event appends to an alert's timeline.
func (d *DB) event(ctx context.Context, q pgx.Tx, alertID int64, kind string, at int64, late bool, value float64, detail map[string]any) error {
	if alertID == 0 {
		return nil
	}
	if detail == nil {
		detail = map[string]any{}
	}
	if _, err := q.Exec(ctx, `INSERT INTO alert_events (alert_id, kind, at, late, value, detail) VALUES ($1, $2, $3, $4, $5, $6)`,
		alertID, kind, msTime(at), late, finite(value), detail); err != nil {
		return fmt.Errorf("alert: persist event: %w", err)
	}
	return nil
}

// fire opens an alert, its timeline and its notifications.
func (d *DB) fire(ctx context.Context, tx pgx.Tx, e *Engine, ch *change, r *running) (bool, error) {
	in := &ch.in
	c := ch.rule
	k := ch.ent.key
	labels := e.labels(c, ch.ent)
	silenced := matchesAny(e.silences, labels, ch.arrived)
	flags := uint8(0)
	if ch.late {
		flags |= flagLate
	}
	if silenced {
		flags |= flagSilenced
	}
	state, reason := "firing", ""
	var by *int64
	if ch.cause != nil {
		flags |= flagSuppressed
		state, reason = "suppressed", ch.cause.reason
		if id := e.parentAlert(ch.cause); id != 0 {
			by = &id
		}
	}
	ann := e.annotations(c, ch.ent, labels, in.value)
	kr := e.kinds[k.kind]
	unit := ""
	if kr != nil && len(c.conds) > 0 {
		unit = kr.unitOf(kr.feats[c.conds[0].feat].slot)
	}
	var id int64
	err := tx.QueryRow(ctx, `
		INSERT INTO alerts (rule_id, rule_name, severity, site, source, entity_kind, entity_id, entity_name, state, pending_since, starts_at,
		                    value, threshold, unit, summary, labels, annotations, late, silenced, suppressed_by, suppressed_reason)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $19, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $20, $21)
		RETURNING id`,
		c.rule.ID, c.rule.Name, c.rule.Severity, k.site, k.source, k.kind, k.id, labels["entity"], nullMS(in.pending), msTime(ch.at),
		finite(in.value), c.conds[0].thr, unit, ann["summary"], labels, ann, ch.late, silenced, state, by, reason).Scan(&id)
	if err != nil {
		return false, fmt.Errorf("alert: persist firing: %w", err)
	}
	r.alertID, r.flags = id, flags
	if in.pending != 0 {
		if err := d.event(ctx, tx, id, TrPending, in.pending, ch.late, in.value, nil); err != nil {
			return false, err
		}
	}
	if err := d.event(ctx, tx, id, TrFiring, ch.at, ch.late, in.value, nil); err != nil {
		return false, err
	}
	if err := d.writeState(ctx, tx, ch, r); err != nil {
		return false, err
	}
	if ch.cause != nil {
		detail := map[string]any{"reason": reason}
		if by != nil {
			detail["suppressed_by"] = *by
		}
		if ch.cause.window != "" {
			detail["maintenance_window"] = ch.cause.window
		}
		return false, d.event(ctx, tx, id, "suppressed", ch.at, ch.late, in.value, detail)
	}
	if silenced {
		return false, d.event(ctx, tx, id, "silenced", ch.at, ch.late, in.value, nil)
	}
	payload := e.sdkAlert(c, ch.ent, id, sdk.StateFiring, labels, ann, in.value, unit, ch.at, 0)
	if ch.late {
		return false, d.digestItems(ctx, tx, c.rule.Channels, k.site, id, TrFiring, ch.at, payload)
	}
	n, err := d.enqueueGroup(ctx, tx, c.rule.Channels, id, "firing", "firing", payload, e.groupOf(c, ch.ent), time.Duration(c.rule.GroupWait))
	if err != nil || n == 0 {
		return false, err
	}
	_, err = tx.Exec(ctx, `UPDATE alerts SET last_notified_at = now(), notify_seq = 1 WHERE id = $1`, id)
	return true, err
}

// groupOf is the notification group of the rule's alert on en ("" when
// the rule does not group).
func (e *Engine) groupOf(c *compiled, en *entity) string {
	if len(c.rule.GroupBy) == 0 {
		return ""
	}
	g := c.rule.ID.String() + "|site=" + en.key.site
	if slices.Contains(c.rule.GroupBy, "cluster") {
		cl := ""
		switch m := e.meta[en.key]; {
		case en.key.kind == KindCluster:
			cl = en.key.id
		case m != nil:
			cl = m.cluster
		}
		g += "|cluster=" + en.key.source + ":" + cl
	}
	return g
}

func nullStr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// resolve closes an alert and announces it.
func (d *DB) resolve(ctx context.Context, tx pgx.Tx, e *Engine, ch *change, r *running) (bool, error) {
	in := &ch.in
	c := ch.rule
	k := ch.ent.key
	id, flags := r.alertID, r.flags
	if err := d.deleteState(ctx, tx, ch, r); err != nil {
		return false, err
	}
	if id == 0 {
		return false, nil
	}
	var labels map[string]string
	var ann map[string]string
	var starts time.Time
	var unit string
	err := tx.QueryRow(ctx, `UPDATE alerts SET state = 'resolved', ends_at = $2, value = $3, updated_at = now() WHERE id = $1 AND state <> 'resolved'
		RETURNING labels, annotations, starts_at, unit`, id, msTime(ch.at), finite(in.value)).Scan(&labels, &ann, &starts, &unit)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil // resolved by hand meanwhile
	}
	if err != nil {
		return false, fmt.Errorf("alert: persist resolved: %w", err)
	}
	if err := d.event(ctx, tx, id, TrResolved, ch.at, ch.late, in.value, nil); err != nil {
		return false, err
	}
	if flags&(flagSilenced|flagSuppressed) != 0 {
		return false, nil
	}
	payload := e.sdkAlert(c, ch.ent, id, sdk.StateResolved, labels, ann, in.value, unit, starts.UnixMilli(), ch.at)
	if ch.late || flags&flagLate != 0 {
		return false, d.digestItems(ctx, tx, c.rule.Channels, k.site, id, TrResolved, ch.at, payload)
	}
	n, err := d.enqueueGroup(ctx, tx, c.rule.Channels, id, "resolved", "resolved", payload, e.groupOf(c, ch.ent), 0)
	return n > 0, err
}

// unsuppress pages a suppressed alert whose cause is gone while it still
// fires.
func (d *DB) unsuppress(ctx context.Context, tx pgx.Tx, e *Engine, ch *change, r *running) (bool, error) {
	if err := d.writeState(ctx, tx, ch, r); err != nil {
		return false, err
	}
	id := r.alertID
	r.flags &^= flagSuppressed
	if id == 0 {
		return false, nil
	}
	var labels, ann map[string]string
	var starts time.Time
	var unit string
	var silenced, late bool
	err := tx.QueryRow(ctx, `UPDATE alerts SET state = 'firing', suppressed_by = NULL, updated_at = now() WHERE id = $1 AND state = 'suppressed'
		RETURNING labels, annotations, starts_at, unit, silenced, late`, id).Scan(&labels, &ann, &starts, &unit, &silenced, &late)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("alert: persist unsuppressed: %w", err)
	}
	if err := d.event(ctx, tx, id, TrUnsuppressed, ch.at, ch.late, ch.in.value, nil); err != nil {
		return false, err
	}
	if silenced {
		return false, nil
	}
	payload := e.sdkAlert(ch.rule, ch.ent, id, sdk.StateFiring, labels, ann, ch.in.value, unit, starts.UnixMilli(), 0)
	if ch.late || late {
		r.flags |= flagLate
		return false, d.digestItems(ctx, tx, ch.rule.rule.Channels, ch.ent.key.site, id, TrFiring, ch.at, payload)
	}
	n, err := d.enqueue(ctx, tx, ch.rule.rule.Channels, id, "firing", "firing", payload)
	if err != nil || n == 0 {
		return false, err
	}
	_, err = tx.Exec(ctx, `UPDATE alerts SET last_notified_at = now(), notify_seq = 1 WHERE id = $1`, id)
	return true, err
}

// notePayload is what a notification row carries: the alerts as the
// notifier will see them.
type notePayload struct {
	Digest  bool        `json:"digest"`
	Storm   bool        `json:"storm,omitempty"` // a storm digest of a rate-limited channel
	Alerts  []sdk.Alert `json:"alerts"`
	Omitted int         `json:"omitted,omitempty"`
}

// enqueue inserts one notification per enabled channel; the idempotency
// key is alert-ID-KEYPART-CHANNEL, so the same announcement is never queued
// twice.
func (d *DB) enqueue(ctx context.Context, tx pgx.Tx, channels []uuid.UUID, alertID int64, kind, keyPart string, a sdk.Alert) (int, error) {
	return d.enqueueGroup(ctx, tx, channels, alertID, kind, keyPart, a, "", 0)
}

// enqueueGroup is enqueue for a rule that groups its notifications: group
// names the group, and the notification is due after wait.
func (d *DB) enqueueGroup(ctx context.Context, tx pgx.Tx, channels []uuid.UUID, alertID int64, kind, keyPart string, a sdk.Alert,
	group string, wait time.Duration) (int, error) {
	if len(channels) == 0 {
		return 0, nil
	}
	body, err := json.Marshal(notePayload{Alerts: []sdk.Alert{a}})
	if err != nil {
		return 0, err
	}
	prefix := "alert-" + strconv.FormatInt(alertID, 10) + "-" + keyPart + "-"
	tag, err := tx.Exec(ctx, `
		INSERT INTO alert_notifications (idempotency_key, channel_id, alert_id, kind, payload, group_key, next_attempt_at)
		SELECT $1 || c.id::text, c.id, $2, $3, $4, $6, now() + make_interval(secs => $7) FROM notification_channels c WHERE c.id = ANY($5) AND c.enabled
		ON CONFLICT (idempotency_key) DO NOTHING`, prefix, alertID, kind, body, channels, nullStr(group), wait.Seconds())
	if err != nil {
		return 0, fmt.Errorf("alert: enqueue: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

func (d *DB) digestItems(ctx context.Context, tx pgx.Tx, channels []uuid.UUID, site string, alertID int64, transition string, at int64, a sdk.Alert) error {
	if len(channels) == 0 {
		return nil
	}
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `
		INSERT INTO alert_digest_items (channel_id, site, alert_id, transition, at, payload)
		SELECT c.id, $2, $3, $4, $5, $6 FROM notification_channels c WHERE c.id = ANY($1) AND c.enabled`,
		channels, site, alertID, transition, msTime(at), body)
	if err != nil {
		return fmt.Errorf("alert: digest item: %w", err)
	}
	return nil
}

// labels are an alert's labels: the rule's, then the engine's own.
func (e *Engine) labels(c *compiled, en *entity) map[string]string {
	k := en.key
	l := make(map[string]string, len(c.rule.Labels)+8)
	for key, v := range c.rule.Labels {
		l[key] = v
	}
	id := k.source + ":" + k.id
	if k.kind == KindSite || k.kind == KindVCenter {
		id = k.id
	}
	name := k.id
	if m := e.meta[k]; m != nil && m.name != "" {
		name = m.name
	}
	l["alertname"] = c.rule.Name
	l["rule_id"] = c.rule.ID.String()
	l["severity"] = c.rule.Severity
	l["site"] = k.site
	l["entity_kind"] = k.kind
	l["entity_id"] = id
	l["entity"] = name
	return l
}

// annotations renders the rule's annotation templates; summary defaults
// to one line naming rule, entity and value.
func (e *Engine) annotations(c *compiled, en *entity, labels map[string]string, value float64) map[string]string {
	kr := e.kinds[en.key.kind]
	unit := ""
	if kr != nil && len(c.conds) > 0 {
		unit = kr.unitOf(kr.feats[c.conds[0].feat].slot)
	}
	thr := c.conds[0].thr
	repl := []string{"{{entity}}", labels["entity"], "{{entity_id}}", labels["entity_id"], "{{site}}", labels["site"],
		"{{rule}}", c.rule.Name, "{{severity}}", c.rule.Severity, "{{value}}", formatValue(value), "{{threshold}}", formatValue(thr), "{{unit}}", unit}
	for k, v := range labels {
		repl = append(repl, "{{labels."+k+"}}", v)
	}
	r := strings.NewReplacer(repl...)
	out := make(map[string]string, len(c.rule.Annotations)+1)
	for k, v := range c.rule.Annotations {
		out[k] = r.Replace(v)
	}
	if out["summary"] == "" {
		cd := c.rule.Conditions[0]
		agg := cd.Agg
		if agg != AggLast {
			agg += " " + FormatDuration(time.Duration(cd.Window))
		}
		out["summary"] = fmt.Sprintf("%s: %s %s (%s) = %s%s %s %s%s", c.rule.Name, labels["entity"], cd.Metric, agg, formatValue(value), unit,
			cd.Op, formatValue(thr), unit)
	}
	return out
}

func formatValue(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func (e *Engine) sdkAlert(c *compiled, en *entity, id int64, state string, labels, ann map[string]string, value float64, unit string, starts, ends int64) sdk.Alert {
	a := sdk.Alert{
		ID: strconv.FormatInt(id, 10), Rule: c.rule.Name, Severity: c.rule.Severity, State: state,
		Entity: sdk.Entity{Kind: en.key.kind, ID: labels["entity_id"], Name: labels["entity"]}, Site: en.key.site,
		Summary: ann["summary"], Description: ann["description"], Value: value, Threshold: c.conds[0].thr, Unit: unit,
		StartsAt: msTime(starts), Labels: labels,
	}
	if ends != 0 {
		a.EndsAt = msTime(ends)
	}
	return a
}

// unitOf is the unit the slot's metric arrived with ("%" for percent
// counters, which rules compare in percent).
func (kr *kindRules) unitOf(slot int) string {
	if slot < len(kr.units) {
		return kr.units[slot]
	}
	return ""
}
