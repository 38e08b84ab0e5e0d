package alert

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// Alert is one alert (a firing episode of a rule on an entity) as the API
// shows it. Times are event times; CreatedAt is when the aggregator learnt
// of it.
type Alert struct {
	ID           int64             `json:"id"`
	RuleID       *uuid.UUID        `json:"rule_id"`
	RuleName     string            `json:"rule_name"`
	Severity     string            `json:"severity"`
	State        string            `json:"state"`
	Site         string            `json:"site"`
	EntityKind   string            `json:"entity_kind"`
	EntityID     string            `json:"entity_id"`
	EntityName   string            `json:"entity_name"`
	PendingSince *time.Time        `json:"pending_since"`
	StartsAt     time.Time         `json:"starts_at"`
	EndsAt       *time.Time        `json:"ends_at"`
	Value        *float64          `json:"value"`
	Threshold    *float64          `json:"threshold"`
	Unit         string            `json:"unit"`
	Summary      string            `json:"summary"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	Late         bool              `json:"late"`
	Silenced     bool              `json:"silenced"`
	Acked        bool              `json:"acked"`
	AckedAt      *time.Time        `json:"acked_at"`
	AckedBy      string            `json:"acked_by"`
	AckComment   string            `json:"ack_comment"`
	ResolvedBy   string            `json:"resolved_by"`
	// SuppressedBy is the alert of the parent whose state suppressed this
	// one (state suppressed), SuppressedReason why in words.
	SuppressedBy     *int64 `json:"suppressed_by"`
	SuppressedReason string `json:"suppressed_reason"`
	// Alarm is the vCenter alarm a mirrored alert stands for.
	Alarm          *string    `json:"alarm"`
	LastNotifiedAt *time.Time `json:"last_notified_at"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// Event is one entry of an alert's timeline: At is its event time,
// RecordedAt when the aggregator recorded it.
type Event struct {
	ID         int64          `json:"id"`
	Kind       string         `json:"kind"`
	At         time.Time      `json:"at"`
	RecordedAt time.Time      `json:"recorded_at"`
	Late       bool           `json:"late"`
	Actor      string         `json:"actor"`
	Value      *float64       `json:"value"`
	Detail     map[string]any `json:"detail"`
}

// Attempt is one delivery attempt of a notification.
type Attempt struct {
	Attempt    int       `json:"attempt"`
	Epoch      int64     `json:"epoch"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Outcome    string    `json:"outcome"`
	Code       string    `json:"code"`
	Message    string    `json:"message"`
	Error      string    `json:"error"`
	Fenced     bool      `json:"fenced"`
}

// Notification is a queued or sent notification with its attempts.
type Notification struct {
	ID             int64      `json:"id"`
	IdempotencyKey string     `json:"idempotency_key"`
	ChannelID      uuid.UUID  `json:"channel_id"`
	ChannelName    string     `json:"channel_name"`
	Kind           string     `json:"kind"`
	State          string     `json:"state"`
	Attempts       []Attempt  `json:"attempts"`
	CreatedAt      time.Time  `json:"created_at"`
	NextAttemptAt  *time.Time `json:"next_attempt_at"`
	DeliveredAt    *time.Time `json:"delivered_at"`
	LastCode       string     `json:"last_code"`
	LastError      string     `json:"last_error"`
	// MergedInto is the storm digest or group message that carried this
	// notification (state merged); DeliveredAt is then that message's.
	MergedInto *int64 `json:"merged_into"`
}

// AlertDetail is an alert with its timeline and notifications.
type AlertDetail struct {
	Alert
	Timeline      []Event        `json:"timeline"`
	Notifications []Notification `json:"notifications"`
}

// AlertFilter filters ListAlerts. State is active (firing, unknown or suppressed, the
// default), firing, unknown, suppressed, resolved or all.
type AlertFilter struct {
	State, Severity, Site, Kind, Entity, Q string
	RuleID                                 *uuid.UUID
	Acked, Late                            *bool
	From, To                               time.Time // starts_at range
	Sort                                   []SortKey
	Page, PageSize                         int
}

// SortKey is one sort field.
type SortKey struct {
	Field string
	Desc  bool
}

// AlertSortFields are the fields ListAlerts sorts by.
var AlertSortFields = map[string]string{"id": "a.id", "starts_at": "a.starts_at", "ends_at": "a.ends_at", "severity": "sev_rank(a.severity)",
	"state": "a.state", "site": "a.site", "rule": "a.rule_name", "entity": "a.entity_name", "updated_at": "a.updated_at"}

const alertCols = `a.id, a.rule_id, a.rule_name, a.severity, a.state, a.site, a.source, a.entity_kind, a.entity_id, a.entity_name, a.pending_since,
	a.starts_at, a.ends_at, a.value, a.threshold, a.unit, a.summary, a.labels, a.annotations, a.late, a.silenced, a.acked_at, a.acked_by,
	a.ack_comment, a.resolved_by, a.last_notified_at, a.created_at, a.updated_at, a.suppressed_by, a.suppressed_reason, a.mirror_key`

func scanAlert(row pgx.Row) (Alert, error) {
	var a Alert
	var source string
	err := row.Scan(&a.ID, &a.RuleID, &a.RuleName, &a.Severity, &a.State, &a.Site, &source, &a.EntityKind, &a.EntityID, &a.EntityName, &a.PendingSince,
		&a.StartsAt, &a.EndsAt, &a.Value, &a.Threshold, &a.Unit, &a.Summary, &a.Labels, &a.Annotations, &a.Late, &a.Silenced, &a.AckedAt, &a.AckedBy,
		&a.AckComment, &a.ResolvedBy, &a.LastNotifiedAt, &a.CreatedAt, &a.UpdatedAt, &a.SuppressedBy, &a.SuppressedReason, &a.Alarm)
	if err != nil {
		return a, err
	}
	if a.EntityKind != KindSite && a.EntityKind != KindVCenter {
		a.EntityID = source + ":" + a.EntityID
	}
	a.Acked = a.AckedAt != nil
	a.StartsAt, a.CreatedAt, a.UpdatedAt = a.StartsAt.UTC(), a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	for _, t := range []**time.Time{&a.PendingSince, &a.EndsAt, &a.AckedAt, &a.LastNotifiedAt} {
		if *t != nil {
			u := (*t).UTC()
			*t = &u
		}
	}
	if a.Labels == nil {
		a.Labels = map[string]string{}
	}
	if a.Annotations == nil {
		a.Annotations = map[string]string{}
	}
	return a, nil
}

// ListAlerts lists the alerts in the caller's data scope.
func (d *DB) ListAlerts(ctx context.Context, f AlertFilter) ([]Alert, int, error) {
	var a args
	sc, err := scopeSQL(ctx, "a", &a)
	if err != nil {
		return nil, 0, err
	}
	w := []string{sc}
	switch f.State {
	case "", "active":
		w = append(w, "a.state <> 'resolved'")
	case "all":
	default:
		w = append(w, "a.state = "+a.add(f.State))
	}
	if f.Severity != "" {
		w = append(w, "a.severity = "+a.add(f.Severity))
	}
	if f.Site != "" {
		w = append(w, "a.site = "+a.add(f.Site))
	}
	if f.Kind != "" {
		w = append(w, "a.entity_kind = "+a.add(f.Kind))
	}
	if f.Entity != "" {
		// A site's or a vCenter's id is its name or source as a whole, and
		// a source may hold ':' (vc.example.com:443); any other entity is
		// source:moref, split at the last ':' (a moref has none).
		byName := "(a.entity_kind IN ('site', 'vcenter') AND a.entity_id = " + a.add(f.Entity) + ")"
		if i := strings.LastIndexByte(f.Entity, ':'); i > 0 {
			byName = "(" + byName + " OR (a.entity_kind NOT IN ('site', 'vcenter') AND a.source = " + a.add(f.Entity[:i]) +
				" AND a.entity_id = " + a.add(f.Entity[i+1:]) + "))"
		}
		w = append(w, byName)
	}
	if f.RuleID != nil {
		w = append(w, "a.rule_id = "+a.add(*f.RuleID))
	}
	if f.Acked != nil {
		w = append(w, "(a.acked_at IS NOT NULL) = "+a.add(*f.Acked))
	}
	if f.Late != nil {
		w = append(w, "a.late = "+a.add(*f.Late))
	}
	if !f.From.IsZero() {
		w = append(w, "a.starts_at >= "+a.add(f.From))
	}
	if !f.To.IsZero() {
		w = append(w, "a.starts_at < "+a.add(f.To))
	}
	if f.Q != "" {
		p := a.add("%" + likeEscape(f.Q) + "%")
		w = append(w, "(a.entity_name ILIKE "+p+" OR a.rule_name ILIKE "+p+" OR a.summary ILIKE "+p+")")
	}
	where := " WHERE " + strings.Join(w, " AND ")
	var total int
	if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM alerts a`+where, a...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("alert: list alerts: %w", err)
	}
	order := make([]string, 0, len(f.Sort)+1)
	for _, k := range f.Sort {
		col, ok := AlertSortFields[k.Field]
		if !ok {
			continue
		}
		if col == "sev_rank(a.severity)" {
			col = "CASE a.severity WHEN 'critical' THEN 3 WHEN 'warning' THEN 2 ELSE 1 END"
		}
		if k.Desc {
			col += " DESC"
		}
		order = append(order, col)
	}
	order = append(order, "a.id DESC")
	page, size := pageOf(f.Page, f.PageSize)
	rows, err := d.pool.Query(ctx, `SELECT `+alertCols+` FROM alerts a`+where+` ORDER BY `+strings.Join(order, ", ")+
		fmt.Sprintf(` LIMIT %d OFFSET %d`, size, (page-1)*size), a...)
	if err != nil {
		return nil, 0, fmt.Errorf("alert: list alerts: %w", err)
	}
	defer rows.Close()
	out := []Alert{}
	for rows.Next() {
		al, err := scanAlert(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("alert: list alerts: %w", err)
		}
		redactSuppression(ctx, &al)
		out = append(out, al)
	}
	return out, total, rows.Err()
}

