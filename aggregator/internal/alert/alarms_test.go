package alert

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

var eventKey int64

// alarmEvent writes one alarm status change of vc1 through the store's
// ingest path for events batches (WriteEvents, into vcenter_events) and
// hands it to the fixture's engine as ingest does after COMMIT
// (PublishEvents); the next tick applies it.
func (f *fixture) alarmEvent(at time.Time, kind, entity, alarm, from, to string, typ ...string) *protocol.Events {
	f.t.Helper()
	eventKey++
	evType := "AlarmStatusChangedEvent"
	if len(typ) > 0 {
		evType = typ[0]
	}
	ev := &protocol.Events{Events: []protocol.Event{{Source: "vc1", Key: eventKey, Type: evType, Time: at.UnixMilli(),
		Message: "Alarm " + alarm + " changed from " + from + " to " + to, EntityKind: kind, EntityID: entity, EntityName: "web-" + entity,
		Extra: map[string]any{"alarm": alarm, "alarm_name": "name of " + alarm, "from": from, "to": to}}}}
	if _, err := f.st.WriteEvents(f.ctx, store.BatchMeta{AgentID: f.agent, Site: "site-a", Epoch: 1, Seq: f.seq.Add(1), Kind: protocol.KindEvents}, ev); err != nil {
		f.t.Fatalf("write events: %v", err)
	}
	f.eng.PublishEvents("site-a", f.agent, ev)
	return ev
}

func (f *fixture) mirrored(entity, alarm string) []Alert {
	var out []Alert
	for _, a := range f.alerts() {
		if a.EntityID == "vc1:"+entity && a.Alarm != nil && *a.Alarm == alarm {
			out = append(out, a)
		}
	}
	return out
}

