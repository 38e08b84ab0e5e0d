package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
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
	benchSites      = 50
	benchVMsPerSite = 200 // 10,000 VMs
	benchChartVMs   = 10
	benchChartDays  = 30
)

// seedFleet writes 50 sites of 200 VMs (and 4 hosts, a cluster and 2
// datastores each) through the store's write paths, each site with a
// connected agent, and 30 days of 5-minute CPU samples for 10 VMs of the
// first site. It returns those 10 VMs' ids.
func seedFleet(b *testing.B, ctx context.Context, st *store.Store) []string {
	b.Helper()
	var chart []string
	seq := uint64(0)
	for s := range benchSites {
		site := fmt.Sprintf("site-%02d", s)
		source := fmt.Sprintf("5e5e5e5e-%04d-4000-8000-%012d", s, s)
		if err := st.EnsureSite(ctx, site, "bench "+site); err != nil {
			b.Fatal(err)
		}
		secret, _, err := st.CreateEnrollmentToken(ctx, site, time.Hour, "bench")
		if err != nil {
			b.Fatal(err)
		}
		ag, err := st.Enroll(ctx, secret, site+"-agent", "1.2.3", func(string, string) (string, time.Time, error) {
			return fmt.Sprintf("%x", s+1), time.Now().Add(24 * time.Hour), nil
		})
		if err != nil {
			b.Fatal(err)
		}
		objs := []protocol.InventoryObject{{Kind: "cluster", ID: "domain-c1", Name: site + "-prod", Path: "/DC/host/prod"}}
		for h := range 4 {
			objs = append(objs, protocol.InventoryObject{Kind: "host", ID: fmt.Sprintf("host-%d", h), Name: fmt.Sprintf("%s-esx%d", site, h),
				Path: "/DC/host/prod", Props: map[string]any{"cluster_id": "domain-c1", "connection_state": "connected", "cpu_cores": 32}})
		}
		for d := range 2 {
			objs = append(objs, protocol.InventoryObject{Kind: "datastore", ID: fmt.Sprintf("datastore-%d", d), Name: fmt.Sprintf("%s-ds%d", site, d),
				Path: "/DC/datastore", Props: map[string]any{"capacity": 10 << 40, "free": 3 << 40}})
		}
		power := []string{"poweredOn", "poweredOn", "poweredOn", "poweredOff"}
		for v := range benchVMsPerSite {
			objs = append(objs, protocol.InventoryObject{Kind: "vm", ID: fmt.Sprintf("vm-%d", v), Name: fmt.Sprintf("%s-vm%03d", site, v),
				Path: "/DC/vm", Props: map[string]any{"power_state": power[v%4], "tools_running_status": "guestToolsRunning",
					"num_cpu": 2 + v%8, "memory_mb": 4096, "host_id": fmt.Sprintf("host-%d", v%4), "cluster_id": "domain-c1",
					"datastore_ids": []string{fmt.Sprintf("datastore-%d", v%2)}}})
		}
		seq++
		if _, err := st.WriteInventory(ctx, store.BatchMeta{AgentID: ag.ID, Site: site, Epoch: 1, Seq: seq, Kind: protocol.KindInventory},
			&protocol.Inventory{Source: source, Full: true, At: time.Now().UnixMilli(), Objects: objs}); err != nil {
			b.Fatal(err)
		}
		if err := st.AgentConnected(ctx, ag.ID, "1.2.3", "192.0.2.1:4000", 1, ag.CertSerial); err != nil {
			b.Fatal(err)
		}
		if _, err := st.AgentHeartbeat(ctx, ag.ID, &protocol.Heartbeat{SpoolDepth: uint64(s % 7), SentAt: time.Now().UnixMilli()}); err != nil {
			b.Fatal(err)
		}
		if s != 0 {
			continue
		}
		// 30 days × 5 min for 10 VMs: 86,400 points on the chart.
		end := time.Now().UTC().Truncate(5 * time.Minute)
		counters := []protocol.Counter{{Name: "cpu.usage.average", Unit: "%"}}
		for v := range benchChartVMs {
			var ts []int64
			var vals []float64
			for at := end.Add(-benchChartDays * 24 * time.Hour); !at.After(end); at = at.Add(5 * time.Minute) {
				ts = append(ts, at.UnixMilli())
				vals = append(vals, float64(1000+((at.Unix()/300+int64(v)*37)%90)*100))
			}
			seq++
			if _, err := st.WriteSamples(ctx, store.BatchMeta{AgentID: ag.ID, Site: site, Epoch: 1, Seq: seq, Kind: protocol.KindSamples},
				&protocol.Samples{Series: []protocol.SeriesData{{Key: protocol.SeriesKey{Source: source, EntityKind: "vm",
					EntityID: fmt.Sprintf("vm-%d", v), Counters: counters}, Timestamps: ts, Values: [][]float64{vals}}}}); err != nil {
				b.Fatal(err)
			}
			chart = append(chart, source+":vm-"+fmt.Sprint(v))
		}
	}
	if _, err := st.RunRollups(ctx, time.Now()); err != nil {
		b.Fatal(err)
	}
	return chart
}

