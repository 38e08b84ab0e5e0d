package alert

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// TestSendLogBudget: the budget is what the limits leave in the last
// minute and second.
func TestSendLogBudget(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var l sendLog
	r := Rates{PerMinute: 5, PerSecond: 2}
	if b := l.budget(r, t0); b != 2 {
		t.Fatalf("empty: %d, want 2", b)
	}
	l.add(t0)
	l.add(t0.Add(100 * time.Millisecond))
	if b := l.budget(r, t0.Add(500*time.Millisecond)); b != 0 {
		t.Fatalf("two in the second: %d, want 0", b)
	}
	if b := l.budget(r, t0.Add(1200*time.Millisecond)); b != 2 {
		t.Fatalf("a second later: %d, want 2", b)
	}
	l.add(t0.Add(2 * time.Second))
	l.add(t0.Add(3 * time.Second))
	l.add(t0.Add(4 * time.Second))
	if b := l.budget(r, t0.Add(30*time.Second)); b != 0 {
		t.Fatalf("five in the minute: %d, want 0", b)
	}
	if b := l.budget(r, t0.Add(rateWindow+150*time.Millisecond)); b != 2 {
		t.Fatalf("after the window: %d, want 2", b)
	}
	if b := l.budget(Rates{}, t0); b != -1 {
		t.Fatalf("no limit: %d, want -1", b)
	}
	if got := (&Channel{Type: "feishu"}).Rates(); got != (Rates{PerMinute: 100, PerSecond: 5}) {
		t.Errorf("feishu default %+v", got)
	}
	zero := 0
	if got := (&Channel{Type: "dingtalk", RatePerMinute: &zero}).Rates(); got != (Rates{}) {
		t.Errorf("dingtalk with its limit off %+v", got)
	}
}