// TestVCenterAlarmMirror: vCenter alarm status events, ingested as the
// agent sends them, open one alert per (alarm, entity) — red critical,
// yellow a warning — change its severity, and resolve it on green; a late
// status goes to the digest; a status read again (another tick, another
// replica) is applied once.
func TestVCenterAlarmMirror(t *testing.T) {
	f := newFixture(t, Config{})
	ch := f.channel("ops", "http://127.0.0.1:1/unused")
	f.rule(Rule{Name: "vCenter alarms on VMs", Conditions: []Condition{{Metric: MetricVCenterAlarm, Op: ">=", Threshold: AlarmYellow}},
		Channels: []uuid.UUID{ch}})
	now := f.clock.Now().Truncate(time.Second)
	tick := func(e *Engine) {
		t.Helper()
		if err := e.Tick(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
	f.alarmEvent(now.Add(-3*time.Minute), "vm", "vm-1", "alarm-7", "gray", "yellow")
	f.alarmEvent(now.Add(-2*time.Minute), "vm", "vm-1", "alarm-8", "green", "red")
	f.alarmEvent(now.Add(-2*time.Minute), "vm", "vm-1", "alarm-9", "gray", "green")
	tick(f.eng)
	a7, a8 := f.mirrored("vm-1", "alarm-7"), f.mirrored("vm-1", "alarm-8")
	if len(a7) != 1 || a7[0].State != "firing" || a7[0].Severity != SeverityWarning || !a7[0].StartsAt.Equal(now.Add(-3*time.Minute)) {
		t.Fatalf("alarm-7: %+v", a7)
	}
	if len(a8) != 1 || a8[0].State != "firing" || a8[0].Severity != SeverityCritical || a8[0].Labels["alarm_name"] != "name of alarm-8" {
		t.Fatalf("alarm-8: %+v", a8)
	}
	if n := len(f.mirrored("vm-1", "alarm-9")); n != 0 {
		t.Fatalf("a green alarm opened %d alerts", n)
	}
	pages := func(kind string) int {
		return f.count(`SELECT count(*) FROM alert_notifications WHERE kind = $1`, kind)
	}
	if pages("firing") != 2 {
		t.Fatalf("%d firing notifications, want 2", pages("firing"))
	}

	f.alarmEvent(now.Add(-time.Minute), "vm", "vm-1", "alarm-7", "yellow", "red")
	f.alarmEvent(now.Add(-30*time.Second), "vm", "vm-1", "alarm-8", "red", "green", "AlarmClearedEvent")
	tick(f.eng)
	tick(f.eng)
	a7, a8 = f.mirrored("vm-1", "alarm-7"), f.mirrored("vm-1", "alarm-8")
	if len(a7) != 1 || a7[0].State != "firing" || a7[0].Severity != SeverityCritical {
		t.Fatalf("alarm-7 after red: %+v", a7)
	}
	if tl := f.timeline(a7[0].ID); len(tl) != 2 || tl[0] != "firing" || tl[1] != "severity" {
		t.Errorf("alarm-7 timeline %v", tl)
	}
	if len(a8) != 1 || a8[0].State != "resolved" || !a8[0].EndsAt.Equal(now.Add(-30*time.Second)) {
		t.Fatalf("alarm-8 after green: %+v", a8)
	}
	if pages("firing") != 2 || pages("resolved") != 1 {
		t.Fatalf("notifications: %d firing, %d resolved; want 2 and 1", pages("firing"), pages("resolved"))
	}

	// Another replica reading the same events from the start applies
	// nothing twice.
	if _, err := f.pool.Exec(f.ctx, `UPDATE alert_cursors SET at = now() - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	e2 := f.newEngine(Config{})
	tick(e2)
	if n := f.count(`SELECT count(*) FROM alerts`); n != 2 {
		t.Fatalf("%d alerts after a re-read, want 2", n)
	}
	if pages("firing") != 2 || pages("resolved") != 1 {
		t.Fatalf("notifications after a re-read: %d firing, %d resolved", pages("firing"), pages("resolved"))
	}

	// Two replicas applying a new status at once: one alert, one page.
	ev := f.alarmEvent(now.Add(-10*time.Second), "vm", "vm-3", "alarm-7", "", "red", "TriggeredAlarmState")
	e2.PublishEvents("site-a", f.agent, ev)
	var wg sync.WaitGroup
	for _, e := range []*Engine{f.eng, e2} {
		wg.Add(1)
		go func(e *Engine) {
			defer wg.Done()
			if err := e.Tick(f.ctx); err != nil {
				t.Error(err)
			}
		}(e)
	}
	wg.Wait()
	if a := f.mirrored("vm-3", "alarm-7"); len(a) != 1 || a[0].State != "firing" {
		t.Fatalf("vm-3 alarm-7 with two replicas: %+v", a)
	}
	if pages("firing") != 3 {
		t.Fatalf("%d firing notifications, want 3", pages("firing"))
	}

	// A status an hour old (a site's backlog) is late: digest, no page.
	f.alarmEvent(now.Add(-time.Hour), "vm", "vm-2", "alarm-7", "green", "red")
	tick(f.eng)
	a := f.mirrored("vm-2", "alarm-7")
	if len(a) != 1 || !a[0].Late {
		t.Fatalf("late alarm: %+v", a)
	}
	if pages("firing") != 3 || f.count(`SELECT count(*) FROM alert_digest_items WHERE alert_id = $1`, a[0].ID) != 1 {
		t.Fatalf("late alarm paged or not in the digest")
	}

	// A mirror rule's condition is checked.
	bad := Rule{Name: "x", EntityKind: KindVM, Severity: SeverityWarning, Conditions: []Condition{{Metric: MetricVCenterAlarm, Op: ">=", Threshold: 1}}}
	bad.Normalize()
	var v *ValidationError
	if err := bad.Validate(); !errors.As(err, &v) || len(v.Fields) != 1 || v.Fields[0].Field != "conditions[0].threshold" {
		t.Fatalf("bad mirror rule: %v", err)
	}
}