// initialJSGzip is the JavaScript a first visit loads (the entry script
// and what it preloads), gzipped at level 9, as scripts/postbuild.mjs counts it.
func initialJSGzip(b *testing.B) int {
	dist := filepath.Join("..", "dist")
	html, err := os.ReadFile(filepath.Join(dist, "index.html"))
	if err != nil {
		b.Fatal(err)
	}
	total := 0
	re := regexp.MustCompile(`<(?:script[^>]*\bsrc|link[^>]*rel="modulepreload"[^>]*href)="/([^"]+\.js)"`)
	for _, m := range re.FindAllSubmatch(html, -1) {
		raw, err := os.ReadFile(filepath.Join(dist, string(m[1])))
		if err != nil {
			b.Fatal(err)
		}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = zw.Write(raw)
		_ = zw.Close()
		total += min(buf.Len(), len(raw))
	}
	return total
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	sort.Float64s(s)
	return s[len(s)/2]
}

// BenchmarkConsole measures the console in headless Chromium against a
// real API and PostgreSQL seeded with 50 sites and 10,000 VMs: first
// contentful paint (cold cache, median of 5), the overview ready after
// logging in, the chart of 10 VMs × 30 days × 5 min (86,400 points; median
// of 3 draws), and the initial JavaScript.
func BenchmarkConsole(b *testing.B) {
	exe := chromiumPath()
	_, err := os.Stat(exe)
	need(b, err == nil, "no Chromium at %s", exe)
	ch := consoleHandler(b)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(testWriter{b}, &slog.HandlerOptions{Level: slog.LevelError}))
	st, err := store.Open(ctx, pgtest.NewDatabase(b), store.Options{Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	cfg := httpapi.Defaults()
	api, err := httpapi.New(cfg, httpapi.Deps{Pool: st.Pool(), Ready: st.Ready, Logger: log, KeyEncryptionKey: []byte("0123456789abcdef0123456789abcdef"),
		Agents: registry{st}, Inventory: st, History: st, Commander: noCommander{}, System: st, Ingest: noIngest{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { api.Close(context.Background()) })
	if err := console.Mount(api.Handler(), ch); err != nil {
		b.Fatal(err)
	}
	setup := &auth.Principal{Username: "bench-setup", SessionID: uuid.New(), Permissions: slices.Sorted(slices.Values(auth.AllPermissions()))}
	if _, err := api.Auth().CreateUser(ctx, setup, auth.UserInput{Username: adminName, Email: "admin@example.com"}, adminPassword, []string{"admin"}); err != nil {
		b.Fatal(err)
	}
	seeded := time.Now()
	chart := seedFleet(b, ctx, st)
	b.Logf("seeded %d sites, %d VMs and %d×%d days of 5-minute samples in %s", benchSites, benchSites*benchVMsPerSite, benchChartVMs, benchChartDays,
		time.Since(seeded).Round(time.Millisecond))
	srv := httptest.NewServer(api.Handler())
	b.Cleanup(srv.Close)

	actx, cancel := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-extensions", true), chromedp.UserDataDir(b.TempDir()),
		chromedp.WindowSize(1400, 1000))
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	bctx, cancel = context.WithTimeout(bctx, 5*time.Minute)
	defer cancel()
	do := func(name string, steps ...chromedp.Action[chromedp.Void]) {
		b.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
	}
	get := func(name string, expr string) float64 {
		b.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[float64](expr, chromedp.EvalAwaitPromise))
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		return v
	}
	do("start", chromedp.Navigate("about:blank"))

	b.ResetTimer()
	for range b.N {
		// First contentful paint of the login page, cache disabled.
		cache(bctx, b, true)
		var fcps []float64
		for range 5 {
			do("open", chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`#login-user`)))
			fcps = append(fcps, get("fcp", `new Promise(r => { const f = () => { const e = performance.getEntriesByName('first-contentful-paint')[0];
				e ? r(e.startTime) : setTimeout(f, 20); }; f(); })`))
		}
		cache(bctx, b, false)

		// Log in; the overview's first screen is ready when every site has its
		// tile (name and state: all reachable), the tiles on screen have their
		// figures drawn and nothing is loading. The tiles below are drawn when
		// scrolled near: "all" is when every tile has its figures, the page
		// scrolled down a screen per frame from the first screen on.
		do("login form", chromedp.SendKeys(chromedp.CSS(`#login-user`), adminName), chromedp.SendKeys(chromedp.CSS(`#login-password`), adminPassword))
		phases, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]float64](`new Promise((resolve, reject) => { const t0 = performance.now();
			document.querySelector('button[type=submit]').click();
			const end = (part) => { const e = performance.getEntriesByType('resource').filter(x => x.name.includes(part)).pop();
				return e ? e.responseEnd - t0 : -1; };
			const onScreen = (e) => { const r = e.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight; };
			let ready = 0, screenTiles = 0;
			const check = () => { const tiles = [...document.querySelectorAll('[data-testid=site-tiles] [data-site]')];
				const seen = tiles.filter(onScreen);
				if (!ready && tiles.length >= `+fmt.Sprint(benchSites)+` && !document.querySelector('main .loading') && seen.length > 0 &&
					seen.every(e => e.hasAttribute('data-drawn'))) { ready = performance.now() - t0; screenTiles = seen.length; }
				else if (ready) scrollBy(0, innerHeight);
				if (ready && tiles.every(e => e.hasAttribute('data-drawn'))) { const all = performance.now() - t0;
					resolve({ready, all, screenTiles, login: end('/auth/login'), me: end('/auth/me'), sites: end('/sites?'), overview: end('/realtime/overview')}); }
				else if (performance.now() - t0 > 60000) reject(new Error('overview not ready in 60 s (first screen at ' + ready + ' ms)'));
				else requestAnimationFrame(check); };
			requestAnimationFrame(check); })`, chromedp.EvalAwaitPromise))
		if err != nil {
			b.Fatalf("overview: %v", err)
		}
		ready, login := phases["ready"], phases["login"]
		tiles := get("tiles", `document.querySelectorAll('[data-testid=site-tiles] [data-site][data-drawn]').length`)
		slow, err := chromedp.Run(bctx, chromedp.Evaluate[string](`performance.getEntriesByType('resource').filter(e => e.name.includes('/api/'))
			.sort((a, b) => b.duration - a.duration).slice(0, 6).map(e => Math.round(e.duration) + ' ms ' + e.name.replace(location.origin, '')).join('; ')`))
		if err == nil {
			b.Logf("slowest API calls of the page: %s", slow)
		}

		// The Chart component drawing 10 series × 30 days × 5 min.
		q := url.Values{"m": {"cpu.usage.average"}, "range": {"30d"}, "step": {"5m"}}
		for _, id := range chart {
			q.Add("e", "vm:"+id)
		}
		var draws []float64
		points := 0.0
		for range 3 {
			do("chart", chromedp.Navigate(srv.URL+"/history?"+q.Encode()),
				chromedp.WaitVisible(chromedp.CSS(`figure[data-metric="cpu.usage.average"] .chart-canvas[data-draw-ms]`)))
			draws = append(draws, get("draw", `+document.querySelector('figure[data-metric="cpu.usage.average"] .chart-canvas').dataset.drawMs`))
			points = get("points", `+document.querySelector('figure[data-metric="cpu.usage.average"]').dataset.points`)
		}
		b.StopTimer()
		if points < 80_000 {
			b.Fatalf("the chart drew %.0f points, want about 86,400 (10 × 30 days × 5 min)", points)
		}
		js := initialJSGzip(b)
		fmt.Printf("figure: console_fcp_ms %.0f ms (median of 5 cold loads of the login page: %v; goal 300)\n", median(fcps), roundAll(fcps))
		fmt.Printf("figure: overview_ready_ms %.0f ms (first screen: from the login's answer to a tile for each of the %d sites, the %.0f on screen "+
			"(1400×1000 window) with their figures drawn and nothing loading, %d VMs seeded; goal 1000; from the click: %.0f ms, of which the password "+
			"check %.0f ms; GET /realtime/overview answered at %.0f ms, /sites at %.0f ms)\n",
			ready-login, benchSites, phases["screenTiles"], benchSites*benchVMsPerSite, ready, login, phases["overview"], phases["sites"])
		fmt.Printf("figure: overview_all_tiles_ms %.0f ms (from the login's answer to all %.0f tiles' figures drawn, the page scrolled "+
			"down a screen per frame once the first screen was ready)\n", phases["all"]-login, tiles)
		fmt.Printf("figure: chart_86400_points_ms %.0f ms (%.0f points in 10 series, first draw, median of 3: %v; goal 250)\n", median(draws), points, roundAll(draws))
		fmt.Printf("figure: console_initial_js_kb_gz %.1f KB (goal 60)\n", float64(js)/1024)
		lighthouseFigures(b, srv.URL, exe)
		b.StartTimer()
	}
}

