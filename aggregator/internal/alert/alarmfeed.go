package alert

import (
	"context"
	"fmt"
	"time"

	"github.com/vmpulse/vmpulse/protocol"
)

// The alarm feed: vCenter alarm events reach the engine from ingest's
// fan-out after COMMIT (PublishEvents), like samples, and are applied at
// once. The committed table (vcenter_events) is read only to catch up on
// what the feed did not bring:
//
//   - when the engine starts (Load): what was committed while no engine
//     ran, or by a replica that died between its COMMIT and applying;
//   - after the feed dropped a batch (queue full) or applying one failed;
//   - every Config.AlarmCatchUp (default 1 min; negative: never), for the
//     events another replica committed and never applied.
//
// A catch-up reads from the shared cursor (alert_cursors, the received_at
// read up to) with a lookback for transactions that committed out of
// order, and skips the events this engine already applied from the feed.

// alarmBatch is the alarm events of one committed events batch.
type alarmBatch struct {
	evs []alarmEvent
	at  time.Time // when it was offered
}

// alarmKey names a stored event: vcenter_events' primary key.
type alarmKey struct {
	site, source string
	key          int64
}

// PublishEvents offers the engine the events of a newly committed events
// batch of site (the hook ingest calls after COMMIT, before the ack). The
// alarm status events among them are queued for the engine without
// blocking; when the queue is full they are dropped, counted, and read
// back from vcenter_events by the next tick's catch-up. ev is shared and
// not modified.
func (e *Engine) PublishEvents(site, agentID string, ev *protocol.Events) {
	var evs []alarmEvent
	for i := range ev.Events {
		x := &ev.Events[i]
		if a, ok := alarmOf(site, x.Source, x.EntityKind, x.EntityID, x.EntityName, x.Type, x.Message, x.Key, time.UnixMilli(x.Time), x.Extra); ok {
			evs = append(evs, a)
		}
	}
	if len(evs) == 0 {
		return
	}
	select {
	case e.alarmQ <- alarmBatch{evs: evs, at: e.cfg.Now()}:
	default:
		e.alarmMissed.Store(true)
		if e.Stats.AlarmsDropped.Add(int64(len(evs))) == int64(len(evs)) {
			e.log.Warn("alert engine: alarm queue full; the next tick reads the dropped alarm events back from the table", "site", site)
		}
	}
}

// processAlarms applies one batch of fed alarm events (the engine's
// worker calls it). A batch that fails is left to the catch-up.
func (e *Engine) processAlarms(ctx context.Context, ab alarmBatch) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.loaded {
		e.alarmMissed.Store(true) // Load's catch-up may have run before it was committed
		return nil
	}
	return e.applyFed(ctx, ab)
}

// drainAlarms applies the fed batches queued now (Tick calls it, under the
// engine's lock, so that a synchronous caller sees them applied).
func (e *Engine) drainAlarms(ctx context.Context) error {
	for {
		select {
		case ab := <-e.alarmQ:
			if err := e.applyFed(ctx, ab); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

func (e *Engine) applyFed(ctx context.Context, ab alarmBatch) error {
	mirrors := e.mirrorRules()
	if len(mirrors) == 0 {
		return nil
	}
	if err := e.applyAlarms(ctx, mirrors, ab.evs, e.cfg.Now()); err != nil {
		e.alarmMissed.Store(true)
		return err
	}
	if e.alarmApplied == nil {
		e.alarmApplied = map[alarmKey]time.Time{}
	}
	for _, ev := range ab.evs {
		e.alarmApplied[alarmKey{ev.key.site, ev.key.source, ev.eventKey}] = ab.at
	}
	return nil
}

// catchUpAlarms runs the catch-up when one is due (see above). It is
// called by Tick, under the engine's lock.
func (e *Engine) catchUpAlarms(ctx context.Context, now time.Time) error {
	// What the feed applied is remembered for as long as a catch-up can
	// read it again.
	keep := 2*alarmLookback + max(e.cfg.AlarmCatchUp, 0)
	for k, at := range e.alarmApplied {
		if now.Sub(at) > keep {
			delete(e.alarmApplied, k)
		}
	}
	missed := e.alarmMissed.Swap(false)
	due := missed || e.alarmSweptAt.IsZero() || (e.cfg.AlarmCatchUp > 0 && now.Sub(e.alarmSweptAt) >= e.cfg.AlarmCatchUp)
	if !due {
		return nil
	}
	if err := e.readAlarms(ctx, now); err != nil {
		e.alarmMissed.Store(e.alarmMissed.Load() || missed)
		return err
	}
	e.alarmSweptAt = now
	e.Stats.AlarmCatchUps.Add(1)
	return nil
}

// alarmCatchUpSQL reads the alarm events ($2: alarmTypes) received after
// $1. The partial index vcenter_events_alarm_idx (migration 014) serves
// it: its predicate names exactly alarmTypes, so the two must change
// together (TestAlarmCatchUpUsesIndex checks the plan).
const alarmCatchUpSQL = `
		SELECT site, source, key, entity_kind, entity_id, entity_name, type, time, extra, message, received_at
		FROM vcenter_events
		WHERE type = ANY($2) AND received_at > $1
		ORDER BY time, source, key`

// readAlarms applies the alarm events received since the cursor that this
// engine did not apply from the feed, and moves the cursor on.
func (e *Engine) readAlarms(ctx context.Context, now time.Time) error {
	mirrors := e.mirrorRules()
	if len(mirrors) == 0 {
		return nil
	}
	var cursor time.Time
	err := e.pool.QueryRow(ctx, `INSERT INTO alert_cursors (name, at) VALUES ($1, now() - interval '1 hour')
		ON CONFLICT (name) DO UPDATE SET at = alert_cursors.at RETURNING at`, alarmCursor).Scan(&cursor)
	if err != nil {
		return fmt.Errorf("alert: alarm cursor: %w", err)
	}
	rows, err := e.pool.Query(ctx, alarmCatchUpSQL, cursor.Add(-alarmLookback), alarmTypes)
	if err != nil {
		return fmt.Errorf("alert: alarm events: %w", err)
	}
	var evs []alarmEvent
	newest := cursor
	for rows.Next() {
		var site, source, kind, id, name, typ, message string
		var key int64
		var at, recv time.Time
		var extra map[string]any
		if err := rows.Scan(&site, &source, &key, &kind, &id, &name, &typ, &at, &extra, &message, &recv); err != nil {
			rows.Close()
			return fmt.Errorf("alert: alarm events: %w", err)
		}
		if recv.After(newest) {
			newest = recv
		}
		if _, fed := e.alarmApplied[alarmKey{site, source, key}]; fed {
			continue
		}
		if ev, ok := alarmOf(site, source, kind, id, name, typ, message, key, at, extra); ok {
			evs = append(evs, ev)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("alert: alarm events: %w", err)
	}
	if err := e.applyAlarms(ctx, mirrors, evs, now); err != nil {
		return err
	}
	e.Stats.AlarmsCaughtUp.Add(int64(len(evs)))
	if newest.After(cursor) {
		if _, err := e.pool.Exec(ctx, `UPDATE alert_cursors SET at = greatest(at, $2) WHERE name = $1`, alarmCursor, newest); err != nil {
			return fmt.Errorf("alert: alarm cursor: %w", err)
		}
	}
	return nil
}
