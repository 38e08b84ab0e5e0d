// Package e2e drives the web console in a real browser: Debian's Chromium,
// headless, through chromedp, against a real API (httpapi.New on a
// throwaway PostgreSQL database, seeded through the store's write paths)
// with the console handler mounted the way the aggregator mounts it.
//
// It needs /usr/bin/chromium (or VMPULSE_CHROMIUM) and the console build
// (npm run build in aggregator/web, or a binary built with -tags console).
// Locally it skips, saying which is missing; under CI (CI=true, where
// .ci/run installs Chromium and builds the console) a missing piece fails.
// A failing step saves a screenshot and logs its path.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/vmpulse/vmpulse/aggregator/internal/auth"
	"github.com/vmpulse/vmpulse/aggregator/internal/console"
	"github.com/vmpulse/vmpulse/aggregator/internal/httpapi"
	"github.com/vmpulse/vmpulse/aggregator/internal/store"
	"github.com/vmpulse/vmpulse/aggregator/internal/store/pgtest"
	"github.com/vmpulse/vmpulse/protocol"
)

const (
	adminName     = "admin"
	adminPassword = "Corr3ct-Horse-Battery"
	vcEast        = "4c4c4544-0042-3510-8052-b4c04f4d4d32"
	vcWest        = "5d5d5555-west"
	// The whole browser session must finish within this.
	browserBudget = 420 * time.Second
)

// need skips the test locally, or fails it under CI, when a prerequisite is missing.
func need(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI must provide it: .ci/run installs Chromium and builds the console)")
	}
	t.Skip(msg)
}

