package alert

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/ingest"
	"github.com/vmpulse/vmpulse/aggregator/internal/ingest/ingesttest"
	"github.com/vmpulse/vmpulse/aggregator/internal/pki"
	"github.com/vmpulse/vmpulse/protocol"
)

// replica is one aggregator replica's ingest server on loopback QUIC,
// handing its committed events batches to an alert engine (or to nobody
// while events is nil), and an agent of site-a connected to it.
type replica struct {
	srv    *ingest.Server
	stream *ingesttest.Stream
	events *feedTo
	seq    uint64
}

// feedTo is the ingest → engine hand-off the aggregator wires
// (ingest.Config.Events), with the engine settable.
type feedTo struct {
	mu sync.Mutex
	e  *Engine
}

func (f *feedTo) PublishEvents(site, agentID string, ev *protocol.Events) {
	f.mu.Lock()
	e := f.e
	f.mu.Unlock()
	if e != nil {
		e.PublishEvents(site, agentID, ev)
	}
}

func (f *feedTo) set(e *Engine) { f.mu.Lock(); f.e = e; f.mu.Unlock() }

func (f *fixture) replica(ca *pki.CA, to *Engine) *replica {
	f.t.Helper()
	r := &replica{events: &feedTo{e: to}}
	r.srv = ingest.New(ingest.Config{Addr: "127.0.0.1:0", Events: r.events, Logger: discardLog()}, f.st, ca)
	if err := r.srv.Listen(); err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.srv.Serve(ctx) }()
	f.t.Cleanup(func() { cancel(); <-done })
	secret, _, err := f.st.CreateEnrollmentToken(f.ctx, "site-a", time.Hour, "test")
	if err != nil {
		f.t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(f.ctx, 20*time.Second)
	defer dcancel()
	addr := r.srv.Addr().String()
	id, err := ingesttest.Enroll(dctx, addr, protocol.FormatEnrollToken(secret, ca.Cert.Raw), "agent")
	if err != nil {
		f.t.Fatalf("enroll: %v", err)
	}
	c, err := ingesttest.Dial(dctx, addr, id, 1)
	if err != nil {
		f.t.Fatalf("dial: %v", err)
	}
	f.t.Cleanup(c.Close)
	if r.stream, err = c.OpenData(dctx); err != nil {
		f.t.Fatal(err)
	}
	return r
}

// send sends one events batch of alarm status changes and waits for its
// ack (after COMMIT).
func (r *replica) send(t testing.TB, evs ...protocol.Event) time.Time {
	t.Helper()
	r.seq++
	if err := r.stream.Send(ingesttest.MustBatch(protocol.KindEvents, &protocol.Events{Events: evs}, 1, r.seq)); err != nil {
		t.Fatal(err)
	}
	a, err := r.stream.Recv()
	if err != nil || a.Status != protocol.AckStored {
		t.Fatalf("ack: %+v, %v", a, err)
	}
	return time.Now()
}

func alarmStatusEvent(key int64, at time.Time, entity, alarm, from, to string) protocol.Event {
	return protocol.Event{Source: "vc1", Key: key, Type: "AlarmStatusChangedEvent", Time: at.UnixMilli(), EntityKind: KindVM, EntityID: entity,
		EntityName: "web-" + entity, Message: "Alarm " + alarm + " changed from " + from + " to " + to,
		Extra: map[string]any{"alarm": alarm, "alarm_name": "name of " + alarm, "from": from, "to": to}}
}

