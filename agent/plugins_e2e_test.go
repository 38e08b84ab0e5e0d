package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vmpulse/vmpulse/agent/internal/collectors"
	"github.com/vmpulse/vmpulse/plugins/sdk/plugintest"
)

// TestCollectorPluginEndToEnd runs the real agent against the govmomi
// simulator with the shipped promexec plugin (built here, checksum
// pinned, its own process) reading a Prometheus exposition from a real
// command, and a real aggregator over QUIC on real PostgreSQL. The
// plugin's samples land in PostgreSQL beside the vSphere samples, each
// exactly once; the plugin process is killed mid-run and is restarted,
// the restart visible in the agent's status, its /metrics and on
// GET /agents/{id}; collection goes on.
func TestCollectorPluginEndToEnd(t *testing.T) {
	base := e2eDatabase(t)
	ctx := context.Background()
	log := testLogger(t)
	sim := startVCenter(t)
	vc := sim.vc
	hostID := hosts(t, vc)[0]

	agg := startAggregator(t, base)

	pluginDir := t.TempDir()
	bin := plugintest.Build(t, pluginDir, "github.com/vmpulse/vmpulse/plugins/promexec")["promexec"]
	expo := filepath.Join(t.TempDir(), "ups.prom")
	if err := os.WriteFile(expo, []byte("# TYPE ups_output_watts gauge\nups_output_watts{ups=\"a\"} 412\n# TYPE ups_on_battery gauge\nups_on_battery 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := agentConfig(t, "plugin-agent", sim, agg)
	cfg.Plugins.Dir = pluginDir
	cfg.Plugins.Collectors = []CollectorPluginConfig{{
		Name: "promexec", SHA256: bin.SHA256, Interval: Duration(time.Second), Timeout: Duration(5 * time.Second),
		Config: map[string]any{"command": []any{"sh", "-c", "cat " + expo}, "entity_kind": "host", "entity_id": hostID},
	}}
	cfg.MetricsListen = freeTCP(t)
	a := runAgent(t, cfg, log)
	db, err := pgx.Connect(ctx, agg.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)

	plugin := func() collectors.Status {
		ps := a.Plugins()
		if len(ps) != 1 {
			t.Fatalf("plugins %+v", ps)
		}
		return ps[0]
	}
	stored := func() (rows int64, vsphere int64) {
		t.Helper()
		if err := db.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM samples s JOIN series se ON se.id = s.series_id WHERE se.source LIKE 'plugin:promexec:%'),
			(SELECT count(*) FROM samples s JOIN series se ON se.id = s.series_id WHERE se.source NOT LIKE 'plugin:%')`).Scan(&rows, &vsphere); err != nil {
			t.Fatal(err)
		}
		return rows, vsphere
	}
	waitUntil(t, "the plugin's samples in PostgreSQL", time.Minute, func() bool {
		n, _ := stored()
		return n >= 6
	})

	// The series: named after the plugin, bound to the host, with their
	// labels as the instance and the unit promexec inferred.
	rows, err := db.Query(ctx, `SELECT site, entity_kind, entity_id, instance, counters, units FROM series
		WHERE source = 'plugin:promexec:' || $1 ORDER BY instance`, a.Identity().AgentID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var site, kind, id, inst string
		var counters, units []string
		if err := rows.Scan(&site, &kind, &id, &inst, &counters, &units); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s/%s [%s] %v %v", site, kind, id, inst, counters, units))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("dc1 host/%s [] [plugin.promexec.ups_on_battery] []", hostID),
		fmt.Sprintf("dc1 host/%s [ups=a] [plugin.promexec.ups_output_watts] [W]", hostID),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("series:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Kill the plugin's process: the host restarts it and collection
	// goes on.
	before := plugin()
	if before.PID == 0 || before.State != "running" {
		t.Fatalf("plugin before the kill: %+v", before)
	}
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the plugin restarted and collecting again", 30*time.Second, func() bool {
		p := plugin()
		return p.Restarts >= 1 && p.State == "running" && p.PID != before.PID && p.Collects >= before.Collects+3
	})
	after := plugin()
	t.Logf("after the kill: %+v", after)
	if after.LastError == "" {
		t.Error("the crash left no last error")
	}

	// The restart on GET /agents/{id}, from the agent's heartbeat.
	token := adminToken(t, agg)
	waitUntil(t, "the restart on GET /agents/{id}", 30*time.Second, func() bool {
		var body struct {
			Data struct {
				Plugins []struct {
					Name      string `json:"name"`
					State     string `json:"state"`
					LastError string `json:"last_error"`
					Restarts  int64  `json:"restarts"`
					Samples   int64  `json:"samples"`
				} `json:"plugins"`
			} `json:"data"`
		}
		apiGet(t, agg, token, "/api/v1/agents/"+a.Identity().AgentID, &body)
		ps := body.Data.Plugins
		return len(ps) == 1 && ps[0].Restarts >= 1 && ps[0].Samples > 0 && ps[0].LastError != ""
	})
	var raw json.RawMessage
	apiGet(t, agg, token, "/api/v1/agents/"+a.Identity().AgentID, &raw)
	t.Logf("GET /agents/{id}: %s", raw)

	// The agent's /metrics shows the plugin and the uplink.
	resp, err := http.Get("http://" + cfg.MetricsListen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{
		`vmpulse_agent_plugin_state{plugin="promexec",state="running"} 1`,
		`vmpulse_agent_uplink_connected 1`,
		`vmpulse_plugin_restarts_total{plugin="promexec"}`,
		`vmpulse_agent_ack_latency_seconds_count{lane="live"}`,
		`vmpulse_agent_collection_duration_seconds{endpoint="sim",interval="20s"}`,
	} {
		if !bytes.Contains(text, []byte(line)) {
			t.Errorf("/metrics lacks %s", line)
		}
	}

	// Exactly once: what the agent spooled is what PostgreSQL holds, no
	// more (a duplicate) and no less (a loss), and vSphere collection ran
	// beside the plugin.
	waitUntil(t, "spooled = stored", 30*time.Second, func() bool {
		s1 := plugin().Samples
		n, _ := stored()
		s2 := plugin().Samples
		return a.Spool().Depth == 0 && s1 == s2 && uint64(n) == s1
	})
	if _, vs := stored(); vs == 0 {
		t.Error("no vSphere samples stored beside the plugin's")
	}
	var dupes int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM (SELECT s.series_id, s.ts FROM samples s JOIN series se ON se.id = s.series_id
		WHERE se.source LIKE 'plugin:%' GROUP BY 1, 2 HAVING count(*) > 1) d`).Scan(&dupes); err != nil || dupes != 0 {
		t.Errorf("duplicate plugin samples: %d, %v", dupes, err)
	}
}
