package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vapi/rest"
	_ "github.com/vmware/govmomi/vapi/simulator"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25/types"
)

// site is a running simulator + aggregator + agent.
type site struct {
	t        *testing.T
	db       db
	dir      string
	sdk      *url.URL // simulator, with credentials
	vc       *govmomi.Client
	aggCfg   string
	aggHTTP  string
	agg      *proc
	agent    *proc
	agentCfg string
	agentEnv []string
}

func newSite(t *testing.T) *site {
	s := &site{t: t, dir: t.TempDir()}
	s.db = db{t: t, url: newDatabase(t)}

	m := simulator.VPX()
	m.Machine = 4 // 4 VMs per resource pool: 8 VMs on a cluster and a standalone host
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Remove)
	m.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword("e2e", "e2e-secret")}
	m.Service.TLS = nil
	m.Service.RegisterEndpoints = true // vAPI (tags)
	srv := m.Service.NewServer()
	t.Cleanup(srv.Close)
	s.sdk = srv.URL
	ctx := context.Background()
	var err error
	if s.vc, err = govmomi.NewClient(ctx, s.sdk, true); err != nil {
		t.Fatal(err)
	}

	iport, hport := freePort(t, "udp"), freePort(t, "tcp")
	s.aggHTTP = fmt.Sprintf("http://127.0.0.1:%d", hport)
	s.aggCfg = filepath.Join(s.dir, "aggregator.yml")
	writeFile(t, s.aggCfg, fmt.Sprintf(`database_url: %s
data_dir: %s
ingest:
  listen: 127.0.0.1:%d
  heartbeat_interval: 2s
http:
  listen: 127.0.0.1:%d
`, s.db.url, filepath.Join(s.dir, "aggregator"), iport, hport))
	s.startAggregator()

	out, err := exec.Command(filepath.Join(binDir, "vmpulse-aggregator"), "enroll-token", "-config", s.aggCfg, "-site", "e2e").Output()
	if err != nil {
		t.Fatalf("enroll-token: %v", err)
	}
	clean := *s.sdk
	clean.User = nil
	s.agentCfg = filepath.Join(s.dir, "agent.yml")
	writeFile(t, s.agentCfg, fmt.Sprintf(`name: e2e-agent
data_dir: %s
aggregator:
  address: 127.0.0.1:%d
  server_name: localhost
spool:
  sync_interval: 100ms
collection:
  events_poll: 2s
  tag_interval: 3s
endpoints:
  - name: sim
    url: %s
    username: e2e
    password_env: E2E_VC_PASSWORD
`, filepath.Join(s.dir, "agent"), iport, clean.String()))
	s.agentEnv = []string{"E2E_VC_PASSWORD=e2e-secret", "VMPULSE_ENROLL_TOKEN=" + strings.TrimSpace(string(out))}
	s.startAgent()
	return s
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (s *site) startAggregator() {
	s.agg = start(s.t, "aggregator", nil, "vmpulse-aggregator", "serve", "-config", s.aggCfg)
	eventually(s.t, 30*time.Second, "aggregator ready", func() error { return httpOK(s.aggHTTP + "/readyz") }, s.agg)
}

func (s *site) startAgent() {
	s.agent = start(s.t, "agent", s.agentEnv, "vmpulse-agent", "-config", s.agentCfg)
}

