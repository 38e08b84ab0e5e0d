package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/agent/internal/vsphere"
	"github.com/vmpulse/vmpulse/protocol"
)

// TestPushedCollectionSettingsEndToEnd: the collection settings changed
// through the aggregator's API (PUT /system/settings) reach the running
// agent, which collects at the new realtime interval and the new VM
// counter set without restarting (same process, same uplink connection,
// same spool); every batch it spooled is stored once; an agent that
// connects later gets them in its Welcome; its /metrics shows the applied
// revision; its heartbeats carry the spool quota and the
// vCenter's reachability. Real parts: govmomi's simulator, the agent, the
// aggregator binary over QUIC, PostgreSQL.
func TestPushedCollectionSettingsEndToEnd(t *testing.T) {
	base := e2eDatabase(t)
	ctx := context.Background()
	log := testLogger(t)
	sim := startVCenter(t)
	agg := startAggregator(t, base)
	admin := adminToken(t, agg)

	cfg := agentConfig(t, "settings-agent", sim, agg)
	cfg.MetricsListen = freeTCP(t)
	a := runAgent(t, cfg, log)
	db, err := pgx.Connect(ctx, agg.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)

	// The realtime cycles' starts, as the agent's collector records them.
	var mu sync.Mutex
	var starts []time.Time
	pctx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	go func() {
		for pctx.Err() == nil {
			a.perfMu.Lock()
			pcs := slices.Clone(a.perfs)
			a.perfMu.Unlock()
			if len(pcs) > 0 {
				st := pcs[0].perf.LastStats(vsphere.IntervalRealtime).Start
				mu.Lock()
				if !st.IsZero() && (len(starts) == 0 || !st.Equal(starts[len(starts)-1])) {
					starts = append(starts, st)
				}
				mu.Unlock()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	vmCounters := func() [][]string {
		rows, err := db.Query(ctx, `SELECT DISTINCT se.counters FROM series se JOIN samples s ON s.series_id = se.id
			WHERE se.entity_kind = 'vm' AND se.instance = ''`)
		if err != nil {
			t.Fatal(err)
		}
		sets, err := pgx.CollectRows(rows, pgx.RowTo[[]string])
		if err != nil {
			t.Fatal(err)
		}
		return sets
	}
	waitUntil(t, "VM samples stored with the agent's own counters", time.Minute, func() bool { return len(vmCounters()) > 0 })
	if got := vmCounters(); len(got) != 1 || !slices.Equal(got[0], vsphere.DefaultCounters["vm"]) {
		t.Fatalf("VM series before the change: %v, want the default set", got)
	}
	if rev := a.CollectionRevision(); rev != 0 {
		t.Fatalf("revision before any setting: %d", rev)
	}

	// The change, through the API.
	newSet := []string{"cpu.usage.average", "cpu.wait.summation", "mem.usage.average"}
	body, _ := json.Marshal(map[string]any{"collection": map[string]any{"realtime_interval": "40s", "counters": map[string]any{"vm": newSet}}})
	req, _ := http.NewRequest(http.MethodPut, "http://"+agg.http+"/api/v1/system/settings", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /system/settings: %d %s", resp.StatusCode, rb)
	}
	changed := time.Now()
	var put struct {
		Data struct {
			Collection struct {
				Revision int64 `json:"revision"`
			} `json:"collection"`
		} `json:"data"`
	}
	if err := json.Unmarshal(rb, &put); err != nil || put.Data.Collection.Revision <= 0 {
		t.Fatalf("PUT /system/settings: %v %s", err, rb)
	}
	rev := put.Data.Collection.Revision
	waitUntil(t, "the agent applying the new revision", 10*time.Second, func() bool { return a.CollectionRevision() == rev })
	t.Logf("the agent applied revision %d %s after the API answered", rev, time.Since(changed).Round(time.Millisecond))
	mu.Lock()
	before := len(starts)
	mu.Unlock()

	// Collected at the new interval: two periods after the change.
	waitUntil(t, "two realtime cycles at the new interval", 2*time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(starts) >= before+2
	})
	mu.Lock()
	got := slices.Clone(starts)
	mu.Unlock()
	for i := before; i < len(got); i++ {
		if d := got[i].Sub(got[i-1]); i > before && (d < 39*time.Second || d > 42*time.Second) {
			t.Errorf("realtime cycles after the change %s apart (cycles %s), want 40s", d, got)
		}
	}
	for i := 1; i < before; i++ {
		if d := got[i].Sub(got[i-1]); d < 19*time.Second || d > 22*time.Second {
			t.Errorf("realtime cycles before the change %s apart, want 20s", d)
		}
	}
	t.Logf("realtime cycle starts: %v (change at %s)", got, changed.Format(time.TimeOnly))

	// The new counters are in the stored samples.
	waitUntil(t, "VM samples with the pushed counters", time.Minute, func() bool {
		return slices.ContainsFunc(vmCounters(), func(c []string) bool { return slices.Equal(c, newSet) })
	})

	// An agent that connects now is welcomed with the settings.
	cfg2 := agentConfig(t, "settings-agent-2", sim, agg)
	a2 := runAgent(t, cfg2, log)
	waitUntil(t, "a new agent applying the revision from its welcome", 30*time.Second, func() bool {
		a2.perfMu.Lock()
		defer a2.perfMu.Unlock()
		return a2.CollectionRevision() == rev && len(a2.perfs) == 1 && a2.perfs[0].perf.Every(vsphere.IntervalRealtime) == 40*time.Second
	})

	// No restart: one connection all along; nothing lost or doubled.
	if n := a.Uplink().Connects.Load(); n != 1 {
		t.Errorf("the uplink connected %d times, want once", n)
	}
	waitUntil(t, "the spool drained", 30*time.Second, func() bool {
		st := a.Spool()
		return st.Depth == 0 && st.Appended == st.Acked
	})
	st := a.Spool()
	var stored int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM ingest_ledger WHERE agent_id = $1`, a.Identity().AgentID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if st.Dropped != 0 || a.Uplink().Rejected.Load() != 0 || uint64(stored) != st.Appended {
		t.Errorf("spooled %d batches (dropped %d, rejected %d), stored %d", st.Appended, st.Dropped, a.Uplink().Rejected.Load(), stored)
	}

	// The agent's /metrics shows the revision and the period in force.
	mresp, err := http.Get("http://" + cfg.MetricsListen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{fmt.Sprintf("vmpulse_agent_collection_settings_revision %g", float64(rev)),
		`vmpulse_agent_collection_period_seconds{endpoint="sim",loop="realtime"} 40`} {
		if !strings.Contains(string(mb), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// The heartbeat's spool quota and vCenter reachability, as stored.
	var maxBytes int64
	var vcs []protocol.VCenterStatus
	waitUntil(t, "the heartbeat's vcenters stored", 10*time.Second, func() bool {
		if err := db.QueryRow(ctx, `SELECT spool_max_bytes, vcenters FROM agents WHERE id = $1`, a.Identity().AgentID).Scan(&maxBytes, &vcs); err != nil {
			t.Fatal(err)
		}
		return len(vcs) > 0
	})
	if maxBytes != cfg.Spool.MaxBytes || len(vcs) != 1 || !vcs[0].Reachable || vcs[0].LastOK == 0 || vcs[0].Source == "" {
		t.Errorf("stored heartbeat: spool_max_bytes %d (want %d), vcenters %+v", maxBytes, cfg.Spool.MaxBytes, vcs)
	}
}
