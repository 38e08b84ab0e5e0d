package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/plugins/sdk"
	"github.com/vmpulse/vmpulse/plugins/sdk/host"
	"github.com/vmpulse/vmpulse/protocol"
)

// runDispatcher runs d until done reports true (or 30 seconds pass), then
// stops it and waits for it.
func runDispatcher(t testing.TB, f *fixture, d *Dispatcher, done func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(f.ctx)
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = d.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for !done() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-stopped
	if !done() {
		t.Fatal("dispatcher did not finish in 30s")
	}
}

// storm fires rule on n VMs of site-a in one batch.
func storm(f *fixture, n int, start time.Time, pct float64) {
	sds := make([]protocol.SeriesData, n)
	for i := range sds {
		sds[i] = cpuSeries("vc1", fmt.Sprintf("vm-%d", i), start, 20*time.Second, pct)
	}
	f.commit("site-a", sds...)
}

// TestTwoDispatchersDeliverOnce: two dispatchers (two replicas, each with
// its own pool) drain one database through the webhook plugin during a
// storm of firing and resolved alerts, the lease holder stopping twice in
// the middle: every notification reaches the receiver exactly once.
func TestTwoDispatchersDeliverOnce(t *testing.T) {
	f := newFixture(t, Config{})
	rec := newReceiver(t)
	ch := f.channel("ops", rec.srv.URL)
	f.rule(Rule{Name: "cpu-high", Conditions: []Condition{{Metric: "cpu.usage.average", Op: ">", Threshold: 80}}, Channels: []uuid.UUID{ch}})
	const vms = 1000
	t0 := f.clock.Now().Add(-time.Minute).Truncate(time.Second)
	storm(f, vms, t0, 95)
	storm(f, vms, t0.Add(20*time.Second), 5)
	if n := f.count(`SELECT count(*) FROM alert_notifications`); n != 2*vms {
		t.Fatalf("%d notifications queued, want %d", n, 2*vms)
	}
	nt := webhookNotifier(t)
	replica := func(name string) (*Dispatcher, func()) {
		pool, err := pgxpool.New(f.ctx, f.pool.Config().ConnString())
		if err != nil {
			t.Fatal(err)
		}
		d := NewDispatcher(pool, nt, DispatcherConfig{Name: name, PollInterval: 20 * time.Millisecond, Batch: 50, Workers: 8, Logger: tlog(t)})
		ctx, cancel := context.WithCancel(f.ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = d.Run(ctx) }()
		return d, func() { cancel(); <-done; pool.Close() }
	}
	a, stopA := replica("replica-a")
	_, stopB := replica("replica-b")
	defer func() { stopB() }()
	delivered := func() int { _, n, _ := rec.total(); return n }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (delivered %d)", what, delivered())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Stop whichever leads after a third, start it again, stop the leader
	// again after two thirds.
	for _, at := range []int{2 * vms / 3, 4 * vms / 3} {
		waitFor("progress", func() bool { return delivered() >= at })
		if a.Epoch() != 0 {
			stopA()
			a, stopA = replica("replica-a")
		} else {
			stopB()
			_, stopB = replica("replica-b")
		}
	}
	waitFor("every notification", func() bool { return delivered() == 2*vms })
	time.Sleep(200 * time.Millisecond) // anything more would be a duplicate
	stopA()
	requests, distinct, dups := rec.total()
	if distinct != 2*vms || dups != 0 || requests != 2*vms {
		t.Errorf("receiver: %d requests, %d distinct, %d duplicates; want %d, %d, 0", requests, distinct, dups, 2*vms, 2*vms)
	}
	if n := f.count(`SELECT count(*) FROM alert_notifications WHERE state = 'delivered'`); n != 2*vms {
		t.Errorf("%d delivered in the outbox, want %d", n, 2*vms)
	}
	if n := f.count(`SELECT count(DISTINCT epoch) FROM alert_notification_attempts`); n < 3 {
		t.Errorf("deliveries under %d lease epochs, want at least 3 (two handovers)", n)
	}
	if n := f.count(`SELECT count(*) FROM alert_notification_attempts WHERE fenced`); n != 0 {
		t.Errorf("%d fenced attempts in planned handovers", n)
	}
}

