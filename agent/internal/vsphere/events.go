package vsphere

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/event"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/protocol"
)

// EventsConfig tunes the EventReader. Zero values take defaults.
type EventsConfig struct {
	// PollEvery bounds how late an event is delivered, and how often the
	// collector is read: at most once per PollEvery, when the Announcer
	// reports new events, else every PollEvery. Default 10 s.
	PollEvery time.Duration
	PageSize  int32 // events per ReadNextEvents; default 100
	// Lookback is how far back the very first start (no checkpoint) reads.
	// Default 0: from now.
	Lookback time.Duration
	// Announcer, when set, reports new events, so that an idle vCenter
	// sees no calls from the reader (the agent passes its *Inventory,
	// whose WaitForUpdatesEx is open anyway). Without it, or should it
	// fail, the reader polls every PollEvery.
	Announcer EventAnnouncer
	// Poll ignores the Announcer: the reader polls every PollEvery, as it
	// did before issue #15 (the load benchmark's "before" figures).
	Poll bool
}

// EventAnnouncer follows an event collector's latestPage on a property
// collector that waits anyway, so that new events cost no call of their
// own. *Inventory implements it.
type EventAnnouncer interface {
	// AnnounceEvents follows collector, created on conn, and returns a
	// channel that receives a value after changes of its latest page, and
	// when the following stops (the announcer lost its connection). It
	// fails when the announcer is not watching conn.
	AnnounceEvents(ctx context.Context, conn *Conn, collector types.ManagedObjectReference) (<-chan struct{}, error)
	// StopAnnouncing stops following collector.
	StopAnnouncing(ctx context.Context, collector types.ManagedObjectReference)
}

// announceCheck is how often an announced reader reads the collector
// even without an announcement: a safety net, not the delivery path.
const announceCheck = 5 * time.Minute

func (c *EventsConfig) defaults() {
	if c.PollEvery <= 0 {
		c.PollEvery = 10 * time.Second
	}
	if c.PageSize <= 0 {
		c.PageSize = 100
	}
}

// eventCheckpoint is the last event the Sink accepted. Event keys grow
// monotonically on a vCenter; the time guards against a reset database.
type eventCheckpoint struct {
	Key  int32 `json:"key"`
	Time int64 `json:"time_ns"` // CreatedTime, Unix ns
}

func eventMetaKey(source string) string { return "vsphere/events/" + source }

// EventReader delivers vCenter events to the Sink exactly once per
// checkpoint: an EventHistoryCollector filtered from the checkpoint time is
// paged with ReadNextEvents, events at or before the checkpoint are skipped,
// and the checkpoint advances after each page the Sink accepted. The
// collector lives as long as the session. With an Announcer, Run reads it
// when the announcer reports a change of its latestPage (its page size set
// to 1, so each report carries one event); otherwise every PollEvery.
// Poll must not be called concurrently.
type EventReader struct {
	sess *Session
	sink Sink
	meta MetaStore
	cfg  EventsConfig
	log  *slog.Logger

	cp       *eventCheckpoint
	cpSource string
	coll     *event.HistoryCollector
	collGen  uint64
	// announced receives the Announcer's reports on coll (nil when
	// polling).
	announced <-chan struct{}
	category  map[string]string
	startedAt time.Time

	// pollEvery is the poll interval in force (ns), set by SetPollEvery,
	// which wakes pollChanged.
	pollEvery   atomic.Int64
	pollChanged signal
}

// NewEventReader returns a reader for sess's endpoint.
func NewEventReader(sess *Session, sink Sink, meta MetaStore, cfg EventsConfig, log *slog.Logger) *EventReader {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &EventReader{sess: sess, sink: sink, meta: meta, cfg: cfg,
		log: log.With("endpoint", sess.Name(), "part", "events"), startedAt: time.Now()}
	r.pollEvery.Store(int64(cfg.PollEvery))
	return r
}

// Run delivers events until ctx is done: it reads the collector, waits
// for the Announcer's report of new events (or, polling, for PollEvery),
// and reads again no sooner than PollEvery after the previous read began.
func (r *EventReader) Run(ctx context.Context) error {
	defer r.destroy(context.WithoutCancel(ctx))
	for ctx.Err() == nil {
		began := time.Now()
		_, err := r.Poll(ctx)
		if err != nil && ctx.Err() == nil {
			r.log.Error("events: poll failed", "err", err)
		}
		if err == nil && r.coll != nil && r.announced == nil {
			r.announce(ctx) // the announcer may be watching the session by now
		}
		if ch := r.announced; err == nil && ch != nil {
			t := time.NewTimer(announceCheck)
			select {
			case <-ctx.Done():
			case <-ch:
			case <-t.C:
			}
			t.Stop()
		}
		r.sleepPoll(ctx, began)
	}
	return nil
}