// TestAlarmFeedThroughIngest: vCenter alarm events sent by an agent over
// QUIC to a real ingest server are handed to the running engine after
// COMMIT and mirrored at once — with the table catch-up disabled, so the
// feed alone did it — and the alert resolves the same way. Events a
// replica committed while its engine never applied them (it died between
// the COMMIT and applying) are not lost: the engine that starts next reads
// them from vcenter_events on Load, once, and pages nothing twice.
func TestAlarmFeedThroughIngest(t *testing.T) {
	f := newFixture(t, Config{})
	ch := f.channel("ops", "http://127.0.0.1:1/unused")
	f.rule(Rule{Name: "vCenter alarms on VMs", Conditions: []Condition{{Metric: MetricVCenterAlarm, Op: ">=", Threshold: AlarmYellow}},
		Channels: []uuid.UUID{ch}})
	ca, err := pki.LoadOrCreate(t.TempDir(), []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	// Replica A: its engine runs as the aggregator runs it, with no
	// periodic table read and a tick far away.
	cfg := Config{Logger: discardLog(), AlarmCatchUp: -1, TickInterval: time.Hour}
	engA := f.newEngine(cfg)
	ctx, cancel := context.WithCancel(f.ctx)
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = engA.Run(ctx) }()
	a := f.replica(ca, engA)

	waitFor := func(what string, since time.Time, cond func() bool) time.Duration {
		t.Helper()
		for time.Since(since) < 10*time.Second {
			if cond() {
				return time.Since(since)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("%s: not within 10 s", what)
		return 0
	}
	firing := func(entity, alarm string) func() bool {
		return func() bool {
			m := f.mirrored(entity, alarm)
			return len(m) == 1 && m[0].State == "firing"
		}
	}
	now := time.Now().Truncate(time.Millisecond)
	acked := a.send(t, alarmStatusEvent(101, now.Add(-2*time.Second), "vm-1", "alarm-1", "green", "red"))
	took := waitFor("the mirrored alert", acked, firing("vm-1", "alarm-1"))
	t.Logf("ack → mirrored alert: %v", took)
	if took > 2*time.Second {
		t.Errorf("the alarm took %v from the ack to its alert; the feed should take milliseconds", took)
	}
	if n := engA.Stats.AlarmCatchUps.Load(); n != 1 {
		t.Fatalf("%d table reads; only Load's was expected", n)
	}
	m := f.mirrored("vm-1", "alarm-1")
	if m[0].Severity != SeverityCritical || !m[0].StartsAt.Equal(now.Add(-2*time.Second)) {
		t.Fatalf("mirrored alert %+v: want critical, starting at the event's time %v", m[0], now.Add(-2*time.Second))
	}
	acked = a.send(t, alarmStatusEvent(102, now.Add(-time.Second), "vm-1", "alarm-1", "red", "green"))
	waitFor("the resolution", acked, func() bool {
		m := f.mirrored("vm-1", "alarm-1")
		return len(m) == 1 && m[0].State == "resolved"
	})

	// Replica B commits alarm events while its engine does not apply
	// them (loaded, never run: it dies with them queued).
	engB := f.newEngine(Config{Logger: discardLog(), AlarmCatchUp: -1})
	b := f.replica(ca, engB)
	before := engB.Stats.AlarmsApplied.Load()
	b.send(t, alarmStatusEvent(201, now.Add(-500*time.Millisecond), "vm-2", "alarm-1", "gray", "yellow"),
		alarmStatusEvent(202, now.Add(-400*time.Millisecond), "vm-3", "alarm-2", "green", "red"))
	if got := engB.Stats.AlarmsApplied.Load() - before; got != 0 {
		t.Fatalf("replica B applied %d", got)
	}
	b.events.set(nil)
	if len(f.mirrored("vm-2", "alarm-1")) != 0 {
		t.Fatal("an event no engine applied has an alert")
	}
	// A's engine stops too; the next one to start takes over and reads
	// what was missed.
	cancel()
	<-runDone
	engC := f.newEngine(Config{Logger: discardLog(), AlarmCatchUp: -1})
	for _, want := range [][2]string{{"vm-2", "alarm-1"}, {"vm-3", "alarm-2"}} {
		if !firing(want[0], want[1])() {
			t.Fatalf("%s %s after the take-over: %+v", want[0], want[1], f.mirrored(want[0], want[1]))
		}
	}
	if got := engC.Stats.AlarmsCaughtUp.Load(); got != 4 {
		t.Errorf("the take-over read back %d alarm events, want 4 (2 applied by A's feed, 2 never applied)", got)
	}
	// Exactly one page per firing, one per resolution: nothing twice.
	if n := f.count(`SELECT count(*) FROM alert_notifications WHERE kind = 'firing'`); n != 3 {
		t.Errorf("%d firing notifications, want 3", n)
	}
	if n := f.count(`SELECT count(*) FROM alert_notifications WHERE kind = 'resolved'`); n != 1 {
		t.Errorf("%d resolved notifications, want 1", n)
	}
	if n := f.count(`SELECT count(*) FROM alerts`); n != 3 {
		t.Errorf("%d alerts, want 3", n)
	}
}
