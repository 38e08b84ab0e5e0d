package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/agent/internal/spool"
)

// TestOutageBeyondRealtimeWindowEndToEnd runs the agent, after a six-hour
// outage, against a simulated vCenter that keeps 20 s samples for an hour,
// 5 min samples for two and 30 min samples for four, and a real aggregator
// (a subprocess: the agent may not import its code) on real PostgreSQL.
// What reaches the database: the last hour at 20 s, the hour before at 5
// minutes, the two before at 30 minutes, in the VMs' usual series, and a
// gap record for the rest, with its source, entities, counters and
// interval, where the history API reads gaps.
func TestOutageBeyondRealtimeWindowEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the aggregator; skipped with -short")
	}
	base := os.Getenv("VMPULSE_TEST_DATABASE_URL")
	if base == "" {
		t.Skip("VMPULSE_TEST_DATABASE_URL is not set: run with `make test` or `scripts/pg.sh with go test ./agent/`")
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// vCenter, with its statistics intervals shortened.
	m := simulator.VPX()
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	defer m.Remove()
	m.Service.TLS = new(tls.Config)
	m.Service.Listen = &url.URL{User: url.UserPassword("vmpulse", "vmpulse-pass")}
	srv := m.Service.NewServer()
	defer srv.Close()
	vc, err := govmomi.NewClient(ctx, srv.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	reg := m.Map()
	pm := reg.Get(*vc.ServiceContent.PerfManager).(*simulator.PerformanceManager)
	reg.WithLock(simulator.NewContext(), pm, func() {
		pm.HistoricalInterval = []types.PerfInterval{
			{Key: 1, SamplingPeriod: 300, Name: "Past day", Length: 2 * 3600, Level: 4, Enabled: true},
			{Key: 2, SamplingPeriod: 1800, Name: "Past week", Length: 4 * 3600, Level: 4, Enabled: true},
		}
	})
	source := vc.ServiceContent.About.InstanceUuid
	vms := poweredOnVMs(t, vc)

	agg := startAggregator(t, base)

	// The agent's state before the outage: it had collected every VM and
	// host until six hours ago.
	dir := t.TempDir()
	stop := time.Now().Add(-6 * time.Hour).Truncate(20 * time.Second)
	marks := map[string]int64{}
	for _, id := range append(slices.Clone(vms), hosts(t, vc)...) {
		marks[id] = stop.UnixMilli()
	}
	q, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.SetMeta("vsphere/hwm/"+source, encodeMarks(marks, 20)); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	cfg := DefaultConfig()
	cfg.Name, cfg.DataDir = "outage-agent", dir
	cfg.Aggregator.Address, cfg.Aggregator.ServerName = agg.addr, "localhost"
	cfg.Spool.SyncInterval = Duration(100 * time.Millisecond)
	u := *srv.URL
	u.User = nil
	cfg.Endpoints = []EndpointConfig{{Name: "sim", URL: u.String(), Username: "vmpulse", PasswordEnv: "OUTAGE_VC_PASSWORD", Insecure: true}}
	t.Setenv("OUTAGE_VC_PASSWORD", "vmpulse-pass")
	cfg.EnrollToken = agg.token("dc1")
	a, err := New(ctx, cfg, "test", log)
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()

	db, err := pgx.Connect(ctx, agg.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	// Wait for the gap records and for the realtime samples of the first
	// cycle (it sends them last) of every VM.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var gaps, recent int
		err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM ingest_gaps WHERE source IS NOT NULL),
			(SELECT count(DISTINCT se.entity_id) FROM samples s JOIN series se ON se.id = s.series_id
			 WHERE se.entity_kind = 'vm' AND s.ts > now() - interval '5 minutes')`).Scan(&gaps, &recent)
		if err != nil {
			t.Fatal(err)
		}
		if gaps > 0 && recent == len(vms) && a.Spool().Depth == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes: %d collection gaps, %d of %d VMs with recent samples, spool depth %d", gaps, recent, len(vms), a.Spool().Depth)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// The gap records: one per kind (the intervals keep every counter
	// here), from the mark to where the 30 min interval's samples begin.
	rows, err := db.Query(ctx, `SELECT site, source, entity_kind, entity_ids, cardinality(counters), interval_s, first_ts, last_ts, reason, batches
		FROM ingest_gaps WHERE source IS NOT NULL ORDER BY entity_kind`)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for rows.Next() {
		var (
			site, src, kind, reason string
			ids                     []string
			ncounters, interval     int
			first, last             time.Time
			batches                 int64
		)
		if err := rows.Scan(&site, &src, &kind, &ids, &ncounters, &interval, &first, &last, &reason, &batches); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, kind)
		lostTo := time.Now().Add(-4 * time.Hour)
		if site != "dc1" || src != source || reason != "beyond vCenter retention" || interval != 20 || ncounters == 0 || batches != 0 ||
			!first.Equal(stop) || last.Before(lostTo.Add(-31*time.Minute)) || last.After(lostTo) {
			t.Errorf("gap record %s %s %s %d ids, %d counters, %ds, (%s, %s], %q, %d batches; want lost (%s, ≈%s]",
				site, src, kind, len(ids), ncounters, interval, first.UTC(), last.UTC(), reason, batches, stop.UTC(), lostTo.UTC())
		}
		if kind == "vm" && !slices.Equal(ids, vms) {
			t.Errorf("vm gap names %v, want %v", ids, vms)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(kinds, []string{"host", "vm"}) {
		t.Errorf("collection gaps for %v, want host and vm", kinds)
	}

	// A VM's samples: one series, 30 min, 5 min, then ~20 s apart, and
	// nothing from the stretch the gap records.
	var ts []time.Time
	var nseries int
	if err := db.QueryRow(ctx, `SELECT count(DISTINCT se.id), array_agg(s.ts ORDER BY s.ts) FROM samples s JOIN series se ON se.id = s.series_id
		WHERE se.entity_id = $1 AND se.instance = ''`, vms[0]).Scan(&nseries, &ts); err != nil {
		t.Fatal(err)
	}
	if nseries != 1 {
		t.Errorf("%s: samples in %d series, want 1", vms[0], nseries)
	}
	steps := map[time.Duration]int{}
	for i := 1; i < len(ts); i++ {
		d := ts[i].Sub(ts[i-1])
		switch {
		case d == 30*time.Minute, d == 5*time.Minute:
			steps[d]++
		case d <= 25*time.Second:
			steps[20*time.Second]++
		default:
			if !(d < 5*time.Minute && ts[i-1].Truncate(5*time.Minute).Equal(ts[i-1])) { // the 5 min → 20 s seam
				t.Errorf("%s: %s between samples at %s and %s", vms[0], d, ts[i-1].UTC(), ts[i].UTC())
			}
		}
	}
	t.Logf("%s: %d samples from %s to %s; steps %v", vms[0], len(ts), ts[0].UTC(), ts[len(ts)-1].UTC(), steps)
	if ts[0].Before(time.Now().Add(-4*time.Hour - 31*time.Minute)) {
		t.Errorf("%s: a sample at %s, older than vCenter keeps any", vms[0], ts[0].UTC())
	}
	if steps[30*time.Minute] < 3 || steps[5*time.Minute] < 6 || steps[20*time.Second] < 160 {
		t.Errorf("%s: steps %v; want ≥3 of 30 min, ≥6 of 5 min, ≥160 of 20 s", vms[0], steps)
	}
}

// poweredOnVMs lists the simulator's powered-on VMs, sorted.
func poweredOnVMs(t *testing.T, c *govmomi.Client) []string {
	t.Helper()
	var vms []mo.VirtualMachine
	retrieve(t, c, "VirtualMachine", []string{"runtime.powerState"}, &vms)
	var out []string
	for _, vm := range vms {
		if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
			out = append(out, vm.Self.Value)
		}
	}
	slices.Sort(out)
	return out
}

// hosts lists the simulator's hosts.
func hosts(t *testing.T, c *govmomi.Client) []string {
	t.Helper()
	var hs []mo.HostSystem
	retrieve(t, c, "HostSystem", []string{"name"}, &hs)
	var out []string
	for _, h := range hs {
		out = append(out, h.Self.Value)
	}
	return out
}

func retrieve(t *testing.T, c *govmomi.Client, kind string, props []string, dst any) {
	t.Helper()
	ctx := context.Background()
	v, err := view.NewManager(c.Client).CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{kind}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Destroy(ctx)
	if err := v.Retrieve(ctx, []string{kind}, props, dst); err != nil {
		t.Fatal(err)
	}
}

// encodeMarks writes high-water marks as the vsphere package persists
// them (hwm.go: format 1, entries sorted by entity id).
func encodeMarks(marks map[string]int64, interval int32) []byte {
	ids := make([]string, 0, len(marks))
	for id := range marks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b := []byte{1}
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
		b = binary.AppendUvarint(b, uint64(interval))
		b = binary.AppendUvarint(b, uint64(marks[id]))
	}
	return b
}

// testAggregator is a real aggregator process on a database of its own.
type testAggregator struct {
	addr, dbURL, cfg, bin string
	http                  string // the REST API's host:port
	t                     *testing.T
}

// startAggregator builds the aggregator (or takes the binary named by
// VMPULSE_TEST_AGGREGATOR) and runs it on a fresh database of the server
// at base until the test ends.
func startAggregator(t *testing.T, base string) *testAggregator {
	t.Helper()
	dir := t.TempDir()
	bin := os.Getenv("VMPULSE_TEST_AGGREGATOR") // a binary built already
	if bin == "" {
		build := exec.Command("go", "build", "-o", dir+"/", "../aggregator/cmd/vmpulse-aggregator")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			t.Fatalf("build aggregator: %v", err)
		}
		bin = filepath.Join(dir, "vmpulse-aggregator")
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "agent_" + hex.EncodeToString(rnd[:])
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	u, _ := url.Parse(base)
	u.Path = "/" + name
	a := &testAggregator{t: t, dbURL: u.String(), cfg: filepath.Join(dir, "aggregator.yml"), bin: bin}
	udp, _ := net.ListenPacket("udp", "127.0.0.1:0")
	tcp, _ := net.Listen("tcp", "127.0.0.1:0")
	httpAddr := tcp.Addr().String()
	a.addr = udp.LocalAddr().String()
	a.http = httpAddr
	udp.Close()
	tcp.Close()
	cfg := fmt.Sprintf("database_url: %s\ndata_dir: %s\ningest:\n  listen: %s\n  heartbeat_interval: 1s\nhttp:\n  listen: %s\n",
		a.dbURL, filepath.Join(dir, "data"), a.addr, httpAddr)
	if err := os.WriteFile(a.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(a.bin, "serve", "-config", a.cfg)
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if i > 300 {
			t.Fatalf("aggregator not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return a
}

// token issues an enrollment token for site.
func (a *testAggregator) token(site string) string {
	a.t.Helper()
	out, err := exec.Command(a.bin, "enroll-token", "-config", a.cfg, "-site", site).Output()
	if err != nil {
		a.t.Fatalf("enroll-token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