// TestDispatcherRetryAfterAndAttempts: a receiver that answers 503 with
// Retry-After twice gets the notification on the third attempt, not
// before the delay it asked for; every attempt is recorded, and the
// alert's timeline says it was notified.
func TestDispatcherRetryAfterAndAttempts(t *testing.T) {
	f := newFixture(t, Config{})
	rec := newReceiver(t)
	rec.fail, rec.retryAfter = 2, "1"
	ch := f.channel("ops", rec.srv.URL)
	f.rule(Rule{Name: "cpu-high", Conditions: []Condition{{Metric: "cpu.usage.average", Op: ">", Threshold: 80}}, Channels: []uuid.UUID{ch}})
	storm(f, 1, f.clock.Now().Add(-time.Minute), 95)
	d := NewDispatcher(f.pool, webhookNotifier(t), DispatcherConfig{PollInterval: 20 * time.Millisecond, BackoffMin: 10 * time.Millisecond, Logger: tlog(t)})
	runDispatcher(t, f, d, func() bool { _, n, _ := rec.total(); return n == 1 })
	rec.mu.Lock()
	at := append([]time.Time(nil), rec.at...)
	rec.mu.Unlock()
	if len(at) != 3 {
		t.Fatalf("%d requests, want 3", len(at))
	}
	for i := 1; i < 3; i++ {
		if gap := at[i].Sub(at[i-1]); gap < 900*time.Millisecond {
			t.Errorf("attempt %d came %v after the previous one; the receiver asked for 1s", i+1, gap)
		}
	}
	rows, err := f.pool.Query(f.ctx, `SELECT outcome || ' ' || code FROM alert_notification_attempts ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	outcomes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"retry 503", "retry 503", "delivered 200"}; !slices.Equal(outcomes, want) {
		t.Errorf("attempts %v, want %v", outcomes, want)
	}
	al := f.alerts()
	if tl := f.timeline(al[0].ID); !slices.Equal(tl, []string{"firing", "notified"}) {
		t.Errorf("timeline %v", tl)
	}
}

// switchableHost is a PluginHost with no plugin until one is set.
type switchableHost struct {
	mu   sync.Mutex
	real PluginHost
}

func (h *switchableHost) Notifier(name string) (sdk.Notifier, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.real == nil {
		return nil, fmt.Errorf("plugin %q: %w", name, host.ErrNotFound)
	}
	return h.real.Notifier(name)
}

// TestDispatcherWaitsForMissingPlugin: while the channel's plugin is not
// installed (or refused), its notification stays pending however many
// times it is tried, without using up its attempts; once the plugin is
// there it is delivered, once.
func TestDispatcherWaitsForMissingPlugin(t *testing.T) {
	f := newFixture(t, Config{})
	rec := newReceiver(t)
	ch := f.channel("ops", rec.srv.URL)
	f.rule(Rule{Name: "cpu-high", Conditions: []Condition{{Metric: "cpu.usage.average", Op: ">", Threshold: 80}}, Channels: []uuid.UUID{ch}})
	storm(f, 1, f.clock.Now().Add(-time.Minute), 95)
	sw := &switchableHost{}
	d := NewDispatcher(f.pool, PluginNotifier{Host: sw}, DispatcherConfig{PollInterval: 10 * time.Millisecond,
		BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond, MaxAttempts: 2, Logger: tlog(t)})
	tried := func() int {
		var n int
		if err := f.pool.QueryRow(f.ctx, `SELECT count(*) FROM alert_notification_attempts`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	runDispatcher(t, f, d, func() bool { return tried() >= 6 }) // three times MaxAttempts
	var state string
	var attempts int
	if err := f.pool.QueryRow(f.ctx, `SELECT state, attempts FROM alert_notifications`).Scan(&state, &attempts); err != nil {
		t.Fatal(err)
	}
	if state != "pending" || attempts != 0 {
		t.Fatalf("without a plugin: state %s, attempts %d; want pending, 0 (waiting, nothing used up)", state, attempts)
	}
	// The plugin is installed and the aggregator restarted: a new lease
	// holder sends the held notification at once, not at the end of its
	// hold (an hour here).
	if _, err := f.pool.Exec(f.ctx, `UPDATE alert_notifications SET next_attempt_at = now() + interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	sw.mu.Lock()
	sw.real = webhookNotifier(t).Host
	sw.mu.Unlock()
	d = NewDispatcher(f.pool, PluginNotifier{Host: sw}, DispatcherConfig{PollInterval: 10 * time.Millisecond,
		BackoffMin: time.Millisecond, BackoffMax: time.Hour, MaxAttempts: 2, Logger: tlog(t)})
	runDispatcher(t, f, d, func() bool { _, n, _ := rec.total(); return n == 1 })
	if err := f.pool.QueryRow(f.ctx, `SELECT state, attempts FROM alert_notifications`).Scan(&state, &attempts); err != nil {
		t.Fatal(err)
	}
	if _, n, _ := rec.total(); state != "delivered" || attempts != 1 || n != 1 {
		t.Fatalf("with the plugin: state %s, attempts %d, %d deliveries; want delivered, 1, 1", state, attempts, n)
	}
}

// failingHost hands out a notifier that fails every call with err.
type failingHost struct{ err error }

func (h failingHost) Notifier(string) (sdk.Notifier, error) { return failingNotifier(h), nil }

type failingNotifier struct{ err error }

func (n failingNotifier) Validate(context.Context, json.RawMessage) error { return nil }
func (n failingNotifier) Notify(context.Context, sdk.Notification) (sdk.Result, error) {
	return sdk.Result{}, n.err
}

// notificationState is the state of the only notification.
func (f *fixture) notificationState() string {
	var st string
	if err := f.pool.QueryRow(f.ctx, `SELECT state FROM alert_notifications`).Scan(&st); err != nil {
		f.t.Fatal(err)
	}
	return st
}

// TestDispatcherHoldsOnlyForAnAbsentPlugin: a plugin refused by the host
// holds the notification like a missing one; a plugin that is restarting
// (the host answers ErrUnavailable) is retried with the normal backoff
// and its attempts count.
func TestDispatcherHoldsOnlyForAnAbsentPlugin(t *testing.T) {
	for _, c := range []struct {
		name      string
		err       error
		wantState string
	}{
		{"refused", fmt.Errorf("plugin %q: %w: %w", "webhook", host.ErrRefused, host.ErrChecksum), "pending"},
		{"restarting", fmt.Errorf("plugin %q: %w", "webhook", sdk.ErrUnavailable), "failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			ch := f.channel("ops", "http://127.0.0.1:9/")
			f.rule(Rule{Name: "cpu-high", Conditions: []Condition{{Metric: "cpu.usage.average", Op: ">", Threshold: 80}}, Channels: []uuid.UUID{ch}})
			storm(f, 1, f.clock.Now().Add(-time.Minute), 95)
			d := NewDispatcher(f.pool, PluginNotifier{Host: failingHost{c.err}}, DispatcherConfig{PollInterval: 10 * time.Millisecond,
				BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond, MaxAttempts: 3, Logger: tlog(t)})
			tried := func() int {
				var n int
				if err := f.pool.QueryRow(f.ctx, `SELECT count(*) FROM alert_notification_attempts`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			runDispatcher(t, f, d, func() bool { return tried() >= 5 || f.notificationState() == "failed" })
			if st := f.notificationState(); st != c.wantState {
				t.Fatalf("state %s after %d tries; want %s", st, tried(), c.wantState)
			}
		})
	}
}

// fencingNotifier hands the lease to another epoch while a delivery is in
// flight, as a dispatcher whose lock connection died would see.
type fencingNotifier struct {
	f *fixture
}

func (n fencingNotifier) Notify(ctx context.Context, ch Channel, note sdk.Notification) (sdk.Result, error) {
	if _, err := n.f.pool.Exec(ctx, `UPDATE alert_dispatch_lease SET epoch = epoch + 1`); err != nil {
		return sdk.Result{}, err
	}
	if _, err := n.f.pool.Exec(ctx, `UPDATE alert_notifications SET claimed_epoch = claimed_epoch + 1`); err != nil {
		return sdk.Result{}, err
	}
	return sdk.DeliveredResult(""), nil
}

// TestDispatcherFencing: an outcome that arrives after the lease moved on
// is recorded as a fenced attempt and does not change the notification,
// which the new holder owns.
func TestDispatcherFencing(t *testing.T) {
	f := newFixture(t, Config{})
	ch := f.channel("ops", "http://127.0.0.1:1/")
	f.rule(Rule{Name: "cpu-high", Conditions: []Condition{{Metric: "cpu.usage.average", Op: ">", Threshold: 80}}, Channels: []uuid.UUID{ch}})
	storm(f, 1, f.clock.Now().Add(-time.Minute), 95)
	if _, err := f.pool.Exec(f.ctx, `UPDATE alert_dispatch_lease SET epoch = 7`); err != nil {
		t.Fatal(err)
	}
	d := NewDispatcher(f.pool, fencingNotifier{f}, DispatcherConfig{Logger: tlog(t)})
	if n, err := d.deliverDue(f.ctx, 7); err != nil || n != 1 {
		t.Fatalf("deliverDue: %d, %v", n, err)
	}
	if d.Stats.Fenced.Load() != 1 {
		t.Errorf("fenced %d, want 1", d.Stats.Fenced.Load())
	}
	if n := f.count(`SELECT count(*) FROM alert_notifications WHERE state = 'sending' AND claimed_epoch = 8`); n != 1 {
		t.Errorf("the notification is not the new holder's to finish")
	}
	if n := f.count(`SELECT count(*) FROM alert_notification_attempts WHERE fenced AND epoch = 7`); n != 1 {
		t.Errorf("the fenced attempt is not recorded")
	}
	// An old epoch claims nothing.
	if n, err := d.deliverDue(f.ctx, 7); err != nil || n != 0 {
		t.Errorf("deliverDue under a stale epoch claimed %d (%v)", n, err)
	}
}

// TestAckStopsRepeats: a firing alert is repeated every repeat_interval
// until it is acknowledged.
func TestAckStopsRepeats(t *testing.T) {
	f := newFixture(t, Config{})
	ch := f.channel("ops", "http://127.0.0.1:1/")
	f.rule(Rule{Name: "cpu-high", Conditions: []Condition{{Metric: "cpu.usage.average", Op: ">", Threshold: 80}}, Channels: []uuid.UUID{ch},
		RepeatInterval: dur("1h")})
	storm(f, 2, f.clock.Now().Add(-time.Minute), 95)
	d := NewDispatcher(f.pool, fencingNotifier{f}, DispatcherConfig{Logger: tlog(t)})
	if err := d.Housekeep(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.count(`SELECT count(*) FROM alert_notifications WHERE kind = 'repeat'`); n != 0 {
		t.Fatalf("%d repeats before the interval", n)
	}
	al := f.alerts()
	if err := f.db.Ack(store.AllSites(f.ctx), al[0].ID, "alice", "looking"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(f.ctx, `UPDATE alerts SET last_notified_at = now() - interval '61 minutes'`); err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if err := d.Housekeep(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.count(`SELECT count(*) FROM alert_notifications WHERE kind = 'repeat'`); n != 1 {
		t.Errorf("%d repeats, want 1 (the unacknowledged alert's)", n)
	}
	if n := f.count(`SELECT count(*) FROM alert_notifications WHERE kind = 'repeat' AND alert_id = $1`, al[0].ID); n != 0 {
		t.Errorf("the acknowledged alert was repeated")
	}
	if tl := f.timeline(al[0].ID); !slices.Equal(tl, []string{"firing", "ack"}) {
		t.Errorf("timeline %v", tl)
	}
}