func (s *site) vm(name string) *object.VirtualMachine {
	s.t.Helper()
	f := find.NewFinder(s.vc.Client, true)
	dc, err := f.DefaultDatacenter(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	f.SetDatacenter(dc)
	vm, err := f.VirtualMachine(context.Background(), name)
	if err != nil {
		s.t.Fatal(err)
	}
	return vm
}

// maxGap is the longest interval between consecutive realtime samples of
// any VM (except those excluded) since `since`, in seconds, and the number
// of series that have samples after `after`.
func (s *site) maxGap(exclude []string, since, after time.Time) (gap, fresh int64, err error) {
	gap, err = s.db.one(`
		WITH x AS (
			SELECT s.ts, lag(s.ts) OVER (PARTITION BY s.series_id ORDER BY s.ts) AS prev
			FROM samples s JOIN series se ON se.id = s.series_id
			WHERE se.entity_kind = 'vm' AND se.instance = '' AND NOT (se.entity_id = ANY($1)) AND s.ts >= $2)
		SELECT max(extract(epoch FROM ts - prev))::bigint FROM x`, exclude, since)
	if err != nil {
		return 0, 0, err
	}
	fresh, err = s.db.one(`
		SELECT count(DISTINCT s.series_id) FROM samples s JOIN series se ON se.id = s.series_id
		WHERE se.entity_kind = 'vm' AND se.instance = '' AND NOT (se.entity_id = ANY($1)) AND s.ts > $2`, exclude, after)
	return gap, fresh, err
}

func TestSpineEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end spine test takes ~3 minutes; skipped with -short")
	}
	s := newSite(t)
	ctx := context.Background()
	procs := func() []*proc { return []*proc{s.agg, s.agent} }

	// 1. The inventory arrives whole, powered-off VMs included.
	var vms int64
	eventually(t, 60*time.Second, "full inventory", func() error {
		n, err := s.db.one(`SELECT count(*) FROM inventory_objects WHERE kind = 'vm' AND deleted_at IS NULL`)
		if err == nil && n < 8 {
			err = fmt.Errorf("%d VMs in the inventory, want 8", n)
		}
		vms = n
		return err
	}, procs()...)
	t.Logf("inventory: %d VMs", vms)
	eventually(t, 60*time.Second, "samples for every VM", func() error {
		n, err := s.db.one(`SELECT count(DISTINCT entity_id) FROM samples_named WHERE entity_kind = 'vm'`)
		if err == nil && n < vms {
			err = fmt.Errorf("samples for %d of %d VMs", n, vms)
		}
		return err
	}, procs()...)
	began := time.Now()

	// 2. Inventory changes reach the database within seconds.
	off := s.vm("DC0_C0_RP0_VM1")
	task, err := off.PowerOff(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	eventually(t, 15*time.Second, "power-off visible", func() error {
		n, err := s.db.one(`SELECT count(*) FROM inventory_objects WHERE moref = $1 AND props->>'power_state' = 'poweredOff'`, off.Reference().Value)
		if err == nil && n != 1 {
			err = fmt.Errorf("not yet")
		}
		return err
	}, procs()...)
	t.Logf("power-off visible after %s", time.Since(changed).Round(100*time.Millisecond))
	eventually(t, 15*time.Second, "power-off event with its user", func() error {
		n, err := s.db.one(`SELECT count(*) FROM vcenter_events WHERE type = 'VmPoweredOffEvent' AND entity_id = $1 AND username <> ''`, off.Reference().Value)
		if err == nil && n != 1 {
			err = fmt.Errorf("%d events", n)
		}
		return err
	}, procs()...)

	tools := s.vm("DC0_C0_RP0_VM0")
	task, err = tools.Reconfigure(ctx, types.VirtualMachineConfigSpec{ExtraConfig: []types.BaseOptionValue{
		&types.OptionValue{Key: "SET.guest.toolsRunningStatus", Value: "guestToolsNotRunning"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "Tools state visible", func() error {
		n, err := s.db.one(`SELECT count(*) FROM inventory_objects WHERE moref = $1 AND props->>'tools_running_status' = 'guestToolsNotRunning'`, tools.Reference().Value)
		if err == nil && n != 1 {
			err = fmt.Errorf("not yet")
		}
		return err
	}, procs()...)

	rc := rest.NewClient(s.vc.Client)
	if err := rc.Login(ctx, s.sdk.User); err != nil {
		t.Fatal(err)
	}
	tm := tags.NewManager(rc)
	cat, err := tm.CreateCategory(ctx, &tags.Category{Name: "env", Cardinality: "SINGLE", AssociableTypes: []string{"VirtualMachine"}})
	if err != nil {
		t.Fatal(err)
	}
	tag, err := tm.CreateTag(ctx, &tags.Tag{Name: "prod", CategoryID: cat})
	if err != nil {
		t.Fatal(err)
	}
	if err := tm.AttachTag(ctx, tag, tools.Reference()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "tag visible", func() error {
		n, err := s.db.one(`SELECT count(*) FROM inventory_objects WHERE moref = $1 AND props->'tags' ? 'env/prod'`, tools.Reference().Value)
		if err == nil && n != 1 {
			err = fmt.Errorf("not yet")
		}
		return err
	}, procs()...)

	// 3. The aggregator dies; the agent spools; nothing is lost.
	s.agg.stop(syscall.SIGKILL)
	time.Sleep(45 * time.Second)
	s.startAggregator()
	back := time.Now()
	eventually(t, 60*time.Second, "backlog delivered after the aggregator came back", func() error {
		depth, err := s.db.one(`SELECT spool_depth FROM agents WHERE connected AND last_seen > $1`, back)
		if err == nil && depth != 0 {
			err = fmt.Errorf("spool depth %d", depth)
		}
		return err
	}, procs()...)

	// 4. The agent is killed mid-stream and restarted: it re-reads the gap
	// from vCenter's realtime window.
	s.agent.stop(syscall.SIGKILL)
	killed := time.Now()
	time.Sleep(45 * time.Second)
	s.startAgent()
	restarted := time.Now()
	exclude := []string{off.Reference().Value}
	eventually(t, 90*time.Second, "every VM's samples continue after the restart with no gap", func() error {
		gap, fresh, err := s.maxGap(exclude, began, restarted)
		if err != nil {
			return err
		}
		if fresh < vms-1 {
			return fmt.Errorf("%d of %d VMs have samples after the restart", fresh, vms-1)
		}
		if gap > 25 {
			return fmt.Errorf("a VM's realtime series has a %ds gap since %s (aggregator outage at %s, agent killed at %s)",
				gap, began.Format(time.TimeOnly), back.Format(time.TimeOnly), killed.Format(time.TimeOnly))
		}
		return nil
	}, procs()...)
	if s.db.must(`SELECT count(*) FROM ingest_gaps`) != 0 {
		t.Fatal("the agent reported lost data")
	}
	t.Logf("stored %d samples in %d batches; no gap over 25 s across an aggregator outage and an agent kill -9",
		s.db.must(`SELECT count(*) FROM samples_named`), s.db.must(`SELECT count(*) FROM ingest_ledger`))
}