// sleepPoll waits until PollEvery has passed since began, following
// SetPollEvery meanwhile, or until ctx is done.
func (r *EventReader) sleepPoll(ctx context.Context, began time.Time) {
	for {
		changed := r.pollChanged.C()
		t := time.NewTimer(time.Until(began.Add(r.PollEvery())))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
			return
		case <-changed:
			t.Stop()
		}
	}
}

// announce asks the Announcer to report changes of the collector; on
// failure the reader polls.
func (r *EventReader) announce(ctx context.Context) {
	if r.cfg.Poll || r.cfg.Announcer == nil || r.coll == nil {
		return
	}
	conn, err := r.sess.Conn(ctx)
	if err != nil || conn.Gen != r.collGen {
		return
	}
	ch, err := r.cfg.Announcer.AnnounceEvents(ctx, conn, r.coll.Reference())
	if err != nil {
		r.log.Debug("events: new events not announced, polling", "err", err)
		return
	}
	r.announced = ch
}

// Poll delivers every event newer than the checkpoint and returns how many
// were sent.
func (r *EventReader) Poll(ctx context.Context) (int, error) {
	conn, err := r.sess.Conn(ctx)
	if err != nil {
		return 0, err
	}
	n, err := r.poll(ctx, conn)
	if err != nil {
		r.sess.Check(conn, err)
		r.destroy(context.WithoutCancel(ctx)) // re-create from the checkpoint next time
	}
	return n, err
}

func (r *EventReader) poll(ctx context.Context, conn *Conn) (int, error) {
	src := r.sess.Source()
	if r.cp == nil || r.cpSource != src {
		if err := r.loadCheckpoint(src); err != nil {
			return 0, err
		}
	}
	if r.coll == nil || r.collGen != conn.Gen {
		if err := r.open(ctx, conn); err != nil {
			return 0, err
		}
	}
	sent := 0
	for {
		page, err := r.coll.ReadNextEvents(ctx, r.cfg.PageSize)
		if err != nil {
			return sent, fmt.Errorf("events: read: %w", err)
		}
		if len(page) == 0 {
			return sent, nil
		}
		out := &protocol.Events{}
		next := *r.cp
		for _, be := range page {
			e := be.GetEvent()
			ns := e.CreatedTime.UnixNano()
			if e.Key <= r.cp.Key && ns <= r.cp.Time {
				continue // delivered before
			}
			out.Events = append(out.Events, r.convert(src, be))
			if e.Key > next.Key || ns > next.Time {
				next = eventCheckpoint{Key: max(next.Key, e.Key), Time: max(next.Time, ns)}
			}
		}
		if len(out.Events) == 0 {
			continue
		}
		if err := r.sink.Events(ctx, out); err != nil {
			return sent, fmt.Errorf("events: sink: %w", err)
		}
		b, _ := json.Marshal(next)
		if err := r.meta.SetMeta(eventMetaKey(src), b); err != nil {
			return sent, fmt.Errorf("events: persist checkpoint: %w", err)
		}
		r.cp = &next
		sent += len(out.Events)
	}
}

func (r *EventReader) loadCheckpoint(src string) error {
	b, err := r.meta.GetMeta(eventMetaKey(src))
	if err != nil {
		return fmt.Errorf("events: read checkpoint: %w", err)
	}
	cp := &eventCheckpoint{}
	if len(b) > 0 {
		if err := json.Unmarshal(b, cp); err != nil {
			return fmt.Errorf("events: decode checkpoint: %w", err)
		}
	} else {
		// First start: nothing delivered yet, begin at start-up minus the
		// configured lookback. Key 0 lets every event after that through.
		cp.Time = r.startedAt.Add(-r.cfg.Lookback).UnixNano()
		cp.Key = -1
	}
	r.cp, r.cpSource = cp, src
	return nil
}