// GetAlert reads one alert in the caller's data scope.
func (d *DB) GetAlert(ctx context.Context, id int64) (Alert, error) {
	a := args{id}
	sc, err := scopeSQL(ctx, "a", &a)
	if err != nil {
		return Alert{}, err
	}
	al, err := scanAlert(d.pool.QueryRow(ctx, `SELECT `+alertCols+` FROM alerts a WHERE a.id = $1 AND `+sc, a...))
	if errors.Is(err, pgx.ErrNoRows) {
		return al, ErrNotFound
	}
	if err != nil {
		return al, fmt.Errorf("alert: alert %d: %w", id, err)
	}
	redactSuppression(ctx, &al)
	return al, nil
}

// AlertDetail reads an alert with its timeline and notifications.
func (d *DB) AlertDetail(ctx context.Context, id int64) (AlertDetail, error) {
	al, err := d.GetAlert(ctx, id)
	if err != nil {
		return AlertDetail{}, err
	}
	out := AlertDetail{Alert: al, Timeline: []Event{}, Notifications: []Notification{}}
	rows, err := d.pool.Query(ctx, `SELECT id, kind, at, recorded_at, late, actor, value, detail FROM alert_events WHERE alert_id = $1 ORDER BY at, id`, id)
	if err != nil {
		return out, fmt.Errorf("alert: timeline: %w", err)
	}
	for rows.Next() {
		var e Event
		if err := rows.Scan(&e.ID, &e.Kind, &e.At, &e.RecordedAt, &e.Late, &e.Actor, &e.Value, &e.Detail); err != nil {
			rows.Close()
			return out, fmt.Errorf("alert: timeline: %w", err)
		}
		e.At, e.RecordedAt = e.At.UTC(), e.RecordedAt.UTC()
		redactEvent(ctx, al.Site, &e)
		out.Timeline = append(out.Timeline, e)
	}
	rows.Close()
	rows, err = d.pool.Query(ctx, `
		SELECT n.id, n.idempotency_key, n.channel_id, c.name, n.kind, n.state, n.created_at, n.next_attempt_at, coalesce(n.delivered_at, m.delivered_at),
		       n.last_code, n.last_error, n.merged_into
		FROM alert_notifications n JOIN notification_channels c ON c.id = n.channel_id LEFT JOIN alert_notifications m ON m.id = n.merged_into
		WHERE n.alert_id = $1 ORDER BY n.id`, id)
	if err != nil {
		return out, fmt.Errorf("alert: notifications: %w", err)
	}
	idx := map[int64]int{}
	for rows.Next() {
		var n Notification
		var next time.Time
		if err := rows.Scan(&n.ID, &n.IdempotencyKey, &n.ChannelID, &n.ChannelName, &n.Kind, &n.State, &n.CreatedAt, &next, &n.DeliveredAt, &n.LastCode, &n.LastError,
			&n.MergedInto); err != nil {
			rows.Close()
			return out, fmt.Errorf("alert: notifications: %w", err)
		}
		if n.State == "pending" {
			next = next.UTC()
			n.NextAttemptAt = &next
		}
		n.Attempts = []Attempt{}
		idx[n.ID] = len(out.Notifications)
		out.Notifications = append(out.Notifications, n)
	}
	rows.Close()
	if len(idx) == 0 {
		return out, nil
	}
	rows, err = d.pool.Query(ctx, `SELECT t.notification_id, t.attempt, t.epoch, t.started_at, t.finished_at, t.outcome, t.code, t.message, t.error, t.fenced
		FROM alert_notification_attempts t JOIN alert_notifications n ON n.id = t.notification_id WHERE n.alert_id = $1 ORDER BY t.id`, id)
	if err != nil {
		return out, fmt.Errorf("alert: attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var nid int64
		var t Attempt
		if err := rows.Scan(&nid, &t.Attempt, &t.Epoch, &t.StartedAt, &t.FinishedAt, &t.Outcome, &t.Code, &t.Message, &t.Error, &t.Fenced); err != nil {
			return out, fmt.Errorf("alert: attempts: %w", err)
		}
		if i, ok := idx[nid]; ok {
			out.Notifications[i].Attempts = append(out.Notifications[i].Attempts, t)
		}
	}
	return out, rows.Err()
}

// Ack acknowledges an active alert in the caller's data scope: by whom,
// with a comment. An acknowledged alert is not repeated.
func (d *DB) Ack(ctx context.Context, id int64, by, comment string) error {
	al, err := d.GetAlert(ctx, id)
	if err != nil {
		return err
	}
	if al.State == "resolved" {
		return ErrNotActive
	}
	return d.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE alerts SET acked_at = now(), acked_by = $2, ack_comment = $3, updated_at = now() WHERE id = $1 AND state <> 'resolved'`,
			id, by, comment)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotActive
		}
		_, err = tx.Exec(ctx, `INSERT INTO alert_events (alert_id, kind, at, actor, detail) VALUES ($1, 'ack', now(), $2, jsonb_build_object('comment', $3::text))`,
			id, by, comment)
		return err
	})
}

// Resolve resolves an active alert in the caller's data scope by hand. Its
// instance returns to ok: if the condition still holds, a new alert
// follows. A resolved notice goes to the channels that were paged.
func (d *DB) Resolve(ctx context.Context, id int64, by, comment string) error {
	al, err := d.GetAlert(ctx, id)
	if err != nil {
		return err
	}
	if al.State == "resolved" {
		return ErrNotActive
	}
	return d.inTx(ctx, func(tx pgx.Tx) error {
		var a sdk.Alert
		var channels []uuid.UUID
		var late, silenced bool
		row := tx.QueryRow(ctx, `
			UPDATE alerts a SET state = 'resolved', ends_at = now(), resolved_by = $2, updated_at = now()
			WHERE a.id = $1 AND a.state <> 'resolved'
			RETURNING `+alertPayloadCols+`, coalesce((SELECT ARRAY(SELECT jsonb_array_elements_text(r.spec->'channels'))::uuid[] FROM alert_rules r WHERE r.id = a.rule_id), '{}'),
				a.late, a.silenced`, id, by)
		if err := scanAlertPayload(row, &a, &channels, &late, &silenced); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrNotActive
			}
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO alert_events (alert_id, kind, at, actor, detail) VALUES ($1, 'manual_resolve', now(), $2, jsonb_build_object('comment', $3::text))`,
			id, by, comment); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE alert_states SET state = 'ok', prior = 'ok', alert_id = NULL, keeping = false, version = version + 1, updated_at = now()
			WHERE alert_id = $1`, id); err != nil {
			return err
		}
		if late || silenced {
			return nil
		}
		a.State = sdk.StateResolved
		n, err := d.enqueue(ctx, tx, channels, id, "resolved", "resolved", a)
		if err != nil || n == 0 {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, outboxChannel)
		return err
	})
}

// AlertCounts are the alert counts of GET /alerts/stats.
type AlertCounts struct {
	Active     map[string]int64 `json:"active"`      // by state: firing, unknown
	BySeverity map[string]int64 `json:"by_severity"` // active, by severity
	BySite     map[string]int64 `json:"by_site"`     // active, by site
	ByRule     []RuleCount      `json:"by_rule"`     // active, top 20 rules
	Acked      int64            `json:"acked"`       // active and acknowledged
	Silenced   int64            `json:"silenced"`    // active and silenced
	// In the period [From, To):
	From          time.Time        `json:"from"`
	To            time.Time        `json:"to"`
	Fired         int64            `json:"fired"`
	Resolved      int64            `json:"resolved"`
	Transitions   map[string]int64 `json:"transitions"` // timeline entries by kind
	Late          int64            `json:"late"`        // late transitions
	Notifications map[string]int64 `json:"notifications"`
	// MeanTimeToResolveS is the mean duration of the alerts resolved in
	// the period, in seconds (0 when none).
	MeanTimeToResolveS float64 `json:"mean_time_to_resolve_s"`
}

// RuleCount counts one rule's active alerts.
type RuleCount struct {
	RuleID   *uuid.UUID `json:"rule_id"`
	RuleName string     `json:"rule_name"`
	Count    int64      `json:"count"`
}

// AlertStats counts the alerts in the caller's data scope.
func (d *DB) AlertStats(ctx context.Context, from, to time.Time) (AlertCounts, error) {
	st := AlertCounts{Active: map[string]int64{"firing": 0, "unknown": 0, "suppressed": 0}, BySeverity: map[string]int64{}, BySite: map[string]int64{},
		ByRule: []RuleCount{}, Transitions: map[string]int64{}, Notifications: map[string]int64{}, From: from.UTC(), To: to.UTC()}
	var a args
	sc, err := scopeSQL(ctx, "a", &a)
	if err != nil {
		return st, err
	}
	group := func(sql string, into map[string]int64, extra ...any) error {
		rows, err := d.pool.Query(ctx, sql, append(append(args{}, a...), extra...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			var n int64
			if err := rows.Scan(&k, &n); err != nil {
				return err
			}
			into[k] = n
		}
		return rows.Err()
	}
	active := ` FROM alerts a WHERE a.state <> 'resolved' AND ` + sc
	n := len(a)
	p1, p2 := fmt.Sprintf("$%d", n+1), fmt.Sprintf("$%d", n+2)
	for _, q := range []struct {
		sql  string
		into map[string]int64
		prd  bool
	}{
		{`SELECT a.state, count(*)` + active + ` GROUP BY 1`, st.Active, false},
		{`SELECT a.severity, count(*)` + active + ` GROUP BY 1`, st.BySeverity, false},
		{`SELECT a.site, count(*)` + active + ` GROUP BY 1`, st.BySite, false},
		{`SELECT e.kind, count(*) FROM alert_events e JOIN alerts a ON a.id = e.alert_id WHERE ` + sc + ` AND e.recorded_at >= ` + p1 +
			` AND e.recorded_at < ` + p2 + ` GROUP BY 1`, st.Transitions, true},
		{`SELECT n.state, count(*) FROM alert_notifications n LEFT JOIN alerts a ON a.id = n.alert_id WHERE n.created_at >= ` + p1 +
			` AND n.created_at < ` + p2 + ` AND ` + notificationScope(ctx, sc) + ` GROUP BY 1`, st.Notifications, true},
	} {
		var err error
		if q.prd {
			err = group(q.sql, q.into, from, to)
		} else {
			err = group(q.sql, q.into)
		}
		if err != nil {
			return st, fmt.Errorf("alert: stats: %w", err)
		}
	}
	rows, err := d.pool.Query(ctx, `SELECT a.rule_id, a.rule_name, count(*)`+active+` GROUP BY 1, 2 ORDER BY 3 DESC, 2 LIMIT 20`, a...)
	if err != nil {
		return st, fmt.Errorf("alert: stats: %w", err)
	}
	for rows.Next() {
		var rc RuleCount
		if err := rows.Scan(&rc.RuleID, &rc.RuleName, &rc.Count); err != nil {
			rows.Close()
			return st, fmt.Errorf("alert: stats: %w", err)
		}
		st.ByRule = append(st.ByRule, rc)
	}
	rows.Close()
	var mttr *float64
	err = d.pool.QueryRow(ctx, `SELECT
			count(*) FILTER (WHERE a.state <> 'resolved' AND a.acked_at IS NOT NULL),
			count(*) FILTER (WHERE a.state <> 'resolved' AND a.silenced),
			count(*) FILTER (WHERE a.created_at >= `+p1+` AND a.created_at < `+p2+`),
			count(*) FILTER (WHERE a.state = 'resolved' AND a.updated_at >= `+p1+` AND a.updated_at < `+p2+`),
			avg(extract(epoch FROM a.ends_at - a.starts_at)) FILTER (WHERE a.state = 'resolved' AND a.updated_at >= `+p1+` AND a.updated_at < `+p2+`)
		FROM alerts a WHERE `+sc, append(append(args{}, a...), from, to)...).Scan(&st.Acked, &st.Silenced, &st.Fired, &st.Resolved, &mttr)
	if err != nil {
		return st, fmt.Errorf("alert: stats: %w", err)
	}
	if mttr != nil {
		st.MeanTimeToResolveS = *mttr
	}
	err = d.pool.QueryRow(ctx, `SELECT count(*) FROM alert_events e JOIN alerts a ON a.id = e.alert_id WHERE e.late AND `+sc+
		` AND e.recorded_at >= `+p1+` AND e.recorded_at < `+p2, append(append(args{}, a...), from, to)...).Scan(&st.Late)
	if err != nil {
		return st, fmt.Errorf("alert: stats: %w", err)
	}
	return st, nil
}

// notificationScope: a notification is in scope with its alert; those of
// no alert (digests, tests) only for callers who see every site.
func notificationScope(ctx context.Context, alertScope string) string {
	if Unrestricted(ctx) {
		return "true"
	}
	return "(a.id IS NOT NULL AND " + alertScope + ")"
}
