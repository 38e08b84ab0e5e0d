package vsphere

import (
	"context"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/protocol"
)

func TestTriggeredAlarmKey(t *testing.T) {
	a := triggeredAlarmKey("alarm-1", "vm-42", 1700000000000)
	if a >= 0 {
		t.Fatalf("key %d is not negative", a)
	}
	if b := triggeredAlarmKey("alarm-1", "vm-42", 1700000000000); b != a {
		t.Fatalf("same alarm, entity and time: keys %d and %d", a, b)
	}
	for _, other := range []int64{
		triggeredAlarmKey("alarm-2", "vm-42", 1700000000000),
		triggeredAlarmKey("alarm-1", "vm-43", 1700000000000),
		triggeredAlarmKey("alarm-1", "vm-42", 1700000000001),
	} {
		if other == a {
			t.Errorf("a different alarm state has the same key %d", a)
		}
	}
}

// The simulator raises alarms from EventEx events matching an alarm's
// event expression (it keeps triggeredAlarmState on the entity and its
// ancestors) but posts no AlarmStatusChangedEvent itself: the test posts
// those events as vCenter would, through the real event path.
func TestAlarmsMirrored(t *testing.T) {
	s := newSim(t)
	ctx := context.Background()
	admin := s.admin(t).Client
	vm := simVM(t, s, "DC0_H0_VM0")

	// An alarm on the root folder that turns red on a custom event.
	alarm, err := methods.CreateAlarm(ctx, admin, &types.CreateAlarm{
		This:   *admin.ServiceContent.AlarmManager,
		Entity: admin.ServiceContent.RootFolder,
		Spec: &types.AlarmSpec{
			Name: "vmpulse test alarm", Enabled: true,
			Expression: &types.OrAlarmExpression{Expression: []types.BaseAlarmExpression{
				&types.EventAlarmExpression{EventTypeId: "com.vmpulse.test.broken", ObjectType: "VirtualMachine", Status: types.ManagedEntityStatusRed},
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	alarmRef := alarm.Returnval
	triggered := time.Now()
	if _, err := methods.PostEvent(ctx, admin, &types.PostEvent{
		This: *admin.ServiceContent.EventManager,
		EventToPost: &types.EventEx{
			EventTypeId: "com.vmpulse.test.broken", ObjectType: "VirtualMachine", ObjectId: vm.Reference().Value,
			Severity: "error",
		},
	}); err != nil {
		t.Fatal(err)
	}

	meta := newMemMeta()
	sink := newMemSink()
	sess := newTestSession(t, s.ep)
	r := NewEventReader(sess, sink, meta, EventsConfig{}, testLog(t))
	if _, err := r.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	state := findEvent(eventsOf(sink), TriggeredAlarmStateType)
	if state == nil {
		t.Fatalf("no %s event: %+v", TriggeredAlarmStateType, eventsOf(sink))
	}
	if state.Key >= 0 || state.EntityKind != "vm" || state.EntityID != vm.Reference().Value || state.EntityName != "DC0_H0_VM0" ||
		state.Source != sess.Source() || state.Severity != "error" {
		t.Errorf("triggered alarm state event: %+v", *state)
	}
	if d := time.UnixMilli(state.Time).Sub(triggered); d < -time.Second || d > 5*time.Second {
		t.Errorf("triggered alarm time %s, triggered at %s", time.UnixMilli(state.Time), triggered)
	}
	wantExtra(t, state.Extra, map[string]any{"alarm": alarmRef.Value, "alarm_name": "vmpulse test alarm", "to": "red"})
	if _, ok := state.Extra["from"]; ok {
		t.Errorf("a triggered state has no transition, yet from = %v", state.Extra["from"])
	}

	// Transitions from the event stream.
	root := admin.ServiceContent.RootFolder
	for _, ev := range []types.BaseEvent{
		&types.AlarmStatusChangedEvent{
			AlarmEvent: types.AlarmEvent{Alarm: types.AlarmEventArgument{Alarm: alarmRef, EntityEventArgument: types.EntityEventArgument{Name: "vmpulse test alarm"}}},
			Source:     types.ManagedEntityEventArgument{Entity: root, EntityEventArgument: types.EntityEventArgument{Name: "Datacenters"}},
			Entity:     types.ManagedEntityEventArgument{Entity: vm.Reference(), EntityEventArgument: types.EntityEventArgument{Name: "DC0_H0_VM0"}},
			From:       "yellow", To: "red",
		},
		&types.AlarmClearedEvent{
			AlarmEvent: types.AlarmEvent{Alarm: types.AlarmEventArgument{Alarm: alarmRef, EntityEventArgument: types.EntityEventArgument{Name: "vmpulse test alarm"}}},
			Source:     types.ManagedEntityEventArgument{Entity: root, EntityEventArgument: types.EntityEventArgument{Name: "Datacenters"}},
			Entity:     types.ManagedEntityEventArgument{Entity: vm.Reference(), EntityEventArgument: types.EntityEventArgument{Name: "DC0_H0_VM0"}},
			From:       "red",
		},
	} {
		if _, err := methods.PostEvent(ctx, admin, &types.PostEvent{This: *admin.ServiceContent.EventManager, EventToPost: ev}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	changed := findEvent(eventsOf(sink), "AlarmStatusChangedEvent")
	if changed == nil {
		t.Fatalf("no AlarmStatusChangedEvent: %+v", eventsOf(sink))
	}
	if changed.Key <= 0 || changed.EntityKind != "vm" || changed.EntityID != vm.Reference().Value || changed.EntityName != "DC0_H0_VM0" || changed.Severity != "error" {
		t.Errorf("AlarmStatusChangedEvent: %+v", *changed)
	}
	wantExtra(t, changed.Extra, map[string]any{"alarm": alarmRef.Value, "alarm_name": "vmpulse test alarm", "from": "yellow", "to": "red"})
	cleared := findEvent(eventsOf(sink), "AlarmClearedEvent")
	if cleared == nil {
		t.Fatalf("no AlarmClearedEvent: %+v", eventsOf(sink))
	}
	if cleared.EntityID != vm.Reference().Value {
		t.Errorf("AlarmClearedEvent entity: %+v", *cleared)
	}
	wantExtra(t, cleared.Extra, map[string]any{"alarm": alarmRef.Value, "alarm_name": "vmpulse test alarm", "from": "red", "to": "green"})

	// After a restart (or a reconnect) the still-triggered alarm is sent
	// again with the same key, so the aggregator stores it once.
	sink2 := newMemSink()
	r2 := NewEventReader(sess, sink2, meta, EventsConfig{}, testLog(t))
	if _, err := r2.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	again := findEvent(eventsOf(sink2), TriggeredAlarmStateType)
	if again == nil || again.Key != state.Key || again.Time != state.Time {
		t.Fatalf("after restart: %+v, first time %+v", again, *state)
	}
	for _, e := range eventsOf(sink2) {
		if e.Key > 0 {
			t.Errorf("event %d (%s) redelivered after restart", e.Key, e.Type)
		}
	}
}

func findEvent(evs []protocol.Event, typ string) *protocol.Event {
	for i := range evs {
		if evs[i].Type == typ {
			return &evs[i]
		}
	}
	return nil
}

func wantExtra(t *testing.T, got, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("extra[%q] = %v, want %v (extra %v)", k, got[k], v, got)
		}
	}
}
