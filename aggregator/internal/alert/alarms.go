package alert

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// vCenter alarm mirroring. The agent forwards vCenter's alarm states as
// events (type AlarmStatusChangedEvent or AlarmClearedEvent, or TriggeredAlarmState for the
// states it finds triggered when it starts), stored in vcenter_events with
// extra {"alarm", "alarm_name", "from", "to"} and statuses gray, green,
// yellow, red. A rule whose condition is on MetricVCenterAlarm mirrors the
// alarms on the entities of its kind and scope: one alert per (alarm,
// entity), red critical, yellow a warning, green or gray resolving it.
//
// The engine receives the alarm events of every events batch this replica
// commits, from ingest's fan-out after COMMIT (Engine.PublishEvents), and
// applies them at once, by their event time. The committed events in
// vcenter_events are read only to catch up (alarmfeed.go): when the engine
// starts, after it dropped or failed to apply some, and at a slow safety
// interval for those a replica committed and never applied (it died in
// between). Each status is applied once: the alert keeps the event time
// of the last status applied (mirror_at), and a unique index keeps one
// open alert per (rule, entity, alarm) however many replicas or readers
// apply the same event. Statuses older than Lateness go to the site's
// digest instead of paging; topology suppression and maintenance windows
// apply as to any alert.

// MetricVCenterAlarm is the status of a vCenter alarm on an entity:
// 0 gray, 1 green, 2 yellow, 3 red. A rule on it (op >=, threshold
// AlarmYellow or AlarmRed) mirrors vCenter's alarms.
const MetricVCenterAlarm = "vcenter.alarm.status"

// Alarm statuses as MetricVCenterAlarm numbers them.
const (
	AlarmGray = iota
	AlarmGreen
	AlarmYellow
	AlarmRed
)

// alarmStatus numbers a vCenter status name (-1 when unknown).
func alarmStatus(s string) int {
	switch strings.ToLower(s) {
	case "gray", "grey":
		return AlarmGray
	case "green":
		return AlarmGreen
	case "yellow":
		return AlarmYellow
	case "red":
		return AlarmRed
	}
	return -1
}

// isMirror reports whether a rule mirrors vCenter alarms.
func (r *Rule) isMirror() bool {
	return len(r.Conditions) > 0 && r.Conditions[0].Metric == MetricVCenterAlarm
}

// alarmLookback re-reads events received this long before the cursor:
// an events batch committing after a newer one is still seen.
const alarmLookback = 2 * time.Minute

// alarmCursor names the mirror's row in alert_cursors.
const alarmCursor = "vcenter-alarms"

// alarmEvent is one alarm status change.
type alarmEvent struct {
	key        entityKey
	alarm      string
	alarmName  string
	status     int
	from       string
	to         string
	at         int64 // ms, event time
	entityName string
	message    string
	eventKey   int64 // the event's key in vcenter_events (per site and source)
}

// mirrorRules returns the enabled rules that mirror vCenter alarms.
func (e *Engine) mirrorRules() []*compiled {
	var mirrors []*compiled
	for _, kr := range e.kinds {
		for _, c := range kr.rules {
			if c.rule.isMirror() {
				mirrors = append(mirrors, c)
			}
		}
	}
	return mirrors
}

// alarmTypes are the event types that carry an alarm status.
var alarmTypes = []string{"AlarmStatusChangedEvent", "AlarmClearedEvent", "TriggeredAlarmState"}

// alarmOf reads an alarm status from an event's fields; ok is false for
// an event that is not one this mirror understands.
func alarmOf(site, source, kind, id, name, typ, message string, key int64, at time.Time, extra map[string]any) (ev alarmEvent, ok bool) {
	if !slices.Contains(alarmTypes, typ) {
		return ev, false
	}
	str := func(k string) string { s, _ := extra[k].(string); return s }
	ev = alarmEvent{key: entityKey{site: site, source: source, kind: kind, id: id}, entityName: name, message: message,
		alarm: str("alarm"), alarmName: str("alarm_name"), from: str("from"), to: str("to"), at: at.UnixMilli(), eventKey: key}
	if ev.to == "" {
		ev.to = str("status")
	}
	ev.status = alarmStatus(ev.to)
	if ev.alarm == "" || ev.key.id == "" || ev.status < 0 {
		return ev, false
	}
	return ev, true
}