func chromiumPath() string {
	if p := os.Getenv("VMPULSE_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// consoleHandler is the embedded build (-tags console) or the build on disk.
func consoleHandler(t testing.TB) http.Handler {
	t.Helper()
	if console.Built() {
		return console.Handler()
	}
	dist := filepath.Join("..", "dist")
	_, err := os.Stat(filepath.Join(dist, "index.html"))
	need(t, err == nil, "the console is not built (no %s/index.html): run `npm ci && npm run build` in aggregator/web, or `make test`", dist)
	srv, err := console.New(os.DirFS(dist))
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// registry is the API's view of the agents: the real store. It holds no
// connection, and issues the store's enrollment secret without the CA
// fingerprint the aggregator wraps around it (this test runs no CA).
type registry struct{ *store.Store }

func (r registry) IssueEnrollToken(ctx context.Context, site string, ttl time.Duration, by string) (string, time.Time, error) {
	if err := r.EnsureSite(ctx, site, ""); err != nil {
		return "", time.Time{}, err
	}
	return r.CreateEnrollmentToken(ctx, site, ttl, by)
}
func (registry) Disconnect(string) {}

type noCommander struct{}

func (noCommander) Connected() []string                       { return nil }
func (noCommander) SendCommand(string, protocol.Command) bool { return false }

type noIngest struct{}

func (noIngest) IngestStats() httpapi.IngestStats { return httpapi.IngestStats{Listening: true} }

// fleet is what the test seeds and then looks for in the browser.
type fleet struct {
	web01 string // the VM with the chart and its spool-drop gap
	gap   [2]time.Time
	east  string // dc-east's agent, connected for the whole test
}

func seed(t *testing.T, ctx context.Context, st *store.Store) fleet {
	t.Helper()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	enroll := func(site, name string) store.Agent {
		if err := st.EnsureSite(ctx, site, "e2e "+site); err != nil {
			t.Fatal(err)
		}
		secret, _, err := st.CreateEnrollmentToken(ctx, site, time.Hour, "e2e")
		if err != nil {
			t.Fatal(err)
		}
		a, err := st.Enroll(ctx, secret, name, "1.2.3", func(id, site string) (string, time.Time, error) {
			return "1f", time.Now().Add(24 * time.Hour), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	east, west := enroll("dc-east", "east-1"), enroll("dc-west", "west-1")
	obj := func(kind, id, name, path string, props map[string]any) protocol.InventoryObject {
		return protocol.InventoryObject{Kind: kind, ID: id, Name: name, Path: path, Props: props}
	}
	seq := uint64(0)
	meta := func(a store.Agent, kind protocol.BatchKind) store.BatchMeta {
		seq++
		return store.BatchMeta{AgentID: a.ID, Site: a.Site, Epoch: 1, Seq: seq, Kind: kind}
	}
	must(st.WriteInventory(ctx, meta(east, protocol.KindInventory), &protocol.Inventory{Source: vcEast, Full: true, At: time.Now().UnixMilli(), Objects: []protocol.InventoryObject{
		obj("datacenter", "datacenter-1", "DC1", "/Datacenters/DC1", nil),
		obj("cluster", "domain-c1", "Prod", "/Datacenters/DC1/host/Prod", map[string]any{"num_hosts": 2}),
		obj("host", "host-1", "esx1", "/Datacenters/DC1/host/Prod/esx1", map[string]any{"cluster_id": "domain-c1", "connection_state": "connected"}),
		obj("datastore", "datastore-1", "ds1", "/Datacenters/DC1/datastore/ds1", map[string]any{"capacity": 1 << 40, "free": 1 << 39}),
		obj("vm", "vm-1", "web-01", "/Datacenters/DC1/vm/web-01", map[string]any{
			"power_state": "poweredOn", "tools_running_status": "guestToolsRunning", "tools_version_status": "guestToolsCurrent",
			"num_cpu": 4, "memory_mb": 8192, "guest_hostname": "web01.example.com", "guest_ips": []string{"10.1.2.3"},
			"guest_os": "Ubuntu Linux (64-bit)", "host_id": "host-1", "cluster_id": "domain-c1", "datastore_ids": []string{"datastore-1"},
			"snapshot_count": 2, "snapshot_oldest": time.Now().Add(-10 * 24 * time.Hour).UnixMilli(), "tags": []string{"env/prod"}}),
		obj("vm", "vm-2", "db-01", "/Datacenters/DC1/vm/db-01", map[string]any{
			"power_state": "poweredOff", "tools_running_status": "guestToolsNotRunning", "num_cpu": 8, "memory_mb": 32768, "host_id": "host-1"}),
	}}))
	must(st.WriteInventory(ctx, meta(west, protocol.KindInventory), &protocol.Inventory{Source: vcWest, Full: true, At: time.Now().UnixMilli(), Objects: []protocol.InventoryObject{
		obj("host", "host-9", "esx9", "/Datacenters/DCW/host/esx9", nil),
		obj("vm", "vm-1", "edge-01", "/Datacenters/DCW/vm/edge-01", map[string]any{"power_state": "suspended", "host_id": "host-9"}),
	}}))

	// web-01: a sample every 20 s for the last hour, except 35 to 20
	// minutes ago, which the agent's spool dropped (a recorded gap).
	now := time.Now().UTC().Truncate(20 * time.Second)
	gapFrom, gapTo := now.Add(-35*time.Minute), now.Add(-20*time.Minute)
	counters := []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}, {Name: "mem.usage.average", Unit: "%"},
		{Name: "disk.usage.average", Unit: "KBps"}, {Name: "net.usage.average", Unit: "KBps"}}
	write := func(from, to time.Time) {
		var ts []int64
		vals := make([][]float64, len(counters))
		for at := from; at.Before(to); at = at.Add(20 * time.Second) {
			ts = append(ts, at.UnixMilli())
			m := float64(at.Minute())
			vals[0] = append(vals[0], 2000+50*m) // hundredths of a percent
			vals[1] = append(vals[1], 4000+20*m)
			vals[2] = append(vals[2], 300+m)
			vals[3] = append(vals[3], 120+2*m)
		}
		must(st.WriteSamples(ctx, meta(east, protocol.KindSamples), &protocol.Samples{Series: []protocol.SeriesData{{
			Key: protocol.SeriesKey{Source: vcEast, EntityKind: "vm", EntityID: "vm-1", Counters: counters}, Timestamps: ts, Values: vals}}}))
	}
	// Several batches, each committed now with old data: the site is
	// draining a backlog.
	for from := now.Add(-60 * time.Minute); from.Before(gapFrom); from = from.Add(5 * time.Minute) {
		to := from.Add(5 * time.Minute)
		if to.After(gapFrom) {
			to = gapFrom
		}
		write(from, to)
	}
	write(gapTo, now.Add(-3*time.Minute))
	write(now.Add(-3*time.Minute), now.Add(time.Second))
	must(st.WriteGap(ctx, meta(east, protocol.KindGap), &protocol.Gap{Epoch: 1, FromSeq: 1000, ToSeq: 1045, Batches: 45, Bytes: 3 << 20,
		Reason: "spool full", First: gapFrom.UnixMilli(), Last: gapTo.Add(-20 * time.Second).UnixMilli(), Detected: now.UnixMilli()}))

	// The rollups the aggregator runs every minute: the 24 h chart reads
	// the 5-minute tier.
	must(st.RunRollups(ctx, time.Now()))

	// dc-east is connected with a backlog; dc-west was, and went away
	// with 500 batches unsent.
	if err := st.AgentConnected(ctx, east.ID, "1.2.3", "192.0.2.10:40000", 1, east.CertSerial); err != nil {
		t.Fatal(err)
	}
	must(st.AgentHeartbeat(ctx, east.ID, &protocol.Heartbeat{SpoolDepth: 240, SpoolBytes: 48 << 20, OldestUnsentAge: (25 * time.Minute).Milliseconds(),
		CollectionLag: 20_000, SentAt: time.Now().UnixMilli(), SpoolMaxBytes: eastSpoolMax, VCenters: eastVCenters()}))
	if err := st.AgentConnected(ctx, west.ID, "1.2.3", "192.0.2.20:40000", 1, west.CertSerial); err != nil {
		t.Fatal(err)
	}
	must(st.AgentHeartbeat(ctx, west.ID, &protocol.Heartbeat{SpoolDepth: 500, SpoolBytes: 120 << 20, OldestUnsentAge: (3 * time.Hour).Milliseconds(),
		CollectionLag: 40_000, Dropped: 3, SentAt: time.Now().UnixMilli(), VCenters: []protocol.VCenterStatus{{Source: vcWest, Reachable: false,
			Since: time.Now().Add(-4 * time.Hour).UnixMilli(), LastOK: time.Now().Add(-4 * time.Hour).UnixMilli(), LastError: "dial tcp 192.0.2.99:443: connect: connection refused"}}}))
	if err := st.AgentDisconnected(ctx, west.ID); err != nil {
		t.Fatal(err)
	}
	return fleet{web01: vcEast + ":vm-1", gap: [2]time.Time{gapFrom, gapTo}, east: east.ID}
}

// browser is one headless Chromium tab with the helpers the steps use.
type browser struct {
	t       *testing.T
	ctx     context.Context
	shots   string
	mu      sync.Mutex
	foreign []string // requests that left the console's origin
	seen    int
	// pagesChecked counts the pages axe-core checked.
	pagesChecked int
}

// do runs steps with a deadline; a failure saves a screenshot and ends the test.
func (b *browser) do(name string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail(name, err)
	}
}

// run runs one action that returns a value, as do does.
func run[T any](b *browser, name string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.fail(name, err)
	}
	return v
}

// snap saves a screenshot of the page when VMPULSE_E2E_SNAP is set (to
// look at the console without a failure).
func (b *browser) snap(name string) {
	b.t.Helper()
	if os.Getenv("VMPULSE_E2E_SNAP") == "" {
		return
	}
	shot := run(b, "screenshot "+name, chromedp.FullScreenshot(100)) // 100: PNG
	p := filepath.Join(b.shots, "page-"+name+".png")
	if err := os.WriteFile(p, shot, 0o644); err != nil {
		b.t.Error(err)
	}
	b.t.Logf("screenshot: %s", p)
}

func (b *browser) check(name string, ok bool, format string, args ...any) {
	b.t.Helper()
	if !ok {
		b.fail(name, fmt.Errorf(format, args...))
	}
}

// fail saves a screenshot of the page, logs its text and ends the test.
func (b *browser) fail(name string, err error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if shot, serr := chromedp.Run(ctx, chromedp.FullScreenshot(80)); serr == nil {
		p := filepath.Join(b.shots, strings.NewReplacer(" ", "-", "/", "-", "?", "-").Replace(name)+".jpg")
		if werr := os.WriteFile(p, shot, 0o644); werr == nil {
			b.t.Logf("screenshot of the failed step: %s", p)
		}
	}
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 2000) : ''`))
	b.t.Fatalf("step %q: %v\npage text:\n%s", name, err, text)
}

func TestConsole(t *testing.T) {
	exe := chromiumPath()
	_, err := os.Stat(exe)
	need(t, err == nil, "no Chromium at %s: install Debian's chromium (apt-get install chromium) or set VMPULSE_CHROMIUM; CI installs it", exe)
	ch := consoleHandler(t)

	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Logger: log})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(st.Close)
	cfg := httpapi.Defaults()
	cfg.Auth.LoginRate, cfg.Auth.LoginBurst = 1000, 1000
	axe := axeSource(t)
	op := startOps(t, ctx, st)
	api, err := httpapi.New(cfg, httpapi.Deps{Pool: st.Pool(), Ready: st.Ready, Logger: log, KeyEncryptionKey: []byte("0123456789abcdef0123456789abcdef"),
		Agents: registry{st}, Inventory: st, History: st, Commander: noCommander{}, System: st, Ingest: noIngest{},
		Jobs: op.jobs, Backups: op.backups})
	if err != nil {
		t.Fatalf("httpapi.New: %v", err)
	}
	t.Cleanup(func() { api.Close(context.Background()) })
	if err := console.Mount(api.Handler(), ch); err != nil {
		t.Fatal(err)
	}
	setup := &auth.Principal{Username: "e2e-setup", SessionID: uuid.New(), Permissions: slices.Sorted(slices.Values(auth.AllPermissions()))}
	if _, err := api.Auth().CreateUser(ctx, setup, auth.UserInput{Username: adminName, Email: "admin@example.com", DisplayName: "Ada Admin"}, adminPassword, []string{"admin"}); err != nil {
		t.Fatal(err)
	}
	// A second user, whose data scope the users page edits.
	if _, err := api.Auth().CreateUser(ctx, setup, auth.UserInput{Username: "e2e-ops", Email: "ops@example.com", DisplayName: "Otto Ops"}, adminPassword, []string{"auditor"}); err != nil {
		t.Fatal(err)
	}
	// A user who may edit roles but holds few permissions: its escalation is refused.
	if _, err := api.Auth().CreateRole(ctx, setup, auth.RoleInput{Name: "e2e-role-admin", Description: "edits roles"},
		[]string{auth.PermRoleRead, auth.PermRoleWrite, auth.PermUserRead, auth.PermVMRead}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Auth().CreateUser(ctx, setup, auth.UserInput{Username: "e2e-ra", Email: "ra@example.com", DisplayName: "Rita Roles"}, adminPassword, []string{"e2e-role-admin"}); err != nil {
		t.Fatal(err)
	}
	f := seed(t, ctx, st)
	seedAlerts(t, ctx, st)
	seedDatastoreTrend(t, ctx, st)
	seedVMEvents(t, ctx, st, f)
	keepAlive(t, ctx, st, f.east)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	hasOverview := apiHas(t, srv.URL, "/realtime/overview")
	catalog := readCatalog(t)

	shots := os.Getenv("VMPULSE_E2E_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(os.TempDir(), "vmpulse-console-e2e")
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	actx, cancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exe),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancel()
	bctx, cancel = context.WithTimeout(bctx, browserBudget)
	defer cancel()
	b := &browser{t: t, ctx: bctx, shots: shots}
	started := time.Now()
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", exe, err)
	}
	wsOrigin := "ws" + strings.TrimPrefix(srv.URL, "http") + "/"
	if err := chromedp.Listen(bctx, func(ev any) {
		var u string
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			if e.Request == nil {
				return
			}
			u = e.Request.URL
		case *network.EventWebSocketCreated:
			u = e.URL
		default:
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		b.seen++
		if !strings.HasPrefix(u, srv.URL+"/") && !strings.HasPrefix(u, wsOrigin) && !strings.HasPrefix(u, "data:") && !strings.HasPrefix(u, "blob:"+srv.URL+"/") {
			b.foreign = append(b.foreign, u)
		}
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("chromium up in %s", time.Since(started).Round(time.Millisecond))

	// Log in: a wrong password first, then the right one.
	b.do("login page", 20*time.Second,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#login-user`)),
	)
	b.snap("login")
	b.axe("login", axe)
	b.do("wrong password", 20*time.Second,
		chromedp.SendKeys(chromedp.CSS(`#login-user`), adminName),
		chromedp.SendKeys(chromedp.CSS(`#login-password`), "wrong-password"),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-error]`)),
	)
	msg := run(b, "login error", chromedp.Text(chromedp.CSS(`[data-testid=login-error]`)))
	b.check("wrong password message", msg == catalog["en"]["login.error.invalid"], "login error %q, want the catalog's login.error.invalid", msg)
	b.do("log in", 20*time.Second,
		chromedp.SendKeys(chromedp.CSS(`#login-password`), adminPassword),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=site-tiles]`)),
	)

	// The overview: a tile per site; dc-west offline with its backlog.
	tiles := run(b, "site tiles", chromedp.Evaluate[[]map[string]string](`[...document.querySelectorAll('[data-site]')].map(e => ({site: e.dataset.site,
		state: e.dataset.state, drain: e.dataset.drain, backlog: e.querySelector('[data-field=backlog] dd')?.innerText ?? '',
		eta: e.querySelector('[data-eta-seconds]')?.dataset.etaSeconds ?? '', drawn: String(e.hasAttribute('data-drawn'))}))`))
	bySite := map[string]map[string]string{}
	for _, x := range tiles {
		bySite[x["site"]] = x
	}
	west, east := bySite["dc-west"], bySite["dc-east"]
	b.snap("overview")
	b.axe("overview", axe)
	b.check("overview sites", len(tiles) == 2 && west != nil && east != nil, "tiles %v, want dc-east and dc-west", tiles)
	// Both tiles are on screen, so their figures are drawn before the first paint.
	b.check("overview tiles drawn", west != nil && east != nil && west["drawn"] == "true" && east["drawn"] == "true", "tiles %v, want both drawn", tiles)
	b.check("offline site", west["state"] == "offline" && strings.Contains(west["backlog"], "500"), "dc-west tile %v: want offline with 500 batches unsent", west)
	if hasOverview {
		b.check("offline site waits", west["drain"] == "waiting", "dc-west drain %q, want waiting", west["drain"])
		b.check("draining site ETA", east["state"] == "catching_up" && east["drain"] == "draining" && east["eta"] != "",
			"dc-east tile %v: want catching up, draining, with an ETA", east)
		checkOverviewAttention(t, ctx, b, st)
	} else {
		t.Log("GET /realtime/overview is not in this API: the tiles come from /agents and show no ETA")
	}

	// The VM list, its filter and sort in the URL.
	b.do("vm list", 20*time.Second,
		chromedp.Navigate(srv.URL+"/vms?site=dc-east&sort=-memory_mb"),
		chromedp.WaitVisible(chromedp.CSS(`[data-vm]`)),
		chromedp.WaitReady(chromedp.CSS(`#f-site option[value="dc-west"]`)),
	)
	list := run(b, "vm list rows", chromedp.Evaluate[struct {
		Rows  int    `json:"rows"`
		First string `json:"first"`
		Site  string `json:"site"`
	}](`({rows: document.querySelectorAll('[data-vm]').length, first: document.querySelector('[data-vm] a').innerText,
		site: document.querySelector('#f-site').value})`))
	b.snap("vms")
	b.axe("vms", axe)
	b.check("vm list filtered", list.Rows == 2 && list.Site == "dc-east" && list.First == "db-01",
		"list %+v: want web-01 and db-01 of dc-east, db-01 (more memory) first", list)

	// The VM's charts: drawn, and the spool drop shaded where it was.
	b.do("vm detail", 30*time.Second,
		chromedp.Click(chromedp.CSS(`[data-vm="`+f.web01+`"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`figure[data-metric="cpu.usage.average"] canvas`)),
		chromedp.WaitReady(chromedp.CSS(`figure[data-metric="cpu.usage.average"] li[data-cause="spool_drop"]`)),
	)
	chart := run(b, "chart pixels", chromedp.Evaluate[struct {
		Points   int     `json:"points"`
		Painted  int     `json:"painted"`
		InBand   int     `json:"inBand"`
		Samples  int     `json:"samples"`
		X0       float64 `json:"x0"`
		X1       float64 `json:"x1"`
		Charts   int     `json:"charts"`
		Snapshot string  `json:"snapshot"`
	}](`(() => {
		const fig = document.querySelector('figure[data-metric="cpu.usage.average"]');
		const canvas = fig.querySelector('canvas');
		const ctx = canvas.getContext('2d');
		const ratio = canvas.width / canvas.getBoundingClientRect().width;
		const all = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
		let painted = 0;
		for (let i = 3; i < all.length; i += 4) if (all[i] > 0) painted++;
		const li = fig.querySelector('li[data-cause="spool_drop"]');
		const x0 = +li.dataset.x0, x1 = +li.dataset.x1, y = +li.dataset.y;
		let inBand = 0, samples = 0;
		for (let k = 1; k < 10; k++) {
			const x = x0 + (x1 - x0) * k / 10;
			samples++;
			if (ctx.getImageData(Math.round(x * ratio), Math.round(y * ratio), 1, 1).data[3] > 0) inBand++;
		}
		return {points: +fig.dataset.points, painted, inBand, samples, x0, x1,
			charts: document.querySelectorAll('figure.chart canvas').length,
			snapshot: document.querySelector('[data-testid=snapshot-age]')?.innerText ?? ''};
	})()`))
	b.snap("vm")
	b.axe("vm", axe)
	b.check("charts drawn", chart.Charts == 4 && chart.Points > 100 && chart.Painted > 2000, "charts %+v: want 4 charts, the CPU one with its points drawn", chart)
	b.check("gap band", chart.X1-chart.X0 > 20 && chart.InBand >= chart.Samples-2, "spool-drop band %+v: want it painted across its width", chart)
	b.check("snapshot age", strings.Contains(chart.Snapshot, "10 days"), "snapshot age %q, want 10 days", chart.Snapshot)
	vmRecords(b, axe)
	edited := vmEditors(b, srv.URL, axe, f)
	edited = append(edited, vmListAndCharts(b, srv.URL, axe, f)...)
	batchForget(b, srv.URL, axe)
	usersAndRoles(b, srv.URL, axe)
	agentsAndCollection(b, srv.URL, axe)

	// Users and the operation log.
	b.do("users", 20*time.Second,
		chromedp.Navigate(srv.URL+"/users"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="admin"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-role="auditor"]`)),
	)
	b.snap("users")
	b.axe("users", axe)
	b.do("operation log", 20*time.Second,
		chromedp.Navigate(srv.URL+"/audit"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-action="auth.login"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=chain-badge]`)),
	)
	verified := run(b, "chain badge", chromedp.AttributeValue(chromedp.CSS(`[data-testid=chain-badge]`), "data-ok"))
	b.snap("audit")
	b.axe("audit", axe)
	b.check("audit chain", verified.Value == "true", "chain badge data-ok=%q", verified.Value)

	more := operatorPages(b, srv.URL, axe, f)
	more = append(more, hygienePages(b, srv.URL, axe, st, f)...)
	more = append(more, edited...)

	// Every page in zh-CN and ja-JP: nothing untranslated.
	pages := []page{
		{"/", `[data-testid=site-tiles]`},
		{"/vms", `[data-vm]`},
		{"/vms/" + url.PathEscape(f.web01) + "?range=24h", `figure[data-metric="net.usage.average"] canvas`},
		{"/users", `tr[data-user]`},
		{"/audit", `[data-testid=chain-badge]`},
	}
	pages = append(pages, more...)
	type pageText struct {
		Lang    string `json:"lang"`
		Missing string `json:"missing"`
		Text    string `json:"text"`
	}
	for _, loc := range []string{"zh-CN", "ja-JP"} {
		b.do("switch to "+loc, 20*time.Second,
			chromedp.Navigate(srv.URL+"/"),
			chromedp.WaitVisible(chromedp.CSS(`#lang-top`)),
			chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector('#lang-top'); s.value = '`+loc+`';
				s.dispatchEvent(new Event('change', {bubbles: true})); })()`),
			chromedp.WaitReady(chromedp.CSS(`html[lang="`+loc+`"]`)),
		)
		for _, p := range pages {
			name := loc + " " + p.path
			b.do(name, 20*time.Second, chromedp.Navigate(srv.URL+p.path), chromedp.WaitVisible(chromedp.CSS(p.ready)))
			page := run(b, name+" text", chromedp.Evaluate[pageText](`({lang: document.documentElement.lang,
				missing: document.documentElement.dataset.i18nMissing ?? '',
				text: document.body.innerText + ' ' + [...document.querySelectorAll('[aria-label],[title],[placeholder]')]
					.map(e => [e.getAttribute('aria-label'), e.getAttribute('title'), e.getAttribute('placeholder')].join(' ')).join(' ')})`))
			if p.path == "/" || strings.HasPrefix(p.path, "/vms/") {
				b.snap(loc + strings.NewReplacer("/", "-", "?", "-", ":", "-", "%3A", "-").Replace(p.path))
			}
			b.check(name+" language", page.Lang == loc && page.Missing == "", "lang %q, keys missing from the catalog: %q", page.Lang, page.Missing)
			for key, en := range catalog["en"] {
				if strings.Contains(page.Text, key) {
					b.check(name+" raw key", false, "the page shows the key %q", key)
				}
				// An English sentence on a translated page is an
				// untranslated string (short words may be data).
				if tr := catalog[loc][key]; tr != en && len(en) > 12 && strings.Contains(page.Text, en) {
					b.check(name+" english", false, "the page shows %q (%s) in English", en, key)
				}
			}
		}
	}

	escalationRefused(b, srv.URL, axe)

	b.mu.Lock()
	foreign, seen := b.foreign, b.seen
	b.mu.Unlock()
	if seen < 20 {
		t.Errorf("only %d requests were seen: is the network listener working?", seen)
	}
	if len(foreign) > 0 {
		t.Errorf("requests left the console's origin %s: %q", srv.URL, foreign)
	}
	t.Logf("axe-core checked %d pages: no serious or critical finding", b.pagesChecked)
	t.Logf("browser session: %d requests, all to %s, in %s", seen, srv.URL, time.Since(started).Round(time.Millisecond))
}

// apiHas reports whether the API documents a route (GET).
func apiHas(t *testing.T, base, path string) bool {
	t.Helper()
	res, err := httpGet(base + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(res, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	_, ok := doc.Paths[path]
	if !ok {
		_, ok = doc.Paths["/api/v1"+path]
	}
	return ok
}

// readCatalog loads the console's message catalogs from the source tree.
func readCatalog(t *testing.T) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, loc := range []string{"en", "zh-CN", "ja-JP"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "..", "web", "src", "i18n", loc+".json"))
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s.json: %v", loc, err)
		}
		out[loc] = m
	}
	return out
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func httpGet(u string) ([]byte, error) {
	res, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, res.Status)
	}
	return io.ReadAll(res.Body)
}
