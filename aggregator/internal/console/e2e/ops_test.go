package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vmpulse/vmpulse/aggregator/internal/alert"
	"github.com/vmpulse/vmpulse/aggregator/internal/backup"
	"github.com/vmpulse/vmpulse/aggregator/internal/jobs"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/protocol"
)

// ops are the aggregator's background parts the pages of the alert and
// system modules read: the real job runner (with the backup service's
// job) and the real backup service over pg_dump.
type ops struct {
	jobs    *jobs.Runner
	backups *backup.Service
}

// startOps builds and runs the job runner and the backup service the way
// the aggregator does, until the test ends.
func startOps(t *testing.T, ctx context.Context, st *store.Store) ops {
	t.Helper()
	svc, err := backup.New(st, backup.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("backup.New: %v", err)
	}
	maint := jobs.Maintenance(st, jobs.MaintenanceConfig{
		Retention: func(context.Context) (store.Retention, error) { return store.DefaultRetention, nil },
	})
	run, err := jobs.New(st.Pool(), jobs.Options{Tick: time.Second}, append(maint, svc.Job())...)
	if err != nil {
		t.Fatalf("jobs.New: %v", err)
	}
	if err := run.Sync(ctx); err != nil {
		t.Fatalf("jobs sync: %v", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = run.Run(rctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ops{jobs: run, backups: svc}
}

// seedAlerts runs the real alert engine over the seeded fleet: the
// default rule pack, then two evaluations three minutes apart, so the
// site-offline rule (for 2m) fires for dc-west, whose agent went away.
func seedAlerts(t *testing.T, ctx context.Context, st *store.Store) {
	t.Helper()
	if _, err := alert.NewDB(st.Pool()).InstallDefaultPack(ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	clock := time.Now().Add(-3 * time.Minute)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	eng := alert.NewEngine(st.Pool(), alert.SitesFromAgents(st), alert.Config{Now: now})
	if err := eng.Load(ctx); err != nil {
		t.Fatalf("alert engine load: %v", err)
	}
	if err := eng.Tick(ctx); err != nil {
		t.Fatalf("alert engine tick: %v", err)
	}
	mu.Lock()
	clock = time.Now()
	mu.Unlock()
	if err := eng.Tick(ctx); err != nil {
		t.Fatalf("alert engine tick: %v", err)
	}
	var n int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM alerts WHERE site = 'dc-west' AND ends_at IS NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("the alert engine raised no alert for dc-west, offline for three minutes")
	}
}

// axeSource is axe-core from the console's node_modules (npm ci installs
// it; no CDN).
func axeSource(t testing.TB) string {
	t.Helper()
	p := filepath.Join("..", "..", "..", "web", "node_modules", "axe-core", "axe.min.js")
	b, err := os.ReadFile(p)
	need(t, err == nil, "axe-core is not installed (%s): run npm ci in aggregator/web", p)
	return string(b)
}

// axeFinding is one serious or critical axe-core violation.
type axeFinding struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// axe injects axe-core into the page and fails the step on any serious or
// critical finding.
func (b *browser) axe(name, src string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof window.axe === 'object' || (function(){`+src+`
;return true})()`)); err != nil {
		b.fail(name+" axe inject", err)
	}
	found, err := chromedp.Run(ctx, chromedp.Evaluate[[]axeFinding](`axe.run(document, {resultTypes: ['violations']}).then(r =>
		r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v => ({id: v.id, impact: v.impact, help: v.help,
			nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' ' + (n.failureSummary || '').replace(/\s+/g, ' ').slice(0, 200))})))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		b.fail(name+" axe run", err)
	}
	b.pagesChecked++
	if len(found) > 0 {
		j, _ := json.MarshalIndent(found, "", "  ")
		b.fail(name+" accessibility", fmt.Errorf("axe-core reports %d serious or critical findings:\n%s", len(found), j))
	}
}

// visit opens a page, waits for its ready selectors and checks it with axe-core.
func (b *browser) visit(base, axe, name, path string, ready ...string) {
	b.t.Helper()
	steps := []chromedp.Action[chromedp.Void]{chromedp.Navigate(base + path)}
	for _, sel := range ready {
		steps = append(steps, chromedp.WaitVisible(chromedp.CSS(sel)))
	}
	b.do(name, 30*time.Second, steps...)
	b.axe(name, axe)
	b.snap(strings.NewReplacer("/", "-", "?", "-", ":", "-", "=", "-", "&", "-").Replace(name))
}

// keepAlive heartbeats an agent every 5 s until the test ends, as a
// connected agent does, so its lease (three heartbeat intervals) holds.
func keepAlive(t *testing.T, ctx context.Context, st *store.Store, agentID string) {
	t.Helper()
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-tick.C:
				hb := &protocol.Heartbeat{SpoolDepth: 240, SpoolBytes: 48 << 20, OldestUnsentAge: (25 * time.Minute).Milliseconds(),
					CollectionLag: 20_000, SentAt: time.Now().UnixMilli(), Plugins: eastPlugins(), SpoolMaxBytes: eastSpoolMax, VCenters: eastVCenters()}
				if _, err := st.AgentHeartbeat(hctx, agentID, hb); err != nil && hctx.Err() == nil {
					t.Logf("heartbeat: %v", err)
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}
