package httpapi

import (
	"context"
	"testing"
	"time"

	"github.com/vmpulse/vmpulse/protocol"
)

// TestAgentPluginsOnGet: the collector plugins of an agent's latest
// heartbeat are on GET /agents/{id} (and in the list), times in UTC or
// null; a heartbeat without plugins clears them to an empty list.
func TestAgentPluginsOnGet(t *testing.T) {
	e := newEnv(t, nil)
	op := e.tokens["operator"]
	a := e.enrollAgent("dc-east", "alpha")
	lastErr := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.connectAgent(a, &protocol.Heartbeat{SpoolDepth: 1, Plugins: []protocol.PluginStatus{
		{Name: "promexec", Version: "1.0.0", State: "running", Restarts: 2, LastError: "collect call failed: plugin unavailable",
			LastErrorAt: lastErr.UnixMilli(), LastCollect: lastErr.Add(time.Minute).UnixMilli(), Collects: 30, Failures: 1, Samples: 900},
		{Name: "ipmi", State: "refused", LastError: "checksum mismatch\x00\xff"}, // NUL and invalid UTF-8, as a plugin's stderr may carry
	}})

	res := e.do("GET", "/api/v1/agents/"+a.ID, op, "")
	if res.status != 200 {
		t.Fatalf("get = %d %s", res.status, res.raw)
	}
	var got Agent
	res.data(&got)
	if len(got.Plugins) != 2 {
		t.Fatalf("plugins = %+v", got.Plugins)
	}
	p := got.Plugins[0]
	if p.Name != "promexec" || p.Version != "1.0.0" || p.State != "running" || p.Restarts != 2 || p.Collects != 30 || p.Failures != 1 ||
		p.Samples != 900 || p.LastError != "collect call failed: plugin unavailable" || p.LastErrorAt == nil || !p.LastErrorAt.Equal(lastErr) ||
		p.LastCollect == nil || !p.LastCollect.Equal(lastErr.Add(time.Minute)) {
		t.Errorf("promexec = %+v", p)
	}
	var raw struct {
		Plugins []map[string]any `json:"plugins"`
	}
	res.data(&raw)
	if r := raw.Plugins[1]; r["state"] != "refused" || r["last_collect"] != nil || r["last_error_at"] != nil || r["version"] != "" {
		t.Errorf("ipmi = %v; want refused with null times", r)
	}
	if r := raw.Plugins[1]; r["last_error"] != "checksum mismatch\uFFFD\uFFFD" {
		t.Errorf("ipmi last_error = %q; want NUL and invalid UTF-8 replaced (jsonb refuses them)", r["last_error"])
	}
	if s, _ := raw.Plugins[0]["last_collect"].(string); s != "2026-01-02T03:05:05Z" {
		t.Errorf("last_collect = %q; want RFC 3339 UTC", s)
	}

	var page pageOf[Agent]
	e.do("GET", "/api/v1/agents", op, "").data(&page)
	if len(page.Items) != 1 || len(page.Items[0].Plugins) != 2 {
		t.Errorf("list = %+v", page.Items)
	}

	// The plugins are removed from the config: the next heartbeat has none.
	if _, err := e.store.AgentHeartbeat(context.Background(), a.ID, &protocol.Heartbeat{}); err != nil {
		t.Fatal(err)
	}
	res = e.do("GET", "/api/v1/agents/"+a.ID, op, "")
	res.data(&raw)
	if raw.Plugins == nil || len(raw.Plugins) != 0 {
		t.Errorf("plugins after a heartbeat without = %s; want []", res.raw)
	}
}
