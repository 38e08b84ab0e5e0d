package vsphere

// vCenter alarms, mirrored as events. Alarm transitions arrive in the
// event stream (AlarmStatusChangedEvent, AlarmClearedEvent) and are
// forwarded with the alarmed entity and the alarm in Extra. What was
// already triggered when the agent (re)connected is read once from the
// root folder's triggeredAlarmState (vCenter lists there every alarm
// triggered on the root or below it) and sent as "TriggeredAlarmState"
// events whose negative keys are derived from the alarm, the entity and
// the trigger time: a state read again after a reconnect has the same key,
// so the aggregator stores it once, and it cannot collide with vCenter's
// own (positive) event keys.

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/protocol"
)

// TriggeredAlarmStateType is the Type of the events that report an alarm
// found triggered on (re)connect.
const TriggeredAlarmStateType = "TriggeredAlarmState"

// alarmExtra is an alarm event's Extra: the alarm's moref and name and the
// transition (ManagedEntityStatus values: gray, green, yellow, red).
func alarmExtra(alarm types.ManagedObjectReference, name, from, to string) map[string]any {
	x := map[string]any{"alarm": alarm.Value, "alarm_name": name, "to": strings.ToLower(to)}
	if from != "" {
		x["from"] = strings.ToLower(from)
	}
	return x
}

// entityKind names a managed object type as the inventory does ("vm",
// "host", ...), else the type itself in lower case.
func entityKind(vimType string) string {
	if k := kindOf(vimType); k != "" {
		return k
	}
	return strings.ToLower(vimType)
}

// setAlarmEntity points out at the alarmed entity: arg, or fallback when
// arg names none.
func setAlarmEntity(out *protocol.Event, arg, fallback types.ManagedEntityEventArgument) {
	if arg.Entity.Value == "" {
		arg = fallback
	}
	if arg.Entity.Value == "" {
		return
	}
	out.EntityKind, out.EntityID, out.EntityName = entityKind(arg.Entity.Type), arg.Entity.Value, arg.Name
}

// convertAlarm fills the alarm fields of out for alarm events and reports
// whether be is one.
func convertAlarm(out *protocol.Event, be types.BaseEvent) bool {
	switch x := be.(type) {
	case *types.AlarmStatusChangedEvent:
		setAlarmEntity(out, x.Entity, x.Source)
		out.Extra = alarmExtra(x.Alarm.Alarm, x.Alarm.Name, x.From, x.To)
		out.Severity = alarmSeverity(x.To)
	case *types.AlarmClearedEvent:
		setAlarmEntity(out, x.Entity, x.Source)
		out.Extra = alarmExtra(x.Alarm.Alarm, x.Alarm.Name, x.From, string(types.ManagedEntityStatusGreen))
		out.Severity = "info"
	default:
		return false
	}
	return true
}

// alarmSeverity maps an alarm status to an event severity.
func alarmSeverity(status string) string {
	switch types.ManagedEntityStatus(strings.ToLower(status)) {
	case types.ManagedEntityStatusRed:
		return "error"
	case types.ManagedEntityStatusYellow:
		return "warning"
	}
	return "info"
}

// triggeredAlarmKey is the deterministic negative key of a triggered alarm
// state: -(fnv64a(alarm|entity|trigger time) & 0x7fffffffffffffff), never 0.
func triggeredAlarmKey(alarm, entity string, triggeredMs int64) int64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s|%s|%d", alarm, entity, triggeredMs)
	k := int64(h.Sum64() & 0x7fffffffffffffff)
	if k == 0 {
		k = 1
	}
	return -k
}

// readTriggeredAlarms returns one event per alarm currently triggered on
// the inventory (the root folder's triggeredAlarmState), with the names of
// the alarms and entities read in one call each.
func readTriggeredAlarms(ctx context.Context, conn *Conn, src string) ([]protocol.Event, error) {
	vc := conn.Vim()
	pc := property.DefaultCollector(vc)
	var root mo.Folder
	if err := pc.RetrieveOne(ctx, vc.ServiceContent.RootFolder, []string{"triggeredAlarmState"}, &root); err != nil {
		return nil, fmt.Errorf("alarms: read triggered alarms: %w", err)
	}
	states := root.TriggeredAlarmState
	if len(states) == 0 {
		return nil, nil
	}
	var alarms, entities []types.ManagedObjectReference
	for _, s := range states {
		if !slices.Contains(alarms, s.Alarm) {
			alarms = append(alarms, s.Alarm)
		}
		if !slices.Contains(entities, s.Entity) {
			entities = append(entities, s.Entity)
		}
	}
	alarmName := map[string]string{}
	var as []mo.Alarm
	if err := pc.Retrieve(ctx, alarms, []string{"info.name"}, &as); err != nil {
		return nil, fmt.Errorf("alarms: read alarm names: %w", err)
	}
	for _, a := range as {
		alarmName[a.Self.Value] = a.Info.Name
	}
	entityName := map[string]string{}
	var es []mo.ManagedEntity
	if err := pc.Retrieve(ctx, entities, []string{"name"}, &es); err != nil {
		return nil, fmt.Errorf("alarms: read alarmed entity names: %w", err)
	}
	for _, e := range es {
		entityName[e.Self.Type+"/"+e.Self.Value] = e.Name
	}
	out := make([]protocol.Event, 0, len(states))
	for _, s := range states {
		ms := s.Time.UnixMilli()
		name := alarmName[s.Alarm.Value]
		ev := protocol.Event{
			Source:     src,
			Key:        triggeredAlarmKey(s.Alarm.Value, s.Entity.Value, ms),
			Type:       TriggeredAlarmStateType,
			Time:       ms,
			Severity:   alarmSeverity(string(s.OverallStatus)),
			EntityKind: entityKind(s.Entity.Type),
			EntityID:   s.Entity.Value,
			EntityName: entityName[s.Entity.Type+"/"+s.Entity.Value],
			Extra:      alarmExtra(s.Alarm, name, "", string(s.OverallStatus)),
			Message:    fmt.Sprintf("Alarm '%s' is %s on %s", name, s.OverallStatus, entityName[s.Entity.Type+"/"+s.Entity.Value]),
		}
		if s.Acknowledged != nil && *s.Acknowledged {
			ev.Extra["acknowledged"] = true
		}
		out = append(out, ev)
	}
	slices.SortFunc(out, func(a, b protocol.Event) int {
		return cmp.Or(cmp.Compare(a.Time, b.Time), strings.Compare(a.EntityID, b.EntityID), cmp.Compare(a.Key, b.Key))
	})
	return out, nil
}