// lighthouseRun is one line of aggregator/web/scripts/lighthouse.mjs.
type lighthouseRun struct {
	Page        string       `json:"page"`
	FormFactor  string       `json:"form_factor"`
	FinalURL    string       `json:"final_url"`
	Performance float64      `json:"performance"`
	A11y        float64      `json:"accessibility"`
	FCP         float64      `json:"fcp_ms"`
	LCP         float64      `json:"lcp_ms"`
	TBT         float64      `json:"tbt_ms"`
	SI          float64      `json:"si_ms"`
	CLS         float64      `json:"cls"`
	PerfFailing []string     `json:"performance_failing"`
	A11yFailing []string     `json:"accessibility_failing"`
	Warnings    []string     `json:"warnings"`
	Runs        [][2]float64 `json:"runs"`
	Error       string       `json:"error"`
}

// lighthouseFigures runs Lighthouse (npm, aggregator/web's devDependency,
// driving the system Chromium through CHROME_PATH) on the login page and
// the overview after logging in, each as a phone and as a desktop, three
// times each, against this benchmark's server, and prints the lower of the
// two pages' median performance scores per form factor and the lowest
// accessibility score of all runs, with the machine's load average
// (Lighthouse's simulated CPU slowdown scales the tasks it observes, so a
// loaded machine scores lower).
func lighthouseFigures(b *testing.B, base, chromium string) {
	b.Helper()
	web := filepath.Join("..", "..", "..", "web")
	_, err := os.Stat(filepath.Join(web, "node_modules", "lighthouse", "package.json"))
	need(b, err == nil, "lighthouse is not installed in aggregator/web (npm ci there)")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "scripts/lighthouse.mjs", base, adminName, adminPassword)
	cmd.Dir = web
	cmd.Env = append(os.Environ(), "CHROME_PATH="+chromium)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var runs []lighthouseRun
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r lighthouseRun
		if line == "" {
			continue
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			b.Fatalf("lighthouse: %q: %v", line, err)
		}
		if r.Error != "" {
			b.Fatalf("lighthouse %s %s: %s", r.Page, r.FormFactor, r.Error)
		}
		runs = append(runs, r)
	}
	if runErr != nil || len(runs) != 4 {
		b.Fatalf("lighthouse: %v, %d runs (want 4)\n%s", runErr, len(runs), stderr.String())
	}
	worst := map[string]float64{"mobile": 100, "desktop": 100}
	a11y := 100.0
	var detail []string
	for _, r := range runs {
		b.Logf("lighthouse %s %s (%s): median performance %.0f, accessibility %.0f (runs %v); FCP %.0f ms, LCP %.0f ms, TBT %.0f ms, SI %.0f ms, CLS %.3f; "+
			"not passed: performance %q, accessibility %q; warnings %q",
			r.Page, r.FormFactor, r.FinalURL, r.Performance, r.A11y, r.Runs, r.FCP, r.LCP, r.TBT, r.SI, r.CLS, r.PerfFailing, r.A11yFailing, r.Warnings)
		worst[r.FormFactor] = min(worst[r.FormFactor], r.Performance)
		a11y = min(a11y, r.A11y)
		detail = append(detail, fmt.Sprintf("%s %s %.0f/%.0f", r.Page, r.FormFactor, r.Performance, r.A11y))
	}
	load := "unknown"
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil && len(strings.Fields(string(raw))) >= 3 {
		load = strings.Join(strings.Fields(string(raw))[:3], " ")
	}
	fmt.Printf("figure: console_lighthouse_perf_mobile %.0f score (the lower median of 3 runs of the login page and of the overview with 50 sites and 10,000 VMs, "+
		"Lighthouse's phone with simulated slow 4G and 4x CPU slowdown; load average %s; goal 95)\n", worst["mobile"], load)
	fmt.Printf("figure: console_lighthouse_perf_desktop %.0f score (the same as a desktop; goal 95)\n", worst["desktop"])
	fmt.Printf("figure: console_lighthouse_a11y %.0f score (lowest of the 12 runs; goal 95; median performance/lowest accessibility: %s)\n",
		a11y, strings.Join(detail, ", "))
}

// cache turns the tab's HTTP cache off (cold loads) or back on.
func cache(ctx context.Context, b *testing.B, off bool) {
	b.Helper()
	if _, err := chromedp.Call(ctx, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: off}); err != nil {
		b.Fatalf("cache disabled=%v: %v", off, err)
	}
}

func roundAll(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, " ")
}