// applyAlarms applies alarm events, in the order given, to every mirror
// rule whose kind and scope they match, and wakes the dispatcher when a
// notification was queued. It is called under the engine's lock.
func (e *Engine) applyAlarms(ctx context.Context, mirrors []*compiled, evs []alarmEvent, now time.Time) error {
	notify := false
	for i := range evs {
		ev := &evs[i]
		for _, c := range mirrors {
			if c.rule.EntityKind != ev.key.kind || (!c.universal && !e.match(c, ev.key)) {
				continue
			}
			n, err := e.applyAlarm(ctx, c, ev, now)
			if err != nil {
				return err
			}
			notify = notify || n
		}
		e.Stats.AlarmsApplied.Add(1)
	}
	if notify {
		if _, err := e.pool.Exec(ctx, `SELECT pg_notify($1, '')`, outboxChannel); err != nil {
			return fmt.Errorf("alert: alarm mirror: notify: %w", err)
		}
	}
	return nil
}

// applyAlarm applies one status to the rule's alert of (entity, alarm), in
// one transaction; it reports whether it queued a notification.
func (e *Engine) applyAlarm(ctx context.Context, c *compiled, ev *alarmEvent, now time.Time) (bool, error) {
	notified := false
	err := e.db.inTx(ctx, func(tx pgx.Tx) error {
		var id int64
		var state string
		var mirrorAt time.Time
		var notifySeq int
		var silenced, late bool
		err := tx.QueryRow(ctx, `SELECT id, state, mirror_at, notify_seq, silenced, late FROM alerts
			WHERE rule_id = $1 AND site = $2 AND source = $3 AND entity_id = $4 AND mirror_key = $5
			ORDER BY id DESC LIMIT 1 FOR UPDATE`, c.rule.ID, ev.key.site, ev.key.source, ev.key.id, ev.alarm).
			Scan(&id, &state, &mirrorAt, &notifySeq, &silenced, &late)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			id = 0
		case err != nil:
			return err
		case !mirrorAt.Before(time.UnixMilli(ev.at)):
			return nil // applied already (or a newer status was)
		}
		open := id != 0 && state != "resolved"
		active := ev.status >= int(c.conds[0].thr)
		if c.conds[0].op == ">" {
			active = ev.status > int(c.conds[0].thr)
		}
		isLate := now.Sub(time.UnixMilli(ev.at)) > e.cfg.Lateness
		en := &entity{key: ev.key}
		labels := e.labels(c, en)
		labels["alarm"], labels["alarm_name"] = ev.alarm, ev.alarmName
		if ev.entityName != "" && labels["entity"] == ev.key.id {
			labels["entity"] = ev.entityName
		}
		severity := SeverityWarning
		if ev.status == AlarmRed {
			severity = SeverityCritical
		}
		labels["severity"] = severity
		summary := fmt.Sprintf("vCenter alarm %s on %s: %s", orStr(ev.alarmName, ev.alarm), labels["entity"], ev.to)
		ann := map[string]string{"summary": summary}
		if ev.message != "" {
			ann["description"] = ev.message
		}
		payload := func(id int64, st string, starts, ends int64) sdk.Alert {
			a := sdk.Alert{ID: strconv.FormatInt(id, 10), Rule: c.rule.Name, Severity: severity, State: st,
				Entity: sdk.Entity{Kind: ev.key.kind, ID: labels["entity_id"], Name: labels["entity"]}, Site: ev.key.site,
				Summary: summary, Description: ann["description"], Value: float64(ev.status), Threshold: c.conds[0].thr,
				StartsAt: msTime(starts), Labels: labels}
			if ends != 0 {
				a.EndsAt = msTime(ends)
			}
			return a
		}
		at := msTime(ev.at)
		switch {
		case active && !open:
			cs := e.suppression(c, en, labels, ev.at)
			st, reason := "firing", ""
			var by *int64
			if cs != nil {
				st, reason = "suppressed", cs.reason
				if p := e.parentAlert(cs); p != 0 {
					by = &p
				}
			}
			sil := matchesAny(e.silences, labels, now)
			err := tx.QueryRow(ctx, `
				INSERT INTO alerts (rule_id, rule_name, severity, site, source, entity_kind, entity_id, entity_name, state, starts_at,
				                    value, threshold, summary, labels, annotations, late, silenced, suppressed_by, suppressed_reason, mirror_key, mirror_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $10)
				ON CONFLICT (rule_id, site, source, entity_id, mirror_key) WHERE mirror_key IS NOT NULL AND state <> 'resolved' DO NOTHING
				RETURNING id`,
				c.rule.ID, c.rule.Name, severity, ev.key.site, ev.key.source, ev.key.kind, ev.key.id, labels["entity"], st, at,
				float64(ev.status), c.conds[0].thr, summary, labels, ann, isLate, sil, by, reason, ev.alarm).Scan(&id)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // another replica opened it
			}
			if err != nil {
				return err
			}
			if err := e.db.event(ctx, tx, id, TrFiring, ev.at, isLate, float64(ev.status), map[string]any{"alarm": ev.alarm, "from": ev.from, "to": ev.to}); err != nil {
				return err
			}
			switch {
			case cs != nil:
				detail := map[string]any{"reason": reason}
				if by != nil {
					detail["suppressed_by"] = *by
				}
				return e.db.event(ctx, tx, id, "suppressed", ev.at, isLate, float64(ev.status), detail)
			case sil:
				return e.db.event(ctx, tx, id, "silenced", ev.at, isLate, float64(ev.status), nil)
			case isLate:
				return e.db.digestItems(ctx, tx, c.rule.Channels, ev.key.site, id, TrFiring, ev.at, payload(id, sdk.StateFiring, ev.at, 0))
			}
			n, err := e.db.enqueue(ctx, tx, c.rule.Channels, id, "firing", "firing", payload(id, sdk.StateFiring, ev.at, 0))
			if err != nil || n == 0 {
				return err
			}
			notified = true
			_, err = tx.Exec(ctx, `UPDATE alerts SET last_notified_at = now(), notify_seq = 1 WHERE id = $1`, id)
			return err
		case active && open:
			var prev string
			if err := tx.QueryRow(ctx, `UPDATE alerts a SET severity = $2, value = $3, summary = $4, labels = $5, mirror_at = $6, updated_at = now()
				FROM (SELECT severity FROM alerts WHERE id = $1) p WHERE a.id = $1 RETURNING p.severity`,
				id, severity, float64(ev.status), summary, labels, at).Scan(&prev); err != nil {
				return err
			}
			if prev == severity {
				return nil
			}
			return e.db.event(ctx, tx, id, "severity", ev.at, isLate, float64(ev.status),
				map[string]any{"alarm": ev.alarm, "from": ev.from, "to": ev.to, "severity": severity})
		case !active && open:
			var starts time.Time
			if err := tx.QueryRow(ctx, `UPDATE alerts SET state = 'resolved', ends_at = $2, value = $3, mirror_at = $2, updated_at = now()
				WHERE id = $1 RETURNING starts_at`, id, at, float64(ev.status)).Scan(&starts); err != nil {
				return err
			}
			if err := e.db.event(ctx, tx, id, TrResolved, ev.at, isLate, float64(ev.status), map[string]any{"alarm": ev.alarm, "from": ev.from, "to": ev.to}); err != nil {
				return err
			}
			p := payload(id, sdk.StateResolved, starts.UnixMilli(), ev.at)
			switch {
			case silenced || state == "suppressed" || (notifySeq == 0 && !late):
				return nil
			case isLate || late:
				return e.db.digestItems(ctx, tx, c.rule.Channels, ev.key.site, id, TrResolved, ev.at, p)
			}
			n, err := e.db.enqueue(ctx, tx, c.rule.Channels, id, "resolved", "resolved", p)
			notified = n > 0
			return err
		case id != 0:
			_, err := tx.Exec(ctx, `UPDATE alerts SET mirror_at = $2 WHERE id = $1`, id, at)
			return err
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("alert: mirror alarm %s on %s: %w", ev.alarm, ev.key, err)
	}
	return notified, nil
}

func orStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// validateMirror checks a rule on MetricVCenterAlarm: one condition, >=
// yellow or red (or > green or yellow).
func validateMirror(v *ValidationError, r *Rule) {
	if !r.isMirror() {
		for i, c := range r.Conditions {
			if c.Metric == MetricVCenterAlarm {
				v.add(fmt.Sprintf("conditions[%d].metric", i), FieldInvalidValue, map[string]any{"allowed": MetricVCenterAlarm + " only as the single condition"})
			}
		}
		return
	}
	if len(r.Conditions) != 1 {
		v.add("conditions", FieldOutOfRange, map[string]any{"min": 1, "max": 1})
		return
	}
	c := r.Conditions[0]
	ok := (c.Op == ">=" && (c.Threshold == AlarmYellow || c.Threshold == AlarmRed)) || (c.Op == ">" && (c.Threshold == AlarmGreen || c.Threshold == AlarmYellow))
	if !ok {
		v.add("conditions[0].threshold", FieldInvalidValue, map[string]any{"allowed": ">= 2 (yellow) or >= 3 (red)"})
	}
	if r.EntityKind == KindSite {
		v.add("entity_kind", FieldInvalidValue, map[string]any{"allowed": "vm, host, cluster, datastore"})
	}
}
