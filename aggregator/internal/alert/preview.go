package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/plugins/sdk"
)

// TestDelivery is one channel test, to record as a notification of kind
// test with its single attempt.
type TestDelivery struct {
	Key          string
	ChannelID    uuid.UUID
	Notification sdk.Notification
	Started      time.Time
	Result       sdk.Result
	Err          error
}

// RecordTest records a channel test and its attempt.
func (d *DB) RecordTest(ctx context.Context, t TestDelivery) error {
	body, err := json.Marshal(notePayload{Alerts: t.Notification.Alerts})
	if err != nil {
		return err
	}
	state, outcome, errText := "failed", t.Result.Outcome.String(), ""
	if t.Err != nil {
		outcome, errText = "error", t.Err.Error()
	} else if t.Result.Outcome == sdk.Delivered {
		state = "delivered"
	}
	return d.inTx(ctx, func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO alert_notifications (idempotency_key, channel_id, kind, payload, state, attempts, delivered_at, last_code, last_error)
			VALUES ($1, $2, 'test', $3, $4, 1, CASE WHEN $4 = 'delivered' THEN now() END, $5, $6) RETURNING id`,
			t.Key, t.ChannelID, body, state, t.Result.Code, errText).Scan(&id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO alert_notification_attempts (notification_id, attempt, epoch, started_at, finished_at, outcome, code, message, error)
			VALUES ($1, 1, 0, $2, now(), $3, $4, $5, $6)`, id, t.Started, outcome, t.Result.Code, t.Result.Message, errText)
		return err
	})
}

// PreviewFiring is one firing a draft rule would have had.
type PreviewFiring struct {
	PendingSince *time.Time `json:"pending_since"`
	StartsAt     time.Time  `json:"starts_at"`
	EndsAt       *time.Time `json:"ends_at"` // null: still firing at the end of the range
	Value        float64    `json:"value"`
}

// PreviewEntity is one entity that would have fired.
type PreviewEntity struct {
	Site       string          `json:"site"`
	EntityID   string          `json:"entity_id"`
	EntityName string          `json:"entity_name"`
	Firings    []PreviewFiring `json:"firings"`
}

// PreviewResult is what a draft rule would have done over a range.
type PreviewResult struct {
	From     time.Time       `json:"from"`
	To       time.Time       `json:"to"`
	Entities int             `json:"entities_evaluated"`
	Samples  int             `json:"samples"`
	Fired    int             `json:"fired"` // firings in all
	Items    []PreviewEntity `json:"items"`
	// Truncated: the range held more than MaxPreviewSamples samples; the
	// preview covers the oldest of them only.
	Truncated bool `json:"truncated"`
}

// MaxPreviewSamples bounds the samples one preview reads.
const MaxPreviewSamples = 2_000_000

// Preview evaluates a draft rule over the stored samples of [from, to) of
// the entities in the caller's data scope (and the rule's), exactly as the
// engine would in event time, without storing or sending anything.
func (d *DB) Preview(ctx context.Context, r Rule, from, to time.Time) (PreviewResult, error) {
	res := PreviewResult{From: from.UTC(), To: to.UTC(), Items: []PreviewEntity{}}
	r.Normalize()
	if err := r.Validate(); err != nil {
		return res, err
	}
	if r.EntityKind == KindSite || r.EntityKind == KindVCenter {
		return res, &ValidationError{Fields: []FieldError{{Field: "rule.entity_kind", Code: FieldInvalidValue,
			Params: map[string]any{"allowed": "vm, host, cluster, datastore (site and vcenter rules follow the agents' heartbeats, which are not stored as samples)"}}}}
	}
	kr := compileKind(r.EntityKind, []*Rule{&r}, false)
	c := kr.rules[0]
	meta, err := d.inventoryMeta(ctx) // names, and what scopes match
	if err != nil {
		return res, err
	}
	e := &Engine{meta: meta}
	var keep int64
	for _, k := range kr.keepMS {
		keep = max(keep, k)
	}
	a := args{r.EntityKind, kr.names, from.Add(-time.Duration(keep) * time.Millisecond), to}
	sc, err := scopeSQL(ctx, "se", &a)
	if err != nil {
		return res, err
	}
	rows, err := d.pool.Query(ctx, `
		SELECT se.site, se.source, se.entity_id, se.counters, se.units, s.ts, s.v
		FROM series se JOIN samples s ON s.series_id = se.id
		WHERE se.entity_kind = $1 AND se.instance = '' AND se.counters && $2::text[] AND s.ts > $3 AND s.ts < $4 AND `+sc+`
		ORDER BY s.ts LIMIT `+fmt.Sprint(MaxPreviewSamples+1), a...)
	if err != nil {
		return res, fmt.Errorf("alert: preview: %w", err)
	}
	defer rows.Close()
	type state struct {
		en    *entity
		in    *instance
		items []PreviewFiring
		apply bool
	}
	states := map[entityKey]*state{}
	fromMS := from.UnixMilli()
	for rows.Next() {
		if res.Samples >= MaxPreviewSamples {
			res.Truncated = true
			break
		}
		var k entityKey
		var counters, units []string
		var ts time.Time
		var v []*float32
		if err := rows.Scan(&k.site, &k.source, &k.id, &counters, &units, &ts, &v); err != nil {
			return res, fmt.Errorf("alert: preview: %w", err)
		}
		k.kind = r.EntityKind
		st := states[k]
		if st == nil {
			en := &entity{key: k}
			en.reshape(nil, kr)
			st = &state{en: en, apply: c.universal || e.match(c, k)}
			states[k] = st
		}
		if !st.apply {
			continue
		}
		t := ts.UnixMilli()
		fresh := false
		for i, name := range counters {
			slot, ok := kr.slots[name]
			if !ok || i >= len(v) || v[i] == nil || t <= st.en.wins[slot].last {
				continue
			}
			x := float64(*v[i])
			if i < len(units) && units[i] == "%" {
				x *= 0.01
			}
			st.en.wins[slot].push(t, x, kr.keepMS[slot])
			fresh = true
		}
		if !fresh || t < fromMS {
			continue
		}
		res.Samples++
		o := c.eval(kr, st.en, t)
		var tr string
		st.in, tr = c.step(st.in, t, o)
		switch tr {
		case TrFiring:
			f := PreviewFiring{StartsAt: time.UnixMilli(t).UTC(), Value: o.value}
			if st.in.pending != 0 {
				p := time.UnixMilli(st.in.pending).UTC()
				f.PendingSince = &p
			}
			st.items = append(st.items, f)
			res.Fired++
		case TrResolved:
			if n := len(st.items); n > 0 {
				end := time.UnixMilli(t).UTC()
				st.items[n-1].EndsAt = &end
			}
		}
		if st.in != nil && st.in.state == StateOK {
			st.in = nil
		}
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("alert: preview: %w", err)
	}
	for k, st := range states {
		if !st.apply {
			continue
		}
		res.Entities++
		if len(st.items) == 0 {
			continue
		}
		name := k.id
		if m := meta[k]; m != nil && m.name != "" {
			name = m.name
		}
		res.Items = append(res.Items, PreviewEntity{Site: k.site, EntityID: k.source + ":" + k.id, EntityName: name, Firings: st.items})
	}
	sort.Slice(res.Items, func(i, j int) bool {
		if res.Items[i].Site != res.Items[j].Site {
			return res.Items[i].Site < res.Items[j].Site
		}
		return res.Items[i].EntityID < res.Items[j].EntityID
	})
	return res, nil
}