// TestRateLimitedChannelStormDigests: a storm of firing and then resolved
// alerts on a channel limited to 6 a minute and 2 a second, delivered by
// the webhook plugin subprocess to a local receiver: the receiver never
// gets more than the limits allow, storms arrive as digests, and every
// alert is announced (listed or counted) — none is lost. Resolved notices
// go out in the next digest, not after a group interval.
func TestRateLimitedChannelStormDigests(t *testing.T) {
	f := newFixture(t, Config{})
	rec := newReceiver(t)
	cfg, _ := json.Marshal(map[string]any{"url": rec.srv.URL})
	perMin, perSec := 6, 2
	ch, err := f.db.CreateChannel(f.ctx, ChannelInput{Name: "robot", Type: "webhook", Config: cfg, Enabled: true,
		RatePerMinute: &perMin, RatePerSecond: &perSec}, "test")
	if err != nil {
		t.Fatal(err)
	}
	f.rule(Rule{Name: "cpu-high", Conditions: []Condition{{Metric: "cpu.usage.average", Op: ">", Threshold: 80}}, Channels: []uuid.UUID{ch}})
	const vms = 300
	t0 := f.clock.Now().Add(-time.Minute).Truncate(time.Second)
	storm(f, vms, t0, 95)
	d := NewDispatcher(f.pool, webhookNotifier(t), DispatcherConfig{PollInterval: 20 * time.Millisecond, Logger: tlog(t)})
	announced := func() (firing, resolved, omitted, digests int) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, b := range rec.bodies {
			if b.Digest {
				digests++
			}
			omitted += b.Omitted
			for _, a := range b.Alerts {
				if a.State == "resolved" {
					resolved++
				} else {
					firing++
				}
			}
		}
		return
	}
	settled := func() bool {
		return f.count(`SELECT count(*) FROM alert_notifications WHERE state IN ('pending', 'sending')`) == 0
	}
	runDispatcher(t, f, d, settled)
	storm(f, vms, t0.Add(20*time.Second), 5) // every alert resolves
	runDispatcher(t, f, d, settled)

	fi, re, om, digests := announced()
	if fi+re+om != 2*vms {
		t.Errorf("announced %d firing + %d resolved + %d counted = %d, want %d", fi, re, om, fi+re+om, 2*vms)
	}
	if digests == 0 || re == 0 {
		t.Errorf("%d digests, %d resolved listed; want storm digests carrying resolved notices", digests, re)
	}
	if n := f.count(`SELECT count(*) FROM alert_notifications WHERE state = 'merged' AND merged_into IS NOT NULL AND alert_id IS NOT NULL`); n != 2*vms {
		t.Errorf("%d notifications merged into digests, want %d", n, 2*vms)
	}
	al := f.alerts()
	d0, err := f.db.AlertDetail(store.AllSites(f.ctx), al[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(d0.Notifications) != 2 || d0.Notifications[0].MergedInto == nil || d0.Notifications[0].DeliveredAt == nil {
		t.Errorf("an alert's merged notifications: %+v", d0.Notifications)
	}
	if n := f.count(`SELECT count(*) FROM alert_notifications WHERE state NOT IN ('delivered', 'merged')`); n != 0 {
		t.Errorf("%d notifications neither delivered nor merged", n)
	}
	rec.mu.Lock()
	at := append([]time.Time(nil), rec.at...)
	rec.mu.Unlock()
	if len(at) > perMin {
		t.Errorf("%d requests within the test's minute, limit %d", len(at), perMin)
	}
	for i := range at {
		n := 0
		for j := i; j < len(at) && at[j].Sub(at[i]) < time.Second; j++ {
			n++
		}
		if n > perSec {
			t.Errorf("%d requests within a second from %v, limit %d", n, at[i], perSec)
		}
	}
	t.Logf("%d requests, %d digests, %d firing and %d resolved listed, %d counted", len(at), digests, fi, re, om)
}

// TestGroupedNotifications: a rule grouping by site sends the alerts of
// one site that fire together as one message after its group wait, and
// their resolved notices, never held, as one message too; through the
// webhook plugin to a local receiver.
func TestGroupedNotifications(t *testing.T) {
	f := newFixture(t, Config{})
	rec := newReceiver(t)
	ch := f.channel("ops", rec.srv.URL)
	f.rule(Rule{Name: "cpu-high", Conditions: []Condition{{Metric: "cpu.usage.average", Op: ">", Threshold: 80}}, Channels: []uuid.UUID{ch},
		GroupBy: []string{"site"}, GroupWait: dur("1s")})
	t0 := f.clock.Now().Add(-time.Minute).Truncate(time.Second)
	fire := func(site string, n int, pct float64, at time.Time) {
		sds := make([]protocol.SeriesData, n)
		for i := range sds {
			sds[i] = cpuSeries("vc-"+site, fmt.Sprintf("vm-%d", i), at, 20*time.Second, pct)
		}
		f.commit(site, sds...)
	}
	fire("site-a", 5, 95, t0)
	fire("site-b", 3, 95, t0)
	d := NewDispatcher(f.pool, webhookNotifier(t), DispatcherConfig{PollInterval: 20 * time.Millisecond, Logger: tlog(t)})
	settled := func() bool {
		return f.count(`SELECT count(*) FROM alert_notifications WHERE state IN ('pending', 'sending')`) == 0
	}
	runDispatcher(t, f, d, settled)
	fire("site-a", 5, 5, t0.Add(20*time.Second))
	fire("site-b", 3, 5, t0.Add(20*time.Second))
	if n := f.count(`SELECT count(*) FROM alert_notifications WHERE kind = 'resolved' AND next_attempt_at > created_at`); n != 0 {
		t.Errorf("%d resolved notices held back", n)
	}
	runDispatcher(t, f, d, settled)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	var sizes []string
	for _, b := range rec.bodies {
		sites := map[string]bool{}
		for _, a := range b.Alerts {
			sites[a.Site] = true
		}
		if len(sites) != 1 || !b.Digest {
			t.Errorf("a message of %d sites (digest %v)", len(sites), b.Digest)
		}
		sizes = append(sizes, fmt.Sprintf("%s:%d:%s", b.Alerts[0].Site, len(b.Alerts), b.Alerts[0].State))
	}
	slices.Sort(sizes)
	if want := []string{"site-a:5:firing", "site-a:5:resolved", "site-b:3:firing", "site-b:3:resolved"}; !slices.Equal(sizes, want) {
		t.Errorf("messages %v, want %v", sizes, want)
	}

	bad := Rule{Name: "x", EntityKind: KindVM, Severity: SeverityWarning, Conditions: []Condition{{Metric: "a.b", Op: ">", Threshold: 1}},
		GroupBy: []string{"cluster", "rack"}, GroupWait: dur("1h")}
	bad.Normalize()
	var v *ValidationError
	if err := bad.Validate(); !errors.As(err, &v) {
		t.Fatalf("bad grouping: %v", err)
	}
	var fields []string
	for _, fe := range v.Fields {
		fields = append(fields, fe.Field)
	}
	if want := []string{"group_by[1]", "group_by", "group_wait"}; !slices.Equal(fields, want) {
		t.Errorf("fields %v, want %v", fields, want)
	}
}