// open creates the history collector from the checkpoint time and loads
// the event category descriptions used as severity.
func (r *EventReader) open(ctx context.Context, conn *Conn) error {
	r.destroy(ctx)
	m := event.NewManager(conn.Vim())
	begin := time.Unix(0, r.cp.Time)
	coll, err := m.CreateCollectorForEvents(ctx, types.EventFilterSpec{Time: &types.EventFilterSpecByTime{BeginTime: &begin}})
	if err != nil {
		return fmt.Errorf("events: create collector: %w", err)
	}
	r.coll, r.collGen = coll, conn.Gen
	if !r.cfg.Poll && r.cfg.Announcer != nil {
		// An announcement carries the latest page: one event, not 10.
		if err := coll.SetPageSize(ctx, 1); err != nil {
			r.log.Debug("events: set collector page size", "err", err)
		}
		r.announce(ctx)
	}
	// Alarms already triggered: after the collector exists, so that a
	// transition from now on is in its stream.
	if alarms, err := readTriggeredAlarms(ctx, conn, r.sess.Source()); err != nil {
		r.log.Warn("events: triggered alarms unreadable, not mirrored", "err", err)
	} else if len(alarms) > 0 {
		if err := r.sink.Events(ctx, &protocol.Events{Events: alarms}); err != nil {
			r.destroy(ctx)
			return fmt.Errorf("events: sink triggered alarms: %w", err)
		}
		r.log.Info("events: triggered alarms mirrored", "alarms", len(alarms))
	}
	var em mo.EventManager
	if err := property.DefaultCollector(conn.Vim()).RetrieveOne(ctx, m.Reference(), []string{"description.eventInfo"}, &em); err == nil {
		r.category = map[string]string{}
		for _, info := range em.Description.EventInfo {
			r.category[info.Key] = info.Category
		}
	}
	return nil
}

func (r *EventReader) destroy(ctx context.Context) {
	if r.announced != nil {
		r.cfg.Announcer.StopAnnouncing(ctx, r.coll.Reference())
		r.announced = nil
	}
	if r.coll != nil {
		_ = r.coll.Destroy(ctx)
		r.coll = nil
	}
}

// convert maps a vSphere event to the protocol form.
func (r *EventReader) convert(src string, be types.BaseEvent) protocol.Event {
	e := be.GetEvent()
	typ := reflect.TypeOf(be).Elem().Name()
	out := protocol.Event{
		Source:   src,
		Key:      int64(e.Key),
		ChainID:  int64(e.ChainId),
		Type:     typ,
		Time:     e.CreatedTime.UnixMilli(),
		User:     e.UserName,
		Message:  e.FullFormattedMessage,
		Severity: r.category[typ],
	}
	if e.Datacenter != nil {
		out.Datacenter = e.Datacenter.Name
	}
	for _, a := range []struct {
		kind string
		arg  *types.EntityEventArgument
		ref  func() *types.ManagedObjectReference
	}{
		{"vm", vmArg(e), func() *types.ManagedObjectReference { return &e.Vm.Vm }},
		{"host", hostArg(e), func() *types.ManagedObjectReference { return &e.Host.Host }},
		{"cluster", crArg(e), func() *types.ManagedObjectReference { return &e.ComputeResource.ComputeResource }},
		{"datastore", dsArg(e), func() *types.ManagedObjectReference { return &e.Ds.Datastore }},
	} {
		if a.arg != nil {
			out.EntityKind, out.EntityID, out.EntityName = a.kind, a.ref().Value, a.arg.Name
			break
		}
	}
	switch x := be.(type) {
	case *types.EventEx:
		out.Type = x.EventTypeId
		if x.Severity != "" {
			out.Severity = x.Severity
		}
		out.Extra = map[string]any{"class": "EventEx"}
	case *types.ExtendedEvent:
		out.Type = x.EventTypeId
		out.Extra = map[string]any{"class": "ExtendedEvent"}
	}
	convertAlarm(&out, be)
	if out.Severity == "" {
		out.Severity = "info"
	}
	return out
}

func vmArg(e *types.Event) *types.EntityEventArgument {
	if e.Vm == nil {
		return nil
	}
	return &e.Vm.EntityEventArgument
}

func hostArg(e *types.Event) *types.EntityEventArgument {
	if e.Host == nil {
		return nil
	}
	return &e.Host.EntityEventArgument
}

func crArg(e *types.Event) *types.EntityEventArgument {
	if e.ComputeResource == nil {
		return nil
	}
	return &e.ComputeResource.EntityEventArgument
}

func dsArg(e *types.Event) *types.EntityEventArgument {
	if e.Ds == nil {
		return nil
	}
	return &e.Ds.EntityEventArgument
}
